"""Data poisoning (§3): a fraction ρ of D_T gets the trigger δ and the target label y_t (BadNets), or, for
Narcissus, only target-class samples get the trigger and keep their label (clean-label).

Offers :class:`PoisonConfig`, :class:`Poisoned` and :func:`poison`. Indices come from an explicit seeded generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .data import ImageSet
from .seeding import generator

__all__ = ["PoisonConfig", "Poisoned", "poison"]


@dataclass(frozen=True)
class PoisonConfig:
    """How D_T is poisoned (§3, §4.1 base configuration)."""

    rate: float = 0.05          # ρ: |D_B| = ⌊ρ·|D_T|⌋ (base configuration 5 %)
    target: int = 2             # y_t (base configuration: class 2)
    clean_label: bool = False   # Narcissus: poison only target-class samples, labels unchanged
    seed: int = 0               # generator for the poison indices

    def __post_init__(self) -> None:
        if not (isinstance(self.rate, (int, float)) and math.isfinite(self.rate) and 0 <= self.rate <= 1):
            raise ValueError(f"poison rate must be in [0, 1], got {self.rate!r}")
        if not isinstance(self.target, int) or self.target < 0:
            raise ValueError(f"target must be a non-negative class index, got {self.target!r}")


@dataclass(frozen=True)
class Poisoned:
    """The poisoned training set D = D_C ∪ D_B and its parts."""

    train: ImageSet          # D, what the victim is trained on (same order as D_T)
    poison_index: torch.Tensor  # indices into D_T of D_B
    clean: ImageSet          # D_C = D_T without the poisoned samples: the retrained model's data


def poison(train: ImageSet, trigger: Callable[[torch.Tensor], torch.Tensor], config: PoisonConfig) -> Poisoned:
    """Poison ``⌊ρ·|D_T|⌋`` samples of ``train`` (dirty-label) or of its target class (clean-label).

    Clean-label: ρ is a fraction of D_T too, but the samples are drawn from class y_t only (at most all of them).
    """
    n = len(train)
    num_classes = int(train.labels.max().item()) + 1 if n else 0
    if config.target >= max(num_classes, 1):
        raise ValueError(f"target {config.target} is not a class of this dataset (0..{num_classes - 1})")
    g = generator(config.seed)
    count = int(math.floor(config.rate * n))
    if config.clean_label:
        pool = torch.nonzero(train.labels == config.target).flatten()
        count = min(count, pool.numel())
        chosen = pool[torch.randperm(pool.numel(), generator=g)[:count]]
    else:
        chosen = torch.randperm(n, generator=g)[:count]
    chosen, _ = chosen.sort()
    images = train.images.clone()
    labels = train.labels.clone()
    if count:
        images[chosen] = trigger(train.images[chosen])
        if not config.clean_label:
            labels[chosen] = config.target
    keep = torch.ones(n, dtype=torch.bool)
    keep[chosen] = False
    return Poisoned(train=ImageSet(images, labels), poison_index=chosen, clean=train.subset(keep.nonzero().flatten()))
