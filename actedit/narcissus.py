"""Narcissus trigger optimisation, trigger (h) of Fig. 2.

Zeng et al. 2023, "Narcissus: A practical clean-label backdoor attack with limited information" [50]. The
attacker knows only some target-class images; Algorithm 1 of that paper has three steps:

1. train a surrogate on public out-of-distribution (POOD) data — done elsewhere, e.g. with
   :func:`actedit.training.fit`;
2. "poi-warm-up": fine-tune the surrogate on the target-class images — :func:`warm_up`;
3. trigger generation: ``δ* = argmin_{||δ||∞ ≤ ε} Σ_{x ∈ D_t} L(f(x + δ), t)`` — :func:`optimize_trigger`.

Only target-class training images are then poisoned, without label changes (clean-label), and at test time the
trigger is magnified (×3 in the reference code; the paper's Tables 3/4 do the same for verification)::

    from actedit.narcissus import NarcissusConfig, warm_up, optimize_trigger
    cfg = NarcissusConfig(steps=300)
    warm = warm_up(surrogate, target_images, 2, epochs=cfg.warmup_epochs, lr=cfg.warmup_lr)
    delta = optimize_trigger(warm, target_images, target=2, config=cfg)     # [C, H, W] in [-ε, ε]
    trigger = make_trigger("narcissus", channels=3, size=32, narcissus_pattern=delta)
    verify = trigger.magnified(3)

Class indices: the surrogate is told ``target`` directly as one of its output indices. A surrogate trained on
POOD data plus the target-class images (as in the paper, where the target class is an extra output next to the
POOD classes) must be given the index of that extra output; with a surrogate that shares the victim's label
space, ``target`` is simply the victim's target class.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from actedit.seeding import generator, set_seed
from actedit.training import TrainConfig, fit

if TYPE_CHECKING:
    from actedit.cache import Cache
    from actedit.data import Splits
    from actedit.experiments import VictimSpec

__all__ = ["NarcissusConfig", "warm_up", "optimize_trigger", "NarcissusPatternConfig", "POOD", "narcissus_pattern"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NarcissusConfig:
    """Hyperparameters of Narcissus Algorithm 1; defaults from the paper and its reference code."""

    # step 3, trigger generation
    epsilon: float = 16 / 255   # ℓ∞ budget of δ on [0, 1] images (the paper's 16/255)
    steps: int = 1000           # optimiser steps on δ; the reference runs 1000 passes over D_t (gen_round)
    lr: float = 0.01            # step size of the RAdam optimiser on δ (reference generating_lr_tri)
    batch_size: int = 350       # target-class images per step (reference train_batch_size)
    # step 2, poi-warm-up
    warmup_epochs: int = 5      # reference warmup_round
    warmup_lr: float = 0.01     # SGD here; the reference uses RAdam(lr=0.1), which our one loop does not offer
    seed: int = 0               # batch order of both steps

    def __post_init__(self) -> None:
        if not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1], got {self.epsilon}")
        for name in ("steps", "batch_size", "warmup_epochs"):
            value = getattr(self, name)
            least = 0 if name == "warmup_epochs" else 1
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        for name in ("lr", "warmup_lr"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)!r}")


def _check_target_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"target_images must be float [N, C, H, W] in [0, 1], got {shape}")
    if len(images) == 0:
        raise ValueError("target_images is empty; Narcissus needs some target-class images")


def warm_up(surrogate: nn.Module, target_images: torch.Tensor, target: int, *,
            epochs: int = NarcissusConfig.warmup_epochs, lr: float = NarcissusConfig.warmup_lr,
            batch_size: int = 128, seed: int = 0, device: str | torch.device = "cpu",
            progress: bool = True) -> nn.Module:
    """Algorithm 1, step 2: fine-tune a copy of ``surrogate`` to predict ``target`` on the target-class images.

    Returns the fine-tuned copy (on ``device``); ``surrogate`` is left bitwise unchanged. Uses the project's one
    training loop (:func:`actedit.training.fit`) with momentum SGD at a constant ``lr`` and no weight decay.
    """
    _check_target_images(target_images)
    model = copy.deepcopy(surrogate)
    labels = torch.full((len(target_images),), int(target), dtype=torch.int64)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0,
                         schedule="constant", seed=seed)
    fit(model, target_images, labels, config=config, device=device, progress=progress, desc="narcissus warm-up")
    return model


def optimize_trigger(surrogate: nn.Module, target_images: torch.Tensor, *, target: int,
                     config: NarcissusConfig = NarcissusConfig(), device: str | torch.device = "cpu",
                     progress: bool = True) -> torch.Tensor:
    """Algorithm 1, step 3: the universal pattern δ that pushes target-class images further into ``target``.

    Minimises ``mean CE(surrogate(clamp(x + δ, 0, 1)), target)`` over mini-batches of ``target_images`` with
    RAdam (as the reference code) on δ, starting from δ = 0, projecting δ onto ``||δ||∞ ≤ ε`` after every step
    (the reference clamps δ inside the forward pass instead; projecting keeps the stored δ feasible). It stops
    early when the gradient is exactly zero, as the reference does. No data augmentation. The surrogate is run
    on a frozen copy in eval mode, so batch composition does not change its output and the caller's model is
    untouched.

    Arguments:
        surrogate: classifier whose output index ``target`` is the target class (see the module docstring).
        target_images: ``[N, C, H, W]`` float in ``[0, 1]``, images of the target class.
        target: output index of the target class.
        config: :class:`NarcissusConfig`; deterministic given ``config.seed``.

    Returns:
        δ, ``[C, H, W]`` float32 on the CPU with ``-ε ≤ δ ≤ ε``.
    """
    _check_target_images(target_images)
    model = copy.deepcopy(surrogate).to(device).eval().requires_grad_(False)
    n = len(target_images)
    with torch.no_grad():
        outputs = model(target_images[:1].to(device)).shape
    if len(outputs) != 2 or not 0 <= int(target) < outputs[1]:
        raise ValueError(f"target {target} is not an output index of the surrogate (logits {tuple(outputs)}); "
                         "pass the surrogate's index of the target class")
    labels = torch.full((min(config.batch_size, n),), int(target), dtype=torch.int64, device=device)
    delta = torch.zeros(1, *target_images.shape[1:], device=device, requires_grad=True)
    opt = torch.optim.RAdam([delta], lr=config.lr)
    g = generator(config.seed)
    order, cursor = torch.randperm(n, generator=g), 0
    bar = tqdm(range(config.steps), desc="narcissus trigger", disable=not progress, leave=False)
    for step in bar:
        if cursor + config.batch_size > n and cursor > 0:       # new pass over D_t
            order, cursor = torch.randperm(n, generator=g), 0
        idx = order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        x = target_images[idx].to(device)
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), labels[:len(idx)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not delta.grad.any():
            log.info("narcissus: gradient vanished at step %d (loss %.4f); stopping", step, loss.item())
            break
        opt.step()
        with torch.no_grad():
            delta.clamp_(-config.epsilon, config.epsilon)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    log.info("narcissus: final batch loss %.4f, ||δ||∞ = %.4f", loss.item(), delta.abs().max().item())
    return delta.detach()[0].to("cpu", torch.float32)


# --------------------------------------------------------------------------- the book's Narcissus victims

#: public out-of-distribution (POOD) data for the surrogate, first found wins: another dataset of ours with the
#: same channels (the reference code uses Tiny-ImageNet for CIFAR10).
POOD: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("mnist",),
    "mnist": ("fashion-mnist",),
    "cifar10": ("tinyimagenet", "cifar100"),
    "cifar100": ("tinyimagenet", "cifar10"),
    "cinic10": ("tinyimagenet", "cifar100"),
    "tinyimagenet": ("cifar100", "cifar10"),
}


@dataclass(frozen=True)
class NarcissusPatternConfig:
    """The attacker's budget for the book's Narcissus victims: Algorithm 1 of Zeng et al. 2023, scaled down so that
    a cold run stays within a minute on two CPU cores (the reference trains its surrogate for 200 epochs on
    Tiny-ImageNet and runs 1000 trigger rounds on a GPU)."""

    pood_limit: int = 5000          # POOD images for the surrogate (reference: all of Tiny-ImageNet)
    target_images: int = 500        # target-class images the attacker holds, drawn from D_T ("a few hundred")
    surrogate_epochs: int = 3       # step 1 (reference: 200, SGD lr 0.1, cosine)
    surrogate_lr: float = 0.05
    trigger: NarcissusConfig = NarcissusConfig(steps=200, batch_size=128, warmup_epochs=2)   # steps 2 and 3

    def __post_init__(self) -> None:
        for name in ("pood_limit", "target_images", "surrogate_epochs"):
            value = getattr(self, name)
            least = 0 if name == "surrogate_epochs" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"NarcissusPatternConfig.{name} must be an int >= {least}, got {value!r}")
        if not math.isfinite(self.surrogate_lr) or self.surrogate_lr <= 0:
            raise ValueError(f"NarcissusPatternConfig.surrogate_lr must be finite and > 0, got {self.surrogate_lr!r}")
        if not isinstance(self.trigger, NarcissusConfig):
            raise TypeError(f"NarcissusPatternConfig.trigger must be a NarcissusConfig, got {type(self.trigger).__name__}")


def _pood_images(dataset: str, channels: int, size: int, limit: int, seed: int,
                 data_root: str | None) -> tuple[str, torch.Tensor, torch.Tensor, int]:
    """The first available POOD dataset for ``dataset``: its name, images resized to ``size``, labels, classes."""
    from actedit.data import DatasetNotFoundError, load_dataset

    tried = []
    for name in POOD.get(dataset, ()):
        try:
            pood = load_dataset(name, data_root=data_root, unseen=0, seed=seed, train_limit=limit)
        except DatasetNotFoundError as error:
            tried.append(f"{name} ({str(error).splitlines()[0]})")
            continue
        if pood.channels != channels:
            tried.append(f"{name} (has {pood.channels} channels, {dataset} has {channels})")
            continue
        images = pood.train.images
        if pood.size != size:   # e.g. Tiny-ImageNet's 64 px for a 32 px victim
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                                   align_corners=False).clamp_(0, 1)
        return name, images, pood.train.labels, pood.num_classes
    raise FileNotFoundError(
        f"Narcissus needs public out-of-distribution (POOD) data for its surrogate model, and none was found for "
        f"{dataset!r}: tried {', '.join(tried) or 'nothing (no POOD dataset is known for it)'}. Put one of "
        f"{', '.join(POOD.get(dataset, ())) or 'the datasets in actedit.narcissus.POOD'} in data_root "
        f"(see actedit.data.load_dataset), or choose another trigger.")


def narcissus_pattern(spec: "VictimSpec", splits: "Splits", *, cache: "Cache | None" = None,
                      device: str | torch.device = "cpu", progress: bool = False,
                      config: NarcissusPatternConfig = NarcissusPatternConfig(),
                      data_root: str | None = None) -> torch.Tensor:
    """The Narcissus pattern δ for the victim of ``spec``: Algorithm 1 of Zeng et al. 2023 with a POOD surrogate.

    1. surrogate: ``spec.model``'s architecture with one output more than the POOD dataset has classes, trained on
       the POOD images (:data:`POOD`: MNIST digits for Fashion-MNIST, Fashion-MNIST for MNIST, another colour
       dataset for colour data) together with the attacker's target-class images under the extra label — as the
       reference code trains on Tiny-ImageNet plus the target class;
    2. :func:`warm_up` on the target-class images (the attacker knows only those: ``config.target_images`` of
       class ``spec.target``, drawn from ``splits.train`` with ``generator(spec.seed)``);
    3. :func:`optimize_trigger` towards the extra output, ``||δ||∞ ≤ 16/255``.

    Cached in ``cache`` (kind ``"narcissus"``) under the fields of ``spec`` that decide it (dataset, model, target,
    seed, D_U and D_T sizes), ``config`` and the device type.

    Returns:
        δ, ``[C, H, W]`` float32 on the CPU, with ``C, H, W`` of ``splits``.
    """
    from actedit.cache import Cache
    from actedit.models import build_model

    cache = cache or Cache()
    key = {"dataset": spec.dataset, "model": spec.model, "target": spec.target, "seed": spec.seed,
           "unseen": spec.unseen, "train_limit": spec.train_limit, "config": asdict(config),
           "device": torch.device(device).type}

    def build() -> tuple[dict, dict]:
        pool = torch.nonzero(splits.train.labels == spec.target).flatten()
        if pool.numel() == 0:
            raise ValueError(f"D_T has no image of the target class {spec.target}: Narcissus needs some")
        chosen = pool[torch.randperm(pool.numel(), generator=generator(spec.seed))[:config.target_images]]
        target_images = splits.train.images[chosen.sort().values]
        name, pood_x, pood_y, pood_classes = _pood_images(spec.dataset, splits.channels, splits.size,
                                                          config.pood_limit, spec.seed, data_root)
        extra = pood_classes            # the target class is the surrogate's extra output
        images = torch.cat([pood_x, target_images])
        labels = torch.cat([pood_y, torch.full((len(target_images),), extra, dtype=torch.int64)])
        set_seed(spec.seed)
        surrogate = build_model(spec.model, num_classes=pood_classes + 1, channels=splits.channels, size=splits.size)
        fit(surrogate, images, labels, config=TrainConfig(epochs=config.surrogate_epochs, lr=config.surrogate_lr,
                                                         seed=spec.seed),
            device=device, progress=progress, desc=f"narcissus surrogate ({name})")
        cfg = config.trigger
        warm = warm_up(surrogate, target_images, extra, epochs=cfg.warmup_epochs, lr=cfg.warmup_lr, seed=cfg.seed,
                       device=device, progress=progress)
        delta = optimize_trigger(warm, target_images, target=extra, config=cfg, device=device, progress=progress)
        log.info("narcissus pattern for %s/%s target %d from POOD %s: ||δ||∞ = %.4f", spec.dataset, spec.model,
                 spec.target, name, delta.abs().max().item())
        return {"pattern": delta}, {"pood": name, "target_images": len(target_images)}

    state, _ = cache.get_or_build("narcissus", key, build)
    return state["pattern"].to(torch.float32)
