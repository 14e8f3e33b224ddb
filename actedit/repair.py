"""The optional repair phase (§3.1 end, §3.2; supplement B.2, Table 8).

Offers :class:`RepairConfig` and :func:`repair`: fine-tune the edited model on D_U and, under BDK, on the same
samples carrying the trigger, with their true labels, through the project's one training loop (:func:`fit`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from .training import TrainConfig, fit, preserved_modes
from .validation import check_images, check_labels, check_trigger_output, check_trigger

__all__ = ["RepairConfig", "repair"]

Trigger = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RepairConfig:
    """Fine-tuning settings of the repair phase; the paper gives only the epochs and the learning rate."""

    lr: float = 1e-2          # Table 8: 1e-2 balances forgetting and utility
    epochs: int = 1           # §3.1: "for one epoch each"
    batch_size: int = 32      # ours (unstated in the paper): on the base victim 64 barely moves the edit, 16 overshoots
    momentum: float = 0.9     # ours
    weight_decay: float = 0.0  # ours
    seed: int = 0

    def __post_init__(self) -> None:
        lr, epochs = self.lr, self.epochs
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"lr must be a finite non-negative number, got {lr!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")


def repair(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, trigger: Trigger | None = None,
           lr: float | None = None, epochs: int | None = None, config: RepairConfig | None = None,
           device: str | torch.device = "cpu", progress: bool = False) -> nn.Module:
    """Fine-tune a copy of ``model`` on D_U (and D_U ⊕ δ under BDK) with the true labels.

    Under BDK every epoch visits each image twice, once clean and once with the trigger (shuffled together), which
    is "one epoch each" of §3.1; under ¬BDK only the clean images. Invariant: the caller's model is unchanged; the
    copy keeps the caller's train/eval mode.

    ``lr`` and ``epochs`` override ``config``'s when given (defaults: 1e-2 and 1, :class:`RepairConfig`).

    Shape: ``images`` ``[N, C, H, W]`` float in [0, 1]; ``labels`` ``[N]`` int64 in ``[0, num_classes)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_trigger(trigger)
    if config is not None and not isinstance(config, RepairConfig):
        raise TypeError(f"config must be a RepairConfig, got {type(config).__name__}")
    base = config or RepairConfig()
    config = replace(base, lr=base.lr if lr is None else lr, epochs=base.epochs if epochs is None else epochs)
    check_images(images)
    fixed = copy.deepcopy(model)  # keeps the caller's per-module train/eval flags; fit restores them
    try:
        with torch.no_grad(), preserved_modes(fixed):
            logits = fixed.eval()(images[:1].to(device))
    except RuntimeError as err:
        raise ValueError(f"the model cannot take images of shape {tuple(images.shape[1:])}: {err}") from err
    check_labels(labels, images.shape[0], num_classes=logits.shape[1])
    x, y = images, labels
    if trigger is not None:
        poisoned = check_trigger_output(trigger(images.clone()), images)
        x, y = torch.cat([images, poisoned]), torch.cat([labels, labels])
    fit(fixed, x, y, config=TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                        momentum=config.momentum, weight_decay=config.weight_decay,
                                        schedule="constant", seed=config.seed),
        device=device, progress=progress, desc="repair")
    return fixed

