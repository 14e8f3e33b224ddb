"""Tests for actedit.metrics on hand-built cases: ACC, ASR, CTCA, per-class and top-k accuracy, Score (Eq. 6)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from actedit.metrics import evaluate, per_class_accuracy, predict, score

TARGET = 2


class TableModel(nn.Module):
    """Looks its logits up by image id: pixel (0, 0) holds ``id / 255``; pixel (0, 1) = 1 marks a triggered image.

    ``clean[i]`` / ``triggered[i]`` are the logits rows for image ``i``. In train mode it returns garbage, so a
    metric that forgot ``eval()`` shows up.
    """

    def __init__(self, clean: torch.Tensor, triggered: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("clean", clean.float())
        self.register_buffer("triggered", triggered.float())
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = (x[:, 0, 0, 0] * 255).round().long()
        hot = x[:, 0, 0, 1] > 0.5
        out = torch.where(hot[:, None], self.triggered[ids], self.clean[ids])
        return -out if self.training else out


def make_images(n: int) -> torch.Tensor:
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 0] = torch.arange(n) / 255
    return x


def mark(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[:, 0, 0, 1] = 1.0
    return out


def one_hot_rows(classes: list[int], k: int = 4) -> torch.Tensor:
    return torch.eye(k)[torch.tensor(classes)]


# 8 images, 4 classes. labels, clean predictions and predictions with the trigger:
LABELS = [0, 0, 1, 1, 2, 2, 3, 3]
CLEAN = [0, 1, 1, 1, 2, 0, 3, 3]        # 6/8 right; class 0: 1/2, class 1: 2/2, class 2: 1/2, class 3: 2/2
TRIG = [2, 2, 1, 2, 0, 0, 2, 3]         # non-target images 0,1,2,3,6,7 → 2 at 0,1,3,6: 4/6; images 4,5 ignored


def case() -> tuple[TableModel, torch.Tensor, torch.Tensor]:
    return TableModel(one_hot_rows(CLEAN), one_hot_rows(TRIG)), make_images(8), torch.tensor(LABELS)


def test_acc_asr_ctca_per_class_by_hand():
    model, x, y = case()
    result = evaluate(model, x, y, trigger=mark, target=TARGET)
    assert result["acc"] == pytest.approx(100 * 6 / 8)
    assert result["asr"] == pytest.approx(100 * 4 / 6)
    assert result["ctca"] == pytest.approx(100 * 1 / 2)
    assert result["per_class"] == pytest.approx([50.0, 100.0, 50.0, 100.0])


def test_asr_counts_only_non_target_images_with_the_trigger():
    model, x, y = case()
    seen = []

    def spy(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.clone())
        return mark(images)

    evaluate(model, x, y, trigger=spy, target=TARGET)
    assert len(seen) == 1
    ids = (seen[0][:, 0, 0, 0] * 255).round().long().tolist()
    assert ids == [i for i, label in enumerate(LABELS) if label != TARGET]
    # a target-class image "hijacked" to the target counts nothing: making 4, 5 predict 2 under the trigger
    trig = list(TRIG)
    trig[4] = trig[5] = TARGET
    model2 = TableModel(one_hot_rows(CLEAN), one_hot_rows(trig))
    assert evaluate(model2, x, y, trigger=mark, target=TARGET)["asr"] == pytest.approx(100 * 4 / 6)


def test_asr_is_top1_even_with_top5():
    """Logits where the target is 2nd under the trigger: top-5 would count it, ASR must not."""
    k = 10
    labels = torch.tensor([0, 1, 3, 4, 5])
    clean = torch.zeros(5, k)
    clean[torch.arange(5), labels] = 5.0
    trig = torch.zeros(5, k)
    trig[:, 9] = 5.0
    trig[:, TARGET] = 4.0          # runner-up
    trig[0, TARGET] = 6.0          # only image 0 really flips
    model = TableModel(clean, trig)
    result = evaluate(model, make_images(5), labels, trigger=mark, target=TARGET, top_k=5, num_classes=k)
    assert result["asr"] == pytest.approx(100 * 1 / 5)


def test_top5_accuracy_by_hand():
    k = 10
    # logits decreasing from class c upwards cyclically: the top 5 of row c are c, c+1, ..., c+4 (mod 10)
    rows = torch.stack([torch.roll(torch.arange(k, 0, -1).float(), c) for c in range(k)])
    labels = torch.tensor([0, 3, 7, 9, 5, 1])
    preds_of = [0, 0, 5, 6, 5, 8]       # row used for each image
    model = TableModel(rows[preds_of], rows[preds_of])
    # hits (label in {p..p+4 mod 10}): 0∈{0..4} ✓, 3∈{0..4} ✓, 7∈{5..9} ✓, 9∈{6..0} ✓, 5∈{5..9} ✓, 1∈{8,9,0,1,2} ✓
    top5 = evaluate(model, make_images(6), labels, top_k=5, num_classes=k)
    assert top5["acc"] == pytest.approx(100.0)
    top1 = evaluate(model, make_images(6), labels, top_k=1, num_classes=k)
    assert top1["acc"] == pytest.approx(100 * 2 / 6)    # images 0 and 4 only
    labels_miss = torch.tensor([5, 3, 7, 9, 5, 1])      # image 0: 5 ∉ {0..4}
    assert evaluate(model, make_images(6), labels_miss, top_k=5, num_classes=k)["acc"] == pytest.approx(500 / 6)
    assert predict(model, make_images(6), top_k=5).shape == (6, 5)


def test_per_class_accuracy_nan_for_absent_class_and_1d_predictions():
    pred = torch.tensor([0, 1, 1, 3])
    labels = torch.tensor([0, 1, 0, 3])
    result = per_class_accuracy(pred, labels, 4)
    assert result[0] == 50.0 and result[1] == 100.0 and math.isnan(result[2]) and result[3] == 100.0


def test_nan_without_trigger_or_target_and_when_no_image_counts():
    model, x, y = case()
    plain = evaluate(model, x, y)
    assert plain["acc"] == pytest.approx(75.0) and math.isnan(plain["asr"]) and math.isnan(plain["ctca"])
    only_trigger = evaluate(model, x, y, trigger=mark)
    assert math.isnan(only_trigger["asr"]) and math.isnan(only_trigger["ctca"])
    only_target = evaluate(model, x, y, target=TARGET)
    assert math.isnan(only_target["asr"]) and only_target["ctca"] == pytest.approx(50.0)
    all_target = torch.full((8,), TARGET)
    assert math.isnan(evaluate(model, x, all_target, trigger=mark, target=TARGET)["asr"])
    assert math.isnan(evaluate(model, x, y, trigger=mark, target=7, num_classes=4)["ctca"])


def test_num_classes_fills_absent_classes():
    model, x, y = case()
    result = evaluate(model, x, y, num_classes=6)
    assert len(result["per_class"]) == 6 and all(math.isnan(v) for v in result["per_class"][4:])


@pytest.mark.parametrize("training", [False, True])
def test_model_mode_and_weights_restored(training):
    model, x, y = case()
    model.train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = evaluate(model, x, y, trigger=mark, target=TARGET, batch_size=3)
    assert model.training is training
    assert result["acc"] == pytest.approx(75.0)          # evaluated in eval mode regardless
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_batch_size_does_not_matter():
    model, x, y = case()
    results = [evaluate(model, x, y, trigger=mark, target=TARGET, batch_size=b) for b in (1, 3, 512)]
    assert results[0] == results[1] == results[2]


def test_bad_shapes():
    model, x, y = case()
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, x, y[:5])
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, x[:0], y[:0])


def test_score_eq6():
    # Score = 100 · (1 − ASR^U / ASR^V) · ACC^U / ACC^R
    assert score(0.0, 95.0, 65.0, 70.0) == pytest.approx(100 * 65 / 70)
    assert score(9.5, 95.0, 70.0, 70.0) == pytest.approx(90.0)
    assert score(95.0, 95.0, 80.0, 70.0) == pytest.approx(0.0)
    assert score(47.5, 95.0, 35.0, 70.0) == pytest.approx(25.0)
    assert score(0.0, 95.0, 77.0, 70.0) == pytest.approx(110.0)     # better than R is allowed
    assert math.isnan(score(0.0, 0.0, 65.0, 70.0))                  # no backdoor to forget
    assert math.isnan(score(0.0, 95.0, 65.0, 0.0))                  # R learned nothing
    assert math.isnan(score(math.nan, 95.0, 65.0, 70.0))            # ASR^U unknown (no trigger)


def test_mixed_modes_preserved():
    """A model in train mode with one submodule in eval (frozen BN style) comes back exactly so."""
    model, x, y = case()
    wrapper = nn.Sequential(model, nn.BatchNorm1d(4)).train()
    wrapper[1].eval()
    before = [m.training for m in wrapper.modules()]
    evaluate(wrapper, x, y)
    assert [m.training for m in wrapper.modules()] == before
