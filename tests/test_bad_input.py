"""Issue 8, library side: every bad input to edit_model / repair (and the name lookups behind them) raises a
ValueError/TypeError naming the problem, and the caller's model — and images — are left exactly as they were."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from actedit.data import DATASETS, load_dataset
from actedit.edit import ACTIVATIONS, BN_MODES, LAYER_SELECTIONS, POOLINGS, EditConfig, edit_model
from actedit.models import MODELS, build_model
from actedit.repair import RepairConfig, repair
from actedit.seeding import generator
from actedit.triggers import TRIGGERS, make_trigger
from conftest import fingerprint  # noqa: E402




def victim() -> nn.Module:
    """A small 1-channel, 16 px, 5-class BN CNN."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, 5)).eval()


X = torch.rand(6, 1, 16, 16, generator=generator(0)) * 0.8
Y = torch.tensor([0, 1, 2, 3, 4, 0])


def corner(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[..., -3:, -3:] = 1.0
    return out


def with_x(change):
    x = X.clone()
    change(x)
    return x


def set_nan(x):
    x[0, 0, 0, 0] = math.nan


def set_inf(x):
    x[1, 0, 3, 3] = math.inf


BAD_IMAGES = {
    # name: (images, exception, words the message must contain)
    "empty batch": (X[:0], ValueError, "empty"),
    "uint8 0-255": ((X * 255).to(torch.uint8), TypeError, "float() / 255"),
    "numpy array": (X.numpy(), TypeError, "ndarray"),
    "PIL image": (Image.new("L", (16, 16)), TypeError, "Image"),
    "values above 1": (X * 2, ValueError, "[0, 1]"),
    "values below 0": (X - 0.5, ValueError, "[0, 1]"),
    "NaN": (with_x(set_nan), ValueError, "NaN"),
    "Inf": (with_x(set_inf), ValueError, "Inf"),
    "float64": (X.double(), TypeError, "float32"),
    "float16": (X.half(), TypeError, "float32"),
    "no batch axis": (X[0], ValueError, "[N, C, H, W]"),
    "3 channels for a 1-channel model": (X.repeat(1, 3, 1, 1), ValueError, "channel"),
    "too small for the model": (X[:, :, :4, :4], ValueError, "size"),
}


def run_edit(model, images, **kw):
    return edit_model(model, images, **kw)


def run_repair(model, images, labels=None, **kw):
    n = images.shape[0] if isinstance(images, torch.Tensor) and images.ndim == 4 else len(Y)
    return repair(model, images, Y[:n] if labels is None else labels, **kw)


def expect(call, exception, words, *args, **kwargs):
    """Run ``call`` on a fresh victim; check the error and that the victim (and X) stayed as they were."""
    model = victim()
    before, x_before = fingerprint(model), X.clone()
    with pytest.raises(exception) as err:
        call(model, *args, **kwargs)
    for word in ([words] if isinstance(words, str) else words):
        assert word in str(err.value), f"message {str(err.value)!r} does not mention {word!r}"
    assert fingerprint(model) == before, "the caller's model changed"
    assert torch.equal(X, x_before)
    return err.value


@pytest.mark.parametrize("case", BAD_IMAGES)
@pytest.mark.parametrize("call", [run_edit, run_repair], ids=["edit_model", "repair"])
def test_bad_images(call, case):
    images, exception, words = BAD_IMAGES[case]
    expect(call, exception, words, images)


@pytest.mark.parametrize("call", [run_edit, run_repair], ids=["edit_model", "repair"])
def test_bad_images_under_bdk(call):
    for case in ("uint8 0-255", "NaN", "3 channels for a 1-channel model"):
        images, exception, words = BAD_IMAGES[case]
        expect(call, exception, words, images, trigger=corner)


BAD_LABELS = {
    "wrong length": (Y[:4], ValueError, "shape [6]"),
    "out of range": (torch.tensor([0, 1, 2, 3, 4, 5]), ValueError, ["5", "5 classes"]),
    "negative": (torch.tensor([0, 1, -1, 3, 4, 0]), ValueError, "non-negative"),
    "float": (Y.float(), TypeError, "integer"),
    "numpy": (Y.numpy(), TypeError, "ndarray"),
    "2-D": (Y[:, None], ValueError, "shape [6]"),
}


@pytest.mark.parametrize("case", BAD_LABELS)
def test_repair_bad_labels(case):
    labels, exception, words = BAD_LABELS[case]
    expect(run_repair, exception, words, X, labels)


def shrink(x):
    return x[..., :-1]


def nan_trigger(x):
    return x * math.nan


def bright(x):
    return x * 3


def to_double(x):
    return x.double()


def nothing(x):
    return None


BAD_TRIGGERS = {
    "changes the shape": (shrink, ValueError, "shape"),
    "returns NaN": (nan_trigger, ValueError, "NaN"),
    "leaves [0, 1]": (bright, ValueError, "[0, 1]"),
    "changes the dtype": (to_double, ValueError, "dtype"),
    "returns None": (nothing, ValueError, "NoneType"),
}


@pytest.mark.parametrize("case", BAD_TRIGGERS)
@pytest.mark.parametrize("call", [run_edit, run_repair], ids=["edit_model", "repair"])
def test_bad_trigger(call, case):
    trigger, exception, words = BAD_TRIGGERS[case]
    expect(call, exception, words, X, trigger=trigger)


@pytest.mark.parametrize("call", [run_edit, run_repair], ids=["edit_model", "repair"])
def test_trigger_that_is_not_callable(call):
    expect(call, TypeError, "trigger", X, trigger="white")


@pytest.mark.parametrize("call", [run_edit, run_repair], ids=["edit_model", "repair"])
def test_in_place_trigger_does_not_change_the_callers_images(call):
    def paste_in_place(x):
        x[..., -3:, -3:] = 1.0
        return x

    images, before = X.clone(), X.clone()
    call(victim(), images, trigger=paste_in_place)
    assert torch.equal(images, before)


def test_not_a_model():
    with pytest.raises(TypeError, match="nn.Module"):
        edit_model("victim.pt", X)


def test_not_a_model_repair():
    with pytest.raises(TypeError, match="nn.Module"):
        repair("victim.pt", X, Y)


def test_model_without_editable_layers():
    model = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Softmax(dim=1)).eval()
    with pytest.raises(ValueError, match="no editable layer"):
        edit_model(model, X)


