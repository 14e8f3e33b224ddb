"""Tests for actedit.edit (§3, Fig. 3, Eq. 1–5 and 7): identities, invariants, pooling shapes, a hand-computed
example, the layer-list readings, BatchNorm modes, and the edit on a model it has never seen."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from actedit import edit as edit_mod
from actedit.capture import TraceDict
from actedit.edit import (ACTIVATIONS, BN_MODES, LAYER_SELECTIONS, POOLINGS, EditConfig, compute_factors, edit_model,
                          extract, select_layers)
from actedit.seeding import generator
from conftest import fingerprint, no_hooks  # noqa: E402

IDENTITY = EditConfig(gamma=0.0, lam=1.0, bn="frozen")


# ------------------------------------------------------------------------------------------------- helpers





def bn_cnn(channels: int = 1, classes: int = 4, seed: int = 0) -> nn.Sequential:
    """A plain Sequential CNN with BatchNorm (not one of actedit's models), with non-trivial BN statistics."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 10, 3, padding=1, bias=False), nn.BatchNorm2d(10), nn.ReLU(),
        nn.Conv2d(10, 12, 3), nn.BatchNorm2d(12), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, classes))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


def images(n: int = 8, channels: int = 1, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=generator(seed))


def white_corner(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[..., -3:, -3:] = 1.0
    return out


def assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# -------------------------------------------------------------------------------------------- identities

@pytest.mark.parametrize("trigger", [None, white_corner], ids=["notBDK", "BDK"])
@pytest.mark.parametrize("selection", LAYER_SELECTIONS)
def test_gamma0_lambda1_frozen_is_identity(trigger, selection):
    net = bn_cnn()
    edited = edit_model(net, images(), trigger=trigger, config=EditConfig(gamma=0.0, lam=1.0, bn="frozen",
                                                                         layers=selection))
    assert edited is not net
    assert_same(edited, net)  # every parameter and buffer, num_batches_tracked included


@pytest.mark.parametrize("trigger", [None, white_corner], ids=["notBDK", "BDK"])
def test_alpha0_beta0_frozen_is_identity(trigger):
    """Eq. 7 with α = β = 0 gives A = 0: μ = σ = 0, the factor is λ = 1 and nothing changes."""
    net = bn_cnn()
    edited = edit_model(net, images(), trigger=trigger, config=EditConfig(alpha=0.0, beta=0.0, bn="frozen"))
    assert_same(edited, net)


@pytest.mark.parametrize("trigger", [None, white_corner], ids=["notBDK", "BDK"])
@pytest.mark.parametrize("bn", [None, *BN_MODES])
@pytest.mark.parametrize("train_mode", [False, True])
def test_caller_model_unchanged_and_mode_kept(trigger, bn, train_mode):
    net = bn_cnn().train(train_mode)
    before = fingerprint(net)
    edited = edit_model(net, images(), trigger=trigger, config=EditConfig(bn=bn))
    assert fingerprint(net) == before
    assert edited.training == train_mode
    assert fingerprint(edited)[0] != before[0]
    assert no_hooks(net) and no_hooks(edited)


def test_default_edit_changes_exactly_the_selected_weights():
    net = bn_cnn()
    chosen = set(select_layers(net, EditConfig().layers))
    edited = edit_model(net, images(), trigger=white_corner)
    modules = dict(net.named_modules())
    for name, p in edited.named_parameters():
        owner, kind = name.rsplit(".", 1)
        same = torch.equal(p, dict(net.named_parameters())[name])
        if owner in chosen and kind == "weight":
            assert not same, name
        else:
            assert same, f"{name} ({type(modules[owner]).__name__}) changed but is not in L"


def test_return_factors_gives_the_same_model_and_the_factors_of_every_edited_layer():
    net = bn_cnn()
    alone = edit_model(net, images(), trigger=white_corner)
    edited, factors = edit_model(net, images(), trigger=white_corner, return_factors=True)
    assert fingerprint(edited) == fingerprint(alone)
    assert list(factors) == select_layers(net, EditConfig().layers)
    modules = dict(net.named_modules())
    for name, lf in factors.items():   # Eq. 5: edited weight = victim weight · A_l
        assert torch.allclose(dict(edited.named_modules())[name].weight, modules[name].weight * lf.factor)


def test_mixed_modes_are_kept_per_module():
    net = bn_cnn().eval()
    net[1].train()                     # one BatchNorm in train mode, the rest in eval mode
    before = fingerprint(net)
    edited = edit_model(net, images(), trigger=white_corner)
    assert fingerprint(net) == before and fingerprint(edited)[1] == before[1]


# ------------------------------------------------------------------------------------------ hooks and errors

class Boom(Exception):
    pass


def test_no_hook_left_after_exception_in_trace_block():
    net = bn_cnn()
    layers = select_layers(net, "modules")
    with pytest.raises(Boom):
        with TraceDict(net, layers):
            net(images())
            raise Boom
    assert no_hooks(net)


class Raiser(nn.Module):
    def forward(self, x):
        raise Boom


@pytest.mark.parametrize("failure", ["trigger raises", "forward raises", "trigger returns NaN", "non-finite layer"])
def test_no_hook_left_after_exception_in_edit_model(monkeypatch, failure):
    """Hooks go on the working copy: record every model a TraceDict is opened on and check them all."""
    seen = []

    class Recording(TraceDict):
        def __init__(self, model, layers, **kw):
            seen.append(model)
            super().__init__(model, layers, **kw)

    monkeypatch.setattr(edit_mod, "TraceDict", Recording)
    net = bn_cnn()
    trigger, expected = white_corner, ValueError
    if failure == "trigger raises":
        def trigger(x):  # noqa: F811
            raise Boom
        expected = Boom
    elif failure == "forward raises":
        net[9] = Raiser()                               # after the first chosen layers have fired their hooks
        expected = Boom
    elif failure == "trigger returns NaN":
        def trigger(x):  # noqa: F811
            return x * math.nan
    else:
        with torch.no_grad():
            net[7].weight[0, 0, 0, 0] = math.inf        # non-finite activations in a chosen layer
    before = fingerprint(net)
    with pytest.raises(expected):
        edit_model(net, images(), trigger=trigger)
    assert seen, "the edit never opened a TraceDict"
    assert all(no_hooks(model) for model in seen)
    assert no_hooks(net)
    assert fingerprint(net) == before


# ------------------------------------------------------------------------------------------------ pooling

def odd_model() -> nn.Sequential:
    """Conv, BN and Linear layers of odd sizes: conv 3→5 (k=3), conv 5→7 (k=3×5), BN 7, linear 7·3·1→5→3."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3), nn.ReLU(),                  # 9x9 → 7x7
        nn.Conv2d(5, 7, (3, 5), bias=False),            # 7x7 → 5x3
        nn.BatchNorm2d(7), nn.ReLU(), nn.AdaptiveAvgPool2d((3, 1)), nn.Flatten(),
        nn.Linear(21, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).eval()


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_pooling_gives_the_weight_shape(pooling, activation):
    net = odd_model()
    layers = ("0", "2", "3", "7", "8", "10")
    config = EditConfig(layers=layers, pooling=pooling, activation=activation, bn="frozen")
    x = torch.rand(5, 3, 9, 9, generator=generator(2))
    extraction = extract(net, x, trigger=white_corner, config=config)
    factors = compute_factors(extraction, config)
    modules = dict(net.named_modules())
    assert list(factors) == list(layers)
    for name in layers:
        weight = modules[name].weight
        factor = factors[name].factor
        assert factor.ndim == weight.ndim, (name, factor.shape, weight.shape)
        assert torch.broadcast_shapes(factor.shape, weight.shape) == weight.shape
        assert (factor * weight).shape == weight.shape
        assert torch.isfinite(factor).all()
        assert factors[name].weight_shape == tuple(weight.shape)
        if pooling == "flat":
            assert factor.shape == weight.shape
        # Eq. 2-4: the factor has mean λ and (population) std γ·σ/√(σ²+ε) over its distinct values
        assert factor.mean().item() == pytest.approx(config.lam, abs=1e-5)
    edited = edit_model(net, x, trigger=white_corner, config=config)
    for name in layers:
        assert edited.get_submodule(name).weight.shape == modules[name].weight.shape


# ------------------------------------------------------------------------------------ hand-computed example

W1 = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-1.0, 2.0, 0.0], [0.0, -0.5, 1.0]]
B1 = [0.0, 0.1, -0.2, 0.3]
W2 = [[1.0, -1.0, 0.5, 0.0], [0.0, 1.0, 1.0, -1.0]]
B2 = [0.5, -0.5]
X = [[0.2, 0.4, 0.6], [1.0, 0.0, 0.5], [0.0, 0.9, 0.1]]   # three 1x1x3 images


def two_layer() -> nn.Sequential:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(W1)); net[1].bias.copy_(torch.tensor(B1))
        net[3].weight.copy_(torch.tensor(W2)); net[3].bias.copy_(torch.tensor(B2))
    return net.eval()


def by_hand_activations(xs):
    """Per-sample h = W1·x + b1 (layer "1" output), r = relu(h) (layer "3" input), o = W2·r + b2 ("3" output)."""
    hs = [[sum(w * v for w, v in zip(row, x)) + b for row, b in zip(W1, B1)] for x in xs]
    rs = [[max(v, 0.0) for v in h] for h in hs]
    os_ = [[sum(w * v for w, v in zip(row, r)) + b for row, b in zip(W2, B2)] for r in rs]
    mean = lambda vs: [sum(col) / len(vs) for col in zip(*vs)]  # noqa: E731  (mean over the 3 samples)
    return mean(hs), mean(rs), mean(os_)


def by_hand_factor(a, gamma, lam, eps):
    mu = sum(a) / len(a)                                          # Eq. 2
    var = sum((v - mu) ** 2 for v in a) / len(a)                  # Eq. 2 (population variance)
    return [gamma * (v - mu) / math.sqrt(var + eps) + lam for v in a]   # Eq. 3, Eq. 4


def poison_first_pixel(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[..., 0] = 1.0
    return out


@pytest.mark.parametrize("mode", ["notBDK", "BDK", "BDK alpha", "BDK input"])
def test_two_layer_factors_by_hand(mode):
    net = two_layer()
    x = torch.tensor(X).reshape(3, 1, 1, 3)
    gamma, lam, eps = 0.5, 1.0, 1e-5          # the paper's γ, λ (Eq. 4) and our ε (Eq. 3)
    # "params" reading, output activations, channel pooling (1-D activations: pooling is the identity)
    paper = EditConfig(gamma=gamma, lam=lam, eps=eps, alpha=0.0, beta=-1.0, layers="params", activation="output",
                       pooling="channel")
    h, r, o = by_hand_activations(X)
    hp, rp, op = by_hand_activations([[1.0, *v[1:]] for v in X])
    if mode == "notBDK":                  # ¬BDK: A = (α + β)·A_clean = −A_clean
        config, trigger = paper, None
        a1, a3 = [-v for v in h], [-v for v in o]
    elif mode == "BDK":                   # Eq. 1: A = −A_poisoned
        config, trigger = paper, poison_first_pixel
        a1, a3 = [-v for v in hp], [-v for v in op]
    elif mode == "BDK alpha":             # Eq. 7: A = α·A_clean + β·A_poisoned
        config, trigger = replace(paper, alpha=0.25, beta=-1.5, gamma=0.7, lam=0.9), poison_first_pixel
        gamma, lam = 0.7, 0.9
        a1 = [0.25 * c - 1.5 * p for c, p in zip(h, hp)]
        a3 = [0.25 * c - 1.5 * p for c, p in zip(o, op)]
    else:                                 # input activations: layer "1" sees x, layer "3" sees relu(h)
        config, trigger = replace(paper, activation="input"), poison_first_pixel
        xp = [[1.0, *v[1:]] for v in X]
        a1 = [-sum(col) / 3 for col in zip(*xp)]
        a3 = [-v for v in rp]
    assert select_layers(net, config.layers) == ["1", "3"]   # 12 + 8 weights: both reach the second half
    f1, f3 = by_hand_factor(a1, gamma, lam, eps), by_hand_factor(a3, gamma, lam, eps)
    if config.activation == "output":     # one factor per output unit: scale the rows (Eq. 5)
        w1 = [[w * f for w in row] for row, f in zip(W1, f1)]
        w3 = [[w * f for w in row] for row, f in zip(W2, f3)]
    else:                                 # one factor per input unit: scale the columns
        w1 = [[w * f for w, f in zip(row, f1)] for row in W1]
        w3 = [[w * f for w, f in zip(row, f3)] for row in W2]

    factors = compute_factors(extract(net, x, trigger=trigger, config=config), config)
    assert torch.allclose(factors["1"].factor.flatten(), torch.tensor(f1), atol=1e-6)
    assert torch.allclose(factors["3"].factor.flatten(), torch.tensor(f3), atol=1e-6)
    edited = edit_model(net, x, trigger=trigger, config=config)
    assert torch.allclose(edited[1].weight, torch.tensor(w1), atol=1e-6)
    assert torch.allclose(edited[3].weight, torch.tensor(w3), atol=1e-6)
    assert torch.equal(edited[1].bias, net[1].bias) and torch.equal(edited[3].bias, net[3].bias)  # Eq. 5: θ = weights


def test_eq7_combination_matches_traced_means():
    """extract() returns α·A_clean + β·A_poisoned (BDK) and (α + β)·A_clean (¬BDK), per layer."""
    net = bn_cnn()
    x = images(10)
    layers = select_layers(net)
    with torch.no_grad(), TraceDict(net, layers) as clean:
        net(x)
    with torch.no_grad(), TraceDict(net, layers) as poisoned:
        net(white_corner(x))
    for alpha, beta in [(0.0, -1.0), (1.0, -1.0), (0.5, 0.0), (-0.3, 2.0)]:
        config = EditConfig(alpha=alpha, beta=beta, bn="frozen", batch_size=4)
        bdk = extract(net, x, trigger=white_corner, config=config)
        nobdk = extract(net, x, config=config)
        for name in layers:
            want = alpha * clean[name].mean + beta * poisoned[name].mean
            assert torch.allclose(bdk.activations[name], want, atol=1e-5), (alpha, beta, name)
            assert torch.allclose(nobdk.activations[name], (alpha + beta) * clean[name].mean, atol=1e-5)


# ------------------------------------------------------------------------------------------- layer list L

def readings_model() -> nn.Sequential:
    """Three bias-free convs (18, 36, 144 weights), BN(8) (8 + 8), linear 8→3 (24 + 3): the readings differ."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(),      # "0"
        nn.Conv2d(2, 2, 3, bias=False), nn.ReLU(),      # "2"
        nn.Conv2d(2, 8, 3, bias=False),                 # "4"
        nn.BatchNorm2d(8), nn.ReLU(),                   # "5"
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 3))                                # "9"


