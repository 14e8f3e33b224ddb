"""§4.3 detector: the score on made-up drops, and detect() on a tiny backdoored and a tiny clean model.

Also home of :func:`tiny_victim`, the few-second backdoored model that tests/test_cli.py uses too.
"""
from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch

from actedit.data import ImageSet
from actedit.detect import (STATISTICS, THRESHOLD_RATIONALE, DetectConfig, backdoor_score, class_drops, detect,
                            false_alarm_rate)
from actedit.edit import EditConfig
from actedit.models import build_model
from actedit.poisoning import PoisonConfig, poison
from actedit.seeding import generator, set_seed
from actedit.training import TrainConfig, fit
from actedit.triggers import make_trigger
from conftest import fingerprint  # noqa: E402

TARGET = 2
SIZE = 28


def synthetic(n: int, seed: int, size: int = SIZE, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` grey images: class c is a Gaussian blob at its own place on a 3x4 grid, plus uniform noise; the
    bottom-right corner (where the white trigger goes) stays dark."""
    g = generator(seed)
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
    x = 0.15 * torch.rand(n, 1, size, size, generator=g)
    r = torch.arange(size, dtype=torch.float32)
    for c in range(classes):
        cy, cx = 5 + 6 * (c // 4), 4 + 6 * (c % 4)
        x[y == c] += 0.8 * torch.exp(-((r[:, None] - cy) ** 2 + (r[None] - cx) ** 2) / 8.0)
    return x.clamp(0, 1), y


@lru_cache(maxsize=2)
def tiny_victim(poisoned: bool = True) -> torch.nn.Module:
    """The small CNN trained on 1,500 synthetic images (15 % carrying the white trigger and label 2 when
    ``poisoned``): ASR and ACC near 100 % after a few seconds on one core."""
    x, y = synthetic(1500, seed=0)
    trigger = make_trigger("white", channels=1, size=SIZE)
    rate = 0.15 if poisoned else 0.0
    data = poison(ImageSet(x, y), trigger, PoisonConfig(rate=rate, target=TARGET)).train
    set_seed(0)
    model = build_model("cnn", num_classes=10, channels=1, size=SIZE)
    fit(model, data.images, data.labels, config=TrainConfig(epochs=4, batch_size=64), progress=False)
    return model.eval()




# ------------------------------------------------------------------------------------------------ the score

def test_outlier_drop_scores_high_and_names_its_class():
    drops = [2.0, -1.0, 0.5, 3.0, 85.0, 1.0, -2.0, 0.0, 1.5, 2.5]
    # rest: median 1.0, MAD 1.0 -> sigma 1.4826; gap (85 - 3) / sigma, z (85 - 1) / sigma
    cls, gap = backdoor_score(drops, "gap")
    assert cls == 4 and gap == pytest.approx(82.0 / 1.4826)
    assert backdoor_score(drops, "robust_z") == (4, pytest.approx(84.0 / 1.4826))
    assert backdoor_score(drops, "ratio") == (4, pytest.approx(85.0 / 3.0))
    assert DetectConfig().statistic == "gap" and gap > DetectConfig().threshold


def test_two_falling_classes_are_not_a_backdoor_under_gap():
    """The clean-model pattern on Fashion-MNIST: two confusable classes collapse together."""
    drops = [0.9, 0.0, 70.4, -2.3, -9.8, -3.2, 73.1, 0.0, 1.1, 2.7]
    threshold = DetectConfig().threshold
    assert backdoor_score(drops, "gap")[1] < threshold < backdoor_score(drops, "robust_z")[1]


def test_even_drops_score_low():
    drops = [10.0, 12.0, 9.0, 11.0, 13.0, 10.5, 12.5, 9.5, 11.5, 10.0]
    for statistic in ("gap", "robust_z"):
        assert backdoor_score(drops, statistic)[1] < DetectConfig().threshold
    assert backdoor_score(drops, "ratio")[1] < 1.1


def test_floor_keeps_identical_drops_finite():
    for statistic in STATISTICS:
        cls, score = backdoor_score([0.0] * 9 + [5.0], statistic, floor=1.0)
        assert cls == 9 and score == pytest.approx(5.0)


def test_false_alarm_rate_under_noise():
    rate = false_alarm_rate(DetectConfig().threshold, trials=20_000)
    assert 0.01 < rate < 0.05                                   # "about 2.5 %" of THRESHOLD_RATIONALE
    assert "2.5 %" in THRESHOLD_RATIONALE
    assert false_alarm_rate(3.5, statistic="robust_z", trials=20_000) > 3 * rate
    assert false_alarm_rate(3.5, trials=1000, seed=1) == false_alarm_rate(3.5, trials=1000, seed=1)


def test_nan_classes_are_ignored_and_too_few_refused():
    assert backdoor_score([math.nan, 50.0, 1.0, 0.0], "robust_z")[0] == 1
    with pytest.raises(ValueError, match="at least 3 classes"):
        backdoor_score([math.nan, 50.0, 1.0], "robust_z")
    with pytest.raises(ValueError, match="unknown statistic"):
        backdoor_score([1.0, 2.0, 3.0], "zscore")
    with pytest.raises(ValueError, match="unknown statistic"):
        false_alarm_rate(3.5, statistic="zscore")


def test_class_drops():
    assert class_drops([90.0, 80.0], [30.0, 85.0]) == [60.0, -5.0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(statistic="mean"), "unknown statistic"),
    (dict(threshold=math.inf), "threshold"),
    (dict(floor=0.0), "floor"),
    (dict(edit_samples=0), "edit_samples"),
    (dict(min_per_class=0), "min_per_class"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DetectConfig(**kwargs)


def test_config_needs_an_edit_config():
    with pytest.raises(TypeError, match="EditConfig"):
        DetectConfig(edit={"gamma": 0.5})


# ------------------------------------------------------------------------------------------------ detect()

@pytest.mark.slow
def test_backdoored_model_is_flagged_with_its_target():
    model = tiny_victim(True)
    before = fingerprint(model)
    x, y = synthetic(300, seed=2)
    result = detect(model, x, y, num_classes=10)
    assert fingerprint(model) == before                      # the caller's model is untouched
    assert result.suspected == TARGET
    assert result.backdoor and result.score > result.threshold
    assert result.drops[TARGET] == pytest.approx(result.acc_before[TARGET] - result.acc_after[TARGET])
    assert sum(result.counts) == 300 and result.edit_images == 300
    report = result.to_dict()
    assert report["suspected"] == TARGET and report["config"]["statistic"] in STATISTICS


@pytest.mark.slow
def test_clean_model_is_not_flagged():
    x, y = synthetic(300, seed=2)
    result = detect(tiny_victim(False), x, y, num_classes=10)
    assert not result.backdoor, result.drops


@pytest.mark.slow
def test_edit_samples_and_small_classes():
    x, y = synthetic(300, seed=2)
    config = DetectConfig(edit_samples=40, min_per_class=31)       # every class has 30 images: all left out
    with pytest.raises(ValueError, match="at least 3 classes"):
        detect(tiny_victim(True), x, y, num_classes=10, config=config)
    result = detect(tiny_victim(True), x, y, num_classes=10,
                    config=DetectConfig(edit_samples=40, edit=EditConfig(gamma=0.5)))
    assert result.edit_images == 40 and result.num_images == 300


def test_bad_inputs_are_refused_before_editing():
    model = build_model("cnn", num_classes=10, channels=1, size=SIZE).eval()
    x, y = synthetic(20, seed=3)
    with pytest.raises(ValueError, match="shape"):
        detect(model, x, y[:5])
    with pytest.raises(ValueError, match="out of range"):
        detect(model, x, y, num_classes=5)
    with pytest.raises(TypeError, match="float"):
        detect(model, (x * 255).to(torch.uint8), y)
