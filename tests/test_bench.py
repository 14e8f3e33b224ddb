"""The benchmark harness (actedit.efficiency) and its entry point (bench/run.py).

Only structure is asserted — keys, types, counts, invariants — never a time: timings depend on the machine.
"""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from actedit import efficiency
from actedit.edit import EditConfig
from actedit.triggers import make_trigger

ROOT = Path(__file__).resolve().parent.parent


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3)).eval()


def _digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _is_seconds(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x >= 0


def test_time_call_returns_the_result_and_one_run_per_repetition():
    calls = []
    result, stats = efficiency.time_call(lambda: calls.append(1) or len(calls), warmup=2, repeats=3)
    assert result == 5 and len(calls) == 5
    assert len(stats["runs"]) == 3 and all(_is_seconds(r) for r in stats["runs"])
    assert stats["min"] <= stats["seconds"] <= stats["max"]
    assert _is_seconds(stats["cpu_seconds"])
    with pytest.raises(ValueError, match="repeats"):
        efficiency.time_call(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        efficiency.time_call(lambda: None, warmup=-1)


def test_time_call_budget_stops_early_and_warmup_fn_replaces_the_warm_up():
    seen = []
    _, stats = efficiency.time_call(lambda: seen.append("run"), warmup=1, repeats=5, budget_s=0.0,
                                    warmup_fn=lambda: seen.append("warm"))
    assert seen == ["warm", "run"] and len(stats["runs"]) == 1
    with pytest.raises(ValueError, match="budget_s"):
        efficiency.time_call(lambda: None, budget_s=-1.0)


def test_update_time_has_the_stats_of_time_call():
    stats = efficiency.update_time(lambda: None, repeats=2)
    assert set(stats) == {"seconds", "min", "max", "runs", "cpu_seconds"}


def test_machine_info_names_cpu_threads_torch_and_device():
    info = efficiency.machine_info("cpu")
    for key in ("cpu_model", "logical_cpus", "torch_threads", "torch", "python", "device", "device_name"):
        assert info[key] not in (None, ""), key
    assert info["torch"] == torch.__version__
    json.dumps(info)  # plain data


@pytest.mark.parametrize("bdk", [True, False])
def test_edit_vs_forward_measures_both_and_leaves_the_model_alone(bdk):
    model = _tiny()
    before = _digest(model)
    images = efficiency.synthetic_images(10, channels=1, size=16)
    trigger = make_trigger("white", channels=1, size=16) if bdk else None
    r = efficiency.edit_vs_forward(model, images, trigger=trigger, config=EditConfig(batch_size=4), repeats=2)
    assert r["n"] == 10 and r["bdk"] is bdk and r["bn"] == ("frozen" if bdk else "update") and r["batch_size"] == 4
    assert len(r["forward_runs"]) == len(r["edit_runs"]) == 2
    assert all(_is_seconds(r[k]) for k in ("forward_s", "edit_s"))
    assert r["ratio"] > 0 and r["ratio_of_min"] > 0
    assert _digest(model) == before and not model.training


def test_forward_pass_restores_the_mode_and_update_changes_only_bn_statistics():
    model = _tiny().train()
    images = efficiency.synthetic_images(6, channels=1, size=16)
    efficiency.forward_pass(model, images, batch_size=4)
    assert model.training
    frozen = _digest(model)
    assert frozen == _digest(_tiny().train())
    efficiency.forward_pass(model, images, batch_size=4, bn="update")
    assert _digest(model) != frozen and model.training


def test_profile_edit_reports_every_stage_and_leaves_the_model_alone():
    sys.path.insert(0, str(ROOT / "bench"))
    from edit_profile import PROFILE_STAGES, profile_edit

    model = _tiny()
    before = _digest(model)
    images = efficiency.synthetic_images(6, channels=1, size=16)
    stages = profile_edit(model, images, trigger=make_trigger("white", channels=1, size=16), repeats=1)
    assert list(stages)[:len(PROFILE_STAGES)] == list(PROFILE_STAGES)
    assert {"sum_of_stages", "edit_model", "unattributed"} <= set(stages)
    assert all(_is_seconds(stages[k]) for k in PROFILE_STAGES + ("edit_model",))
    assert math.isclose(stages["unattributed"], stages["edit_model"] - stages["sum_of_stages"])
    assert _digest(model) == before
    no_trigger = profile_edit(model, images, repeats=1, clock="cpu")
    assert no_trigger["trigger"] == 0.0
    with pytest.raises(ValueError, match="clock"):
        profile_edit(model, images, clock="gpu")


def test_time_ratios_divide_by_the_edit_of_the_same_setting_and_size():
    times = pd.DataFrame([{"method": m, "bdk": b, "samples": n, "seconds": s} for m, b, n, s in (
        ("ours", True, 5, 0.5), ("ours", False, 5, 0.25), ("ours +repair", True, 5, 2.0), ("NAD", False, 5, 5.0),
        ("NAD", False, 50, 5.0))])
    ratios = efficiency.time_ratios(times)
    assert ratios["ratio"].iloc[:4].tolist() == [1.0, 1.0, 4.0, 20.0]
    assert math.isnan(ratios["ratio"].iloc[4])       # no edit at N = 50


def test_quick_benchmark_writes_well_formed_json(tmp_path):
    out = tmp_path / "quick.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--threads", "1", "--out", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "# actedit benchmark (quick)" in run.stdout and "| model | N |" in run.stdout
    result = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert result["quick"] is True and result["sections"] == ["edit", "profile", "methods", "budgets", "explorer"]
    assert result["machine"]["torch"] == torch.__version__
    edit = result["edit"]
    assert edit and {"model", "n", "bdk", "forward_s", "edit_s", "ratio", "cpu_ratio", "meets_goal"} <= set(edit[0])
    assert {r["n"] for r in edit} == set(result["plan"]["sizes"])
    assert all(isinstance(r["meets_goal"], bool) for r in edit)
    sys.path.insert(0, str(ROOT / "bench"))
    from edit_profile import PROFILE_STAGES

    for row in result["profile"]:
        assert set(PROFILE_STAGES) <= set(row["stages"])
    methods = result["methods"]
    assert methods["baselines_missing"] == []
    names = {(r["method"], r["bdk"]) for r in methods["rows"]}
    assert {("ours", True), ("ours", False), ("ours +repair", True), ("actFT", True), ("BaEraser", True),
            ("basicFT", False), ("NAD", False)} <= names
    for r in methods["rows"]:
        assert isinstance(r["seconds"], float) and isinstance(r["ratio"], float)
        assert r["meets_goal"] is None if r["method"].startswith("ours") else isinstance(r["meets_goal"], bool)
    budgets = result["budgets"]   # every baseline at its (here: one-epoch) reference and the time to the edit's Score
    assert {(r["method"], r["bdk"]) for r in budgets["reach"]} == {("actFT", True), ("BaEraser", True),
                                                                   ("basicFT", False), ("NAD", False)}
    assert all(r["reference seconds"] > 0 and r["ratio"] > 0 for r in budgets["reach"])
    assert "time to the edit's Score" in run.stdout
    explorer = result["explorer"]
    assert "missing" in explorer or {"numbers_only", "with_figure", "meets_goal"} <= set(explorer)


def test_recorded_budget_curves_reads_the_committed_benchmark(tmp_path):
    """Chapter 09 shows the benchmark's N = 500 and 5,000 curves from bench/results: the reader must accept the
    committed file and name the file when it is missing or holds no budgets section."""
    from actedit.experiments import recorded_budget_curves, time_to_score

    curves, source = recorded_budget_curves(ROOT / "bench" / "results" / "cpu-amd-epyc.budgets.json")
    assert {50, 500, 5000} <= set(curves["samples"]) and source["time"] and "torch" in source["machine"]
    reach = time_to_score(curves)
    assert len(reach) == 4 * 3 and set(reach["method"]) == {"actFT", "BaEraser", "basicFT", "NAD"}
    with pytest.raises(ValueError, match="nowhere.json"):
        recorded_budget_curves(tmp_path / "nowhere.json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"sections": ["edit"], "edit": {}}))
    with pytest.raises(ValueError, match="no budgets section"):
        recorded_budget_curves(other)


def test_timing_pays_the_optimizer_imports_outside_the_timed_call():
    """The first optimiser step of a process imports torch._dynamo (seconds): time_call pays it before timing, so
    the first baseline timed in a process is not charged for it (it inflated actFT's N = 50 time in the bench)."""
    code = ("import sys, torch\n"
            "from actedit import efficiency\n"
            "assert 'torch._dynamo' not in sys.modules\n"
            "def step():\n"
            "    w = torch.zeros(1, requires_grad=True); o = torch.optim.SGD([w], lr=0.1)\n"
            "    o.zero_grad(); w.sum().backward(); o.step()\n"
            "    return 'torch._dynamo' in sys.modules\n"
            "_, stats = efficiency.time_call(step, warmup=0, repeats=1)\n"
            "print('imported before the timed call' if 'torch._dynamo' in sys.modules and stats['seconds'] < 1.0\n"
            "      else 'charged to the timed call')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "imported before the timed call"


def test_efficientnet_trials_switch_regularisation_off_only_inside_the_block_and_record_every_trial():
    """bench/efficientnet_trials.py: its no-regularisation trial really builds EfficientNetV2-S with stochastic
    depth and dropout at 0 (and only inside the block); the recorded results hold one row per trial."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import efficientnet_trials as trials
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from torchvision.ops import StochasticDepth

    from actedit.models import build_model

    def probabilities() -> set[float]:
        m = build_model("efficientnet_v2_s", num_classes=10, channels=1, size=28, width=0.125)
        return {x.p for x in m.modules() if isinstance(x, (StochasticDepth, nn.Dropout))}

    before = probabilities()
    with trials.without_regularisation():
        assert probabilities() == {0.0}
    assert probabilities() == before and max(before) > 0
    recorded = json.loads((ROOT / "bench" / "results" / "efficientnet-trials.json").read_text())
    assert [r["trial"] for r in recorded["trials"]] == list(trials.TRIALS)
    assert all(0 <= r["asr_training_trigger"] <= 100 for r in recorded["trials"])
