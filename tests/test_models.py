"""Tests for actedit.models: every architecture builds for 1/3 channels and 28/32 px and forwards a tiny batch, at
full and reduced width; the edit's layer list is well defined on each and names the same layers at every width it
is stable at; bad names, sizes and widths are refused."""
from __future__ import annotations

import copy
from functools import lru_cache

import pytest
import torch
from torch import nn

from actedit.edit import EditConfig, edit_model, select_layers
from actedit.models import MODELS, SmallCNN, build_model, scaled_channels


@lru_cache(maxsize=None)
def built(name: str, channels: int, size: int, width: float = 1.0) -> nn.Module:
    """Each architecture once per shape (VGG16 alone takes seconds to build); tests copy before changing it."""
    torch.manual_seed(0)
    return build_model(name, num_classes=10, channels=channels, size=size, width=width).eval()


VGG_28 = ()
CHEAP = ("cnn", "resnet18", "mobilenet_v3_small")
SHAPES = [pytest.param(name, c, s, marks=VGG_28 if (name, s) == ("vgg16", 28) else ())
          for name in MODELS for c, s in ((1, 28), (3, 32))]
# the channel count and the size enter the builders independently; the mixed shapes only for the cheap models
SHAPES += [pytest.param(name, c, s) for name in CHEAP for c, s in ((3, 28), (1, 32))]


@pytest.mark.parametrize("name, channels, size", SHAPES)
def test_builds_and_forwards(name, channels, size):
    model = built(name, channels, size)
    assert isinstance(model, nn.Module)
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    if name in CHEAP:                                  # train-mode BN forward works on a batch of 2 as well
        assert copy.deepcopy(model).train()(x).shape == (2, 10)


@pytest.mark.parametrize("name", MODELS)
def test_params_layer_list_is_the_later_half(name):
    model = built(name, 3, 32)
    names = [n for n, _ in model.named_modules()]
    chosen = select_layers(model, "params")
    assert chosen and all(n in names for n in chosen)
    assert chosen == sorted(chosen, key=names.index)             # named_modules() order
    assert chosen[-1] == [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]  # the head
    weights = {n: m.weight.numel() for n, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and isinstance(getattr(m, "weight", None), torch.Tensor)}
    assert sum(weights[n] for n in chosen) >= sum(weights.values()) / 2


@pytest.mark.parametrize("name", ["cnn", "resnet18", "mobilenet_v3_small"])
def test_identity_edit_on_real_architectures(name):
    """γ = 0, λ = 1, frozen BN leaves even grouped/depthwise convs and SE blocks exactly as they were."""
    model = built(name, 3, 32)
    edited = edit_model(model, torch.rand(2, 3, 32, 32), config=EditConfig(gamma=0.0, lam=1.0, bn="frozen"))
    for (k, a), b in zip(model.state_dict().items(), edited.state_dict().values()):
        assert torch.equal(a, b), k


# Widths at which L (select_layers, "params") names the same layers as at full width. Channel counts are rounded to
# multiples of 8 (at least 8), and depthwise weights grow with the width rather than its square, so the midpoint
# of the weights moves a little with the width; it stays inside the same layer down to these widths.
SAME_L_WIDTHS = {"cnn": (0.25, 0.5, 1.0), "resnet18": (0.125, 0.25, 0.5, 1.0), "vgg16": (0.25, 0.5, 1.0),
                 "efficientnet_v2_s": (0.125, 0.25, 0.5, 1.0), "mobilenet_v3_small": (0.5, 0.75, 1.0)}
NARROW = [pytest.param(name, w, c, s) for name in MODELS for w in (0.25, 0.5) for c, s in ((1, 28), (3, 32))]


@pytest.mark.parametrize("name, width, channels, size", NARROW)
def test_narrow_models_build_and_forward(name, width, channels, size):
    model = built(name, channels, size, width)
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert copy.deepcopy(model).train()(x).shape == (2, 10)
    assert all(not t.is_meta for t in [*model.parameters(), *model.buffers()])
    full = sum(p.numel() for p in built(name, channels, size).parameters())
    assert sum(p.numel() for p in model.parameters()) < full


