"""The γ/λ explorer: tune the edit live on a cached victim (supplement B.3, Fig. 4; issue 6).

Offers :class:`ExplorerSettings`, :class:`EditSession` (the computation, no widgets: cached extraction, edit,
evaluation, γ × λ grids), :class:`Explorer` (ipywidgets controls and plots over an :class:`EditSession`),
:func:`update_seconds` (time one update) and :func:`plot_gamma_lambda` (seaborn heatmaps of a grid).

The expensive part of the edit is step ① of Fig. 3, the forward pass of D_U (:func:`actedit.edit.extract`); γ and λ
(Eq. 4) only enter steps ③–④. The session therefore caches one extraction per (BDK, BN mode, α, β, N) and redoes
only :func:`~actedit.edit.compute_factors` and :func:`~actedit.edit.apply_factors` when γ or λ move, then evaluates
with :func:`actedit.metrics.evaluate` on a fixed evaluation subset of D_V::

    session = EditSession.from_victim(get_victim(spec), get_retrained(spec))
    explorer = Explorer(session)
    explorer                      # in Jupyter: the controls, the numbers, the per-class bars, the factor histogram
    explorer.set(gamma=1.0, lam=0.5, bdk=False)
    explorer.metrics              # {"stage": "edited", "asr": ..., "acc": ..., "ctca": ..., "score": ..., ...}

Evaluation reuses the unedited front of the network: the edit changes only the layers in L, the later half, so for
an ``nn.Sequential`` victim the output of the children before the first edited layer is computed once per BN state
and only the rest of the network runs per update (:class:`EditSession` explains why the numbers stay exactly those
of ``evaluate`` on the whole edited model).
"""
from __future__ import annotations

import copy
import io
import logging
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from statistics import median
from typing import Callable, Sequence

import torch
from torch import nn

from .cache import state_digest
from .edit import BN_MODES, EditConfig, Extraction, LayerFactor, apply_factors, compute_factors, extract
from .metrics import evaluate, score
from .repair import repair
from .seeding import generator
from .timing import timed
from .validation import check_images, check_labels

__all__ = ["ExplorerSettings", "EditSession", "Explorer", "update_seconds", "plot_gamma_lambda", "GRID_GAMMAS",
           "GRID_LAMS"]
log = logging.getLogger(__name__)

Trigger = Callable[[torch.Tensor], torch.Tensor]
GRID_GAMMAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)   # the γ axis of our Fig. 4
GRID_LAMS = (0.0, 0.5, 1.0, 1.5, 2.0)           # the λ axis of our Fig. 4


