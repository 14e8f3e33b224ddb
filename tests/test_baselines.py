"""Tests of actedit.baselines: one calling convention, copies only, configs respected, 1 and 3 channels."""
import copy
import hashlib
import math

import pytest
import pandas as pd
import torch
from torch import nn

from actedit.baselines import (BASELINES, BDK, CONFIGS, ActFTConfig, BaEraserConfig, BasicFTConfig, Features,
                               NADConfig, act_ft, attention_loss, attention_map, ba_eraser, basic_ft, nad,
                               penultimate_layer, retrain, stage_layers)
from actedit.experiments import VictimSpec
from actedit.models import SmallCNN, build_model
from actedit.triggers import make_trigger


def state_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tiny_model(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(channels, num_classes=4, width=4)


def tiny_data(channels: int, n: int = 24, size: int = 16):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, channels, size, size, generator=g), torch.arange(n) % 4


def quick_config(name: str, **changes):
    """One short epoch of each method; BaEraser's target must be a class of the tiny model."""
    base = {"actFT": ActFTConfig(epochs=1, lr=0.05, batch_size=8),
            "BaEraser": BaEraserConfig(target=1, epochs=1, lr=0.05, batch_size=8),
            "basicFT": BasicFTConfig(epochs=1, lr=0.05, batch_size=8),
            "NAD": NADConfig(teacher=BasicFTConfig(epochs=1, lr=0.05, batch_size=8), epochs=1, lr=0.05,
                             batch_size=8)}[name]
    return type(base)(**{**base.__dict__, **changes})


def run(name: str, model: nn.Module, images, labels, **changes) -> nn.Module:
    trigger = make_trigger("white", channels=images.shape[1], size=images.shape[-1])
    return BASELINES[name](model, images, labels, trigger=trigger, config=quick_config(name, **changes))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_returns_a_changed_copy_and_leaves_the_victim_bitwise_unchanged(name, channels):
    victim = tiny_model(channels).eval()
    images, labels = tiny_data(channels)
    before = state_hash(victim)
    out = run(name, victim, images, labels)
    assert out is not victim
    assert state_hash(victim) == before
    assert not victim.training and not out.training          # the caller's mode is kept on the copy
    assert state_hash(out) != before
    assert out(images[:2]).shape == (2, 4)


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("zero", [{"epochs": 0}, {"lr": 0.0}])
def test_zero_epochs_or_zero_lr_returns_an_identical_model(name, zero):
    victim = tiny_model(1).train()
    images, labels = tiny_data(1)
    out = run(name, victim, images, labels, **zero)
    assert out is not victim
    assert state_hash(out) == state_hash(victim)
    assert out.training


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_deterministic(name):
    victim = tiny_model(1)
    images, labels = tiny_data(1)
    assert state_hash(run(name, victim, images, labels)) == state_hash(run(name, victim, images, labels))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_no_hook_is_left_behind(name):
    victim = tiny_model(1)
    images, labels = tiny_data(1)
    out = run(name, victim, images, labels)
    for module in list(out.modules()) + list(victim.modules()):
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_bdk_methods_require_the_trigger_and_others_ignore_it():
    victim = tiny_model(1)
    images, labels = tiny_data(1)
    for name, method in BASELINES.items():
        if BDK[name]:
            with pytest.raises(ValueError, match="trigger"):
                method(victim, images, labels, config=quick_config(name))
        else:
            a = method(victim, images, labels, config=quick_config(name))
            b = run(name, victim, images, labels)
            assert state_hash(a) == state_hash(b)


def test_configs_registry_and_validation():
    assert set(CONFIGS) == set(BASELINES) == set(BDK)
    for bad in ({"epochs": -1}, {"lr": math.nan}, {"batch_size": 0}, {"lr": -0.1}):
        for name, cls in CONFIGS.items():
            with pytest.raises(ValueError, match=cls.__name__):
                cls(**bad)
    with pytest.raises(ValueError, match="betas"):
        NADConfig(betas=())
    with pytest.raises(ValueError, match="layers"):
        NADConfig(layers=("a",), betas=(1.0, 2.0))
    with pytest.raises(ValueError, match="target"):
        BaEraserConfig(target=-1)
    with pytest.raises(ValueError, match="bound"):
        BaEraserConfig(bound=0)
    with pytest.raises(ValueError, match="magnify"):
        ActFTConfig(magnify=0)