def test_select_layers_readings():
    net = readings_model()
    # "params": conv/linear weights 18, 36, 144, 24 (total 222, half 111): cumulative 18, 54, 198 > 111, 222
    assert select_layers(net, "params") == ["4", "9"]
    # "params+bn": 18, 36, 144, 8, 24 (total 230, half 115): cumulative 198 is past half at "4"
    assert select_layers(net, "params+bn") == ["4", "5", "9"]
    # "tensors": 0.w 2.w 4.w 5.w 5.b 9.w 9.b (7 tensors) → second half [3:] = 5.w 5.b 9.w 9.b
    assert select_layers(net, "tensors") == ["5", "9"]
    # "modules": conv, conv, conv, BN, linear (5) → second half [2:]
    assert select_layers(net, "modules") == ["4", "5", "9"]
    assert select_layers(net, ("9", "0")) == ["9", "0"]


def test_select_layers_errors():
    net = readings_model()
    with pytest.raises(LookupError, match="nope"):
        select_layers(net, ("nope",))
    with pytest.raises(ValueError, match="no weight"):
        select_layers(net, ("1",))
    with pytest.raises(ValueError) as err:
        select_layers(net, "everything")
    assert all(s in str(err.value) for s in LAYER_SELECTIONS)
    with pytest.raises(ValueError, match="no editable layer"):
        select_layers(nn.Sequential(nn.Flatten(), nn.ReLU()))