@dataclass(frozen=True)
class ExplorerSettings:
    """One position of the explorer's controls; the defaults are the paper's (BDK, frozen BN, 512 samples)."""

    gamma: float = 0.5      # Eq. 4, scale of the normalised factor
    lam: float = 1.0        # Eq. 4, shift
    bdk: bool = True        # §3.1 BDK (trigger known) or §3.2 ¬BDK
    bn: str = "frozen"      # BN moving averages during extraction, "frozen" or "update" (supplement B.3)
    alpha: float = 0.0      # Eq. 7, weight of the clean activation
    beta: float = -1.0      # Eq. 7, weight of the poisoned activation
    n_images: int = 512     # |D_U| (§4.1: 512 of the 5,000-image pool)
    lr: float = 1e-2        # repair learning rate (Table 8)

    def __post_init__(self) -> None:
        for name in ("gamma", "lam", "alpha", "beta", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"ExplorerSettings.{name} must be a finite number, got {value!r}")
        if self.gamma < 0:
            raise ValueError(f"ExplorerSettings.gamma must be non-negative, got {self.gamma!r}")
        if self.lr < 0:
            raise ValueError(f"ExplorerSettings.lr must be non-negative, got {self.lr!r}")
        if not isinstance(self.bdk, bool):
            raise TypeError(f"ExplorerSettings.bdk must be True (BDK) or False (¬BDK), got {self.bdk!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"ExplorerSettings.bn must be one of {', '.join(BN_MODES)}, got {self.bn!r}")
        if isinstance(self.n_images, bool) or not isinstance(self.n_images, int) or self.n_images < 1:
            raise ValueError(f"ExplorerSettings.n_images must be a positive int, got {self.n_images!r}")

    def edit_config(self, base: EditConfig | None = None) -> EditConfig:
        """``base`` (the paper's defaults when ``None``) with this γ, λ, α, β and BN mode."""
        return replace(base or EditConfig(), gamma=float(self.gamma), lam=float(self.lam), alpha=float(self.alpha),
                       beta=float(self.beta), bn=self.bn)


@dataclass
class _Front:
    """The unedited front of an ``nn.Sequential`` model evaluated once on the evaluation subset.

    ``clean`` is ``front(x)`` and ``triggered`` is ``front(δ(x))`` for the images whose label is not y_t, both
    computed in the batches :func:`actedit.metrics.evaluate` uses.
    """

    cut: int
    clean: torch.Tensor        # front(x) for every evaluation image
    clean_kept: torch.Tensor   # front(x) for the images with y ≠ y_t (what evaluate hands its trigger)
    triggered: torch.Tensor    # front(δ(x)) for the same images


class _FrontTrigger:
    """The trigger seen after the front: ``front(x) ↦ front(δ(x))``, tabulated on the evaluation subset.

    :func:`actedit.metrics.evaluate` applies its trigger to the images whose label is not y_t; called with the
    front's output for exactly those images, this returns the front's output for the same images with δ applied.
    Anything else is refused, so a change in how ``evaluate`` calls its trigger cannot go unnoticed.
    """

    def __init__(self, front: _Front) -> None:
        self.front = front

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape != self.front.clean_kept.shape or not torch.equal(x, self.front.clean_kept):
            raise RuntimeError("the front-of-network trigger was called on other inputs than the non-target "
                               "evaluation images; evaluate with reuse_front=False")
        return self.front.triggered


class EditSession:
    """A victim, its data and a cache of extractions: edits and evaluates one setting of the explorer fast.

    Every result equals the package's own path exactly: for settings ``s``,
    ``session.evaluate_edit(s)`` holds the same ASR/ACC/CTCA/per-class numbers as
    ``evaluate(edit_model(model, unseen_images[:s.n_images], trigger=trigger if s.bdk else None,
    config=s.edit_config(config)), session.test_images, session.test_labels, trigger=verify_trigger, target=target,
    top_k=top_k, num_classes=num_classes)`` — the edit is :func:`extract` → :func:`compute_factors` →
    :func:`apply_factors`, as in :func:`actedit.edit_model`, with the extraction cached per (BDK, BN, α, β, N).

    Front reuse (``reuse_front=True``, ``nn.Sequential`` models): the children before the first layer of L are not
    edited, so their output on the evaluation images depends only on their parameters and BN statistics. It is
    computed once per state of the front (a hash of it; "frozen" extractions all share the victim's) in the batches
    ``evaluate`` uses, and ``evaluate`` then runs the rest of the network on it, with the trigger tabulated in that
    space (:class:`_FrontTrigger`). The same operations on the same tensors give bitwise the same logits.

    Arguments:
        model: the victim f_θ (left unchanged).
        unseen_images, unseen_labels: the D_U pool, ``[P, C, H, W]`` float in [0, 1] and ``[P]`` int64; a setting
            with N samples uses the first N (the pool should already be in random order).
        test_images, test_labels: D_V; a fixed subset of ``n_eval`` images (seeded, sorted indices) is evaluated.
        trigger: δ used by BDK editing and BDK repair.
        target: the target class y_t.
        retrained_acc: ACC of the retrained model R (percent), for Score (Eq. 6); ``nan`` makes Score ``nan``.
        retrained: R itself; when given, ACC^R is measured on the evaluation subset (overrides ``retrained_acc``).
        verify_trigger: δ used to measure ASR (default ``trigger``; the book uses the magnified trigger).
        n_eval: size of the evaluation subset (``None``: all of D_V).
        config: the base :class:`EditConfig` (layer selection, pooling, ε, ...); γ, λ, α, β and BN come from the
            settings.
    """

    def __init__(self, model: nn.Module, unseen_images: torch.Tensor, unseen_labels: torch.Tensor,
                 test_images: torch.Tensor, test_labels: torch.Tensor, *, trigger: Trigger, target: int,
                 retrained_acc: float = math.nan, retrained: nn.Module | None = None,
                 verify_trigger: Trigger | None = None, n_eval: int | None = 2000,
                 seed: int = 0, top_k: int = 1, num_classes: int | None = None, config: EditConfig | None = None,
                 batch_size: int = 256, device: str | torch.device = "cpu", reuse_front: bool = True,
                 cache_size: int = 8, front_cache_size: int = 3) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_images(unseen_images)
        check_labels(unseen_labels, unseen_images.shape[0], num_classes=num_classes)
        check_images(test_images, channels=unseen_images.shape[1])
        check_labels(test_labels, test_images.shape[0], num_classes=num_classes)
        if not callable(trigger):
            raise TypeError("trigger must be a callable on image batches (see actedit.triggers)")
        self.num_classes = num_classes or int(max(unseen_labels.max().item(), test_labels.max().item())) + 1
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < self.num_classes:
            raise ValueError(f"target must be a class index in [0, {self.num_classes}), got {target!r}")
        if n_eval is not None and (isinstance(n_eval, bool) or not isinstance(n_eval, int) or n_eval < 1):
            raise ValueError(f"n_eval must be a positive int or None (all of D_V), got {n_eval!r}")
        if isinstance(retrained_acc, bool) or not isinstance(retrained_acc, (int, float)):
            raise TypeError(f"retrained_acc must be a number (percent), got {retrained_acc!r}")
        self.model = model
        self.unseen_images, self.unseen_labels = unseen_images, unseen_labels
        if n_eval is not None and n_eval < test_images.shape[0]:
            index = torch.randperm(test_images.shape[0], generator=generator(seed))[:n_eval].sort().values
            test_images, test_labels = test_images[index], test_labels[index]
        self.test_images, self.test_labels = test_images, test_labels
        self.trigger = trigger
        self.verify_trigger = verify_trigger or trigger
        self.target, self.top_k = target, top_k
        self.retrained_acc = float(retrained_acc)
        self.config = config or EditConfig(device=str(device))
        self.batch_size, self.device = batch_size, device
        self.reuse_front = reuse_front
        self._extractions: OrderedDict[tuple, Extraction] = OrderedDict()
        self._fronts: OrderedDict[str, _Front] = OrderedDict()
        self._cache_size, self._front_cache_size = cache_size, front_cache_size
        self.victim_metrics: dict | None = None
        if retrained is not None:
            self.retrained_acc = self.evaluate(retrained)["acc"]
        self.victim_metrics = self.evaluate(model)  # its Score is 0 by Eq. 6: nothing forgotten

    @classmethod
    def from_victim(cls, victim, retrained: nn.Module | None = None, *, seed: int = 0, **kwargs) -> "EditSession":
        """A session on an :class:`actedit.experiments.Victim`: δ for editing and repair, the magnified δ for ASR
        (as :meth:`Victim.evaluate`), y_t, top-k, and ACC^R of ``retrained`` measured on the evaluation subset.

        The D_U pool is put in the order of :func:`actedit.report.draw_unseen` with ``seed``, so N samples here are
        the N samples the table chapters draw; ``seed`` also picks the evaluation subset.
        """
        from .report import draw_unseen

        splits = victim.splits
        pool_x, pool_y = draw_unseen(splits.unseen.images, splits.unseen.labels, len(splits.unseen), seed)
        return cls(victim.model, pool_x, pool_y, splits.test.images, splits.test.labels, trigger=victim.trigger,
                   verify_trigger=victim.verify_trigger, target=victim.spec.target, top_k=splits.top_k,
                   num_classes=splits.num_classes, retrained=retrained, seed=seed, **kwargs)

    # ------------------------------------------------------------------------------------------------ the edit

    def extraction(self, settings: ExplorerSettings) -> Extraction:
        """Step ① and Eq. 7 for ``settings`` (cached per BDK, BN mode, α, β and N)."""
        n = settings.n_images
        if n > self.unseen_images.shape[0]:
            raise ValueError(f"n_images={n} but the D_U pool holds {self.unseen_images.shape[0]} images")
        key = (settings.bdk, settings.bn, float(settings.alpha), float(settings.beta), n)
        if key in self._extractions:
            self._extractions.move_to_end(key)
            return self._extractions[key]
        with timed(self.device) as t:
            result = extract(self.model, self.unseen_images[:n], trigger=self.trigger if settings.bdk else None,
                             config=settings.edit_config(self.config))
        log.debug("extraction %s: %.3f s", key, t.seconds)
        self._extractions[key] = result
        while len(self._extractions) > self._cache_size:
            self._extractions.popitem(last=False)
        return result

    def edit(self, settings: ExplorerSettings) -> tuple[nn.Module, dict[str, LayerFactor]]:
        """The edited model (a copy, in the victim's train/eval mode) and its factors A_l (Eq. 2–5)."""
        extraction = self.extraction(settings)
        factors = compute_factors(extraction, settings.edit_config(self.config))
        return apply_factors(extraction, factors), factors

    def repair(self, model: nn.Module, settings: ExplorerSettings) -> nn.Module:
        """:func:`actedit.repair` of ``model`` on the setting's D_U (with δ under BDK) at the setting's lr."""
        n = settings.n_images
        return repair(model, self.unseen_images[:n], self.unseen_labels[:n],
                      trigger=self.trigger if settings.bdk else None, lr=settings.lr, device=self.device)

    # ------------------------------------------------------------------------------------------ evaluation

    def evaluate(self, model: nn.Module) -> dict:
        """:func:`actedit.metrics.evaluate` on the evaluation subset, plus ``score`` (Eq. 6, percent)."""
        result = evaluate(model, self.test_images, self.test_labels, trigger=self.verify_trigger,
                          target=self.target, top_k=self.top_k, num_classes=self.num_classes,
                          batch_size=self.batch_size, device=self.device)
        return self._with_score(result)

    def evaluate_edit(self, settings: ExplorerSettings) -> tuple[dict, nn.Module, dict[str, LayerFactor]]:
        """Edit for ``settings`` and evaluate: ``(metrics, edited model, factors)``."""
        edited, factors = self.edit(settings)
        front = self._front(self.extraction(settings)) if self.reuse_front else None
        if front is None:
            return self.evaluate(edited), edited, factors
        rest = nn.Sequential(*list(edited.children())[front.cut:])
        result = evaluate(rest, front.clean, self.test_labels, trigger=_FrontTrigger(front),
                          target=self.target, top_k=self.top_k, num_classes=self.num_classes,
                          batch_size=self.batch_size, device=self.device)
        return self._with_score(result), edited, factors

    def _with_score(self, result: dict) -> dict:
        asr_v = (self.victim_metrics or result)["asr"]
        return {**result, "score": score(result["asr"], asr_v, result["acc"], self.retrained_acc)}

    def _cut(self, extraction: Extraction) -> int:
        """Index of the first child of an ``nn.Sequential`` that holds a layer of L (0: nothing to reuse).

        Only models whose forward is ``nn.Sequential``'s own (children applied in order) qualify; a subclass
        with its own ``forward`` may do more than chain its children.
        """
        model = extraction.model
        if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
            return 0
        names = [name for name, _ in model.named_children()]
        firsts = {layer.split(".", 1)[0] for layer in extraction.layers}
        return min(names.index(name) for name in firsts)

    @torch.no_grad()
    def _front(self, extraction: Extraction) -> _Front | None:
        cut = self._cut(extraction)
        if cut == 0:
            return None
        front = nn.Sequential(*list(extraction.model.children())[:cut])
        key = f"{cut}:{state_digest(front.state_dict())}"
        if key in self._fronts:
            self._fronts.move_to_end(key)
            return self._fronts[key]
        front = copy.deepcopy(front).eval()
        keep = self.test_labels != self.target

        def run(x: torch.Tensor) -> torch.Tensor:  # in the batches evaluate() uses
            return torch.cat([front(x[i:i + self.batch_size].to(self.device)).cpu()
                              for i in range(0, x.shape[0], self.batch_size)])

        clean = run(self.test_images)
        triggered = run(self.verify_trigger(self.test_images[keep])) if keep.any() else clean[:0]
        self._fronts[key] = result = _Front(cut, clean, clean[keep], triggered)
        while len(self._fronts) > self._front_cache_size:
            self._fronts.popitem(last=False)
        return result

    # ------------------------------------------------------------------------------------------ Fig. 4 grid

    def grid(self, gammas: Sequence[float] = GRID_GAMMAS, lams: Sequence[float] = GRID_LAMS, *,
             bdk: Sequence[bool] = (True, False), bn: Sequence[str] = BN_MODES,
             base: ExplorerSettings | None = None) -> "pd.DataFrame":  # noqa: F821
        """Score/ASR/ACC/CTCA (percent) for every γ × λ × BDK × BN mode (supplement B.3, Fig. 4).

        One extraction per (BDK, BN) pair; the other settings (α, β, N) come from ``base``. Returns a long
        DataFrame with columns ``bdk, bn, gamma, lam, asr, acc, ctca, score``.
        """
        import pandas as pd

        base = base or ExplorerSettings()
        rows = []
        for known in bdk:
            for mode in bn:
                for g in gammas:
                    for lam in lams:
                        s = replace(base, gamma=float(g), lam=float(lam), bdk=bool(known), bn=mode)
                        m, _, _ = self.evaluate_edit(s)
                        rows.append({"bdk": "BDK" if known else "¬BDK", "bn": mode, "gamma": float(g),
                                     "lam": float(lam), "asr": m["asr"], "acc": m["acc"], "ctca": m["ctca"],
                                     "score": m["score"]})
        return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------- widgets

_CONTROLS = ("gamma", "lam", "bdk", "bn", "alpha", "beta", "n_images", "layer", "lr")
_N_CHOICES = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 5000)


