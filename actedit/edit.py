"""Activation-guided model editing (§3, Fig. 3, Eq. 1–5 and 7; supplement B.3–B.4).

Offers :class:`EditConfig`, :func:`select_layers`, :func:`extract`, :func:`compute_factors`, :func:`apply_factors`
and :func:`edit_model`. The steps of Fig. 3:

1. ① forward D_U (with the trigger δ under BDK) through f_θ and average each layer's activation over all samples;
2. ② combine clean and poisoned activations, ``A = α·A_clean + β·A_poisoned`` (Eq. 7; α = 0, β = −1 is Eq. 1's
   negation), and adaptive-average-pool A_l to the shape of the layer's weight θ_l where the shapes differ;
3. ③ normalise each layer's factor to zero mean and unit variance (Eq. 2–3) and rescale, ``γ·A_l + λ`` (Eq. 4);
4. ④ multiply the weights, ``θ_l ← θ_l · A_l`` (Eq. 5), for every layer l in L = "the later half of the weights".

BatchNorm moving averages are frozen during extraction under BDK and updated under ¬BDK (§3.1, §3.2); the updated
statistics stay in the edited model. The paper leaves open what "the later half of the weights" is, whether A_l is
the layer's output or input, and how pooling maps activations onto weights; :class:`EditConfig` exposes the
readings and the chapter "Reading the method" picks the defaults with evidence.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .capture import TraceDict
from .training import preserved_modes
from .validation import check_images, check_trigger_output, check_trigger

__all__ = ["EditConfig", "Extraction", "LayerFactor", "select_layers", "owns_weight", "extract", "compute_factors",
           "apply_factors", "edit_model", "set_bn_mode", "BN_MODES", "LAYER_SELECTIONS", "POOLINGS", "ACTIVATIONS"]
log = logging.getLogger(__name__)

Trigger = Callable[[torch.Tensor], torch.Tensor]
BN_MODES = ("frozen", "update")
LAYER_SELECTIONS = ("params", "params+bn", "tensors", "modules")
POOLINGS = ("channel", "spatial", "flat")
ACTIVATIONS = ("output", "input")
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class EditConfig:
    """Hyperparameters of the edit, with the paper's defaults.

    Arguments:
        gamma: scale of the normalised factor (Eq. 4; paper 0.5).
        lam: shift of the normalised factor (Eq. 4; paper 1.0).
        alpha: weight of the clean activation (Eq. 7; paper 0).
        beta: weight of the poisoned activation (Eq. 7; paper −1, i.e. Eq. 1's negation).
        eps: ε of Eq. 3, keeps a constant activation (σ = 0) finite.
        bn: BatchNorm moving averages during extraction: ``"frozen"``, ``"update"``, or ``None`` for the paper's
            choice (frozen with BDK, updated with ¬BDK).
        layers: the layer list L: a selection rule from :data:`LAYER_SELECTIONS` or an explicit tuple of module names.
        activation: use each layer's ``"output"`` or ``"input"`` activation as A_l.
        pooling: how A_l is pooled onto θ_l: ``"channel"``, ``"spatial"`` or ``"flat"`` (see :func:`compute_factors`).
        batch_size: images per forward pass during extraction.
        device: where extraction runs.
    """

    # Eq. 4: rescaling of the normalised activation factor
    gamma: float = 0.5
    lam: float = 1.0
    # Eq. 7: A = alpha * A_clean + beta * A_poisoned  (alpha=0, beta=-1 is Eq. 1)
    alpha: float = 0.0
    beta: float = -1.0
    # Eq. 3: numerical floor of the variance
    eps: float = 1e-5
    # §3.1 / §3.2: BN moving averages during extraction (None: frozen under BDK, updated under ¬BDK)
    bn: str | None = None
    # §3: which layers form L, and the readings of A_l and of the pooling (chapter "Reading the method")
    layers: str | tuple[str, ...] = "params"
    activation: str = "output"
    pooling: str = "channel"
    # execution
    batch_size: int = 64
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("gamma", "lam", "alpha", "beta", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"EditConfig.{name} must be a finite number, got {value!r}")
        for name in ("gamma", "lam", "eps"):
            if getattr(self, name) < 0:
                raise ValueError(f"EditConfig.{name} must be non-negative, got {getattr(self, name)!r}")
        if self.eps == 0:
            raise ValueError("EditConfig.eps must be positive: it keeps Eq. 3 finite when σ = 0")
        if self.bn not in (None, *BN_MODES):
            raise ValueError(f"unknown bn mode {self.bn!r}; valid: {', '.join(BN_MODES)} (or None)")
        if isinstance(self.layers, str):
            if self.layers not in LAYER_SELECTIONS:
                raise ValueError(f"unknown layer selection {self.layers!r}; valid: {', '.join(LAYER_SELECTIONS)} "
                                 "or a tuple of module names")
        elif not (isinstance(self.layers, tuple) and self.layers and all(isinstance(n, str) for n in self.layers)):
            raise ValueError(f"layers must be a selection name or a non-empty tuple of module names, got {self.layers!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLINGS)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"EditConfig.batch_size must be a positive int, got {self.batch_size!r}")

    def bn_mode(self, bdk: bool) -> str:
        """The BN mode in force: the explicit one, or the paper's choice for the setting."""
        return self.bn or ("frozen" if bdk else "update")


def _editable(model: nn.Module, with_bn: bool) -> list[tuple[str, nn.Module]]:
    kinds = _WEIGHTED + (_BN if with_bn else ())
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds) and owns_weight(m)]


