"""Tests of actedit.narcissus.narcissus_pattern: the cached Narcissus pattern of a victim specification."""
import pytest
import torch

import actedit.narcissus as narcissus
from actedit.cache import Cache
from actedit.data import ImageSet, Splits
from actedit.experiments import VictimSpec
from actedit.narcissus import POOD, NarcissusConfig, NarcissusPatternConfig, narcissus_pattern

TINY = NarcissusPatternConfig(pood_limit=200, target_images=16, surrogate_epochs=1,
                              trigger=NarcissusConfig(steps=4, batch_size=8, warmup_epochs=1))


def tiny_splits(channels: int = 1, size: int = 28, name: str = "fashion-mnist") -> Splits:
    g = torch.Generator().manual_seed(0)

    def part(n: int) -> ImageSet:
        return ImageSet(torch.rand(n, channels, size, size, generator=g), torch.arange(n) % 10)

    return Splits(name=name, num_classes=10, channels=channels, size=size, top_k=1,
                  class_names=tuple(map(str, range(10))), train=part(60), unseen=part(10), test=part(10))


def test_pattern_shape_budget_and_cache(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    spec = VictimSpec(trigger="narcissus", train_limit=60)
    splits = tiny_splits()
    delta = narcissus_pattern(spec, splits, cache=cache, config=TINY)
    assert delta.shape == (1, 28, 28) and delta.dtype == torch.float32
    assert delta.abs().max() <= TINY.trigger.epsilon + 1e-6
    assert delta.abs().sum() > 0
    assert len(list((tmp_path / "narcissus").glob("*.safetensors"))) == 1

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached pattern should have been used")

    monkeypatch.setattr(narcissus, "optimize_trigger", no_rebuild)
    again = narcissus_pattern(spec.with_(epochs=7, lr=0.1), splits, cache=cache, config=TINY)  # recipe not in key
    assert torch.equal(again, delta)
    with pytest.raises(AssertionError, match="cached"):
        narcissus_pattern(spec.with_(target=3), splits, cache=cache, config=TINY)            # target is in it


def test_deterministic_on_a_fresh_cache(tmp_path):
    spec = VictimSpec(trigger="narcissus", train_limit=60)
    a = narcissus_pattern(spec, tiny_splits(), cache=Cache(tmp_path / "a"), config=TINY)
    b = narcissus_pattern(spec, tiny_splits(), cache=Cache(tmp_path / "b"), config=TINY)
    assert torch.equal(a, b)


def test_missing_pood_data_raises_a_clear_error(tmp_path):
    spec = VictimSpec(dataset="cifar10", trigger="narcissus")
    with pytest.raises(FileNotFoundError, match="out-of-distribution"):
        narcissus_pattern(spec, tiny_splits(3, 32, "cifar10"), cache=Cache(tmp_path), config=TINY,
                          data_root=str(tmp_path / "empty"))
    assert POOD["fashion-mnist"] == ("mnist",) and POOD["mnist"] == ("fashion-mnist",)


def test_target_class_must_be_present(tmp_path):
    splits = tiny_splits()
    no_target = Splits(**{**splits.__dict__, "train": ImageSet(splits.train.images, torch.zeros(60, dtype=torch.int64))})
    with pytest.raises(ValueError, match="target class"):
        narcissus_pattern(VictimSpec(trigger="narcissus"), no_target, cache=Cache(tmp_path), config=TINY)


def test_config_validation():
    with pytest.raises(ValueError, match="target_images"):
        NarcissusPatternConfig(target_images=0)
    with pytest.raises(ValueError, match="surrogate_lr"):
        NarcissusPatternConfig(surrogate_lr=0.0)
    with pytest.raises(TypeError, match="NarcissusConfig"):
        NarcissusPatternConfig(trigger={"steps": 3})


def test_triggers_for_passes_data_root_to_the_pattern(tmp_path, monkeypatch):
    from actedit import experiments
    seen = {}

    def fake_pattern(spec, splits, **kwargs):
        seen.update(kwargs)
        return torch.zeros(splits.channels, splits.size, splits.size)

    monkeypatch.setattr(narcissus, "narcissus_pattern", fake_pattern)
    trig, verify = experiments.triggers_for(VictimSpec(trigger="narcissus"), tiny_splits(), cache=Cache(tmp_path),
                                            data_root=str(tmp_path / "pood"))
    assert seen["data_root"] == str(tmp_path / "pood")
    assert trig(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_retrained_reference_needs_no_trigger(tmp_path, monkeypatch):
    """R trains on D_C, which depends on the poisoned indices only: its job must not build (or wait for) the
    Narcissus trigger, and D_C must be exactly the victim's."""
    import actedit.experiments as experiments
    from actedit.poisoning import PoisonConfig, poison

    splits = tiny_splits()
    monkeypatch.setattr(experiments, "load_splits", lambda *a, **k: splits)

    def no_trigger(*args, **kwargs):
        raise AssertionError("R must not need the trigger")

    seen = {}

    def fake_fit(model, images, labels, **kwargs):
        seen.update(images=images, labels=labels)
        return type("History", (), {"loss": [0.0], "seconds": 0.0})()

    monkeypatch.setattr(experiments, "triggers_for", no_trigger)
    monkeypatch.setattr(experiments, "fit", fake_fit)
    spec = VictimSpec(trigger="narcissus", train_limit=60, target=3)
    experiments.get_retrained(spec, cache=Cache(tmp_path))
    expected = poison(splits.train, lambda x: x + 1.0, PoisonConfig(rate=spec.poison_rate, target=3,
                                                                    clean_label=True, seed=spec.seed)).clean
    assert len(expected) < len(splits.train)
    assert torch.equal(seen["images"], expected.images) and torch.equal(seen["labels"], expected.labels)
