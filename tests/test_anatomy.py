"""Tests of actedit.anatomy: per-unit factors, per-layer edits, the head's target row."""
import pytest
import torch
from torch import nn

from actedit.anatomy import edit_each_layer, head_row, unit_factors
from actedit.edit import EditConfig, apply_factors, compute_factors, extract


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def _trigger(x):
    x = x.clone()
    x[..., -2:, -2:] = 1.0
    return x


def test_unit_factors_give_one_row_per_channel_and_class():
    net = _net()
    ex = extract(net, torch.rand(16, 1, 8, 8), trigger=_trigger, config=EditConfig(layers=("0", "3")))
    table = unit_factors(compute_factors(ex, EditConfig(layers=("0", "3"))))
    assert table.groupby("layer").size().to_dict() == {"0": 4, "3": 3}
    with pytest.raises(ValueError, match="no layer factors"):
        unit_factors({})


def test_edit_each_layer_matches_apply_factors_and_leaves_the_model():
    net = _net()
    cfg = EditConfig(layers=("0", "3"))
    ex = extract(net, torch.rand(16, 1, 8, 8), trigger=_trigger, config=cfg)
    factors = compute_factors(ex, cfg)
    before = {k: v.clone() for k, v in ex.model.state_dict().items()}
    x = torch.rand(8, 1, 8, 8)
    seen = []

    def evaluate(model):
        seen.append(model(x))
        return {"asr": 0.0, "acc": 0.0, "ctca": 0.0}

    table = edit_each_layer(ex, factors, evaluate)
    assert table["edited"].tolist() == ["0", "3", "all of L"]
    assert torch.allclose(seen[-1], apply_factors(ex, factors)(x))
    assert all(torch.equal(before[k], v) for k, v in ex.model.state_dict().items())


def test_head_row_reports_the_sign_and_rank_of_the_target_class():
    net = _net()
    cfg = EditConfig(layers=("3",))
    factors = compute_factors(extract(net, torch.rand(16, 1, 8, 8), trigger=_trigger, config=cfg), cfg)
    per_class = unit_factors(factors)["factor"].tolist()
    low = min(range(3), key=per_class.__getitem__)
    row = head_row(factors, "3", low)
    assert row["rank"] == 0 and row["factor"] == pytest.approx(per_class[low])
    assert row["negative"] == (per_class[low] < 0)
    with pytest.raises(ValueError, match="not in L"):
        head_row(factors, "0", 0)
    with pytest.raises(ValueError, match="outside"):
        head_row(factors, "3", 7)
