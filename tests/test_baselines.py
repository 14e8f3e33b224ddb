"""Tests of actedit.baselines: one calling convention, copies only, configs respected, 1 and 3 channels."""
import copy
import math
from dataclasses import fields, replace

import pytest
import pandas as pd
import torch
from torch import nn

from actedit.baselines import (ActFTConfig, BaEraserConfig, BasicFTConfig, Features, NADConfig, act_ft,
                               attention_loss, attention_map, ba_eraser, basic_ft, nad, penultimate_layer, stage_layers)
from actedit.experiments import METHODS, VictimSpec, run_method, victim_configs, with_epochs
from actedit.models import SmallCNN, build_model
from actedit.training import TrainConfig
from actedit.triggers import make_trigger
from conftest import fingerprint, no_hooks, tiny_data, tiny_model, tiny_victim  # noqa: E402

BASELINES = [name for name in METHODS if not name.startswith("ours")]
QUICK = TrainConfig(epochs=1, lr=0.05, batch_size=8)








def quick_config(name: str, **train_changes):
    """One short epoch of each method (``train_changes`` alter it); BaEraser's target must be a class of the tiny
    model."""
    train = replace(QUICK, **train_changes)
    return {"actFT": ActFTConfig(train=train), "BaEraser": BaEraserConfig(target=1, train=train),
            "basicFT": BasicFTConfig(train=train), "NAD": NADConfig(teacher=BasicFTConfig(train=train), train=train)}[name]


def run(name: str, model: nn.Module, images, labels, **changes) -> nn.Module:
    trigger = make_trigger("white", channels=images.shape[1], size=images.shape[-1])
    return run_method(name, model, images, labels, trigger=trigger, config=quick_config(name, **changes))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_returns_a_changed_copy_and_leaves_the_victim_bitwise_unchanged(name, channels):
    victim = tiny_model(channels).eval()
    images, labels = tiny_data(channels)
    before = fingerprint(victim)
    out = run(name, victim, images, labels)
    assert out is not victim
    assert fingerprint(victim) == before
    assert not victim.training and not out.training          # the caller's mode is kept on the copy
    assert fingerprint(out) != before
    assert out(images[:2]).shape == (2, 4)


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("zero", [{"epochs": 0}, {"lr": 0.0}])
def test_zero_epochs_or_zero_lr_returns_an_identical_model(name, zero):
    victim = tiny_model(1).train()
    images, labels = tiny_data(1)
    out = run(name, victim, images, labels, **zero)
    assert out is not victim
    assert fingerprint(out) == fingerprint(victim)
    assert out.training


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_deterministic(name):
    victim = tiny_model(1)
    images, labels = tiny_data(1)
    assert fingerprint(run(name, victim, images, labels)) == fingerprint(run(name, victim, images, labels))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_no_hook_is_left_behind(name):
    victim = tiny_model(1)
    images, labels = tiny_data(1)
    out = run(name, victim, images, labels)
    assert no_hooks(out) and no_hooks(victim)


def test_bdk_methods_require_the_trigger_and_others_ignore_it():
    victim = tiny_model(1)
    images, labels = tiny_data(1)
    for name in BASELINES:
        method = METHODS[name]
        if method.needs_trigger:
            with pytest.raises(ValueError, match="trigger"):
                method.run(victim, images, labels, config=quick_config(name))
            with pytest.raises(ValueError, match="trigger"):
                run_method(name, victim, images, labels, config=quick_config(name))
        else:
            a = method.run(victim, images, labels, config=quick_config(name))
            b = run(name, victim, images, labels)
            assert fingerprint(a) == fingerprint(b)


