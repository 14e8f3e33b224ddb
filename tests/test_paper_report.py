"""Tests of actedit.paper (the transcribed tables) and actedit.report (the chapters' helpers)."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from actedit import paper
from actedit.experiments import draw_unseen, eval_index, run_edit_grid
from actedit.params import Check, check_params, list_of, number, optional
from actedit.report import aggregate, edit_pattern, fmt, not_run, side_by_side, wide, within
from conftest import fingerprint, tiny_victim

# ------------------------------------------------------------------------------------------------------------------
# paper

SHAPES = {1: 5 * (2 + 12), 2: 4 * (2 + 12), 3: 8 * 5, 4: 8 * 5, 5: 10 * 6, 6: 12 * 5 + 4, 7: 32 * 5 + 4,
          8: 3 + 2 * 7 * 3, 9: 18, 10: 60}


@pytest.mark.parametrize("number_", sorted(paper.TABLES))
def test_table_is_tidy(number_):
    t = paper.TABLES[number_]()
    assert len(t) == SHAPES[number_]
    assert list(t.columns[-3:]) == ["metric", "mean", "std"]
    assert t["mean"].notna().all()
    keys = [c for c in t.columns if c not in ("mean", "std")]
    assert not t.duplicated(subset=keys).any(), "one row per printed cell"
    assert number_ in paper.LOCATIONS


def test_tables_are_fresh_copies():
    t = paper.TABLE1
    t.loc[:, "mean"] = -1.0
    assert (paper.table1()["mean"] >= 0).all()
    with pytest.raises(AttributeError):
        paper.TABLE11


def _cell(t: pd.DataFrame, **keys) -> tuple[float, float]:
    mask = pd.Series(True, index=t.index)
    for k, v in keys.items():
        mask &= t[k] == v
    row = t[mask]
    assert len(row) == 1, keys
    return float(row["mean"].iloc[0]), float(row["std"].iloc[0])


def test_spot_values_against_the_text():
    t1 = paper.table1()
    assert _cell(t1, dataset="mnist", bdk=True, state="base", metric="acc") == (86.04, 1.2)
    assert _cell(t1, dataset="mnist", bdk=False, state="base", metric="asr") == (66.81, 5.87)
    assert _cell(t1, dataset="cifar100", bdk=False, state="repair", metric="ctca") == (58.78, 12.86)
    assert _cell(t1, dataset="tinyimagenet", state="before", metric="acc")[0] == 45.21
    assert set(t1.loc[t1["top_k"] == 5, "dataset"]) == {"cifar100", "tinyimagenet"}
    t2 = paper.table2()
    assert _cell(t2, model="vgg16", bdk=False, state="repair", metric="asr") == (92.17, 1.17)
    assert _cell(t2, model="efficientnet_v2_s", bdk=False, state="base", metric="acc") == (11.07, 1.5)
    assert _cell(paper.table3(), trigger="narcissus", method="actFT", metric="score") == (4.09, 1.61)
    assert _cell(paper.table4(), trigger="narcissus", method="ours", metric="score") == (17.73, 11.77)
    assert _cell(paper.table5(), samples=2, bdk=False, metric="asr") == (24.6, 17.84)
    assert _cell(paper.table6(), method="BaEraser", samples=5000, metric="time") == (623.3, 111.46)
    assert _cell(paper.table7(), method="ours", bdk=False, repair=True, samples=500, metric="score") == (56.7, 14.54)
    t8 = paper.table8()
    assert _cell(t8, state="before", metric="ctca") == (61.39, 8.51)
    assert _cell(t8[t8["lr"] == 1e-3], bdk=True, metric="acc") == (67.56, 0.23)
    assert _cell(paper.table9(), bdk=True, alpha=-1, beta=0) == (33.67, 42.76)
    assert _cell(paper.table10(), target=8, method="basicFT") == (30.56, 23.24)
    assert _cell(paper.table10_average(), method="ours", bdk=False) == (82.69, 1.51)


def test_tables_agree_where_the_paper_repeats_itself():
    t1 = paper.table1().query("dataset == 'cifar10'").drop(columns=["dataset", "top_k"]).reset_index(drop=True)
    t2 = paper.table2().query("model == 'resnet18'").drop(columns="model").reset_index(drop=True)
    pd.testing.assert_frame_equal(t1, t2)
    t5 = paper.table5().query("samples == 512")
    t8 = paper.table8().query("state == 'base'")
    for bdk in (True, False):
        assert t5[t5["bdk"] == bdk]["mean"].tolist() == t8[t8["bdk"] == bdk]["mean"].tolist()
    # ¬BDK: A_clean = A_poisoned, so Table 9's Score depends on α + β only
    t9 = paper.table9().query("bdk == False").assign(s=lambda d: d["alpha"] + d["beta"])
    assert (t9.groupby("s")["mean"].nunique() == 1).all()
    # Table 3's white "ours" equals Table 9's default cell (α 0, β −1)
    assert _cell(paper.table3(), trigger="white", method="ours")[0] == _cell(paper.table9(), bdk=True, alpha=0, beta=-1)[0]


def test_scalars():
    assert (paper.BASE.dataset, paper.BASE.model, paper.BASE.rho, paper.BASE.target) == ("cifar10", "resnet18", 0.05, 2)
    assert (paper.BASE.unseen_pool, paper.BASE.unseen_used) == (5000, 512)
    assert (paper.DETECTION.target_class_accuracy, paper.DETECTION.backdoor_detection_poisoned,
            paper.DETECTION.backdoor_detection_clean) == (80.0, 67.0, 80.0)


# ------------------------------------------------------------------------------------------------------------------
# report: fmt, aggregate


def test_fmt():
    assert fmt(65.49, 0.39) == "65.49 ± 0.39"
    assert fmt(65.4912) == "65.49"
    assert fmt(70.5, math.nan) == "70.50"
    assert fmt(None) == fmt(math.nan) == "–"
    assert fmt(1.0, 0.25, digits=1) == "1.0 ± 0.2"
    assert not_run("08_table5_samples").endswith("params/paper/08_table5_samples.yml")


def test_aggregate_mean_std_over_seeds():
    records = [{"seed": s, "bdk": b, "asr": a, "acc": c} for s, b, a, c in
               [(0, True, 0.0, 60.0), (1, True, 2.0, 64.0), (0, False, 10.0, 50.0)]]
    out = aggregate(records, by=["bdk"], metrics=["asr", "acc"])
    assert list(out.columns) == ["bdk", "metric", "mean", "std", "n"]
    assert out[["bdk", "metric"]].values.tolist() == [[True, "asr"], [True, "acc"], [False, "asr"], [False, "acc"]]
    assert out["mean"].tolist() == [1.0, 62.0, 10.0, 50.0]
    assert out["std"].tolist()[:2] == [1.0, 2.0]          # population std
    assert out["std"].iloc[2:].isna().all()               # one run: no spread shown
    with pytest.raises(ValueError, match="ctca"):
        aggregate(records, by=["bdk"], metrics=["ctca"])
    with pytest.raises(ValueError, match="no records"):
        aggregate([], by=["bdk"])


# ------------------------------------------------------------------------------------------------------------------
# report: side_by_side


def _ours() -> pd.DataFrame:
    return aggregate([{"bdk": True, "state": "base", "asr": 0.0, "acc": 61.0, "ctca": 0.0},
                      {"bdk": None, "state": "before", "asr": 95.0, "acc": 71.0, "ctca": 60.0}],
                     by=["bdk", "state"])


def test_side_by_side_layout_and_verdicts():
    p = paper.table1().query("dataset == 'cifar10'")
    out = side_by_side(p, _ours(), on=["bdk", "state"], metrics=["asr", "acc", "ctca"], criterion=within(5),
                       stem="05_table1_datasets", numbers=True)
    assert list(out.columns) == ["bdk", "state", "metric", "paper", "ours", "reproduced?", "paper_mean", "paper_std",
                                 "ours_mean", "ours_std"]
    assert out.iloc[0][["state", "metric", "paper", "ours", "reproduced?"]].tolist() == \
        ["before", "asr", "94.53", "95.00", "yes"]
    row = out[(out["bdk"] == True) & (out["state"] == "base") & (out["metric"] == "acc")].iloc[0]  # noqa: E712
    assert (row["paper"], row["ours"], row["reproduced?"]) == ("65.49 ± 0.39", "61.00", "yes")
    missing = out[out["state"] == "repair"]
    assert (missing["ours"] == not_run("05_table1_datasets")).all()
    assert (missing["reproduced?"] == "not run").all()
    extra = out[(out["state"] == "before") & (out["metric"] == "ctca")].iloc[0]   # the paper prints no CTCA there
    assert (extra["paper"], extra["ours"], extra["reproduced?"], extra["bdk"]) == ("–", "60.00", "–", None)
    assert out["metric"].tolist()[:3] == ["asr", "acc", "ctca"]


def test_side_by_side_per_metric_criterion_and_errors():
    p = paper.table1().query("dataset == 'cifar10' and state == 'base' and bdk == True")
    ours = _ours().query("state == 'base'")
    out = side_by_side(p, ours, on=["bdk", "state"], criterion={"acc": within(1)})
    assert dict(zip(out["metric"], out["reproduced?"])) == {"asr": "–", "acc": "no", "ctca": "–"}
    with pytest.raises(ValueError, match="dataset"):
        side_by_side(p, ours, on=["dataset"])
    with pytest.raises(ValueError, match="tol"):
        within(-1)


# ------------------------------------------------------------------------------------------------------------------
# report: check_params


def test_check_params_accepts_good_values():
    values = {"dataset": "mnist", "seeds": [0, 1], "n_images": 512, "lr": 1, "data_root": None, "ok": True}
    out = check_params(values, dataset=(str, ("mnist", "fashion-mnist")), seeds=list_of(int),
                       n_images=number(int, lo=1), lr=number(float, lo=0), data_root=optional(str), ok=bool)
    assert out == values


@pytest.mark.parametrize("values, spec, error, message", [
    ({"n_images": "512"}, {"n_images": int}, TypeError, "'n_images' must be int"),
    ({"n_images": True}, {"n_images": number(int, lo=1)}, TypeError, "'n_images' must be int"),
    ({"n_images": 0}, {"n_images": number(int, lo=1)}, ValueError, "'n_images' must be a finite int in"),
    ({"dataset": "svhn"}, {"dataset": (str, ("mnist",))}, ValueError, "'dataset' must be one of 'mnist'"),
    ({"dataset": 3}, {"dataset": (str, ("mnist",))}, TypeError, "'dataset' must be str"),
    ({"seeds": 0}, {"seeds": list_of(int)}, TypeError, "'seeds' must be a list"),
    ({"seeds": []}, {"seeds": list_of(int)}, ValueError, "'seeds' must be a list of at least 1"),
    ({"seeds": [0, 1.5]}, {"seeds": list_of(int)}, TypeError, r"'seeds\[1\]' must be int"),
    ({"lrs": [1e-2, -1.0]}, {"lrs": list_of(number(float, lo=0))}, ValueError, r"'lrs\[1\]'"),
    ({"data_root": 3}, {"data_root": optional(str)}, TypeError, "'data_root' must be str"),
    ({"k": 3}, {"k": (int, Check(lambda v: v % 2 == 0, "even"))}, ValueError, "'k' must be even"),
    ({}, {"seeds": list_of(int)}, ValueError, "'seeds' is missing"),
    ({"x": 1}, {"x": "int"}, TypeError, "cannot read the spec"),
])
def test_check_params_names_the_bad_parameter(values, spec, error, message):
    with pytest.raises(error, match=message):
        check_params(values, **spec)


# ------------------------------------------------------------------------------------------------------------------
# report: draw_unseen


def test_draw_unseen_is_seeded_and_checked():
    images, labels = torch.rand(20, 1, 4, 4), torch.arange(20)
    a, la = draw_unseen(images, labels, 5, seed=0)
    b, lb = draw_unseen(images, labels, 5, seed=0)
    _, lc = draw_unseen(images, labels, 5, seed=1)
    assert a.shape == (5, 1, 4, 4) and torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(la, lc)
    assert len(set(la.tolist())) == 5
    assert torch.equal(images[la], a)
    with pytest.raises(ValueError, match="pool holds 20"):
        draw_unseen(images, labels, 21, seed=0)
    with pytest.raises(ValueError, match="positive"):
        draw_unseen(images, labels, 0, seed=0)


# ------------------------------------------------------------------------------------------------------------------
# report: wide, edit_pattern, run_edit_grid


def test_wide_one_row_per_key_with_note_and_verdict():
    p = paper.table1().query("dataset in ['mnist', 'cifar10']")
    ours = aggregate([{"dataset": "mnist", "bdk": True, "state": "base", "asr": 0.0, "acc": 70.0, "ctca": 0.0},
                      {"dataset": "fashion-mnist", "bdk": True, "state": "base", "asr": 0.0, "acc": 80.0,
                       "ctca": 0.0}], by=["dataset", "bdk", "state"])
    sbs = side_by_side(p, ours, on=["dataset", "bdk", "state"], metrics=["asr", "acc", "ctca"], criterion=within(10),
                       stem="x")
    w = wide(sbs, ["dataset", "bdk", "state"], stem="x", notes={"fashion-mnist": "extra"})
    assert len(w) == 2 * 5 + 1
    row = w.loc[("mnist", "BDK", "Base")]
    assert (row[("ACC ↑", "paper")], row[("ACC ↑", "ours")], row[("reproduced?", "")]) == \
        ("86.04 ± 1.20", "70.00", "no (ACC)")
    skipped = w.loc[("cifar10", "BDK", "Base")]
    assert skipped[("ASR ↓", "ours")] == "–" and skipped[("note", "")] == not_run("x")
    assert skipped[("reproduced?", "")] == "not run"
    assert w.loc[("fashion-mnist", "BDK", "Base")][("note", "")] == "extra"


def test_edit_pattern_on_the_papers_rows():
    t1 = paper.table1()
    mnist = edit_pattern(t1[t1["dataset"] == "mnist"], num_classes=10).set_index("claim")["holds"]
    assert mnist["BDK: ASR ≤ 1 %"] and mnist["BDK: CTCA ≤ 5 %"]
    assert not mnist["¬BDK: ASR ≤ 1 %"]                 # the paper's grayscale exception
    cinic = edit_pattern(t1[t1["dataset"] == "cinic10"], num_classes=10).set_index("claim")["holds"]
    assert not cinic["BDK +repair: CTCA ≥ ½ victim ACC"]  # "exclusively negative influence" of repair on CINIC10
    partial = edit_pattern(t1[(t1["dataset"] == "mnist") & (t1["state"] != "repair")], num_classes=10)
    assert partial.set_index("claim")["holds"]["BDK +repair: ASR ≤ 10 %"] is None


def _counts_of(percent: float, n: int) -> bool:
    """True when ``percent`` is k/n · 100 for an integer k: the metric was computed on n images."""
    return abs(percent * n / 100 - round(percent * n / 100)) < 1e-4


def test_victim_evaluate_on_the_one_subset():
    victim = tiny_victim()
    full = victim.evaluate()
    assert full == victim.evaluate(n_eval=100) == victim.evaluate(victim.model, None)
    part = victim.evaluate(n_eval=5)
    assert part == victim.evaluate(n_eval=5)     # the same fixed subset every time
    assert _counts_of(part["acc"], 5)
    index = eval_index(20, 5)
    assert index.tolist() == sorted(index.tolist()) and len(set(index.tolist())) == 5
    assert eval_index(20, 5).tolist() == index.tolist() and eval_index(20, None) == slice(None)
    with pytest.raises(ValueError, match="n_eval"):
        victim.evaluate(n_eval=0)


def test_victim_spec_from_params_takes_the_spec_fields_only():
    from actedit.experiments import VictimSpec

    params = {"dataset": "mnist", "model": "cnn", "epochs": None, "seeds": [0, 1], "n_eval": 100, "train_limit": 800}
    assert VictimSpec.from_params(params, seed=1) == VictimSpec(dataset="mnist", seed=1, train_limit=800)
    with pytest.raises(TypeError):
        VictimSpec.from_params({"dataset": "mnist"}, dataset="cifar10")   # a field given twice


def test_run_edit_grid_records_and_leaves_the_victim_alone():
    victim = tiny_victim()
    before = fingerprint(victim.model)
    runs = run_edit_grid(victim, samples=[4, 8], seeds=[0, 1], repair_lrs=[1e-3])
    assert list(runs.columns) == ["seed", "samples", "bdk", "state", "lr", "asr", "acc", "ctca", "seconds"]
    assert len(runs) == 2 * 2 * 2 * 2          # seeds × samples × BDK/¬BDK × (base, one repair)
    assert runs.loc[runs["state"] == "base", "lr"].isna().all()
    assert (runs.loc[runs["state"] == "repair", "lr"] == 1e-3).all()
    assert runs[["asr", "acc", "ctca"]].apply(lambda c: c.between(0, 100) | c.isna()).all().all()
    assert fingerprint(victim.model) == before
    again = run_edit_grid(victim, samples=[4], seeds=[0], bdk=[True])
    first = runs.query("samples == 4 and seed == 0 and bdk == True and state == 'base'")
    assert again[["asr", "acc", "ctca"]].values.tolist() == first[["asr", "acc", "ctca"]].values.tolist()
    with pytest.raises(ValueError, match="pool holds 24"):
        run_edit_grid(victim, samples=[32])
    small = run_edit_grid(victim, samples=[4], seeds=[0], bdk=[True], n_eval=6)
    assert _counts_of(small["acc"].iloc[0], 6)