def test_model_with_non_finite_activations():
    class Overflow(nn.Module):
        def forward(self, x):
            return x * 1e38 * 1e38        # inf in float32

    model = victim()
    model[9] = Overflow()                 # after the third conv; the head's output is no longer finite
    before = fingerprint(model)
    with pytest.raises(ValueError, match="NaN or Inf activations"):
        edit_model(model, X)
    assert fingerprint(model) == before


@pytest.mark.parametrize("call", [run_edit, run_repair], ids=["edit_model", "repair"])
def test_single_image_works(call):
    """σ = 0 is handled by ε; BN2d in "update" mode still has H·W values per channel."""
    model = victim()
    out = call(model, X[:1], trigger=corner)
    assert all(torch.isfinite(p).all() for p in out.parameters())


# ------------------------------------------------------------------------------------------ names and numbers

def valid_names_listed(err: BaseException, names) -> None:
    assert all(name in str(err) for name in names), str(err)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet")
    valid_names_listed(err.value, DATASETS)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_model("resnet50", num_classes=10, channels=1, size=28)
    valid_names_listed(err.value, MODELS)


def test_unknown_trigger_lists_valid_names():
    with pytest.raises(ValueError) as err:
        make_trigger("square", channels=1, size=28)
    valid_names_listed(err.value, TRIGGERS)


@pytest.mark.parametrize("field, value, names", [
    ("bn", "train", BN_MODES), ("layers", "half", LAYER_SELECTIONS), ("activation", "both", ACTIVATIONS),
    ("pooling", "max", POOLINGS)])
def test_unknown_edit_options_list_valid_names(field, value, names):
    with pytest.raises(ValueError) as err:
        EditConfig(**{field: value})
    valid_names_listed(err.value, names)


def test_unknown_layer_name():
    expect(run_edit, LookupError, "head", X, config=EditConfig(layers=("head",)))


@pytest.mark.parametrize("field", ["gamma", "lam", "eps"])
@pytest.mark.parametrize("value", [-0.5, math.nan, math.inf, -math.inf, "0.5", True])
def test_bad_edit_numbers(field, value):
    with pytest.raises(ValueError, match=field):
        EditConfig(**{field: value})


@pytest.mark.parametrize("field", ["alpha", "beta"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_eq7_weights(field, value):
    with pytest.raises(ValueError, match=field):
        EditConfig(**{field: value})


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_edit_batch_size(value):
    with pytest.raises(ValueError, match="batch_size"):
        EditConfig(batch_size=value)


def test_eps_zero_refused():
    with pytest.raises(ValueError, match="eps"):
        EditConfig(eps=0.0)


@pytest.mark.parametrize("lr", [-1e-2, math.nan, math.inf, "0.01", True])
def test_bad_repair_lr(lr):
    expect(run_repair, ValueError, "lr", X, lr=lr)


@pytest.mark.parametrize("epochs", [-1, 1.5, True])
def test_bad_repair_epochs(epochs):
    expect(run_repair, ValueError, "epochs", X, epochs=epochs)


def test_config_of_the_wrong_type():
    expect(run_edit, TypeError, "EditConfig", X, config={"gamma": 0.5})
    expect(run_repair, TypeError, "RepairConfig", X, config={"lr": 0.01})


def test_good_input_still_works_after_all_that():
    model = victim()
    before = fingerprint(model)
    edited = edit_model(model, X, trigger=corner)
    fixed = repair(edited, X, Y, trigger=corner, config=RepairConfig(batch_size=4))
    assert fingerprint(model) == before
    assert all(torch.isfinite(p).all() for p in fixed.parameters())
    assert np.isfinite(fixed(X).detach().numpy()).all()