def test_invalid_inputs_are_refused_before_any_work():
    victim = tiny_model(1)
    images, labels = tiny_data(1)
    with pytest.raises(ValueError, match="0, 1"):
        basic_ft(victim, images * 300, labels)
    with pytest.raises(ValueError, match="labels"):
        basic_ft(victim, images, labels[:3])
    with pytest.raises(TypeError, match="nn.Module"):
        basic_ft("model", images, labels)
    with pytest.raises(ValueError, match="not a class"):
        ba_eraser(victim, images, labels, trigger=lambda x: x, config=BaEraserConfig(target=7, batch_size=8))


def test_basic_ft_config_like_copies_a_recipe():
    recipe = VictimSpec(epochs=5, lr=0.3).train_config()
    config = BasicFTConfig.like(recipe)
    assert (config.epochs, config.lr, config.batch_size) == (5, 0.3, recipe.batch_size)
    assert BasicFTConfig.like(recipe, epochs=1).epochs == 1


def test_attention_map_matches_the_nad_reference_formula():
    torch.manual_seed(0)
    fm = torch.randn(3, 5, 4, 4)
    am = fm.abs().pow(2).sum(dim=1, keepdim=True)                         # NAD code: AT.attention_map
    am = am / (am.norm(dim=(2, 3), keepdim=True) + 1e-6)
    assert torch.allclose(attention_map(fm), am.flatten(1))
    other = torch.randn(3, 5, 4, 4)
    assert torch.allclose(attention_loss(fm, other), torch.nn.functional.mse_loss(am.flatten(1), attention_map(other)))
    with pytest.raises(ValueError, match="N, C, H, W"):
        attention_map(torch.randn(3, 5))


def test_nad_uses_a_given_teacher_and_leaves_it_unchanged():
    victim = tiny_model(1)
    images, labels = tiny_data(1)
    config = quick_config("NAD")
    teacher = basic_ft(victim, images, labels, config=config.teacher)
    before = state_hash(teacher)
    given = nad(victim, images, labels, config=config, teacher=teacher)
    assert state_hash(teacher) == before and teacher.training == victim.training
    assert state_hash(given) == state_hash(nad(victim, images, labels, config=config))


def test_stage_and_penultimate_layers_by_name():
    sample = torch.rand(1, 3, 32, 32)
    assert stage_layers(build_model("cnn", num_classes=10, channels=3, size=32), sample) == ["2", "9", "16"]
    resnet = build_model("resnet18", num_classes=10, channels=3, size=32)
    assert stage_layers(resnet, sample) == ["layer2", "layer3", "layer4"]
    assert penultimate_layer(resnet) == "fc"
    assert penultimate_layer(SmallCNN(1, 10)) == "19"
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    with pytest.raises(ValueError, match="stage"):
        stage_layers(flat, sample)


def test_features_keeps_the_graph_and_removes_hooks_on_error():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(RuntimeError, match="boom"):
        with Features(net, ["1", "3"], input=False):
            raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in net.modules())
    with Features(net, ["3"], input=True) as f:
        net(torch.rand(2, 1, 4, 4)).sum().backward()
    assert f["3"].shape == (2, 8) and f["3"].grad_fn is not None
    with pytest.raises(LookupError):
        Features(net, ["nope"])


def test_act_ft_magnifies_the_unlearning_trigger():
    calls = []

    class Spy:
        def __call__(self, x):
            return x

        def magnified(self, factor):
            calls.append(factor)
            return self

    victim = tiny_model(1)
    images, labels = tiny_data(1)
    act_ft(victim, images, labels, trigger=Spy(), config=ActFTConfig(epochs=1, batch_size=8))
    assert calls == [3.0]
    ba_eraser(victim, images, labels, trigger=Spy(), config=BaEraserConfig(target=1, batch_size=8))
    assert calls == [3.0]                                    # BaEraser uses the trigger as given (magnify = 1)