def test_configs_registry_and_validation():
    assert set(METHODS) == {"ours", "ours +repair", "actFT", "BaEraser", "basicFT", "NAD"}
    assert {name: METHODS[name].needs_trigger for name in BASELINES} == {"actFT": True, "BaEraser": True,
                                                                         "basicFT": False, "NAD": False}
    for bad in ({"epochs": -1}, {"lr": math.nan}, {"batch_size": 0}, {"lr": -0.1}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    for name in BASELINES:
        cls = type(METHODS[name].config)
        with pytest.raises(TypeError, match=f"{cls.__name__}.train"):
            cls(train={"epochs": 1})
        assert with_epochs(METHODS[name].config, 7).train.epochs == 7
    assert with_epochs(NADConfig(), 2).teacher.train.epochs == 2
    with pytest.raises(ValueError, match="unknown method"):
        run_method("retraining", tiny_model(1), *tiny_data(1))
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
        ba_eraser(victim, images, labels, trigger=lambda x: x, config=BaEraserConfig(target=7, train=QUICK))


def _schedule(epochs, batch_size, lr, schedule, milestones, momentum, weight_decay, augment, seed=0):
    return dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                optimizer="sgd", schedule=schedule, milestones=milestones, augment=augment, seed=seed)


# The library defaults, one row per method: each schedule (by attribute path) and the method's other settings.
REFERENCE = [
    # BackdoorBench FT defense: SCLBD/BackdoorBench config/defense/ft/config.yaml (epochs 100, batch_size 256,
    # lr 0.01, CosineAnnealingLR, sgd_momentum 0.9, wd 5e-4) and defense/ft.py (the training transform)
    ("basicFT", {"train": _schedule(100, 256, 0.01, "cosine", (), 0.9, 5e-4, True)}, {}),
    # bboylyg/NAD config.py (epochs 20, batch_size 64, lr 0.1, momentum 0.9, weight_decay 1e-4, beta 500/1000/1000,
    # p 2), utils/util.py adjust_learning_rate (0.01 from epoch 2), README (teacher: 5~10 epochs of fine-tuning)
    ("NAD", {"teacher.train": _schedule(10, 64, 0.1, "step", (2,), 0.9, 1e-4, True),
             "train": _schedule(20, 64, 0.1, "step", (2,), 0.9, 1e-4, True)},
     {"betas": (500.0, 1000.0, 1000.0), "p": 2.0, "layers": None}),
    # the paper's own description (Tables 6/7: ~1/18 of basicFT's time, ACC kept): one gentle pass
    ("actFT", {"train": _schedule(1, 128, 0.01, "cosine", (), 0.9, 5e-4, False)},
     {"lam": 1.0, "magnify": 3.0, "layer": None}),
    # ours (no reference schedule could be read): one pass
    ("BaEraser", {"train": _schedule(1, 128, 0.01, "cosine", (), 0.9, 5e-4, False)},
     {"target": 2, "bound": 3.0, "clean_weight": 1.0, "magnify": 1.0}),
]


@pytest.mark.parametrize("name, schedules, settings", REFERENCE, ids=[row[0] for row in REFERENCE])
def test_library_defaults_are_the_cited_reference_schedules(name, schedules, settings):
    from dataclasses import asdict

    config = type(METHODS[name].config)()
    assert config == METHODS[name].config                          # the registry holds the defaults
    for path, expected in schedules.items():
        train = config
        for attribute in path.split("."):
            train = getattr(train, attribute)
        assert asdict(train) == expected, path
    assert {k: getattr(config, k) for k in settings} == settings
    assert {f.name for f in fields(config)} == {p.split(".")[0] for p in schedules} | set(settings) | (
        {"teacher"} if name == "NAD" else set())                  # every setting is in the table


def _short(epochs, lr, batch_size, seed):
    return TrainConfig(**_schedule(epochs, batch_size, lr, "cosine", (), 0.9, 5e-4, False, seed))


