"""Tests for actedit.poisoning: ⌊ρ·N⌋ samples, target labels, only chosen images changed, clean-label mode,
seeded determinism, and D_C."""
from __future__ import annotations

import math

import pytest
import torch

from actedit.data import ImageSet
from actedit.poisoning import PoisonConfig, poison
from actedit.seeding import generator
from actedit.triggers import make_trigger

N = 103


def train_set(n: int = N, classes: int = 10) -> ImageSet:
    g = generator(5)
    images = torch.rand(n, 1, 16, 16, generator=g) * 0.9      # never already white: the trigger changes every image
    labels = torch.arange(n) % classes
    return ImageSet(images, labels[torch.randperm(n, generator=g)])


TRIGGER = make_trigger("white", channels=1, size=16)


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05, 0.1, 0.5, 1.0])
def test_counts_labels_and_only_chosen_changed(rate):
    train = train_set()
    before_images, before_labels = train.images.clone(), train.labels.clone()
    p = poison(train, TRIGGER, PoisonConfig(rate=rate, target=2))
    count = math.floor(rate * N)
    assert p.poison_index.numel() == count
    assert p.poison_index.unique().numel() == count                       # no index twice
    assert torch.equal(p.poison_index, p.poison_index.sort().values)
    chosen = torch.zeros(N, dtype=torch.bool)
    chosen[p.poison_index] = True
    assert (p.train.labels[chosen] == 2).all()
    assert torch.equal(p.train.labels[~chosen], train.labels[~chosen])
    assert torch.equal(p.train.images[~chosen], train.images[~chosen])
    assert torch.equal(p.train.images[chosen], TRIGGER(train.images[chosen]))
    changed = (p.train.images != train.images).flatten(1).any(dim=1)
    assert torch.equal(changed, chosen)
    assert len(p.train) == N
    assert torch.equal(train.images, before_images) and torch.equal(train.labels, before_labels)  # input untouched


def test_clean_set_excludes_the_poisoned_indices():
    train = train_set()
    p = poison(train, TRIGGER, PoisonConfig(rate=0.1, target=2))
    keep = torch.tensor([i for i in range(N) if i not in set(p.poison_index.tolist())])
    assert len(p.clean) == N - math.floor(0.1 * N)
    assert torch.equal(p.clean.images, train.images[keep])
    assert torch.equal(p.clean.labels, train.labels[keep])


def test_clean_label_only_touches_the_target_class_and_keeps_labels():
    train = train_set()
    p = poison(train, TRIGGER, PoisonConfig(rate=0.05, target=3, clean_label=True))
    assert p.poison_index.numel() == math.floor(0.05 * N)
    assert (train.labels[p.poison_index] == 3).all()
    assert torch.equal(p.train.labels, train.labels)
    changed = (p.train.images != train.images).flatten(1).any(dim=1)
    assert torch.equal(changed.nonzero().flatten(), p.poison_index)
    # ρ larger than the target class: all of the class, no more
    everything = poison(train, TRIGGER, PoisonConfig(rate=0.9, target=3, clean_label=True))
    assert torch.equal(everything.poison_index, (train.labels == 3).nonzero().flatten())
    assert len(everything.clean) == N - int((train.labels == 3).sum())


def test_deterministic_with_seed():
    train = train_set()
    a = poison(train, TRIGGER, PoisonConfig(rate=0.2, seed=4))
    b = poison(train, TRIGGER, PoisonConfig(rate=0.2, seed=4))
    c = poison(train, TRIGGER, PoisonConfig(rate=0.2, seed=5))
    assert torch.equal(a.poison_index, b.poison_index)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.poison_index, c.poison_index)
    torch.manual_seed(123)                       # global RNG state must not matter
    d = poison(train, TRIGGER, PoisonConfig(rate=0.2, seed=4))
    assert torch.equal(a.poison_index, d.poison_index)


@pytest.mark.parametrize("kwargs", [dict(rate=-0.1), dict(rate=1.5), dict(rate=math.nan), dict(target=-1),
                                    dict(target=1.5)])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        PoisonConfig(**kwargs)


def test_target_outside_the_dataset():
    with pytest.raises(ValueError, match="not a class"):
        poison(train_set(classes=3), TRIGGER, PoisonConfig(target=5))