class Explorer:
    """ipywidgets controls over an :class:`EditSession`: every change re-edits the victim and redraws.

    Controls: γ and λ sliders (0–2, Eq. 4), BDK/¬BDK and BN frozen/updated toggles, α and β sliders (Eq. 7), the
    number of D_U samples, the layer whose factors are histogrammed, and a repair button with its learning rate
    (Table 8). Sliders report on release (``continuous_update=False``), so a drag costs one update. Outputs: ASR,
    ACC, CTCA and Score of the victim and of the current model; per-class accuracy before vs after (seaborn bars);
    the histogram of the chosen layer's factors A_l.

    Programmatic use (tests, papermill) goes through the widgets, i.e. the same path as a reader's clicks:
    :meth:`set` assigns widget values and runs one update, :meth:`press_repair` clicks the button, :attr:`metrics`
    holds the numbers on display, :attr:`model` the model they belong to.

    Arguments:
        session: the :class:`EditSession` (victim, data, caches).
        settings: the initial position of the controls.
        layer: the layer shown in the histogram (default: the first of L).
        draw: render the figure (off: numbers only, e.g. for timing the computation alone).
    """

    def __init__(self, session: EditSession, settings: ExplorerSettings | None = None, *, layer: str | None = None,
                 draw: bool = True, dpi: int = 72) -> None:
        import ipywidgets as W

        self.session = session
        settings = settings or ExplorerSettings()
        self.draw, self.dpi = draw, dpi
        pool = session.unseen_images.shape[0]
        choices = sorted({n for n in _N_CHOICES if n <= pool} | {pool, settings.n_images})
        layers = session.extraction(settings).layers
        if layer is not None and layer not in layers:
            raise ValueError(f"layer {layer!r} is not edited; choose one of {layers}")
        slider = dict(continuous_update=False, readout_format=".2f", style={"description_width": "initial"})
        self.controls = {
            "gamma": W.FloatSlider(value=settings.gamma, min=0.0, max=2.0, step=0.05, description="γ (Eq. 4)",
                                   **slider),
            "lam": W.FloatSlider(value=settings.lam, min=0.0, max=2.0, step=0.05, description="λ (Eq. 4)", **slider),
            "bdk": W.ToggleButtons(options=[("BDK", True), ("¬BDK", False)], value=settings.bdk),
            "bn": W.ToggleButtons(options=[("BN frozen", "frozen"), ("BN updated", "update")], value=settings.bn),
            "alpha": W.FloatSlider(value=settings.alpha, min=-2.0, max=2.0, step=0.1, description="α (Eq. 7)",
                                   **slider),
            "beta": W.FloatSlider(value=settings.beta, min=-2.0, max=2.0, step=0.1, description="β (Eq. 7)",
                                  **slider),
            "n_images": W.SelectionSlider(options=choices, value=settings.n_images, description="|D_U|",
                                          continuous_update=False),
            "layer": W.Dropdown(options=layers, value=layer or layers[0], description="histogram of"),
            "lr": W.FloatLogSlider(value=settings.lr, base=10, min=-5, max=0, step=1, description="repair lr",
                                   readout_format=".0e", continuous_update=False),
        }
        self.repair_button = W.Button(description="repair", icon="wrench",
                                      tooltip="fine-tune one epoch on D_U (§3.1 repair, Table 8)")
        self.numbers = W.HTML()
        self.status = W.HTML()
        self.figure = W.Image(format="png")
        c = self.controls
        self.widget = W.VBox([
            W.HBox([c["gamma"], c["lam"]]), W.HBox([c["bdk"], c["bn"]]), W.HBox([c["alpha"], c["beta"]]),
            W.HBox([c["n_images"], c["layer"]]), W.HBox([c["lr"], self.repair_button]),
            self.numbers, self.figure, self.status,
        ])
        self.metrics: dict = {}
        self.model: nn.Module = session.model
        self.factors: dict[str, LayerFactor] = {}
        self.timings: dict[str, float] = {}
        self.error: str | None = None
        self._holding = False
        self._bars = None
        for name, control in self.controls.items():
            control.observe(self._on_change, names="value")
        self.repair_button.on_click(self._on_repair)
        self.refresh()

    # ------------------------------------------------------------------------------------- programmatic API

    @property
    def settings(self) -> ExplorerSettings:
        """The controls' current values."""
        values = {name: self.controls[name].value for name in _CONTROLS if name != "layer"}
        return ExplorerSettings(**{k: (float(v) if k in ("gamma", "lam", "alpha", "beta", "lr") else v)
                                   for k, v in values.items()})

    def set(self, **values) -> dict:
        """Move controls (``gamma, lam, bdk, bn, alpha, beta, n_images, layer, lr``) and run one update.

        The values go into the widgets, exactly as a reader's input would; several at once cost one update.
        Returns :attr:`metrics`.
        """
        unknown = set(values) - set(_CONTROLS)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; valid: {', '.join(_CONTROLS)}")
        for name, value in values.items():
            self._check_value(name, value)
        before = replace(self.settings, lr=0.0)  # lr matters only when repair is pressed
        self._holding = True
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._holding = False
        if replace(self.settings, lr=0.0) != before or not self.metrics:
            self.refresh()
        elif "layer" in values:
            self._redraw()
        return self.metrics

    def press_repair(self) -> dict:
        """Click the repair button; returns :attr:`metrics` of the repaired model."""
        self.repair_button.click()
        return self.metrics

    def refresh(self) -> None:
        """Re-edit and re-evaluate for the current controls, then redraw (what every control change runs)."""
        settings = self.settings
        try:
            with timed(self.session.device) as total:
                metrics, self.model, self.factors = self.session.evaluate_edit(settings)
            self.timings = {"update": total.seconds}
            self._show(metrics, "edited", settings)
        except ValueError as err:  # e.g. bn="update" with too few images: say so, keep the last numbers
            self.error = str(err)
            self.status.value = f"<b>cannot edit:</b> {err}"
            log.warning("explorer: %s", err)

    # -------------------------------------------------------------------------------------------- callbacks

    def _check_value(self, name: str, value) -> None:
        control = self.controls[name]
        if hasattr(control, "options"):
            options = [o[1] if isinstance(o, tuple) else o for o in control.options]
            if value not in options or (isinstance(value, bool) != isinstance(options[0], bool)):
                raise ValueError(f"{name}={value!r} is not one of {options}")
        elif name == "lr":
            if not isinstance(value, (int, float)) or not 1e-5 <= value <= 1.0:
                raise ValueError(f"lr={value!r} must lie in [1e-5, 1]")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not control.min <= value <= control.max:
            raise ValueError(f"{name}={value!r} must be a number in [{control.min}, {control.max}]")

    def _on_change(self, change) -> None:
        if self._holding:
            return
        if change["owner"] is self.controls["layer"]:
            self._redraw()
        elif change["owner"] is not self.controls["lr"]:  # lr matters only when repair is pressed
            self.refresh()

    def _on_repair(self, _button=None) -> None:
        settings = self.settings
        self.repair_button.disabled = True
        try:
            with timed(self.session.device) as t:
                edited, _ = self.session.edit(settings)
                self.model = self.session.repair(edited, settings)
                metrics = self.session.evaluate(self.model)
            self.timings = {"repair": t.seconds}
            self._show(metrics, "repaired", settings)
        finally:
            self.repair_button.disabled = False

    # -------------------------------------------------------------------------------------------- display

    def _show(self, metrics: dict, stage: str, settings: ExplorerSettings) -> None:
        self.error = None
        self.metrics = {"stage": stage, **asdict(settings), **metrics}
        victim = self.session.victim_metrics
        rows = "".join(
            f"<tr><td>{label}</td><td>{victim[key]:.2f}</td><td><b>{metrics[key]:.2f}</b></td></tr>"
            for label, key in (("ASR", "asr"), ("ACC", "acc"), ("CTCA", "ctca"), ("Score", "score")))
        self.numbers.value = (f"<table><tr><th>%</th><th>victim</th><th>{stage}</th></tr>{rows}</table>")
        seconds = self.timings.get("update", self.timings.get("repair", math.nan))
        self.status.value = (f"{stage} with γ={settings.gamma:.2f}, λ={settings.lam:.2f}, "
                             f"{'BDK' if settings.bdk else '¬BDK'}, BN {settings.bn}, α={settings.alpha:.1f}, "
                             f"β={settings.beta:.1f}, N={settings.n_images} ({seconds:.2f} s)")
        self._redraw()

    def _redraw(self) -> None:
        if not self.draw or not self.metrics:
            return
        with timed() as t:
            self.figure.value = self._render()
        self.timings["draw"] = t.seconds

    def _render(self) -> bytes:
        """Per-class accuracy before vs after (seaborn bars) and the chosen layer's factor histogram, as PNG.

        Drawing costs as much as the update itself, so the figure is built once: seaborn draws the bar chart,
        later updates move the "after" bars and redraw only the histogram, with a fixed layout.
        """
        import numpy as np
        import pandas as pd
        import seaborn as sns
        from matplotlib.figure import Figure

        victim, current = self.session.victim_metrics["per_class"], self.metrics["per_class"]
        if self._bars is None:
            fig = Figure(figsize=(9.5, 3.0))
            fig.subplots_adjust(left=0.06, right=0.98, bottom=0.17, top=0.8, wspace=0.18)
            bars, hist = fig.subplots(1, 2, width_ratios=(1.6, 1))
            k = len(victim)
            data = pd.DataFrame({"class": list(range(k)) * 2, "accuracy (%)": list(victim) + list(current),
                                 "model": ["victim"] * k + ["after"] * k})
            sns.barplot(data, x="class", y="accuracy (%)", hue="model", errorbar=None, ax=bars)
            bars.set_ylim(0, 100)
            bars.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
            bars.set_title(f"per-class accuracy (target class {self.session.target})", fontsize=10, pad=18)
            self._bars = (fig, bars, hist)
        fig, bars, hist = self._bars
        for patch, value in zip(bars.containers[1], current):
            patch.set_height(0.0 if math.isnan(value) else value)
        bars.get_legend().get_texts()[1].set_text(self.metrics["stage"])
        layer = self.controls["layer"].value
        values = self.factors[layer].factor.flatten().numpy() if layer in self.factors else np.zeros(0)
        hist.clear()
        hist.hist(values, bins=min(30, max(5, values.size // 2)), color="C2", edgecolor="white", linewidth=0.5)
        hist.axvline(self.controls["lam"].value, color="0.3", linestyle="--", linewidth=1)
        hist.axvline(0.0, color="C3", linewidth=1)
        hist.set_xlabel("factor value (dashed: λ; red: 0, a sign flip)", fontsize=9)
        negative = 100.0 * (values < 0).mean() if values.size else 0.0
        hist.set_title(f"factors A_l of layer {layer!r}: {values.size}, {negative:.0f}% negative", fontsize=10)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=self.dpi)
        return buffer.getvalue()

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # a short, stable text form (nbval compares text/plain)
            bundle = {**bundle, "text/plain": "Explorer (open in Jupyter to use the controls)"}
        return bundle


def update_seconds(explorer: Explorer, repeats: int = 5, *, draw: bool = False) -> dict[str, float]:
    """Median seconds of one explorer update for its current settings, with the extraction already cached.

    ``{"update": edit + evaluation, "draw": figure (``draw=True`` only), "total": both}``. The first update after
    a change of BDK/BN/α/β/N also runs the extraction (one forward pass of D_U); it is excluded here because it
    happens once per setting.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    saved = explorer.draw
    explorer.draw = draw
    try:
        explorer.refresh()  # warm: extraction and front cached
        runs = []
        for _ in range(repeats):
            explorer.refresh()
            runs.append(dict(explorer.timings))
    finally:
        explorer.draw = saved
    update = median(r["update"] for r in runs)
    result = {"update": update}
    if draw:
        result["draw"] = median(r.get("draw", math.nan) for r in runs)
        result["total"] = median(r["update"] + r.get("draw", math.nan) for r in runs)
    else:
        result["total"] = update
    return result


def plot_gamma_lambda(grid: "pd.DataFrame", metrics: Sequence[str] = ("score", "asr", "acc"), *,  # noqa: F821
                      mark: tuple[float, float] | None = (0.5, 1.0), title: str = "", height: float = 2.6):
    """Seaborn heatmaps of a γ × λ grid (rows γ, columns λ, one panel per metric), values in percent.

    ``grid`` is one (BDK, BN) slice of :meth:`EditSession.grid` (or the mean over seeds); ``mark`` outlines the
    paper's (γ, λ). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Rectangle

    labels = {"score": "Score", "asr": "ASR", "acc": "ACC", "ctca": "CTCA"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(height * 1.25 * len(metrics), height), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        table = grid.pivot_table(index="gamma", columns="lam", values=metric, aggfunc="mean").sort_index()
        cmap = "rocket_r" if metric == "asr" else "rocket"
        sns.heatmap(table, annot=True, fmt=".0f", vmin=0, vmax=100, cmap=cmap, cbar=False, ax=ax,
                    annot_kws={"fontsize": 7})
        ax.set_title(labels.get(metric, metric), fontsize=10)
        ax.set_xlabel("λ")
        ax.set_ylabel("γ")
        if mark is not None and mark[0] in table.index and mark[1] in table.columns:
            i, j = list(table.index).index(mark[0]), list(table.columns).index(mark[1])
            ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="C0", linewidth=2))
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