@pytest.mark.parametrize("spec", [VictimSpec(seed=3), tiny_victim().spec], ids=["base", "tiny"])
def test_victim_configs_give_the_books_short_recipe(spec):
    from types import SimpleNamespace

    configs = victim_configs(SimpleNamespace(spec=spec))
    recipe = _short(spec.epochs, spec.lr, spec.batch_size, spec.seed)   # base victim: 3 epochs, lr 0.02, batch 128
    assert configs == {
        "basicFT": BasicFTConfig(train=recipe),
        "NAD": NADConfig(teacher=BasicFTConfig(train=recipe), train=_short(spec.epochs, spec.lr, spec.batch_size, 0),
                         betas=(500.0, 1000.0, 1000.0), p=2.0, layers=None),
        "actFT": ActFTConfig(train=_short(1, 0.01, 128, 0), lam=1.0, magnify=3.0, layer=None),
        "BaEraser": BaEraserConfig(target=spec.target, train=_short(1, 0.01, 128, 0), bound=3.0, clean_weight=1.0,
                                   magnify=1.0)}
    assert configs["basicFT"] != BasicFTConfig() and configs["NAD"] != NADConfig()    # not the reference schedules


def test_victim_configs_take_nothing_from_the_config_defaults(monkeypatch):
    victim = tiny_victim()
    expected = victim_configs(victim)
    missing = object()      # any default victim_configs relied on would now be this: refused, or a different config
    for cls in (TrainConfig, BasicFTConfig, NADConfig, ActFTConfig, BaEraserConfig):
        monkeypatch.setattr(cls.__init__, "__defaults__", (missing,) * len(cls.__init__.__defaults__))
    assert victim_configs(victim) == expected


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
    before = fingerprint(teacher)
    given = nad(victim, images, labels, config=config, teacher=teacher)
    assert fingerprint(teacher) == before and teacher.training == victim.training
    assert fingerprint(given) == fingerprint(nad(victim, images, labels, config=config))


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
    assert no_hooks(net)
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
    act_ft(victim, images, labels, trigger=Spy(), config=ActFTConfig(train=QUICK))
    assert calls == [3.0]
    ba_eraser(victim, images, labels, trigger=Spy(), config=BaEraserConfig(target=1, train=QUICK))
    assert calls == [3.0]                                    # BaEraser uses the trigger as given (magnify = 1)




def test_run_comparison_scores_every_method_and_leaves_the_victim_alone():
    from actedit.experiments import run_comparison
    from actedit.paper import TABLE_METHODS

    victim = tiny_victim()
    before = fingerprint(victim.model)
    configs = victim_configs(victim)
    assert configs["BaEraser"].target == 1 and configs["basicFT"].train.epochs == 1 and configs["NAD"].train.epochs == 1
    fast = {"actFT": ActFTConfig(train=replace(ActFTConfig().train, batch_size=8)),
            "BaEraser": BaEraserConfig(target=1, train=replace(BaEraserConfig().train, batch_size=8))}
    rows = run_comparison(victim, tiny_model(1).eval(), n_ours=8, n_baselines=16, configs=fast, n_eval=12)
    assert fingerprint(victim.model) == before
    assert list(rows["method"]) == ["victim", "retrained"] + [m for m, _ in TABLE_METHODS]
    assert rows["score"].iloc[:2].isna().all()
    assert (rows["score"].iloc[2:].notna() == (rows["asr"].iloc[0] > 0)).all()    # Eq. 6 needs ASR^V > 0
    assert list(rows["samples"].iloc[2:]) == [16, 16, 8, 16, 16, 8]
    assert set(rows.columns) == {"method", "bdk", "samples", "asr", "acc", "ctca", "score", "seconds", "draw"}
    with pytest.raises(ValueError, match="unknown method"):
        run_comparison(victim, victim.model, methods=[("ours", None)])
    with pytest.raises(ValueError, match="unknown method"):
        run_comparison(victim, victim.model, methods=[("NAD", True)])     # NAD works without δ
    # the edit + repair and timing options of Tables 6/7: every method on one given D_U, the edit timed repeatedly
    from actedit.experiments import Timing
    x, y = victim.unseen(12)
    timed_rows = run_comparison(victim, tiny_model(1).eval(), methods=[("ours", True), ("ours +repair", False)],
                                unseen=(x, y), timing=Timing(repeats=3, warmup=1), n_eval=12)
    assert list(timed_rows["samples"].iloc[2:]) == [12, 12] and (timed_rows["seconds"].iloc[2:] > 0).all()