def owns_weight(module: nn.Module) -> bool:
    """Whether ``module`` owns its ``weight`` as a parameter: a computed one (weight norm, parametrizations) is
    rebuilt at every forward pass, so scaling it in place would silently edit nothing."""
    return "weight" in dict(module.named_parameters(recurse=False))


def select_layers(model: nn.Module, selection: str | Sequence[str] = "params") -> list[str]:
    """The layer list L (§3): names, in ``named_modules()`` order, of the layers whose weights get edited.

    Readings of "split the total weights into two halves and add the layers of the second half":

    - ``"params"``: conv and linear weights in module order, split at half of their total parameter count; a
      layer is in L when its weight reaches into the second half (so the layer straddling the midpoint is in).
    - ``"params+bn"``: the same, with BatchNorm weights counted and edited too.
    - ``"tensors"``: the second half of ``named_parameters()`` by number of tensors (biases and BN affine
      parameters included); L holds the modules owning them that have a weight.
    - ``"modules"``: the second half, by count, of the conv, linear and BatchNorm modules.

    A tuple of names selects exactly those modules (each must exist and have a weight).
    """
    if not isinstance(selection, str):
        names = list(selection)
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules:
                raise LookupError(name)
            if not owns_weight(modules[name]):
                raise ValueError(f"layer {name!r} ({type(modules[name]).__name__}) has no weight parameter to edit")
        return names
    if selection in ("params", "params+bn"):
        layers = _editable(model, with_bn=selection == "params+bn")
        sizes = [m.weight.numel() for _, m in layers]
        half = sum(sizes) / 2
        chosen, seen = [], 0
        for (name, _), size in zip(layers, sizes):
            seen += size
            if seen > half:
                chosen.append(name)
        result = chosen
    elif selection == "tensors":
        params = list(model.named_parameters())
        second = params[len(params) // 2:]
        owners = {n.rsplit(".", 1)[0] if "." in n else "" for n, _ in second}
        result = [n for n, m in _editable(model, with_bn=True) if n in owners]
    elif selection == "modules":
        layers = _editable(model, with_bn=True)
        result = [n for n, _ in layers[len(layers) // 2:]]
    else:
        raise ValueError(f"unknown layer selection {selection!r}; valid: {', '.join(LAYER_SELECTIONS)}")
    if not result:
        raise ValueError("the model has no editable layer (conv, linear or BatchNorm with a weight)")
    return result


@dataclass
class Extraction:
    """Result of step ① and Eq. 7: the working copy of the model (with BN statistics as extraction left them),
    the layer list and each layer's combined mean activation A_l (before pooling)."""

    model: nn.Module
    layers: list[str]
    activations: dict[str, torch.Tensor]
    bn_mode: str
    bdk: bool
    num_images: int


def set_bn_mode(model: nn.Module, mode: str) -> None:
    """Eval mode, with BatchNorm layers in train mode (moving averages updated) when ``mode == "update"``."""
    model.eval()
    if mode == "update":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()


@torch.no_grad()
def _mean_activations(model: nn.Module, layers: list[str], images: torch.Tensor, trigger: Trigger | None,
                      config: EditConfig) -> dict[str, torch.Tensor]:
    with TraceDict(model, layers, input=config.activation == "input") as traces:
        for start in range(0, images.shape[0], config.batch_size):
            x = images[start:start + config.batch_size]
            if trigger is not None:
                x = check_trigger_output(trigger(x.clone()), x)
            try:
                model(x.to(config.device))
            except ValueError as err:
                if "Expected more than 1 value per channel" in str(err):
                    raise ValueError("bn='update' needs batches of at least 2 images (BatchNorm computes batch "
                                     "statistics); pass more images or use bn='frozen'") from err
                raise
            except RuntimeError as err:
                raise ValueError(f"the model cannot take images of shape {tuple(x.shape[1:])} (channels, height, "
                                 f"width): {err}; pass images with the channel count and size the model was "
                                 "trained on") from err
    for name, trace in traces.items():
        if trace.count == 0:
            raise ValueError(f"layer {name!r} is in L but the forward pass never called it (an unused head?); "
                             "choose the layers by name (EditConfig(layers=...))")
        if not trace.record.finite:
            raise ValueError(f"layer {name!r} produced NaN or Inf activations on D_U; the model or inputs are broken")
    return {name: trace.mean for name, trace in traces.items()}


def extract(model: nn.Module, images: torch.Tensor, *, trigger: Trigger | None = None,
            config: EditConfig | None = None) -> Extraction:
    """Step ① and Eq. 7 on a copy of ``model``: mean activations of every layer in L over D_U.

    Under BDK (``trigger`` given) the images carry the trigger; the BN mode follows ``config.bn_mode(bdk)``. With
    α ≠ 0 the clean images are forwarded too (before the poisoned ones). The caller's model is untouched.
    """
    config = config or EditConfig()
    if not isinstance(config, EditConfig):
        raise TypeError(f"config must be an EditConfig, got {type(config).__name__}; use EditConfig(**your_dict)")
    check_trigger(trigger)
    check_images(images)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    bdk = trigger is not None
    layers = select_layers(model, config.layers)
    mode = config.bn_mode(bdk)
    work = copy.deepcopy(model).to(config.device)   # the copy keeps the caller's train/eval flags
    acts: dict[str, torch.Tensor] = {n: 0.0 for n in layers}  # type: ignore[misc]
    with preserved_modes(work):
        set_bn_mode(work, mode)
        if config.alpha != 0 and bdk:
            clean = _mean_activations(work, layers, images, None, config)
            acts = {n: config.alpha * clean[n] for n in layers}
        if config.beta != 0 or not bdk:
            poisoned = _mean_activations(work, layers, images, trigger, config)
            # ¬BDK: the "poisoned" D_U is the clean D_U (δ = 0), so A = (α + β)·A_clean
            weight = config.beta if bdk else config.alpha + config.beta
            acts = {n: acts[n] + weight * poisoned[n] for n in layers}
    acts = {n: (a if isinstance(a, torch.Tensor) else torch.zeros(())) for n, a in acts.items()}
    return Extraction(work, layers, acts, mode, bdk, images.shape[0])


def _pool(act: torch.Tensor, weight: torch.Tensor, pooling: str, activation: str, module: nn.Module) -> torch.Tensor:
    """Map a mean activation onto the weight's shape (step ②), returning the factor before broadcasting."""
    act = act.float()
    if act.ndim == 0:  # α = β = 0: no activation at all
        act = torch.zeros(weight.shape[0] if activation == "output" else weight.shape[-1])
    if pooling == "flat":
        flat = F.adaptive_avg_pool1d(act.reshape(1, 1, -1), weight.numel())
        return flat.reshape(weight.shape)
    if isinstance(module, nn.Linear) and act.ndim > 1:
        act = act.movedim(-1, 0)   # a Linear on [N, ..., F] (tokens, channels-last blocks): features are the last axis
    if isinstance(module, _BN):
        vec = act.reshape(act.shape[0], -1).mean(dim=1) if act.ndim > 1 else act
        return F.adaptive_avg_pool1d(vec.reshape(1, 1, -1), weight.shape[0]).reshape(weight.shape)
    axis = 0 if activation == "output" else 1
    length = weight.shape[axis]
    if pooling == "spatial" and weight.ndim > 2 and act.ndim == weight.ndim - 1:
        # [C, H, W] -> [C', k, k]: pool channels to the weight's axis and space to the kernel
        pooled = F.adaptive_avg_pool3d(act[None, None], (length, *weight.shape[2:]))[0, 0]
        return pooled.unsqueeze(1 - axis)  # output: [C_out, 1, k, k]; input: [1, C_in, k, k]
    vec = act.reshape(act.shape[0], -1).mean(dim=1) if act.ndim > 1 else act
    vec = F.adaptive_avg_pool1d(vec.reshape(1, 1, -1), length).flatten()
    shape = [1] * weight.ndim
    shape[axis] = length
    return vec.reshape(shape)


@dataclass
class LayerFactor:
    """The factor A_l of one layer after Eq. 2–4, and the statistics Eq. 2 computed."""

    name: str
    factor: torch.Tensor   # broadcastable to the layer's weight
    mu: float              # Eq. 2 mean of the pooled activation
    sigma: float           # Eq. 2 standard deviation (population)
    weight_shape: tuple[int, ...] = field(default_factory=tuple)

    def summary(self) -> dict:
        f = self.factor
        return {"layer": self.name, "weight_shape": self.weight_shape, "elements": f.numel(), "mu": self.mu,
                "sigma": self.sigma, "min": f.min().item(), "mean": f.mean().item(), "max": f.max().item(),
                "negative_%": 100.0 * (f < 0).float().mean().item()}


def compute_factors(extraction: Extraction, config: EditConfig | None = None) -> dict[str, LayerFactor]:
    """Steps ②–③: pool, normalise (Eq. 2–3) and rescale (Eq. 4) every layer's activation into a factor A_l.

    Pooling readings (``config.pooling``), for a weight θ_l of shape ``[C_out, C_in, k, k]``, ``[out, in]`` or ``[C]``:

    - ``"channel"``: average A_l over space to one value per channel, broadcast along the other weight axes
      (output activation → one factor per output channel, like scaling the filter; input → per input channel);
    - ``"spatial"``: adaptive-average-pool ``[C, H, W]`` to ``[C_out, k, k]`` (output) or ``[C_in, k, k]`` (input),
      broadcast along the remaining axis;
    - ``"flat"``: flatten A_l and adaptive-average-pool it to ``θ_l.numel()`` values reshaped like θ_l — the literal
      "adjust the shape of A_l to the shape of θ_l".
    """
    config = config or EditConfig()
    modules = dict(extraction.model.named_modules())
    factors = {}
    for name in extraction.layers:
        module = modules[name]
        weight = module.weight
        pooled = _pool(extraction.activations[name], weight, config.pooling, config.activation, module)
        mu = pooled.mean()                                   # Eq. 2
        var = ((pooled - mu) ** 2).mean()                    # Eq. 2 (population variance)
        normed = (pooled - mu) / torch.sqrt(var + config.eps)  # Eq. 3
        factor = config.gamma * normed + config.lam          # Eq. 4
        factors[name] = LayerFactor(name, factor, mu.item(), var.sqrt().item(), tuple(weight.shape))
    return factors


@torch.no_grad()
def apply_factors(extraction: Extraction, factors: dict[str, LayerFactor], *, copy_model: bool = True) -> nn.Module:
    """Step ④, Eq. 5: ``θ_l ← θ_l · A_l`` for every layer in L, on a copy of the extraction's model."""
    model = copy.deepcopy(extraction.model) if copy_model else extraction.model
    modules = dict(model.named_modules())
    for name, lf in factors.items():
        weight = modules[name].weight
        weight.mul_(lf.factor.to(weight.device, weight.dtype))
    return model


def edit_model(model: nn.Module, images: torch.Tensor, *, trigger: Trigger | None = None,
               config: EditConfig | None = None, return_factors: bool = False
               ) -> nn.Module | tuple[nn.Module, dict[str, LayerFactor]]:
    """Unlearn a backdoor by activation-guided editing (Fig. 3); BDK when ``trigger`` is given, else ¬BDK.

    Invariant: returns an edited copy; the caller's ``model`` (parameters, buffers, train/eval mode) is left
    exactly as it was. The copy keeps the caller's train/eval mode; under ``bn="update"`` its BN running statistics
    are the ones extraction left (§3.2). With ``return_factors=True`` the result is ``(model, factors)``: the
    factor A_l of every edited layer (:class:`LayerFactor`, Eq. 2–4), e.g. for a report of the edit.

    Arguments:
        model: the (possibly backdoored) classifier f_θ.
        images: D_U, float ``[N, C, H, W]`` in [0, 1], N ≥ 1 (≥ 2 with ``bn="update"`` on 1×1 feature maps).
        trigger: the known trigger δ (a callable on image batches), or ``None`` for ¬BDK.
        config: :class:`EditConfig` (paper defaults when ``None``).

    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
    ...                           torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 3))
    >>> edited = edit_model(net, torch.rand(8, 1, 28, 28))
    >>> edited is net
    False
    """
    config = config or EditConfig()
    extraction = extract(model, images, trigger=trigger, config=config)
    factors = compute_factors(extraction, config)
    edited = apply_factors(extraction, factors, copy_model=False)  # extract already gave it the caller's modes
    modules = dict(edited.named_modules())
    for name in factors:  # only the weights of L changed; aminmax is one pass and NaN if any element is
        low, high = modules[name].weight.detach().aminmax()
        if not (torch.isfinite(low) and torch.isfinite(high)):
            raise ValueError(f"the edit produced non-finite weights in {name!r}; check eps and the activations")
    return (edited, factors) if return_factors else edited
