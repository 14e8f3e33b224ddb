"""Issue 8, reproducibility: the same configuration and seed give bitwise identical weights and identical
published numbers on CPU — for a real (small) victim trained twice from scratch, and for the edit and repair."""
from __future__ import annotations

import pytest
import torch

from actedit.cache import Cache
from actedit.data import DatasetNotFoundError
from actedit.edit import EditConfig, edit_model
from actedit.experiments import VictimSpec, get_victim, load_splits
from actedit.repair import repair

# The book's victim recipe on a slice of Fashion-MNIST (train_limit / epochs / test_limit keep it to seconds).
SPEC = VictimSpec(train_limit=2000, epochs=1, test_limit=500)


def equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def victims(tmp_path_factory):
    """The victim of SPEC trained twice, each time into its own empty cache, then loaded once from the first."""
    try:
        load_splits(SPEC.dataset, SPEC.unseen, SPEC.seed, SPEC.train_limit, SPEC.test_limit)
    except DatasetNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    roots = [tmp_path_factory.mktemp(f"cache{i}") for i in range(2)]
    first, second = (get_victim(SPEC, cache=Cache(root), progress=False) for root in roots)
    again = get_victim(SPEC, cache=Cache(roots[0]), progress=False)         # a cache hit
    return first, second, again


def test_victim_training_is_bitwise_reproducible(victims):
    first, second, again = victims
    assert equal_states(first.model.state_dict(), second.model.state_dict())
    assert equal_states(first.model.state_dict(), again.model.state_dict())
    assert torch.equal(first.poisoned.poison_index, second.poisoned.poison_index)
    assert first.meta["loss"] == second.meta["loss"]


def test_published_numbers_are_identical(victims):
    first, second, again = victims
    numbers = [v.evaluate() for v in (first, second, again)]
    assert numbers[0] == numbers[1] == numbers[2]            # exact, per_class included
    assert all(0 <= numbers[0][k] <= 100 for k in ("acc", "asr", "ctca"))


@pytest.mark.parametrize("bdk", [True, False], ids=["BDK", "notBDK"])
def test_edit_and_repair_are_bitwise_reproducible(victims, bdk):
    first, second, _ = victims
    trigger = first.trigger if bdk else None
    images, labels = first.unseen(64)
    images2, _ = second.unseen(64)
    assert torch.equal(images, images2)
    edits = [edit_model(v.model, images, trigger=trigger, config=EditConfig()) for v in (first, second)]
    assert equal_states(edits[0].state_dict(), edits[1].state_dict())
    assert not equal_states(edits[0].state_dict(), first.model.state_dict())
    fixed = [repair(e, images, labels, trigger=trigger) for e in edits]
    assert equal_states(fixed[0].state_dict(), fixed[1].state_dict())
    assert first.evaluate(fixed[0]) == second.evaluate(fixed[1])


def test_a_different_seed_gives_a_different_edit(victims):
    first, _, _ = victims
    images, _ = first.unseen(64)
    other = first.splits.unseen.subset(slice(64, 128)).images
    a = edit_model(first.model, images, trigger=first.trigger)
    b = edit_model(first.model, other, trigger=first.trigger)
    assert not equal_states(a.state_dict(), b.state_dict())
