"""The ``actedit`` command end to end (issues 9, 18): a tiny backdoored model saved as safetensors and as a torch
state dict, edited and evaluated by subprocesses — as a built-in, as a class in the user's own file, and a torchvision
model that is not a built-in, with sizes read from the images; unsafe and wrong files refused; bad usage exits 2 and
failures exit 1, in one line, writing nothing."""
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


def run(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m actedit.cli ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "actedit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=env or ENV, timeout=300)


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

    report = files["root"] / "detect.json"      # the detector on the same network as the user's own class
    user_net = files["root"] / "detect_net.py"
    user_net.write_text(USER_MODEL.replace("from user_blocks import block", USER_BLOCKS.split("\n", 1)[1]))
    weights = save_weights(as_user_net(load_weights(files["torch"]).state), files["root"] / "detect_net.pt",
                           format="torch")
    done = run("detect", "--model", f"{user_net}:Net", "--weights", weights, "--images", files["du"],
               "--report", report, "--no-progress")
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
    (["--arch", "cnnx"], "unknown model 'cnnx' (did you mean cnn?)"),
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


# ------------------------------------------------------------------------------------------------ any model (#18)

USER_MODEL = '''"""A defender's own network: the layers of actedit's small CNN, named and wired by the user."""
import torch
from torch import nn

from user_blocks import block          # a module beside this file


class Net(nn.Module):
    def __init__(self, num_classes=10, width=16):
        super().__init__()
        w = width
        self.features = nn.Sequential(*block(1, w), nn.MaxPool2d(2), *block(w, 2 * w), *block(2 * w, 2 * w),
                                      nn.MaxPool2d(2), *block(2 * w, 4 * w), *block(4 * w, 4 * w))
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def build(width=16):
    return Net(width=width)


def broken():
    raise RuntimeError("this factory needs the GPU build")


def not_a_model():
    return "a string"


class WithAux(Net):
    """An auxiliary head that forward never calls (like GoogLeNet's in eval mode)."""

    def __init__(self):
        super().__init__()
        self.aux = nn.Linear(64, 10)


def normed():
    """The classifier under weight norm: its weight is computed from two parameters at every forward."""
    model = Net()
    model.classifier = nn.utils.parametrizations.weight_norm(model.classifier)
    return model


class NoLayers(nn.Module):
    """No convolution, no linear layer: nothing for the edit to scale."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.scale * x.flatten(1)[:, :10]
'''
USER_BLOCKS = '''from torch import nn


def block(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
'''


def as_user_net(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The small CNN's state dict under ``Net``'s names: layers 0-16 are ``features``, layer 19 the classifier."""
    return {(f"classifier.{k.split('.', 1)[1]}" if k.startswith("19.") else f"features.{k}"): v
            for k, v in state.items()}


@pytest.fixture(scope="module")
def user(files) -> dict[str, Path]:
    """A folder holding the user's model code (two files) and the backdoored weights saved from ``Net``."""
    root = files["root"] / "user"
    root.mkdir()
    (root / "user_net.py").write_text(USER_MODEL)
    (root / "user_blocks.py").write_text(USER_BLOCKS)
    (root / "bad_syntax.py").write_text("def Net(:\n")
    save_weights(as_user_net(load_weights(files["safetensors"]).state), root / "net.safetensors")
    save_weights({"scale": torch.ones(1)}, root / "nolayers.safetensors")
    state = as_user_net(load_weights(files["safetensors"]).state)
    aux = torch.nn.Linear(64, 10)
    save_weights({**state, "aux.weight": aux.weight, "aux.bias": aux.bias}, root / "aux.safetensors")
    w = state.pop("classifier.weight")
    state.update({"classifier.parametrizations.weight.original0": w.norm(dim=1, keepdim=True),
                  "classifier.parametrizations.weight.original1": w})
    save_weights(state, root / "normed.safetensors")
    return {"root": root, "net": root / "user_net.py", "weights": root / "net.safetensors",
            "nolayers": root / "nolayers.safetensors", "bad_syntax": root / "bad_syntax.py",
            "aux": root / "aux.safetensors", "normed": root / "normed.safetensors"}


def test_model_class_from_a_file(files, user):
    """No --size, no --num-classes: 28 px from the images, 10 classes from the model's output."""
    out, report = files["root"] / "user_edited.safetensors", files["root"] / "user_edit.json"
    writes_bytecode = {k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}   # as a plain Python
    done = run("edit", "--model", f"{user['net']}:Net", "--weights", user["weights"], "--images", files["du"],
               "--trigger", "white", "--out", out, "--report", report, "--eval-images", files["test"], "--no-progress",
               env=writes_bytecode)
    assert done.returncode == 0, done.stderr
    assert f"{user['net']}:Net" in done.stdout and "10 classes, 1x28x28" in done.stdout
    rep = json.loads(report.read_text())
    assert rep["model"]["kind"] == "file" and rep["model"]["size"] == 28 and rep["model"]["num_classes"] == 10
    before, after = rep["metrics"]["before"], rep["metrics"]["after"]
    assert before["asr"] > 90 and after["asr"] < 20 and after["acc"] > 60, (before, after)
    layers = rep["settings"]["layers"]
    assert layers and all(n.startswith(("features.", "classifier")) for n in layers)
    assert not list(user["root"].glob("__pycache__")), "importing the user's file wrote bytecode beside it"

    # the same weights through a factory with keyword arguments
    done = run("evaluate", "--model", f"{user['net']}:build", "--model-kwargs", '{"width": 16}', "--weights", out,
               "--images", files["test"], "--trigger", "white", "--target", str(TARGET), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert f"ASR       {after['asr']:.2f} %" in done.stdout


def write_folder(root: Path, sizes: list[int], *, classes: int = 10, rgb: bool = True) -> Path:
    """An ImageFolder tree ``root/<class>/<i>.png`` with one image of each size per class."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i, size in enumerate(sizes):
            shape = (size, size, 3) if rgb else (size, size)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / str(c) / f"{i}.png")
    return root


@pytest.mark.parametrize("name, kwargs", [("squeezenet1_1", None), ("shufflenet_v2_x0_5", '{"num_classes": 10}')])
def test_torchvision_model_not_among_the_built_ins(tmp_path, name, kwargs):
    """A torchvision classifier (random weights saved here: nothing is downloaded) on a folder of 32 px RGB PNGs,
    no --size; squeezenet's class count is read from its weights, shufflenet's from --model-kwargs."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    weights = save_weights(model, tmp_path / f"{name}.pt", format="torch")
    images = write_folder(tmp_path / "images", [32, 32])
    out, report = tmp_path / "edited.pt", tmp_path / "edit.json"
    done = run("edit", "--model", f"torchvision:{name}", *(["--model-kwargs", kwargs] if kwargs else []),
               "--weights", weights, "--images", images, "--out", out, "--report", report, "--no-progress")
    assert done.returncode == 0, done.stderr
    rep = json.loads(report.read_text())
    assert rep["model"]["kind"] == "torchvision" and rep["model"]["kwargs"]["num_classes"] == 10
    assert (rep["model"]["size"], rep["model"]["channels"]) == (32, 3)
    assert rep["settings"]["mode"] == "¬BDK" and "before" in rep["metrics"] and "after" in rep["metrics"]
    layers = rep["settings"]["layers"]
    modules = dict(model.named_modules())
    assert layers and all(isinstance(modules[n], (torch.nn.Conv2d, torch.nn.Linear)) for n in layers)
    assert rep["settings"]["bn_mode"] == "update"
    old, new = model.state_dict(), load_weights(out).state
    assert new.keys() == old.keys()
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert {f"{n}.weight" for n in layers} <= changed
    bn_stats = {k for k in old if k.endswith("running_mean")}
    assert bool(bn_stats) == (name == "shufflenet_v2_x0_5") and bn_stats <= changed   # ¬BDK updates BN statistics


# ------------------------------------------------------------------------------------------------ bad input (#18)

def user_case(files, user, tmp_path, case: str) -> list[str]:
    net = user["net"]
    weights = ["--weights", str(user["weights"])]
    images = ["--images", str(files["du"])]
    cases = {
        "missing file": ["--model", f"{user['root']}/nope.py:Net", *weights, *images],
        "no class name": ["--model", str(net), *weights, *images],
        "class not in the file": ["--model", f"{net}:Nett", *weights, *images],
        "file fails to import": ["--model", f"{user['bad_syntax']}:Net", *weights, *images],
        "factory raises": ["--model", f"{net}:broken", *weights, *images],
        "factory returns no module": ["--model", f"{net}:not_a_model", *weights, *images],
        "weights of another shape": ["--model", f"{net}:build", "--model-kwargs", '{"width": 8}', *weights, *images],
        "no conv or linear layer": ["--model", f"{net}:NoLayers", "--weights", str(user["nolayers"]), *images],
        "computed weight": ["--model", f"{net}:normed", "--weights", str(user["normed"]), *images],
        "other class count": ["--model", f"{net}:Net", *weights, *images, "--num-classes", "5"],
        "kwargs not JSON": ["--model", f"{net}:build", "--model-kwargs", "{width: 8}", *weights, *images],
        "kwargs for a built-in": ["--model", "cnn", "--model-kwargs", '{"width": 8}',
                                  "--weights", str(files["safetensors"]), *images],
        "unknown torchvision model": ["--model", "torchvision:squeezenet1_2", *weights, *images],
        "torchvision download": ["--model", "torchvision:squeezenet1_1", "--model-kwargs", '{"weights": "DEFAULT"}',
                                 *weights, *images],
        "mixed image sizes": ["--model", f"{net}:Net", *weights, "--images",
                              str(write_folder(tmp_path / "mixed", [28, 32], classes=2, rgb=False))],
    }
    return cases[case]


BAD_MODEL_INPUT = {   # case: (exit code, words of the one-line message)
    "missing file": (2, "nope.py: no such file"),
    "no class name": (2, "name the class or factory"),
    "class not in the file": (2, "no 'Nett'; it defines Net, NoLayers, WithAux, broken, build, normed, not_a_model"),
    "file fails to import": (1, "bad_syntax.py: importing it failed: SyntaxError"),
    "factory raises": (1, "broken() raised RuntimeError: this factory needs the GPU build"),
    "factory returns no module": (1, "not_a_model() returned a str, not a torch.nn.Module"),
    "weights of another shape": (1, "shape mismatches (features.0.weight: file [16, 1, 3, 3] vs model [8, 1, 3, 3]"),
    "no conv or linear layer": (1, "the model has no conv or linear layer"),
    "computed weight": (1, "the weights of classifier are computed (weight norm"),
    "other class count": (1, "--num-classes 5, but the model outputs 10 logits"),
    "kwargs not JSON": (2, "expected a JSON object"),
    "kwargs for a built-in": (2, "--model-kwargs applies to torchvision: and FILE.py: models"),
    "unknown torchvision model": (2, "torchvision has no classification model 'squeezenet1_2'; did you mean"),
    "torchvision download": (2, "pretrained weights are never downloaded"),
    "mixed image sizes": (2, "not all one square size (28x28 (2 images), 32x32 (2 images)); pass --size N"),
}


def listing(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("case", BAD_MODEL_INPUT)
def test_bad_model_input_is_one_line_and_writes_nothing(files, user, tmp_path, capsys, case):
    code, words = BAD_MODEL_INPUT[case]
    args = user_case(files, user, tmp_path, case)
    out, report = tmp_path / "out" / "edited.safetensors", tmp_path / "out" / "edit.json"
    out.parent.mkdir()
    before = listing(tmp_path), listing(user["root"])
    got, stdout, err = call(capsys, "edit", *args, "--out", out, "--report", report, "--no-progress")
    assert got == code, err
    assert words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and stdout == ""
    assert not out.exists() and not report.exists()
    assert (listing(tmp_path), listing(user["root"])) == before     # no temporary file, no bytecode cache


def test_factory_that_raises_in_a_subprocess(files, user, tmp_path):
    out = tmp_path / "edited.safetensors"
    done = run("edit", "--model", f"{user['net']}:broken", "--weights", user["weights"], "--images", files["du"],
               "--out", out, "--report", tmp_path / "r.json")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("actedit edit: error: model ") and len(done.stderr.strip().splitlines()) == 1
    assert "RuntimeError: this factory needs the GPU build" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_layer_the_forward_pass_never_calls_is_left_out(files, user, tmp_path, capsys, caplog):
    report = tmp_path / "edit.json"
    code, _, err = call(capsys, "edit", "--model", f"{user['net']}:WithAux", "--weights", user["aux"], "--images",
                        files["du"], "--out", tmp_path / "e.safetensors", "--report", report, "--no-progress")
    assert code == 0, err
    assert "left out of the edit: aux" in caplog.text
    layers = json.loads(report.read_text())["settings"]["layers"]
    assert "aux" not in layers and "classifier" in layers
    edited, original = load_weights(tmp_path / "e.safetensors").state, load_weights(user["aux"]).state
    assert torch.equal(edited["aux.weight"], original["aux.weight"])
    assert not torch.equal(edited["classifier.weight"], original["classifier.weight"])


def test_weights_of_a_file_model_stay_untrusted(files, user, tmp_path, capsys):
    """The user's .py is imported (their code); the weights file is still read with weights_only=True."""
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"features.0.weight": Payload()}, tmp_path / "evil.pt")
    code, _, err = call(capsys, "edit", "--model", f"{user['net']}:Net", "--weights", tmp_path / "evil.pt",
                        "--images", files["du"], "--out", tmp_path / "e.pt", "--no-progress")
    assert code == 1 and "refused to load" in err and not marker.exists()
    assert not (tmp_path / "e.pt").exists()


def test_report_does_not_use_a_fixed_temporary_name(files, tmp_path, capsys):
    """The report is written through a unique temporary file: a stale ``.edit.json.tmp`` (here a folder, which a
    fixed name would trip over) is neither used nor removed."""
    stale = tmp_path / ".edit.json.tmp"
    stale.mkdir()
    report = tmp_path / "edit.json"
    code, _, err = call(capsys, "evaluate", "--model", "cnn", "--weights", files["safetensors"],
                        "--images", files["du"], "--report", report, "--no-progress")
    assert code == 0, err
    assert json.loads(report.read_text())["model"]["size"] == 28
    assert sorted(p.name for p in tmp_path.iterdir()) == [".edit.json.tmp", "edit.json"]