def test_retrain_is_get_retrained(monkeypatch):
    seen = {}

    def fake(spec, **kwargs):
        seen.update(spec=spec, **kwargs)
        return "R"

    monkeypatch.setattr("actedit.baselines.retraining.get_retrained", fake)
    assert retrain(VictimSpec(seed=3)) == "R" and seen["spec"].seed == 3
    with pytest.raises(TypeError, match="VictimSpec"):
        retrain("spec")


def tiny_victim(channels: int = 1):
    from actedit.data import ImageSet, Splits
    from actedit.experiments import Victim
    from actedit.poisoning import PoisonConfig, poison

    g = torch.Generator().manual_seed(2)

    def part(n):
        return ImageSet(torch.rand(n, channels, 16, 16, generator=g), torch.arange(n) % 4)

    splits = Splits(name="tiny", num_classes=4, channels=channels, size=16, top_k=1,
                    class_names=("a", "b", "c", "d"), train=part(40), unseen=part(24), test=part(20))
    trigger = make_trigger("white", channels=channels, size=16)
    spec = VictimSpec(dataset="fashion-mnist", target=1, epochs=1, batch_size=8)
    poisoned = poison(splits.train, trigger, PoisonConfig(rate=0.1, target=1))
    return Victim(spec, tiny_model(channels).eval(), splits, trigger, trigger.magnified(3), poisoned)


def test_run_comparison_scores_every_method_and_leaves_the_victim_alone():
    from actedit.baselines import METHODS, run_comparison, victim_configs

    victim = tiny_victim()
    before = state_hash(victim.model)
    configs = victim_configs(victim)
    assert configs["BaEraser"].target == 1 and configs["basicFT"].epochs == 1 and configs["NAD"].epochs == 1
    fast = {"actFT": ActFTConfig(batch_size=8), "BaEraser": BaEraserConfig(target=1, batch_size=8)}
    rows = run_comparison(victim, tiny_model(1).eval(), n_ours=8, n_baselines=16, configs=fast, n_eval=12)
    assert state_hash(victim.model) == before
    assert list(rows["method"]) == ["victim", "retrained"] + [m for m, _ in METHODS]
    assert rows["score"].iloc[:2].isna().all()
    assert (rows["score"].iloc[2:].notna() == (rows["asr"].iloc[0] > 0)).all()    # Eq. 6 needs ASR^V > 0
    assert list(rows["samples"].iloc[2:]) == [16, 16, 8, 16, 16, 8]
    assert set(rows.columns) == {"method", "bdk", "samples", "asr", "acc", "ctca", "score", "seconds"}
    with pytest.raises(ValueError, match="unknown method"):
        run_comparison(victim, victim.model, methods=[("ours", None)])


def test_run_comparison_through_a_cache_trains_each_baseline_once(tmp_path, monkeypatch):
    import actedit.baselines.comparison as comparison
    from actedit.baselines import run_comparison
    from actedit.cache import Cache

    victim = tiny_victim()
    reference = tiny_model(1).eval()
    fast = {"actFT": ActFTConfig(batch_size=8), "BaEraser": BaEraserConfig(target=1, batch_size=8)}
    kwargs = dict(n_ours=8, n_baselines=16, configs=fast, n_eval=12)
    plain = run_comparison(victim, reference, **kwargs)
    first = run_comparison(victim, reference, cache=Cache(tmp_path), **kwargs)
    columns = ["method", "bdk", "samples", "asr", "acc", "ctca", "score"]
    pd.testing.assert_frame_equal(first[columns], plain[columns])   # caching changes no number

    calls = []
    for name, method in list(comparison._RUN.items()):
        monkeypatch.setitem(comparison._RUN, name, lambda model, *a, _n=name, **k: (calls.append(_n),
                                                                                    copy.deepcopy(model))[1])
    monkeypatch.setattr(comparison, "nad", lambda model, *a, **k: (calls.append("NAD"), copy.deepcopy(model))[1])
    again = run_comparison(victim, reference, cache=Cache(tmp_path), **kwargs)
    assert calls == []                                                 # every baseline came from the cache
    pd.testing.assert_frame_equal(again[columns], first[columns])
    baselines = again["method"].isin(["actFT", "BaEraser", "basicFT", "NAD"])
    assert (again.loc[baselines, "seconds"] == first.loc[baselines, "seconds"]).all()   # the recorded times

    # another victim (other weights, same spec) is another entry: the baselines train again
    other = tiny_victim()
    with torch.no_grad():
        next(other.model.parameters()).add_(0.01)
    run_comparison(other, reference, cache=Cache(tmp_path), **kwargs)
    assert sorted(calls) == ["BaEraser", "NAD", "actFT", "basicFT"]