@pytest.mark.parametrize("name", MODELS)
def test_width_keeps_the_topology(name):
    """The same module names and kinds, the same kernel sizes, strides and depthwise groups; only channels shrink."""
    full, narrow = dict(built(name, 3, 32).named_modules()), dict(built(name, 3, 32, 0.5).named_modules())
    assert list(full) == list(narrow)
    for key, a in full.items():
        b = narrow[key]
        assert type(a) is type(b), key
        if isinstance(a, nn.Conv2d):
            assert (a.kernel_size, a.stride, a.padding, a.bias is None) == (b.kernel_size, b.stride, b.padding,
                                                                             b.bias is None), key
            assert (a.groups == a.in_channels > 1) == (b.groups == b.in_channels > 1), key   # depthwise stays so
            assert b.out_channels == scaled_channels(a.out_channels, 0.5), key
        if isinstance(a, nn.BatchNorm2d):
            assert b.num_features == scaled_channels(a.num_features, 0.5), key
    head = [m for m in narrow.values() if isinstance(m, nn.Linear)][-1]
    stem = next(m for m in narrow.values() if isinstance(m, nn.Conv2d))
    assert head.out_features == 10 and stem.in_channels == 3


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_layer_list_has_the_same_names_at_every_width(name, channels, size):
    lists = {w: select_layers(built(name, channels, size, w)) for w in SAME_L_WIDTHS[name]}
    assert all(names == lists[1.0] for names in lists.values()), lists


def test_scaled_channels():
    assert [scaled_channels(c, 1.0) for c in (3, 16, 960)] == [3, 16, 960]
    assert [scaled_channels(c, 0.25) for c in (16, 64, 512, 1280)] == [8, 16, 128, 320]
    assert scaled_channels(8, 0.1) == 8                    # depthwise/SE blocks keep at least one group of 8


def test_same_seed_same_narrow_initialisation():
    torch.manual_seed(3)
    a = build_model("mobilenet_v3_small", num_classes=10, channels=1, size=28, width=0.5)
    torch.manual_seed(3)
    b = build_model("mobilenet_v3_small", num_classes=10, channels=1, size=28, width=0.5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_small_cnn_is_a_plain_sequential_with_batchnorm():
    model = build_model("cnn", num_classes=10, channels=1, size=28)
    assert isinstance(model, SmallCNN) and isinstance(model, nn.Sequential)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_same_seed_same_initialisation():
    torch.manual_seed(3)
    a = build_model("cnn", num_classes=10, channels=1, size=28)
    torch.manual_seed(3)
    b = build_model("cnn", num_classes=10, channels=1, size=28)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_model("resnet50", num_classes=10, channels=3, size=32)
    assert "resnet50" in str(err.value) and all(name in str(err.value) for name in MODELS)


@pytest.mark.parametrize("kwargs", [dict(num_classes=0), dict(channels=0), dict(size=4), dict(num_classes=2.5),
                                    dict(channels="3"), dict(width=0), dict(width=-0.5), dict(width="half"),
                                    dict(width=True), dict(width=float("nan"))])
def test_bad_arguments(kwargs):
    args = dict(num_classes=10, channels=3, size=32) | kwargs
    with pytest.raises(ValueError):
        build_model("cnn", **args)


@pytest.mark.parametrize("name", MODELS)
def test_edit_runs_on_every_architecture(name):
    """The plumbing check chapter 6 used to show: BDK and ¬BDK edits of each (narrow, untrained) architecture change
    the copy's weights, keep its outputs finite and leave the caller's model bitwise unchanged."""
    from actedit.triggers import make_trigger

    model = built(name, 3, 32, 0.25)
    before = {k: t.clone() for k, t in model.state_dict().items()}
    x = torch.rand(4, 3, 32, 32)
    for trigger in (make_trigger("white", channels=3, size=32), None):
        edited = edit_model(model, x, trigger=trigger)
        assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), edited.parameters()))
        with torch.no_grad():
            assert torch.isfinite(edited.eval()(x)).all()
    assert all(torch.equal(before[k], t) for k, t in model.state_dict().items())


def test_victim_spec_width_leaves_full_width_cache_keys_alone():
    """VictimSpec.width enters the cache key only when it is not 1.0, so victims cached before the field existed
    keep their keys; a narrow victim gets keys of its own."""
    from actedit.experiments import VictimSpec, _key

    for role in ("victim", "retrained"):
        assert "width" not in _key(VictimSpec(), role, "cpu")
        assert _key(VictimSpec(width=0.5), role, "cpu")["width"] == 0.5
        assert _key(VictimSpec(width=0.5), role, "cpu") != _key(VictimSpec(), role, "cpu")
