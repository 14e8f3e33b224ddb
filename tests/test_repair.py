"""Tests for actedit.repair (§3.1 end, §3.2, Table 8): a copy fine-tuned on D_U (and D_U ⊕ δ under BDK) with the
true labels through the one training loop; the caller's model is untouched."""
from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from actedit.repair import RepairConfig, repair
from actedit.seeding import generator
from conftest import fingerprint  # noqa: E402

repair_mod = importlib.import_module("actedit.repair")   # `actedit.repair` the attribute is the function




def net(dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(4 * 14 * 14, 3)).eval()


def data(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = generator(1)
    return torch.rand(n, 1, 16, 16, generator=g) * 0.8, torch.randint(0, 3, (n,), generator=g)


def corner(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[..., -3:, -3:] = 1.0
    return out


def equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("trigger", [None, corner], ids=["notBDK", "BDK"])
@pytest.mark.parametrize("training", [False, True])
def test_caller_unchanged_copy_returned_mode_kept(trigger, training):
    model = net().train(training)
    before = fingerprint(model)
    x, y = data()
    fixed = repair(model, x, y, trigger=trigger)
    assert fixed is not model
    assert fingerprint(model) == before
    assert fixed.training is training and all(m.training is training for m in fixed.modules())
    assert fingerprint(fixed)[0] != before[0]


@pytest.mark.parametrize("trigger", [None, corner], ids=["notBDK", "BDK"])
def test_trains_on_du_and_triggered_du_with_true_labels(monkeypatch, trigger):
    calls = []
    real_fit = repair_mod.fit

    def spy(model, images, labels, **kwargs):
        calls.append((images.clone(), labels.clone(), kwargs["config"]))
        return real_fit(model, images, labels, **kwargs)

    monkeypatch.setattr(repair_mod, "fit", spy)
    x, y = data()
    repair(net(), x, y, trigger=trigger, lr=0.003, epochs=2)
    (images, labels, config), = calls
    if trigger is None:                   # ¬BDK: clean D_U only
        assert torch.equal(images, x) and torch.equal(labels, y)
    else:                                 # BDK: "one epoch each" on D_U and on D_U with the trigger, true labels
        assert torch.equal(images, torch.cat([x, corner(x)])) and torch.equal(labels, torch.cat([y, y]))
    assert (config.lr, config.epochs, config.schedule) == (0.003, 2, "constant")


def test_paper_defaults():
    assert RepairConfig().lr == 1e-2 and RepairConfig().epochs == 1


def test_zero_epochs_or_zero_lr_keeps_the_weights():
    model = net()
    x, y = data()
    assert equal(repair(model, x, y, epochs=0), model)
    same_params = repair(model, x, y, lr=0.0)
    for (name, a), b in zip(model.named_parameters(), same_params.parameters()):
        assert torch.equal(a, b), name


def test_deterministic():
    x, y = data()
    a = repair(net(), x, y, trigger=corner)
    b = repair(net(), x, y, trigger=corner)
    assert equal(a, b)


def test_repair_ignores_global_rng():
    x, y = data()
    model = net(dropout=0.5)
    torch.manual_seed(1)
    a = repair(model, x, y)
    torch.manual_seed(2)
    b = repair(model, x, y)
    assert equal(a, b)


def test_config_lr_and_epochs_are_honoured(monkeypatch):
    calls = []
    monkeypatch.setattr(repair_mod, "fit", lambda model, images, labels, **kw: calls.append(kw["config"]))
    x, y = data()
    repair(net(), x, y, config=RepairConfig(lr=0.5, epochs=3, batch_size=7))
    assert (calls[0].lr, calls[0].epochs, calls[0].batch_size) == (0.5, 3, 7)


def test_repair_learns():
    """Three epochs at the paper's lr on an easy task fit D_U better than the random model."""
    g = generator(2)
    y = torch.randint(0, 3, (48,), generator=g)
    x = torch.rand(48, 1, 16, 16, generator=g) * 0.3
    for c in range(3):
        x[y == c, :, 5 * c:5 * c + 5, :] += 0.6
    model = net()

    def accuracy(m: nn.Module) -> float:
        with torch.no_grad():
            return (m.eval()(x).argmax(1) == y).float().mean().item()

    assert accuracy(repair(model, x, y, epochs=3, config=RepairConfig(batch_size=8))) > accuracy(model) + 0.3


def test_copy_keeps_mixed_modes():
    model = net().train()
    model[1].eval()
    x, y = data()
    fixed = repair(model, x, y)
    assert [m.training for m in fixed.modules()] == [m.training for m in model.modules()]