def test_run_comparison_through_a_cache_trains_each_baseline_once(tmp_path, monkeypatch):
    import actedit.experiments as experiments
    from actedit.cache import Cache
    from actedit.experiments import run_comparison

    victim = tiny_victim()
    reference = tiny_model(1).eval()
    fast = {"actFT": ActFTConfig(train=replace(ActFTConfig().train, batch_size=8)),
            "BaEraser": BaEraserConfig(target=1, train=replace(BaEraserConfig().train, batch_size=8))}
    kwargs = dict(n_ours=8, n_baselines=16, configs=fast, n_eval=12)
    plain = run_comparison(victim, reference, **kwargs)
    first = run_comparison(victim, reference, cache=Cache(tmp_path), **kwargs)
    columns = ["method", "bdk", "samples", "asr", "acc", "ctca", "score"]
    pd.testing.assert_frame_equal(first[columns], plain[columns])   # caching changes no number

    calls = []
    for name in BASELINES:
        fake = lambda model, *a, _n=name, **k: (calls.append(_n), copy.deepcopy(model))[1]  # noqa: E731
        monkeypatch.setitem(experiments.METHODS, name, replace(experiments.METHODS[name], run=fake))
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


def test_run_comparison_draws_d_u_per_draw_with_the_edits_images_among_the_baselines(monkeypatch):
    """draw 0 is the pool's first images (the chapters' default); draw k ≥ 1 another seeded prefix; in every draw
    the edit's images are the first of the baselines' (§4.1's D_U is one set)."""
    import actedit.experiments as experiments
    from actedit.experiments import draw_unseen, run_comparison

    victim = tiny_victim()
    seen = {}

    def spy(name):
        def run(model, images, labels, **kwargs):
            seen.setdefault(name, []).append(images.clone())
            return copy.deepcopy(model)
        return run

    for name in ("ours", "basicFT"):
        monkeypatch.setitem(experiments.METHODS, name, replace(experiments.METHODS[name], run=spy(name)))
    methods = [("ours", False), ("basicFT", False)]
    evaluated = []
    monkeypatch.setattr(experiments.Victim, "evaluate",
                        lambda self, model=None, **kw: evaluated.append(model) or {"asr": 50.0, "acc": 80.0,
                                                                                  "ctca": 70.0, "per_class": []})
    rows = run_comparison(victim, tiny_model(1).eval(), methods=methods, n_ours=8, n_baselines=16, n_eval=12,
                          draws=[0, 1, 2])
    assert rows["method"].tolist()[:2] == ["victim", "retrained"] and rows["draw"][:2].isna().all()
    assert rows["method"].tolist()[2:] == ["ours", "basicFT"] * 3
    assert rows["draw"][2:].tolist() == [0, 0, 1, 1, 2, 2]
    # the victim and R are evaluated once for all draws; each draw's two unlearned models once each
    assert len(evaluated) == 2 + 3 * 2
    ours = [x for x in seen["ours"]]
    ft = seen["basicFT"]
    assert len(ft) == 3 and all(x.shape[0] == 16 for x in ft)
    assert torch.equal(ft[0], victim.unseen(16)[0])
    pool = victim.splits.unseen
    assert torch.equal(ft[1], draw_unseen(pool.images, pool.labels, 16, 1)[0])
    assert not torch.equal(ft[1], ft[0]) and not torch.equal(ft[2], ft[1])
    for draw in range(3):   # the edit runs (timed, after a warm-up) on the first 8 of the baselines' 16
        assert any(torch.equal(x, ft[draw][:8]) for x in ours)
    for bad in ([-1], [], [1, 1], 2, [True]):
        with pytest.raises(ValueError, match="draws"):
            run_comparison(victim, victim.model, methods=methods, draws=bad)
    with pytest.raises(ValueError, match="draws"):
        run_comparison(victim, victim.model, methods=methods, draws=[0, 1], unseen=victim.unseen(8))


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
    assert len(meta["seconds"]) == 1 and fingerprint(first) != fingerprint(initial)

    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("trained although cached"))
    second = copy.deepcopy(initial)
    fit_cached(second, images, labels, config=config, key={"name": "demo"}, cache=Cache(tmp_path), progress=False)
    assert fingerprint(second) == fingerprint(first)

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
    from actedit.report import best_methods, score_table

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