def test_select_layers_nested_names_follow_named_modules():
    net = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()),
                        nn.Sequential(nn.Conv2d(4, 4, 3), nn.Flatten()), nn.Linear(4 * 8 * 8, 2))
    names = select_layers(net, "modules")
    assert names == ["1.0", "2"]
    assert all(n in dict(net.named_modules()) for n in names)


# ---------------------------------------------------------------------------------------------- BatchNorm

def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_bn_update_changes_statistics_in_the_copy_only():
    net = bn_cnn()
    before, theirs = fingerprint(net), {k: v.clone() for k, v in bn_buffers(net).items()}
    edited = edit_model(net, images(), config=EditConfig(bn="update"))
    assert fingerprint(net) == before
    mine = bn_buffers(edited)
    assert any(not torch.equal(mine[k], theirs[k]) for k in mine if "running_mean" in k)
    assert all(mine[k].item() > theirs[k].item() for k in mine if "num_batches" in k)


def test_bn_frozen_keeps_statistics():
    net = bn_cnn()
    edited = edit_model(net, images(), trigger=white_corner, config=EditConfig(bn="frozen"))
    theirs, mine = bn_buffers(net), bn_buffers(edited)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_default_bn_modes_bdk_frozen_notbdk_update():
    config = EditConfig()
    assert config.bn is None
    assert config.bn_mode(True) == "frozen" and config.bn_mode(False) == "update"
    assert EditConfig(bn="update").bn_mode(True) == "update" and EditConfig(bn="frozen").bn_mode(False) == "frozen"
    net = bn_cnn()
    bdk, nobdk = extract(net, images(), trigger=white_corner), extract(net, images())
    assert (bdk.bdk, bdk.bn_mode) == (True, "frozen") and (nobdk.bdk, nobdk.bn_mode) == (False, "update")
    assert all(torch.equal(v, bn_buffers(net)[k]) for k, v in bn_buffers(bdk.model).items())
    assert any(not torch.equal(v, bn_buffers(net)[k]) for k, v in bn_buffers(nobdk.model).items())


