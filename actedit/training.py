"""The one training loop: victims, the retrained reference, repair and every baseline go through :func:`fit`.

Offers :class:`TrainConfig`, :class:`History` and :func:`fit`. Callers change what is optimised through ``loss``
(a function of the model and a batch) and what the batch looks like through ``transform``; the loop itself only
shuffles (with an explicit generator), steps the optimiser, reports progress with tqdm and records a history.
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.sgd import sgd as sgd_update   # public: torch.optim.sgd.__all__ = ["SGD", "sgd"]
from tqdm.auto import tqdm

from .seeding import generator
from .timing import timed

__all__ = ["TrainConfig", "History", "fit", "fit_cached", "preserved_modes", "LossFn", "TransformFn"]
log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
TransformFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], "tuple[torch.Tensor, torch.Tensor]"]

_OPTIMIZERS = ("sgd", "adam")
_SCHEDULES = ("cosine", "constant", "step")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for :func:`fit`.

    The defaults train the book's base victim (small CNN on Fashion-MNIST); the paper does not state its training
    recipe, so these are ours. Schedules: ``"cosine"`` (per-step decay to 0 over the whole run), ``"constant"``, and
    ``"step"`` (the learning rate × 0.1 at the start of each epoch in ``milestones``, counted from 0 — NAD's
    ``adjust_learning_rate``: 0.1 for epochs 0-1, 0.01 from epoch 2 is ``lr=0.1, milestones=(2,)``).
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"          # "sgd" | "adam"
    schedule: str = "cosine"        # per-step cosine decay to 0, "constant", or "step" (see milestones)
    milestones: tuple[int, ...] = ()  # "step" only: epochs (from 0) at whose start the lr is multiplied by 0.1
    augment: bool = False           # random crop (pad 4) + horizontal flip, for colour datasets
    seed: int = 0                   # shuffling and augmentation generator

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and non-negative, got {value!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(_OPTIMIZERS)}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(_SCHEDULES)}")
        if not isinstance(self.milestones, tuple) or any(
                isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.milestones) \
                or list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be a tuple of increasing epochs >= 1, got {self.milestones!r}")
        if self.milestones and self.schedule != "step":
            raise ValueError(f"milestones {self.milestones!r} need schedule='step', got {self.schedule!r}")


@dataclass
class History:
    """Per-epoch mean loss and wall seconds of one :func:`fit` call."""

    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default loss: mean cross-entropy of ``model(x)`` against ``y``."""
    return F.cross_entropy(model(x), y)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy = torch.randint(0, 9, (n,), generator=g)
    dx = torch.randint(0, 9, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, x.shape[1], h, w + 8)
    out = padded.gather(2, rows.to(x.device))
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols.to(x.device))
    flip = torch.rand(n, generator=g) < 0.5
    out[flip.to(x.device)] = out[flip.to(x.device)].flip(-1)
    return out


def _lr_factor(config: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    """The learning-rate multiplier of optimiser step ``s`` (counted from 0) under ``config.schedule``."""
    if config.schedule == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * s / total))
    return lambda s: 0.1 ** sum(s // steps_per_epoch >= m for m in config.milestones)


class _SGD:
    """SGD with momentum and weight decay, computed by ``torch.optim.sgd.sgd`` — the function ``torch.optim.SGD``'s
    ``step`` calls, with the same arguments, so every update is bit for bit the optimizer class's — without that
    class: constructing any ``torch.optim`` optimizer imports ``torch._dynamo`` (about 2 s of CPU), and the book's
    workflow starts 39 training processes of 25-30 s each per cold build. The learning rate is given per step."""

    def __init__(self, params: list[nn.Parameter], *, momentum: float, weight_decay: float) -> None:
        self.params, self.momentum, self.weight_decay = params, momentum, weight_decay
        self.buffers: list[torch.Tensor | None] = [None] * len(params)

    def zero_grad(self, set_to_none: bool = True) -> None:   # set_to_none: as torch.optim's, the only mode here
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]   # as SGD skips parameters without grad
        buffers = [self.buffers[i] for i in live]
        params = [self.params[i] for i in live]
        sgd_update(params, [p.grad for p in params], buffers, weight_decay=self.weight_decay, momentum=self.momentum,
                   lr=lr, dampening=0.0, nesterov=False, maximize=False,
                   has_sparse_grad=any(p.grad.is_sparse for p in params))
        for i, buffer in zip(live, buffers):
            self.buffers[i] = buffer


