"""The optional repair phase (§3.1 end, §3.2; supplement B.2, Table 8).

Offers :class:`RepairConfig` and :func:`repair`: fine-tune the edited model on D_U and, under BDK, on the same
samples carrying the trigger, with their true labels, through the project's one training loop (:func:`fit`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .training import TrainConfig, fit
from .validation import check_images, check_labels

__all__ = ["RepairConfig", "repair"]

Trigger = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RepairConfig:
    """Fine-tuning settings of the repair phase; the paper gives only the epochs and the learning rate."""

    lr: float = 1e-2          # Table 8: 1e-2 balances forgetting and utility
    epochs: int = 1           # §3.1: "for one epoch each"
    batch_size: int = 64      # ours
    momentum: float = 0.9     # ours
    weight_decay: float = 0.0  # ours
    seed: int = 0


def repair(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, trigger: Trigger | None = None,
           lr: float = 1e-2, epochs: int = 1, config: RepairConfig | None = None,
           device: str | torch.device = "cpu", progress: bool = False) -> nn.Module:
    """Fine-tune a copy of ``model`` on D_U (and D_U ⊕ δ under BDK) with the true labels.

    Under BDK every epoch visits each image twice, once clean and once with the trigger (shuffled together), which
    is "one epoch each" of §3.1; under ¬BDK only the clean images. Invariant: the caller's model is unchanged; the
    copy keeps the caller's train/eval mode.

    Shape: ``images`` ``[N, C, H, W]`` float in [0, 1]; ``labels`` ``[N]`` int64 in ``[0, num_classes)``.
    """
    config = replace_cfg(config, lr=lr, epochs=epochs)
    check_images(images)
    check_labels(labels, images.shape[0], num_classes=None)
    x, y = images, labels
    if trigger is not None:
        poisoned = trigger(images)
        if not isinstance(poisoned, torch.Tensor) or poisoned.shape != images.shape:
            raise ValueError("the trigger must return a tensor of the input's shape")
        if not torch.isfinite(poisoned).all():
            raise ValueError("the trigger returned NaN or Inf values")
        x, y = torch.cat([images, poisoned]), torch.cat([labels, labels])
    fixed = copy.deepcopy(model)
    fit(fixed, x, y, config=TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                        momentum=config.momentum, weight_decay=config.weight_decay,
                                        schedule="constant", seed=config.seed),
        device=device, progress=progress, desc="repair")
    fixed.train(model.training)
    return fixed


def replace_cfg(config: RepairConfig | None, *, lr: float, epochs: int) -> RepairConfig:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite non-negative number, got {lr!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    base = config or RepairConfig()
    return RepairConfig(lr=float(lr), epochs=epochs, batch_size=base.batch_size, momentum=base.momentum,
                        weight_decay=base.weight_decay, seed=base.seed)