# ------------------------------------------------------------------------------------------ small inputs

@pytest.mark.parametrize("trigger", [None, white_corner], ids=["notBDK", "BDK"])
def test_single_image_gives_finite_weights(trigger):
    """One image: BN2d still has H·W values per channel under "update"; the 1-unit layer has σ = 0 (ε handles it)."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 1))
    edited = edit_model(net.eval(), images(1), trigger=trigger)
    assert all(torch.isfinite(p).all() for p in edited.parameters())
    factors = compute_factors(extract(net, images(1), trigger=trigger))
    assert factors["4"].sigma == 0.0
    assert torch.equal(factors["4"].factor, torch.full((1, 1), EditConfig().lam))


def test_single_image_with_bn1d_update_explains_itself():
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).eval()
    with pytest.raises(ValueError, match="at least 2 images"):
        edit_model(net, images(1))
    edited = edit_model(net, images(1), config=EditConfig(bn="frozen"))
    assert all(torch.isfinite(p).all() for p in edited.parameters())


def test_same_input_gives_bitwise_same_edit():
    net = bn_cnn()
    a = edit_model(net, images(), trigger=white_corner)
    b = edit_model(net, images(), trigger=white_corner)
    assert_same(a, b)


def test_batch_size_does_not_change_frozen_edit():
    net = bn_cnn()
    a = edit_model(net, images(9), trigger=white_corner, config=EditConfig(batch_size=2))
    b = edit_model(net, images(9), trigger=white_corner, config=EditConfig(batch_size=64))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k


# ------------------------------------------------------------------------- a model and trigger never seen

def test_edit_removes_a_backdoor_from_an_unseen_sequential_cnn():
    """A plain Sequential BN CNN learns a 2-class task plus a corner-stripe backdoor to class 0; the default BDK
    edit with 32 clean images and the trigger must remove it (measured: ASR 100 % → 0 %, accuracy kept)."""
    torch.manual_seed(0)
    g = generator(0)
    n, size = 512, 12
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, size, size, generator=g) * 0.5
    x[y == 1, :, 3:9, 3:9] += 0.5                                   # class 1: a bright centre

    def stripe(t: torch.Tensor) -> torch.Tensor:                   # a trigger actedit never shipped
        out = t.clone()
        out[..., 0, :] = 1.0
        return out

    poisoned = torch.arange(n) % 10 == 0
    xt, yt = x.clone(), y.clone()
    xt[poisoned], yt[poisoned] = stripe(x[poisoned]), 0
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(6):
        for idx in torch.randperm(n, generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()

    def asr(model: nn.Module) -> float:
        with torch.no_grad():
            return (model(stripe(x[y == 1])).argmax(1) == 0).float().mean().item()

    assert asr(net) > 0.8, "the toy backdoor did not take"
    before = fingerprint(net)
    edited = edit_model(net, x[:32], trigger=stripe)
    assert fingerprint(net) == before
    assert all(torch.isfinite(p).all() for p in edited.parameters())
    assert asr(edited) <= 0.2, f"ASR {asr(net):.2f} -> {asr(edited):.2f}"
    with torch.no_grad():
        assert (edited(x).argmax(1) == y).float().mean() >= 0.8, "the edit destroyed the clean task"


def test_copy_keeps_mixed_modes():
    net = bn_cnn().train()
    net[1].eval()
    before = fingerprint(net)
    edited = edit_model(net, images(), trigger=white_corner)
    assert fingerprint(net) == before
    assert [m.training for m in edited.modules()] == [m.training for m in net.modules()]


# --- models outside the built-ins: channels-last Linear layers, computed weights, layers the forward never calls ---

class _ChannelsLast(nn.Module):
    """A ConvNeXt-style block: a Linear applied to [N, H, W, C] (features on the last axis)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.mlp = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mlp(self.stem(x).permute(0, 2, 3, 1))          # [N, H, W, 6]
        return self.head(h.mean(dim=(1, 2)))