@contextmanager
def preserved_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every submodule's own train/eval flag on exit, exceptions included — the one way the package
    switches modes (``model.train(flag)`` afterwards would set them all alike)::

        with preserved_modes(model):
            model.eval()
            logits = model(x)
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, flag in modes:
            m.training = flag


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    config: TrainConfig = TrainConfig(),
    loss: LossFn | None = None,
    transform: TransformFn | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "train",
) -> History:
    """Train ``model`` in place with mini-batch SGD/Adam; return the per-epoch history.

    This is the primitive; public functions that must not touch the caller's model copy it before calling ``fit``.
    The model's train/eval mode is restored on exit.

    Arguments:
        model: the network, moved to ``device``.
        images: float tensor ``[N, C, H, W]`` in [0, 1] (kept on its device; batches are moved).
        labels: int64 tensor ``[N]``.
        config: :class:`TrainConfig`.
        loss: ``loss(model, x, y) -> scalar``; default cross-entropy.
        transform: ``transform(x, y, generator) -> (x, y)`` applied to each batch before the loss (e.g. adding a
            trigger); gets the loop's generator so that it stays deterministic.

    >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> h = fit(m, torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,)), config=TrainConfig(epochs=1), progress=False)
    >>> len(h.loss)
    1
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}")
    loss_fn = loss or cross_entropy
    history = History()
    n = images.shape[0]
    if config.epochs == 0 or n == 0:
        return history
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    factor = _lr_factor(config, steps_per_epoch, total) if config.schedule != "constant" else (lambda s: 1.0)
    if config.optimizer == "sgd":
        opt: _SGD | torch.optim.Optimizer = _SGD(params, momentum=config.momentum, weight_decay=config.weight_decay)
        sched = None
    else:
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor) if config.schedule != "constant" else None
    steps = 0
    g = generator(config.seed)
    # Dropout and other layers draw from the global RNG: run under a forked, seeded one so that the result
    # depends only on config.seed and the caller's RNG state is neither used nor disturbed.
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices), preserved_modes(model):
        torch.manual_seed(config.seed)
        model.train()
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=g)
            running, seen = 0.0, 0
            with timed(device) as t:
                bar = tqdm(range(steps_per_epoch), desc=f"{desc} {epoch + 1}/{config.epochs}",
                           disable=not progress, leave=False)
                for step in bar:
                    idx = order[step * config.batch_size:(step + 1) * config.batch_size]
                    x, y = images[idx], labels[idx]
                    if config.augment:
                        x = _augment(x, g)
                    if transform is not None:
                        x, y = transform(x, y, g)
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    opt.zero_grad(set_to_none=True)
                    value = loss_fn(model, x, y)
                    if not torch.isfinite(value):
                        raise FloatingPointError(f"{desc}: loss became {value.item()} at epoch {epoch + 1}, step {step}")
                    value.backward()
                    if isinstance(opt, _SGD):
                        opt.step(config.lr * factor(steps))   # LambdaLR's arithmetic: base lr × factor(step)
                    else:
                        opt.step()
                        if sched is not None:
                            sched.step()
                    steps += 1
                    running += value.item() * len(idx)
                    seen += len(idx)
                    if step % 20 == 0:
                        bar.set_postfix(loss=f"{running / seen:.3f}")
            history.loss.append(running / max(seen, 1))
            history.seconds.append(t.seconds)
            log.info("%s epoch %d/%d: loss %.4f (%.1f s)", desc, epoch + 1, config.epochs, history.loss[-1], t.seconds)
    return history


def fit_cached(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, config: TrainConfig = TrainConfig(),
               key: dict, cache=None, device: str | torch.device = "cpu", progress: bool = True,
               desc: str = "train") -> dict:
    """:func:`fit` with plain cross-entropy, through the cache: train ``model`` in place, or load the weights an
    identical earlier run produced. Returns the run's meta (``loss``, ``seconds`` per epoch, as recorded then).

    The entry is keyed by ``key`` (the caller's name for the run) together with everything that decides the
    result: ``repr(model)`` (the architecture), a digest of its initial weights, digests of ``images`` and
    ``labels``, ``config`` and the device type. A different model, data or recipe is therefore a different entry
    even under the same ``key``. ``cache`` is an :class:`actedit.cache.Cache` (default: the default one).
    """
    from dataclasses import asdict

    from .cache import Cache, state_digest

    if not isinstance(key, dict):
        raise TypeError(f"key must be a dict naming the run, got {type(key).__name__}")
    cache = cache if cache is not None else Cache()
    full_key = {"role": "fit", **key, "model": repr(model), "initial": state_digest(model.state_dict()),
                "images": state_digest({"x": images}), "labels": state_digest({"y": labels}), "config": asdict(config),
                "device": torch.device(device).type}

    def build() -> tuple[dict, dict]:
        history = fit(model, images, labels, config=config, device=device, progress=progress, desc=desc)
        return model.state_dict(), {"loss": history.loss, "seconds": history.seconds}

    state, meta = cache.get_or_build("models", full_key, build)
    model.load_state_dict(state)  # a no-op after a fresh run; the cached weights after a hit
    model.to(device)
    return meta
