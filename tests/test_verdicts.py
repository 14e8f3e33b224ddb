"""Tests of the verdict rules, the victim strength gate and the results file."""
import json

import pytest

from actedit import verdicts as V
from actedit.summary import Claim, counts, styled, summary_table


def test_stat_is_mean_and_sample_std():
    s = V.stat([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert V.stat(4.0) == V.Stat(4.0, 0.0, 1)
    with pytest.raises(ValueError):
        V.stat([])
    with pytest.raises(ValueError):
        V.stat([float("nan")])


def test_gate_passes_a_strong_victim_and_names_what_a_weak_one_lacks():
    assert V.victim_gate(asr=95.0, acc=90.0, acc_r=91.5) is None
    weak = V.victim_gate(asr=12.0, acc=90.0, acc_r=90.0)
    assert weak.status == V.NOT_TESTABLE and "victim without a working backdoor" in weak.reason
    assert "ASR 12.0 % < 80 %" in weak.reason
    costly = V.victim_gate(asr=99.0, acc=85.0, acc_r=90.0)
    assert costly.status == V.NOT_TESTABLE and "3 points" in costly.reason
    assert V.victim_gate(asr=80.0, acc=87.0, acc_r=90.0) is None   # both bars are inclusive


def test_restores_ctca_is_half_the_victims_ctca_on_the_mean_over_seeds():
    rule = V.restores_ctca()
    assert rule.judge({"ctca": [40.0, 45.0, 50.0], "victim_ctca": 85.0}).status == V.REPRODUCED
    assert rule.judge({"ctca": [22.0, 36.0, 30.0], "victim_ctca": 85.0}).status == V.NOT_REPRODUCED


def test_beats_needs_a_margin_beyond_the_spread_and_the_tie():
    rule = V.beats(tie=0.5)
    assert rule.judge([3.0, 2.5, 3.5]).status == V.REPRODUCED
    assert rule.judge([-3.0, -2.5, -3.5]).status == V.NOT_REPRODUCED
    within_spread = rule.judge([4.0, -2.0, 1.0])
    assert within_spread.status == V.INCONCLUSIVE and "seed spread" in within_spread.reason
    within_tie = rule.judge(0.05)
    assert within_tie.status == V.INCONCLUSIVE and "tie threshold" in within_tie.reason
    assert V.beats().judge({"margin": [0.3], "tie": 1.0}).status == V.INCONCLUSIVE


def test_near_best_accepts_a_tie_and_refuses_a_gap():
    rule = V.near_best()
    assert rule.judge({"at": 91.0, "best": 91.4, "tie": 0.5}).status == V.REPRODUCED
    assert rule.judge({"at": 89.0, "best": 91.4, "tie": 0.5}).status == V.NOT_REPRODUCED


def test_speed_ratio_is_judged_per_method_against_the_papers_ratio():
    rule = V.speed_ratio(factor=3)
    assert rule.judge({"ours": [60.0], "paper": 150.0}).status == V.REPRODUCED
    assert rule.judge({"ours": [10.0], "paper": 150.0}).status == V.NOT_REPRODUCED


def test_majority_counts_only_usable_victims():
    assert V.majority().judge({"wins": 3, "of": 5}).status == V.REPRODUCED
    assert V.majority().judge({"wins": 2, "of": 4}).status == V.NOT_REPRODUCED
    assert V.majority().judge({"wins": 0, "of": 0}).status == V.NOT_TESTABLE
    assert V.majority().judge({"wins": 3, "of": 8, "ties": 2}).status == V.INCONCLUSIVE   # ties could make it 5
    assert V.majority().judge({"wins": 3, "of": 8, "ties": 1}).status == V.NOT_REPRODUCED


def test_a_missing_or_unreadable_value_is_not_testable_never_a_pass():
    assert V.at_most(1).judge(None).status == V.NOT_TESTABLE
    assert V.at_most(1).judge("n/a").status == V.NOT_TESTABLE
    assert V.restores_ctca().judge({"ctca": [50.0]}).status == V.NOT_TESTABLE


def test_results_file_records_glues_and_reads_back(tmp_path):
    results = V.Results("03_method", folder=tmp_path)
    results.record("03_repair_bdk", {"ctca": [1.0, 2.0], "victim_ctca": 80.0})
    results.victim("base", asr=99.0, acc=90.0, acc_r=90.5)
    data = V.Results.read(tmp_path / "03_method.results.json")
    assert data["values"]["03_repair_bdk"] == {"ctca": [1.0, 2.0], "victim_ctca": 80.0}
    assert data["victims"]["base"] == {"asr": 99.0, "acc": 90.0, "acc_r": 90.5}
    with pytest.raises(TypeError, match="not a number"):
        results.record("x", object())
    with pytest.raises(ValueError, match="stem"):
        V.Results("a/b", folder=tmp_path)
    (tmp_path / "bad.results.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a results file"):
        V.Results.read(tmp_path / "bad.results.json")


def _chapter(tmp_path, victims: dict, **values):
    results = V.Results("ch", folder=tmp_path)
    for name, v in victims.items():
        results.victim(name, **v)
    for k, v in values.items():
        results.record(k, v)


def test_a_weak_victim_turns_a_reproduced_verdict_into_not_testable(tmp_path):
    claims = [Claim("edit removes the backdoor", "T1", "0", "ch", "asr", V.at_most(1), "%")]
    _chapter(tmp_path, {"base": {"asr": 99.0, "acc": 90.0, "acc_r": 90.0}}, asr=0.0)
    assert summary_table(tmp_path, claims)["status"].tolist() == [V.REPRODUCED]
    _chapter(tmp_path, {"base": {"asr": 6.0, "acc": 90.0, "acc_r": 90.0}}, asr=0.0)
    row = summary_table(tmp_path, claims).iloc[0]
    assert row["status"] == V.NOT_TESTABLE and "victim without a working backdoor" in row["reason"]


def test_a_claim_on_a_defense_without_recorded_victims_is_not_testable(tmp_path):
    _chapter(tmp_path, {}, asr=0.0)
    claims = [Claim("edit removes the backdoor", "T1", "0", "ch", "asr", V.at_most(1), "%"),
              Claim("a set-up check", "T1", "0", "ch", "asr", V.at_most(1), "%", victims=None)]
    table = summary_table(tmp_path, claims)
    assert table["status"].tolist() == [V.NOT_TESTABLE, V.REPRODUCED]
    assert counts(table) == {V.REPRODUCED: 1, V.NOT_REPRODUCED: 0, V.INCONCLUSIVE: 0, V.NOT_TESTABLE: 1}


def test_styled_table_renders_html_with_a_status_colour_and_a_link(tmp_path):
    _chapter(tmp_path, {"base": {"asr": 99.0, "acc": 90.0, "acc_r": 90.0}}, asr=3.0)
    claims = [Claim("Score < 30 & more", "T1", "0", "ch", "asr", V.at_most(1), "%")]
    page = styled(summary_table(tmp_path, claims)).to_html()
    assert "<table" in page and 'href="ch.html"' in page and "#f8d7da" in page
    assert "Score &lt; 30 &amp; more" in page


def test_a_weak_named_victim_makes_its_claim_not_testable_even_without_a_number(tmp_path):
    _chapter(tmp_path, {"white, seed 0": {"asr": 95.0, "acc": 86.0, "acc_r": 86.0},
                        "narcissus, seed 0": {"asr": 24.0, "acc": 85.0, "acc_r": 85.0}}, score=float("nan"))
    claims = [Claim("fails on narcissus", "T4", "17.7", "ch", "score", V.at_most(30), victims="narcissus,"),
              Claim("fails on white", "T4", "–", "ch", "score", V.at_most(30), victims="white,")]
    table = summary_table(tmp_path, claims)
    assert table["status"].tolist() == [V.NOT_TESTABLE, V.NOT_TESTABLE]
    assert "narcissus, seed 0: victim without a working backdoor" in table["reason"][0]
    assert table["reason"][1].startswith("unreadable value")   # NaN never passes
