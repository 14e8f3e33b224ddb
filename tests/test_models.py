"""Tests for actedit.models: every architecture builds for 1/3 channels and 28/32 px and forwards a tiny batch;
the edit's layer list is well defined on each; bad names and sizes are refused."""
from __future__ import annotations

import copy
from functools import lru_cache

import pytest
import torch
from torch import nn

from actedit.edit import EditConfig, edit_model, select_layers
from actedit.models import MODELS, SmallCNN, build_model


@lru_cache(maxsize=None)
def built(name: str, channels: int, size: int) -> nn.Module:
    """Each architecture once per shape (VGG16 alone takes seconds to build); tests copy before changing it."""
    torch.manual_seed(0)
    return build_model(name, num_classes=10, channels=channels, size=size).eval()


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
                                    dict(channels="3")])
def test_bad_arguments(kwargs):
    args = dict(num_classes=10, channels=3, size=32) | kwargs
    with pytest.raises(ValueError):
        build_model("cnn", **args)