def test_linear_on_channels_last_input_is_pooled_per_feature():
    torch.manual_seed(0)
    net, x = _ChannelsLast().eval(), torch.rand(4, 1, 8, 8, generator=generator(0))
    config = EditConfig(layers=("mlp",))
    extraction = edit_mod.extract(net, x, config=config)
    factor = compute_factors(extraction, config)["mlp"].factor
    # the factor of output unit j must come from feature j's mean activation (Eq. 2-4), not from image rows
    expected = compute_factors(replace(extraction, activations={"mlp": extraction.activations["mlp"].mean(dim=(0, 1))}),
                               config)["mlp"].factor
    assert factor.shape == (6, 1)
    assert torch.allclose(factor, expected)


def test_computed_weights_are_not_editable():
    net = nn.Sequential(nn.Flatten(), nn.utils.parametrizations.weight_norm(nn.Linear(16, 8)), nn.ReLU(),
                        nn.Linear(8, 3))
    assert "1" not in select_layers(net, "params") + select_layers(net, "modules")
    with pytest.raises(ValueError, match="no weight parameter"):
        select_layers(net, ("1",))


def test_a_layer_the_forward_never_calls_is_named():
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.aux = nn.Linear(16, 3), nn.Linear(16, 400)

        def forward(self, x):
            return self.body(x.flatten(1))

    with pytest.raises(ValueError, match="'aux'.*never called"):
        edit_model(Unused(), torch.rand(4, 1, 4, 4), config=EditConfig(layers=("aux",)))