def test_budget_configs_cut_the_reference_schedule_and_end_with_it():
    from actedit.experiments import budget_configs

    assert [e for e, _ in budget_configs(BasicFTConfig())] == [1, 3, 10, 30, 100]
    nad_budgets = budget_configs(NADConfig())
    assert [e for e, _ in nad_budgets] == [1, 3, 10, 20]
    assert nad_budgets[0][1].teacher.train.epochs == 1 and nad_budgets[-1][1] == NADConfig()   # the reference itself
    assert [e for e, _ in budget_configs(ActFTConfig())] == [1]                   # one pass: nothing below it
    # a cut keeps everything but the epochs
    cut = budget_configs(BasicFTConfig(), budgets=(3,))[0][1]
    assert cut.train == replace(BasicFTConfig().train, epochs=3)


def test_budget_curves_score_each_budget_cache_the_baselines_and_find_the_time_to_the_edits_score(tmp_path):
    from actedit.cache import Cache
    from actedit.experiments import budget_curves, time_to_score

    victim = tiny_victim()
    before = fingerprint(victim.model)
    quick = TrainConfig(epochs=2, batch_size=8, lr=0.05)
    configs = {"basicFT": BasicFTConfig(train=quick), "actFT": ActFTConfig(train=replace(quick, epochs=1))}
    kwargs = dict(samples=[8, 12], budgets=(1, 5), methods=("actFT", "basicFT"), configs=configs, n_eval=12,
                  cache=Cache(tmp_path), progress=False)
    curves = budget_curves(victim, tiny_model(1).eval(), **kwargs)
    assert fingerprint(victim.model) == before
    # per N: the edit with and without δ, actFT at its reference (1 epoch), basicFT at 1 and its reference (2)
    assert list(zip(curves["method"], curves["bdk"], curves["epochs"], curves["reference"]))[:4] == [
        ("ours", True, 0, True), ("ours", False, 0, True), ("actFT", True, 1, True), ("basicFT", False, 1, False)]
    assert len(curves) == 2 * 5 and list(curves["samples"]) == [8] * 5 + [12] * 5
    assert set(curves.columns) >= {"method", "bdk", "samples", "epochs", "reference", "score", "seconds", "asr"}
    again = budget_curves(victim, tiny_model(1).eval(), **kwargs)   # baselines from the cache: same models
    baselines = curves["method"] != "ours"
    pd.testing.assert_frame_equal(again[baselines][["asr", "acc", "ctca", "seconds"]],
                                  curves[baselines][["asr", "acc", "ctca", "seconds"]])
    table = time_to_score(curves)
    assert list(zip(table["method"], table["samples"])) == [("actFT", 8), ("basicFT", 8), ("actFT", 12),
                                                           ("basicFT", 12)]
    for r in table.to_dict("records"):
        part = curves[(curves["method"] == r["method"]) & (curves["samples"] == r["samples"])]
        edit = curves[(curves["method"] == "ours") & (curves["bdk"] == r["bdk"]) & (curves["samples"] == r["samples"])]
        reached = part[part["score"] >= edit["score"].iloc[0]]
        if len(reached):
            assert r["epochs to edit's score"] == reached["epochs"].iloc[0]
            assert r["seconds to edit's score"] == reached["seconds"].iloc[0]
        else:
            assert r["epochs to edit's score"] is None and math.isnan(r["seconds to edit's score"])
    with pytest.raises(ValueError, match="not baselines"):
        budget_curves(victim, victim.model, samples=[8], methods=("ours",))
