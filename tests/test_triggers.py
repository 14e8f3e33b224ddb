"""Tests for actedit.triggers (the eight triggers of Fig. 2) and actedit.narcissus (trigger optimisation)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from actedit.narcissus import NarcissusConfig, optimize_trigger, warm_up
from actedit.seeding import generator
from actedit.triggers import (TRIGGER_DEFAULTS, TRIGGERS, NarcissusTrigger, PatchTrigger, StegoTrigger, Trigger,
                              make_trigger)

EPS = 16 / 255
PATCHES = ("white", "mean", "apple", "test1", "test2", "noise")


def build(name: str, channels: int, size: int, **kw) -> Trigger:
    if name == "narcissus" and "narcissus_pattern" not in kw:
        kw["narcissus_pattern"] = (torch.rand(channels, size, size, generator=generator(1)) * 2 - 1) * EPS
    return make_trigger(name, channels=channels, size=size, **kw)


def images(channels: int, size: int, n: int = 4, seed: int = 0) -> torch.Tensor:
    """Random images on the 8-bit grid, as real datasets are."""
    return torch.randint(0, 256, (n, channels, size, size), generator=generator(seed)).float() / 255


grid = pytest.mark.parametrize("size", [28, 32, 64])
chans = pytest.mark.parametrize("channels", [1, 3])
names = pytest.mark.parametrize("name", TRIGGERS)


# --------------------------------------------------------------------------- contract shared by all eight

@names
@chans
@grid
def test_contract(name, channels, size):
    trigger = build(name, channels, size)
    assert isinstance(trigger, Trigger) and trigger.name == name
    x = images(channels, size)
    before = x.clone()
    out = trigger(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, before), "trigger modified its input"
    assert out.data_ptr() != x.data_ptr()
    assert torch.equal(out, trigger(x)), "not deterministic"
    assert torch.equal(out, build(name, channels, size)(x)), "rebuilding the trigger changed it"
    diff = (out - x).abs()
    assert diff.max() > 0, "trigger left the images unchanged"
    if name == "invisible":
        assert diff.max() <= 1 / 255 + 1e-6, "steganography must only touch the least-significant bit"


@names
@chans
@grid
def test_magnified_is_at_least_as_strong(name, channels, size):
    trigger = build(name, channels, size)
    strong = trigger.magnified()
    x = images(channels, size) * 0.5 + 0.25          # away from 0/1 so clamping cannot hide the difference
    weak_diff, strong_diff = (trigger(x) - x).abs().sum(), (strong(x) - x).abs().sum()
    if name == "invisible":                           # no alpha in Tables 3/4: documented identity
        assert torch.equal(strong(x), trigger(x))
    elif name in PATCHES and TRIGGER_DEFAULTS[name].alpha == 1.0:
        assert strong.alpha == 1.0 and torch.allclose(strong_diff, weak_diff)
    else:
        assert strong_diff > weak_diff


@pytest.mark.parametrize("name", PATCHES)
def test_magnified_alpha_is_tripled_and_capped(name):
    trigger = build(name, 3, 32)
    alpha = TRIGGER_DEFAULTS[name].alpha
    assert trigger.alpha == alpha
    assert trigger.magnified().alpha == pytest.approx(min(1.0, 3 * alpha))
    assert trigger.magnified(10).alpha == 1.0


def test_float64_and_16px_images():
    x = images(3, 16).double()
    for name in TRIGGERS:
        out = build(name, 3, 16)(x)
        assert out.dtype == torch.float64 and out.shape == x.shape


# --------------------------------------------------------------------------- individual triggers

@pytest.mark.parametrize("size,side", [(28, 3), (32, 3), (64, 6)])
def test_white_square_bottom_right(size, side):
    x = images(3, size)
    out = make_trigger("white", channels=3, size=size)(x)
    assert torch.all(out[..., -side:, -side:] == 1)
    changed = (out != x).any(dim=(0, 1))
    assert not changed[:-side].any() and not changed[:, :-side].any()


def test_patch_blend_position_and_luminance():
    rgba = torch.tensor([1.0, 0.0, 0.0, 0.5]).view(4, 1, 1).expand(4, 2, 2)   # half-transparent red
    trigger = PatchTrigger(rgba, alpha=0.5, position=(1, 3))
    x = torch.full((1, 3, 8, 8), 0.2)
    a = 0.25
    expected = x.clone()
    expected[0, :, 1:3, 3:5] = (1 - a) * 0.2 + a * torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(trigger(x), expected)
    grey = trigger(torch.full((1, 1, 8, 8), 0.2))                                # red -> BT.601 luma 0.299
    assert torch.allclose(grey[0, 0, 1, 3], torch.tensor((1 - a) * 0.2 + a * 0.299))
    centred = PatchTrigger(torch.ones(1, 2, 2), position="center")(torch.zeros(1, 1, 6, 6))
    assert centred[0, 0, 2:4, 2:4].eq(1).all() and centred.sum() == 4


def test_mean_patch_uses_mean_image():
    x = torch.zeros(1, 3, 32, 32)
    assert torch.allclose(make_trigger("mean", channels=3, size=32)(x)[..., -3:, -3:], torch.tensor(0.5))
    colour = torch.tensor([0.2, 0.4, 0.6])
    out = make_trigger("mean", channels=3, size=32, mean_image=colour)(x)
    assert torch.allclose(out[0, :, -1, -1], colour)
    mean_image = colour.view(3, 1, 1).expand(3, 32, 32)
    out = make_trigger("mean", channels=3, size=32, mean_image=mean_image)(x)
    assert torch.allclose(out[0, :, -1, -1], colour)


def test_noise_depends_on_seed_only():
    x = images(3, 32)
    a, b = (make_trigger("noise", channels=3, size=32, seed=s)(x) for s in (0, 0))
    c = make_trigger("noise", channels=3, size=32, seed=1)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_picture_patches_scale_with_image():
    for size, side in ((28, 7), (32, 8), (64, 16)):
        for name in ("apple", "noise"):
            assert build(name, 3, size).mask.shape[-2:] == (side, side)


def test_stego_embeds_message_bits_in_raster_order():
    x = images(3, 32)
    out = StegoTrigger("backdoor")(x)
    lsb = (torch.round(out * 255).to(torch.int64) & 1).permute(0, 2, 3, 1).reshape(len(x), -1)
    bits = lsb[0, :8 * 8].view(8, 8)
    text = bytes((bits * 2 ** torch.arange(7, -1, -1)).sum(1).tolist()).decode("ascii")
    assert text == "backdoor"
    assert torch.equal(lsb[0], lsb[1]), "the payload is the same for every image"
    two = StegoTrigger("backdoor", bits=2)(x)
    assert (two - x).abs().max() <= 3 / 255 + 1e-6 and not torch.equal(two, out)


def test_narcissus_trigger_adds_and_magnifies():
    pattern = torch.full((1, 16, 16), EPS)
    x = torch.full((2, 1, 16, 16), 0.5)
    trigger = NarcissusTrigger(pattern)
    assert torch.allclose(trigger(x), x + EPS)
    assert torch.allclose(trigger.magnified(3)(x), x + 3 * EPS)
    assert torch.equal(trigger(torch.ones(1, 1, 16, 16)), torch.ones(1, 1, 16, 16))


def test_defaults_transcribe_tables_3_and_4():
    assert tuple(TRIGGER_DEFAULTS) == TRIGGERS
    rows = {n: (d.rho, d.alpha) for n, d in TRIGGER_DEFAULTS.items()}
    assert rows == {"white": (0.05, 1.0), "mean": (0.10, 1.0), "apple": (0.05, 1.0), "test1": (0.05, 1.0),
                    "test2": (0.05, 0.15), "noise": (0.05, 0.25), "invisible": (0.50, None),
                    "narcissus": (0.05, 0.2)}
    with pytest.raises(AttributeError):
        TRIGGER_DEFAULTS["white"].rho = 0.5      # frozen


# --------------------------------------------------------------------------- errors

def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="valid names: white, mean"):
        make_trigger("blend", channels=3, size=32)
    with pytest.raises(ValueError, match="optimize_trigger"):
        make_trigger("narcissus", channels=3, size=32)
    with pytest.raises(ValueError, match=r"\[3, 32, 32\]"):
        make_trigger("narcissus", channels=3, size=32, narcissus_pattern=torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match="alpha"):
        make_trigger("invisible", channels=3, size=32, alpha=0.5)
    with pytest.raises(ValueError, match="channels"):
        make_trigger("white", channels=2, size=32)
    with pytest.raises(ValueError, match="size"):
        make_trigger("white", channels=3, size=8)
    for name in TRIGGERS:
        trigger = build(name, 3, 32)
        with pytest.raises(ValueError, match="rank 4"):
            trigger(torch.rand(3, 32, 32))
        with pytest.raises(ValueError, match="floating point"):
            trigger(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
        with pytest.raises(TypeError):
            trigger([[0.0]])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        build("white", 3, 32)(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="does not fit"):
        build("apple", 3, 64)(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="pattern"):
        build("narcissus", 3, 32)(torch.rand(1, 3, 28, 28))


# --------------------------------------------------------------------------- Narcissus optimisation

def linear_surrogate(seed: int = 0, classes: int = 3, size: int = 16) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(size * size, classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(classes, size * size, generator=generator(seed)) * 0.1)
        model[1].bias.zero_()
    return model


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def target_probability(model: nn.Module, x: torch.Tensor, target: int) -> float:
    with torch.no_grad():
        return model(x).softmax(1)[:, target].mean().item()


def test_narcissus_pattern_is_bounded_and_beats_random_pattern():
    model, target = linear_surrogate(), 2
    x = images(1, 16, n=64)
    before = state(model)
    config = NarcissusConfig(steps=60, batch_size=32, lr=0.01)
    delta = optimize_trigger(model, x, target=target, config=config, progress=False)
    assert delta.shape == (1, 16, 16) and delta.dtype == torch.float32
    assert delta.abs().max() <= EPS + 1e-7 and delta.abs().max() > 0.5 * EPS
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "surrogate changed"
    assert all(p.requires_grad for p in model.parameters()) and model.training
    random = EPS * torch.sign(torch.rand(1, 16, 16, generator=generator(3)) - 0.5)
    optimised = target_probability(model, NarcissusTrigger(delta)(x), target)
    assert optimised > target_probability(model, NarcissusTrigger(random)(x), target)
    assert optimised > target_probability(model, x, target)
    assert torch.equal(delta, optimize_trigger(model, x, target=target, config=config, progress=False))


def test_warm_up_returns_a_tuned_copy():
    model, target = linear_surrogate(), 1
    x = images(1, 16, n=32)
    before = state(model)
    tuned = warm_up(model, x, target, epochs=3, lr=0.05, batch_size=16, progress=False)
    assert tuned is not model
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert target_probability(tuned, x, target) > target_probability(model, x, target)


def test_narcissus_rejects_bad_arguments():
    model, x = linear_surrogate(), images(1, 16, n=8)
    with pytest.raises(ValueError, match="output index"):
        optimize_trigger(model, x, target=3, config=NarcissusConfig(steps=1), progress=False)
    with pytest.raises(ValueError, match="target_images"):
        optimize_trigger(model, x[0], target=0, progress=False)
    with pytest.raises(ValueError, match="epsilon"):
        NarcissusConfig(epsilon=0)
    with pytest.raises(ValueError, match="steps"):
        NarcissusConfig(steps=0)
    copy.deepcopy(NarcissusConfig())   # plain frozen dataclass