def test_fit_cached_trains_once_per_model_data_and_recipe(tmp_path, monkeypatch):
    import actedit.training as training
    from actedit.cache import Cache
    from actedit.training import TrainConfig, fit_cached

    images, labels = tiny_data(1)
    config = TrainConfig(epochs=1, batch_size=8)
    torch.manual_seed(0)
    first = tiny_model(1)
    initial = copy.deepcopy(first)
    meta = fit_cached(first, images, labels, config=config, key={"name": "demo"}, cache=Cache(tmp_path),
                      progress=False)
    assert len(meta["seconds"]) == 1 and state_hash(first) != state_hash(initial)

    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("trained although cached"))
    second = copy.deepcopy(initial)
    fit_cached(second, images, labels, config=config, key={"name": "demo"}, cache=Cache(tmp_path), progress=False)
    assert state_hash(second) == state_hash(first)

    for changed in ({"images": images.flip(0)}, {"config": TrainConfig(epochs=2, batch_size=8)}):
        with pytest.raises(pytest.fail.Exception, match="trained although cached"):
            fit_cached(copy.deepcopy(initial), changed.get("images", images), labels,
                       config=changed.get("config", config), key={"name": "demo"}, cache=Cache(tmp_path),
                       progress=False)
    with pytest.raises(TypeError, match="key must be a dict"):
        fit_cached(copy.deepcopy(initial), images, labels, key="demo", cache=Cache(tmp_path))


def test_score_table_and_best_methods_from_tidy_frames():
    import pandas as pd

    from actedit import paper
    from actedit.baselines import best_methods, score_table

    p3 = paper.table3()
    assert (best_methods(p3, "trigger", True) == "ours").sum() == 7          # the paper: 7 of 8 under BDK
    assert (best_methods(paper.table4(), "trigger", False) == "ours").sum() == 7
    ours = pd.DataFrame([
        {"trigger": "white", "method": "victim", "bdk": None, "metric": "asr", "mean": 95.0, "std": float("nan")},
        {"trigger": "white", "method": "victim", "bdk": None, "metric": "acc", "mean": 85.0, "std": float("nan")},
        {"trigger": "white", "method": "actFT", "bdk": True, "metric": "score", "mean": 80.0, "std": 1.0},
        {"trigger": "white", "method": "ours", "bdk": True, "metric": "score", "mean": 90.0, "std": float("nan")},
        {"trigger": "white", "method": "ours", "bdk": False, "metric": "score", "mean": 10.0, "std": float("nan")},
    ])
    table = score_table(p3, ours, "trigger", True, labels={"white": "(a) White"})
    row = table.loc["(a) White"]
    assert row[("victim (ASR/ACC)", "ours")] == "95.00/85.00" and row[("victim (ASR/ACC)", "paper")] == "94.53/70.50"
    assert row[("actFT", "ours")] == "80.00 ± 1.00" and row[("BaEraser", "ours")] == "–"
    assert row[("best", "ours")] == "ours" and row[("best", "paper")] == "actFT"
    assert len(table) == 8
