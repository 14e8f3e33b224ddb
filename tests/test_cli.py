"""The ``actedit`` command end to end (issue 9): a tiny backdoored model saved as safetensors and as a torch state
dict, edited and evaluated by subprocesses; unsafe and wrong files refused; bad usage exits 2 in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from actedit.cli import main
from actedit.io import detect_format, load_weights, save_weights
from test_detect import TARGET, synthetic, tiny_victim

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run(*args: str | Path) -> subprocess.CompletedProcess:
    """``python -m actedit.cli ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "actedit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=ENV, timeout=300)


def to_npz(path: Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    """Store as the npz rule says: uint8 0-255, [N, H, W, C]."""
    array = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    np.savez(path, images=array, labels=labels.numpy())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    model = tiny_victim(True)
    du_x, du_y = synthetic(256, seed=2)
    test_x, test_y = synthetic(500, seed=1)
    white = np.full((3, 3, 4), 255, np.uint8)                      # an RGBA picture of the white square
    Image.fromarray(white).save(root / "white.png")
    return {
        "safetensors": save_weights(model, root / "victim.safetensors"),
        "torch": save_weights(model, root / "victim.pt", format="torch"),
        "du": to_npz(root / "du.npz", du_x, du_y),
        "test": to_npz(root / "test.npz", test_x, test_y),
        "png": root / "white.png",
        "root": root,
    }


def model_args(weights: Path) -> list[str]:
    return ["--arch", "cnn", "--weights", str(weights), "--num-classes", "10", "--size", "28"]


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_edit_then_evaluate(files, fmt):
    root = files["root"]
    out = root / f"edited_{fmt}{files[fmt].suffix}"
    report = root / f"edit_{fmt}.json"
    # the torch run exercises the other trigger route (a PNG) and the repair phase
    trigger = ["--trigger", "white"] if fmt == "safetensors" else \
        ["--trigger-image", files["png"], "--repair", "--lr", "0.01"]
    done = run("edit", *model_args(files[fmt]), "--images", files["du"], *trigger, "--out", out, "--report", report,
               "--eval-images", files["test"], "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and done.stderr == ""
    rep = json.loads(report.read_text())
    before, after = rep["metrics"]["before"], rep["metrics"]["after"]
    assert before["asr"] > 90 and after["asr"] < 20, (before, after)
    assert after["acc"] > 60
    assert rep["settings"]["mode"] == "BDK" and rep["settings"]["target"] == TARGET and rep["target_inferred"]
    assert rep["factors"] and {"layer", "mu", "sigma", "min", "mean", "max"} <= rep["factors"][0].keys()
    assert {"load_model_s", "edit_s", "total_s"} <= rep["timings"].keys()
    assert (rep["settings"]["repair"] is not None) == (fmt == "torch")
    # same format as the input, loadable, different weights
    assert detect_format(out) == fmt
    assert not torch.equal(load_weights(out).state["19.weight"], load_weights(files[fmt]).state["19.weight"])

    ev_report = root / f"eval_{fmt}.json"
    done = run("evaluate", *model_args(out), "--images", files["test"], "--trigger", "white", "--target", str(TARGET),
               "--report", ev_report, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "ASR" in done.stdout
    ev = json.loads(ev_report.read_text())["metrics"]
    assert ev["asr"] == pytest.approx(after["asr"], abs=1e-6) and ev["acc"] == pytest.approx(after["acc"], abs=1e-6)


def test_evaluate_the_victim_and_detect(files):
    report = files["root"] / "victim_eval.json"
    done = run("evaluate", *model_args(files["safetensors"]), "--images", files["test"], "--trigger", "white",
               "--report", report, "--no-progress")
    assert done.returncode == 0, done.stderr
    rep = json.loads(report.read_text())
    assert rep["target"] == TARGET and rep["metrics"]["asr"] > 90 and rep["metrics"]["acc"] > 90

    report = files["root"] / "detect.json"
    done = run("detect", *model_args(files["torch"]), "--images", files["du"], "--report", report, "--no-progress")
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())["result"]
    assert result["suspected"] == TARGET and result["backdoor"]
    assert "backdoor likely, target class 2" in done.stdout


def test_malicious_checkpoint_is_refused(files):
    marker = files["root"] / "PWNED"
    code = ("import torch\n"
            "class P:\n"
            f"    def __reduce__(self): return (open, ({str(marker)!r}, 'w'))\n"
            f"torch.save({{'0.weight': P()}}, {str(files['root'] / 'evil.pt')!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)
    done = run("edit", *model_args(files["root"] / "evil.pt"), "--images", files["du"], "--trigger", "white",
               "--out", files["root"] / "never.pt")
    assert done.returncode == 1
    assert "refused to load" in done.stderr and "could run code" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not marker.exists() and not (files["root"] / "never.pt").exists()


def test_wrong_architecture_lists_keys(files):
    done = run("evaluate", "--arch", "resnet18", "--weights", files["safetensors"], "--num-classes", "10",
               "--size", "28", "--images", files["du"])
    assert done.returncode == 1
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "missing keys (conv1.weight" in line and "unexpected keys (0.weight" in line


def test_bad_usage_exits_2_in_a_subprocess(files):
    done = run("edit", "--arch", "cnn", "--weights", files["safetensors"])
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("actedit edit: error: the following arguments are required")


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("actedit")
    if not script.exists():
        pytest.skip("the package is not installed with its console script in this environment")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("actedit ")


# ------------------------------------------------------------------------------------------------ in-process

def call(capsys, *args: str | Path) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("extra, message", [
    (["--arch", "cnnx"], "invalid choice: 'cnnx'"),
    (["--trigger-alpha", "0.5"], "--trigger-alpha needs --trigger or --trigger-image"),
    (["--trigger", "white", "--trigger-alpha", "1.5"], "opacity in (0, 1]"),
    (["--trigger", "white", "--target", "10"], "--target 10 is not a class"),
    (["--trigger", "white", "--trigger-image", "x.png"], "not allowed with argument"),
    (["--trigger", "narcissus"], "invalid choice: 'narcissus'"),
    (["--gamma", "-1"], "non-negative"),
    (["--lam", "nan"], "finite"),
    (["--device", "quantum"], "unknown device"),
    (["--images", "/nonexistent/du"], "--images /nonexistent/du: no such file"),
    (["--out", "/nonexistent/dir/e.safetensors"], "does not exist"),
    (["--out", "edited.pt"], "the name says torch but --weights is safetensors"),
])
def test_bad_usage_exits_2_with_one_line(files, capsys, extra, message):
    args = ["edit", *model_args(files["safetensors"]), "--images", files["du"], "--out",
            files["root"] / "e.safetensors", *extra]
    code, out, err = call(capsys, *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and out == ""


def test_evaluate_needs_labels(files, capsys, tmp_path):
    for i in range(3):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / f"{i}.png")
    code, _, err = call(capsys, "evaluate", *model_args(files["safetensors"]), "--images", tmp_path)
    assert code == 2 and "has no labels" in err


def test_debug_shows_the_traceback(files, capsys):
    args = ["evaluate", "--arch", "vgg16", "--weights", str(files["safetensors"]), "--num-classes", "10", "--size",
            "28", "--images", str(files["du"])]
    assert call(capsys, *args)[0] == 1
    with pytest.raises(ValueError, match="do not fit the model"):
        main([*args, "--debug"])


def test_help_of_every_command(capsys):
    for command in ("edit", "evaluate", "detect"):
        code, out, _ = call(capsys, command, "--help")
        assert code == 0 and f"usage: actedit {command}" in out
