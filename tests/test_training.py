"""Tests for actedit.training.fit, the one training loop: bitwise reproducibility, history, errors, mode."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from actedit.seeding import generator, set_seed
from actedit.training import History, TrainConfig, fit, preserved_modes

CONFIG = TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=0)


def data(n: int = 72) -> tuple[torch.Tensor, torch.Tensor]:
    g = generator(3)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def model(seed: int = 0) -> nn.Module:
    set_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def trained(config: TrainConfig = CONFIG, init_seed: int = 0, **kw) -> tuple[dict, History]:
    m = model(init_seed)
    x, y = data()
    set_seed(config.seed)     # Dropout draws from the global RNG (see test_fit_ignores_global_rng)
    history = fit(m, x, y, config=config, progress=False, **kw)
    return {k: v.clone() for k, v in m.state_dict().items()}, history


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("config", [CONFIG, TrainConfig(epochs=2, batch_size=16, optimizer="adam", lr=1e-3),
                                    TrainConfig(epochs=1, batch_size=10, augment=True, schedule="constant")],
                         ids=["sgd-cosine", "adam", "augment"])
def test_same_seed_bitwise_identical(config):
    a, ha = trained(config)
    b, hb = trained(config)
    assert equal(a, b)
    assert ha.loss == hb.loss
    assert not equal(a, model(0).state_dict())


def test_different_seed_differs():
    a, _ = trained(CONFIG)
    b, _ = trained(TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=1))
    assert not equal(a, b)


def test_zero_epochs_and_empty_data_leave_the_model_unchanged():
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x, y = data()
    history = fit(m, x, y, config=TrainConfig(epochs=0), progress=False)
    assert history.loss == [] and history.seconds == [] and history.total_seconds == 0
    assert equal(before, m.state_dict())
    fit(m, x[:0], y[:0], config=CONFIG, progress=False)
    assert equal(before, m.state_dict())


def test_history_lengths():
    _, history = trained(TrainConfig(epochs=3, batch_size=32))
    assert len(history.loss) == len(history.seconds) == 3
    assert all(math.isfinite(v) and v > 0 for v in history.loss)
    assert all(s >= 0 for s in history.seconds)
    assert history.total_seconds == pytest.approx(sum(history.seconds))


def test_loss_and_transform_hooks_are_used_and_deterministic():
    calls = []

    def loss(m, x, y):
        calls.append(len(x))
        return nn.functional.cross_entropy(m(x), y)

    def transform(x, y, g):
        noise = torch.rand(x.shape, generator=g) * 0.01
        return (x + noise).clamp(0, 1), y

    a, _ = trained(CONFIG, loss=loss, transform=transform)
    assert calls == [16, 16, 16, 16, 8] * 2       # 72 images, batches of 16, two epochs
    b, _ = trained(CONFIG, loss=loss, transform=transform)
    assert equal(a, b)
    c, _ = trained(CONFIG)
    assert not equal(a, c)


@pytest.mark.parametrize("training", [False, True])
def test_non_finite_loss_raises_and_mode_is_restored(training):
    m = model().train(training)
    x, y = data()

    def bad(model, x, y):
        return nn.functional.cross_entropy(model(x), y) * math.nan

    with pytest.raises(FloatingPointError, match="loss became nan"):
        fit(m, x, y, config=CONFIG, loss=bad, progress=False)
    assert m.training is training
    assert all(mod.training is training for mod in m.modules())


@pytest.mark.parametrize("training", [False, True])
def test_mode_restored_after_training(training):
    m = model().train(training)
    x, y = data()
    fit(m, x, y, config=TrainConfig(epochs=1), progress=False)
    assert all(mod.training is training for mod in m.modules())


def test_trains_in_train_mode():
    m = model().eval()
    modes = []
    m[1].register_forward_hook(lambda mod, i, o: modes.append(mod.training))
    x, y = data()
    fit(m, x, y, config=TrainConfig(epochs=1, batch_size=36), progress=False)
    assert modes == [True, True]


def test_learns_a_separable_task():
    g = generator(0)
    y = torch.randint(0, 2, (128,), generator=g)
    x = torch.rand(128, 1, 8, 8, generator=g) * 0.5
    x[y == 1] += 0.5
    m = model()
    history = fit(m, x, y, config=TrainConfig(epochs=4, batch_size=16, lr=0.05), progress=False)
    assert history.loss[-1] < history.loss[0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=-1), "epochs"), (dict(epochs=1.5), "epochs"), (dict(batch_size=0), "batch_size"),
    (dict(lr=-1.0), "lr"), (dict(lr=math.inf), "lr"), (dict(momentum=math.nan), "momentum"),
    (dict(optimizer="rmsprop"), "sgd, adam"), (dict(schedule="linear"), "cosine, constant, step"),
    (dict(schedule="step", milestones=(3, 2)), "increasing"), (dict(schedule="step", milestones=(0,)), ">= 1"),
    (dict(schedule="step", milestones=[2]), "tuple"), (dict(milestones=(2,)), "need schedule='step'")])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_shape_errors():
    m = model()
    x, y = data()
    with pytest.raises(ValueError, match="labels"):
        fit(m, x, y[:-1], config=CONFIG, progress=False)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        fit(m, x[0], y, config=CONFIG, progress=False)


def test_fit_ignores_global_rng():
    """Same model, data and TrainConfig.seed → same weights, whatever the caller did to the global RNG."""
    results = []
    for global_seed in (1, 2):
        m = model(0)
        x, y = data()
        torch.manual_seed(global_seed)
        fit(m, x, y, config=CONFIG, progress=False)
        results.append(m.state_dict())
    assert equal(*results)


def test_fit_restores_mixed_modes():
    m = model().train()
    m[1].eval()                                   # frozen-BN style
    before = [mod.training for mod in m.modules()]
    x, y = data()
    fit(m, x, y, config=TrainConfig(epochs=1), progress=False)
    assert [mod.training for mod in m.modules()] == before


def test_preserved_modes_restores_every_module_even_after_an_error():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.BatchNorm1d(2)).eval()
    net[1].train()
    flags = [m.training for m in net.modules()]
    with preserved_modes(net):
        net.train()
    assert [m.training for m in net.modules()] == flags
    with pytest.raises(RuntimeError):
        with preserved_modes(net):
            net.eval()
            raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == flags


@pytest.mark.parametrize("config, expected", [
    # 72 images in batches of 16: 5 steps an epoch, 3 epochs, 15 steps in all
    (TrainConfig(epochs=3, batch_size=16, lr=0.1, schedule="constant"), [0.1] * 15),
    (TrainConfig(epochs=3, batch_size=16, lr=0.1), [0.1 * 0.5 * (1 + math.cos(math.pi * s / 15)) for s in range(15)]),
    # NAD's adjust_learning_rate: 0.1 for epochs 0-1, 0.01 from epoch 2
    (TrainConfig(epochs=3, batch_size=16, lr=0.1, schedule="step", milestones=(2,)), [0.1] * 10 + [0.1 * 0.1] * 5),
    (TrainConfig(epochs=3, batch_size=16, lr=0.1, schedule="step", milestones=(1, 2)),
     [0.1] * 5 + [0.1 * 0.1] * 5 + [0.1 * 0.1 ** 2] * 5),
    (TrainConfig(epochs=3, batch_size=16, lr=0.1, schedule="step"), [0.1] * 15),
], ids=["constant", "cosine", "step-nad", "step-two", "step-none"])
def test_each_step_runs_at_its_schedules_learning_rate(config, expected, monkeypatch):
    import actedit.training as training

    seen = []
    step = training._SGD.step

    def recording(self, lr):
        seen.append(lr)
        return step(self, lr)

    monkeypatch.setattr(training._SGD, "step", recording)
    trained(config)
    assert seen == pytest.approx(expected, rel=1e-12, abs=0)


def test_the_loops_sgd_is_torch_optim_sgd_bit_for_bit():
    """fit's SGD (torch.optim.sgd.sgd without the optimizer class) against torch.optim.SGD stepped by LambdaLR:
    equal weights after every step, with momentum, weight decay, a cosine rate and a parameter that gets no gradient
    on some steps (SGD then skips it and keeps its momentum)."""
    from actedit.training import _SGD

    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    theirs = copy.deepcopy(ours)
    opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / 12)))
    sgd = _SGD(list(ours.parameters()), momentum=0.9, weight_decay=5e-4)
    for s in range(12):
        x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
        for net, zero in ((ours, sgd.zero_grad), (theirs, opt.zero_grad)):
            zero()
            nn.functional.cross_entropy(net(x), y).backward()
            if s % 4 == 1:   # the first layer's bias gets no gradient on these steps
                net[0].bias.grad = None
        sgd.step(0.1 * 0.5 * (1 + math.cos(math.pi * s / 12)))
        opt.step()
        sched.step()
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values())), s


def test_fit_does_not_import_torch_dynamo():
    """What the loop's own SGD is for: torch.optim's optimizer classes import torch._dynamo (~2 s per process)."""
    import subprocess
    import sys

    code = ("import sys, torch; from actedit.training import fit, TrainConfig; "
            "m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)); "
            "fit(m, torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,)), config=TrainConfig(epochs=1), progress=False); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_a_step_schedule_without_milestones_trains_like_the_constant_one():
    a, _ = trained(TrainConfig(epochs=2, batch_size=16, lr=0.05, schedule="step"))
    b, _ = trained(TrainConfig(epochs=2, batch_size=16, lr=0.05, schedule="constant"))
    c, _ = trained(TrainConfig(epochs=2, batch_size=16, lr=0.05, schedule="step", milestones=(1,)))
    assert equal(a, b) and not equal(a, c)
