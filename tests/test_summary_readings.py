"""Tests of the summary (results files, claim list) and of the readings' ranking."""
from pathlib import Path

import pandas as pd
import pytest

from actedit.readings import READINGS, rank_readings, reading_config
from actedit.summary import CHECKS, CLAIMS, Claim, summary_table
from actedit.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Results, at_least, at_most, beats

STRONG = {"asr": 99.0, "acc": 90.0, "acc_r": 90.0}


def _results(folder, stem, values: dict, victims=None) -> None:
    results = Results(stem, folder=folder)
    for name, v in (victims or {"base": STRONG}).items():
        results.victim(name, **v)
    for k, v in values.items():
        results.record(k, v)


def test_summary_verdicts_follow_the_numbers(tmp_path):
    claims = [Claim("low", "T1", "0", "ch", "asr", at_most(1.0), "%"),
              Claim("high", "T1", "90", "ch", "acc", at_least(90.0), "%"),
              Claim("margin", "T1", "A > B", "ch", "margin", beats(), "points"),
              Claim("absent", "T2", "1", "missing", "k", at_most(1.0))]
    _results(tmp_path, "ch", {"asr": [0.5, 0.7, 0.3], "acc": 80.0, "margin": [2.0, -1.0, 0.5]})
    table = summary_table(tmp_path, claims)
    assert table["status"].tolist() == [REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE]
    assert table["ours"].tolist()[:2] == ["0.50 ± 0.20 (n=3) %", "80.00 %"]
    assert table["reason"].iloc[3] == "the chapter was not executed in this build"


def test_summary_finds_a_relative_dir_from_another_working_directory(tmp_path, monkeypatch):
    # nbval runs the summary from book/_executed/, papermill from the root: a relative executed_dir must work in both
    import actedit.summary as summary
    (tmp_path / "book" / "_executed").mkdir(parents=True)
    _results(tmp_path / "book" / "_executed", "ch", {"asr": 0.5})
    claims = [Claim("low", "T1", "0", "ch", "asr", at_most(1.0), "%")]
    monkeypatch.setattr(summary, "_checkout_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path / "book" / "_executed")
    assert summary_table("book/_executed", claims)["status"].tolist() == [REPRODUCED]
    monkeypatch.chdir(tmp_path)
    assert summary_table("book/_executed", claims)["status"].tolist() == [REPRODUCED]


def test_summary_refuses_a_missing_dir(tmp_path, monkeypatch):
    import actedit.summary as summary
    monkeypatch.setattr(summary, "_checkout_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="executed_dir 'nowhere'"):
        summary_table("nowhere")


def test_every_claim_names_a_chapter_source_and_checks_are_apart():
    root = Path(__file__).resolve().parent.parent
    for claim in CLAIMS + CHECKS:
        assert (root / "notebooks" / f"{claim.chapter}.md").exists(), claim.chapter
    assert not {c.claim for c in CLAIMS} & {c.claim for c in CHECKS}
    assert all(c.victims is None for c in CHECKS), "set-up and self-checks judge no defense"
    assert all(c.rule.why for c in CLAIMS + CHECKS), "every rule carries its justification"


def test_table2_claims_gate_each_architecture_on_its_own_victims(tmp_path):
    # a width-scaled architecture whose backdoor did not take is "not testable"; the others are judged
    t2 = [c for c in CLAIMS if c.chapter == "06_table2_models"]
    assert {c.victims for c in t2} == {"resnet18,", "vgg16,", "efficientnet_v2_s,", "mobilenet_v3_small,"}
    weak = {"asr": 12.0, "acc": 80.0, "acc_r": 81.0}
    _results(tmp_path, "06_table2_models", {c.key: [0.0] for c in t2},
             victims={"resnet18, seed 0": STRONG, "vgg16, seed 0": weak, "efficientnet_v2_s, seed 0": STRONG,
                      "mobilenet_v3_small, seed 0": STRONG, "cnn, seed 0": weak})
    status = dict(zip((c.victims for c in t2), summary_table(tmp_path, t2)["status"]))
    assert status == {"resnet18,": REPRODUCED, "vgg16,": NOT_TESTABLE, "efficientnet_v2_s,": REPRODUCED,
                      "mobilenet_v3_small,": REPRODUCED}


def test_table1_mnist_claims_judge_the_resnet18_row_only(tmp_path):
    # chapter 5's MNIST rows: "mnist, seed s" (ResNet18, the paper's model) and "mnist/cnn, seed s" (an extra row)
    t1 = [c for c in CLAIMS if c.chapter == "05_table1_datasets" and c.victims == "mnist,"]
    assert t1
    _results(tmp_path, "05_table1_datasets",
             {"05_table1_datasets_mnist_nbdk_base_asr": [50.0],
              "05_table1_datasets_mnist_repair_bdk": {"ctca": [90.0], "victim_ctca": 95.0}},
             victims={"mnist, seed 0": STRONG, "mnist/cnn, seed 0": {"asr": 5.0, "acc": 90.0, "acc_r": 90.0}})
    assert set(summary_table(tmp_path, t1)["status"]) == {REPRODUCED}


def test_every_claim_is_not_testable_on_an_empty_build(tmp_path):
    table = summary_table(tmp_path)
    assert set(table["status"]) == {NOT_TESTABLE}


def test_readings_cover_every_combination_and_build_configs():
    assert len(READINGS) == len(set(READINGS)) == 24
    cfg = reading_config(("tensors", "input", "flat"))
    assert (cfg.layers, cfg.activation, cfg.pooling) == ("tensors", "input", "flat")


def test_rank_readings_prefers_matching_readings():
    rows = []
    for layers, asr, ctca, ratio, sc in [("params", 0.0, 0.0, 0.9, 90.0), ("modules", 0.0, 0.0, 0.5, 50.0),
                                         ("tensors", 50.0, 80.0, 1.0, 40.0)]:
        for setting in ("BDK", "¬BDK"):
            rows.append({"layers": layers, "activation": "output", "pooling": "channel", "setting": setting,
                         "ASR": asr, "ACC": 80.0, "CTCA": ctca, "ACC ratio": ratio, "Score": sc})
    ranked = rank_readings(pd.DataFrame(rows))
    assert ranked["layers"].tolist() == ["params", "modules", "tensors"]
    assert ranked["matches"].tolist() == [2, 1, 0]
