"""Safe model files and the defender's images (issue 8, files part; issue 9), any architecture (issue 18)."""
from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from actedit import io as aio
from actedit.io import (ModelSpecError, atomic_path, check_state_dict, detect_format, image_sizes, load_images,
                        load_labels, load_model, load_patch, load_weights, parse_model_spec, save_weights)
from actedit.models import build_model


def cnn(num_classes: int = 10, channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", num_classes=num_classes, channels=channels, size=28).eval()


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ------------------------------------------------------------------------------------------------ weights

@pytest.mark.parametrize("fmt, name", [("safetensors", "m.safetensors"), ("torch", "m.pt"), ("torch", "m.bin")])
def test_round_trip_keeps_every_tensor(tmp_path, fmt, name):
    model = cnn()
    path = save_weights(model, tmp_path / name, format=fmt)
    assert detect_format(path) == fmt
    weights = load_weights(path)
    assert weights.format == fmt
    assert weights.state.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(weights.state[k], v)
    loaded = load_model("cnn", path, num_classes=10, size=28)
    assert loaded.format == fmt and loaded.channels == 1 and not loaded.model.training


def test_format_comes_from_content_not_name(tmp_path):
    path = save_weights(cnn(), tmp_path / "weights.safetensors", format="torch")
    assert detect_format(path) == "torch"


def test_safetensors_metadata_is_written(tmp_path):
    path = save_weights(cnn(), tmp_path / "m.safetensors", metadata={"note": "edited", "gamma": 0.5})
    meta = load_weights(path).metadata
    assert meta["note"] == "edited" and meta["gamma"] == "0.5" and "actedit_version" in meta


def test_wrapped_and_dataparallel_checkpoints_are_unwrapped(tmp_path):
    state = cnn().state_dict()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "c.pt")
    loaded = load_weights(tmp_path / "c.pt").state
    assert loaded.keys() == state.keys()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_weights(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_model("cnn", tmp_path / "nope.safetensors", num_classes=10, size=28)


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
@pytest.mark.parametrize("keep", [0, 0.5])
def test_truncated_file_names_the_file(tmp_path, fmt, keep):
    full = save_weights(cnn(), tmp_path / "full.bin", format=fmt).read_bytes()
    path = tmp_path / f"cut_{fmt}.bin"
    path.write_bytes(full[:int(len(full) * keep)])
    with pytest.raises(ValueError, match=rf"cut_{fmt}\.bin.*(empty|truncated|corrupt)"):
        load_weights(path)


def test_garbage_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights")
    with pytest.raises(ValueError, match="notes.pt: not a safetensors or torch checkpoint"):
        load_weights(path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        load_weights(tmp_path)


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump", "nested"])
def test_pickle_that_would_run_code_is_refused(tmp_path, how):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(Payload(marker), path)
    elif how == "pickle.dump":
        with path.open("wb") as f:
            pickle.dump({"weight": Payload(marker)}, f, protocol=2)
    else:
        torch.save({"state_dict": {"0.weight": torch.zeros(1), "x": Payload(marker)}}, path)
    with pytest.raises(ValueError, match=r"evil\.pt: refused to load.*could run code"):
        load_model("cnn", path, num_classes=10, size=28)
    assert not marker.exists()
    # the payload is real: an unrestricted unpickler runs it (the legacy-format case then fails on its magic number)
    try:
        torch.load(path, weights_only=False)
    except RuntimeError:
        pass
    assert marker.exists()


def test_pickled_module_is_refused_with_advice(tmp_path):
    torch.save(cnn(), tmp_path / "whole.pt")
    with pytest.raises(ValueError, match=r"whole\.pt: refused.*state_dict"):
        load_weights(tmp_path / "whole.pt")


def test_non_tensor_entries_are_refused(tmp_path):
    torch.save({"weight": torch.zeros(2), "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match="not tensors: epoch"):
        load_weights(tmp_path / "mixed.pt")


def test_other_architecture_lists_the_keys(tmp_path):
    path = save_weights(cnn(), tmp_path / "cnn.safetensors")
    with pytest.raises(ValueError) as err:
        load_model("resnet18", path, num_classes=10, size=28)
    message = str(err.value)
    assert "missing keys (conv1.weight" in message and "unexpected keys (0.weight" in message
    assert "resnet18" in message


def test_other_class_count_lists_shape_mismatches(tmp_path):
    path = save_weights(cnn(num_classes=10), tmp_path / "cnn.pt", format="torch")
    with pytest.raises(ValueError, match=r"2 shape mismatches \(19\.weight: file \[10, 64\] vs model \[5, 64\]"):
        load_model("cnn", path, num_classes=5, size=28)


def test_channels_are_read_from_the_weights(tmp_path):
    path = save_weights(cnn(channels=3), tmp_path / "rgb.safetensors")
    assert load_model("cnn", path, num_classes=10, size=32).channels == 3
    with pytest.raises(ValueError, match="shape mismatches"):
        load_model("cnn", path, num_classes=10, size=32, channels=1)


def test_check_state_dict_accepts_exact_match():
    model = cnn()
    check_state_dict(model, model.state_dict())


def test_save_is_atomic(tmp_path, monkeypatch):
    path = save_weights(cnn(), tmp_path / "m.safetensors")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_weights(cnn(num_classes=3), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_save_refuses_bad_targets(tmp_path):
    with pytest.raises(ValueError, match="unknown weights format"):
        save_weights(cnn(), tmp_path / "m.onnx", format="onnx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_weights(cnn(), tmp_path / "missing" / "m.pt", format="torch")


def test_saved_weights_do_not_alias_the_model(tmp_path):
    model = cnn()
    state = load_weights(save_weights(model, tmp_path / "m.pt", format="torch")).state
    with torch.no_grad():
        next(model.parameters()).add_(1)
    assert not torch.equal(state["0.weight"], model.state_dict()["0.weight"])


# ------------------------------------------------------------------------------------------------ images

def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_imagefolder_layout_with_named_classes(tmp_path):
    for cls, value in (("cat", 50), ("dog", 200)):
        for i in range(3):
            write_png(tmp_path / cls / f"{i}.png", np.full((20, 20, 3), value, np.uint8))
    data = load_images(tmp_path, size=28, channels=3)
    assert data.layout == "imagefolder" and data.class_names == ("cat", "dog")
    assert data.images.shape == (6, 3, 28, 28) and data.images.dtype == torch.float32
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.allclose(data.images[0], torch.full((3, 28, 28), 50 / 255), atol=1e-6)
    assert data.names[0] == "cat/0.png"


def test_numeric_class_folders_are_the_labels(tmp_path):
    for cls in ("2", "7"):
        write_png(tmp_path / cls / "a.png", np.zeros((28, 28), np.uint8))
    assert load_images(tmp_path, size=28, channels=1).labels.tolist() == [2, 7]


def test_flat_folder_is_unlabelled_and_sorted(tmp_path):
    for name, value in (("b.png", 10), ("a.jpg", 250), ("c.PNG", 128)):
        write_png(tmp_path / name, np.full((28, 28), value, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_images(tmp_path, size=28, channels=1)
    assert data.layout == "flat" and data.labels is None
    assert data.names == ("a.jpg", "b.png", "c.PNG")


def test_rgba_and_rgb_become_grey_by_luma(tmp_path):
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10            # pure red, almost transparent: alpha is dropped
    write_png(tmp_path / "red.png", rgba)
    data = load_images(tmp_path, size=28, channels=1)
    assert data.images.shape == (1, 1, 28, 28)
    assert data.images.mean().item() == pytest.approx(0.299, abs=2 / 255)


def test_grey_becomes_rgb_and_is_resized(tmp_path):
    write_png(tmp_path / "g.png", np.full((64, 48), 100, np.uint8))
    data = load_images(tmp_path, size=32, channels=3)
    assert data.images.shape == (1, 3, 32, 32)
    assert torch.allclose(data.images, torch.full_like(data.images, 100 / 255), atol=1e-5)


def test_labels_file_overrides_and_must_match(tmp_path):
    for i in range(3):
        write_png(tmp_path / "imgs" / f"{i}.png", np.zeros((28, 28), np.uint8))
    (tmp_path / "labels.txt").write_text("4\n1, 9\n")
    assert load_images(tmp_path / "imgs", size=28, channels=1, labels=tmp_path / "labels.txt").labels.tolist() == \
        [4, 1, 9]
    np.save(tmp_path / "two.npy", np.array([1, 2]))
    with pytest.raises(ValueError, match="3 images .* but 2 labels"):
        load_images(tmp_path / "imgs", size=28, channels=1, labels=tmp_path / "two.npy")
    (tmp_path / "bad.txt").write_text("1 cat 3")
    with pytest.raises(ValueError, match="integers"):
        load_labels(tmp_path / "bad.txt")


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
def test_npz_layouts_and_uint8_rule(tmp_path, layout):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    stored = {"nhwc": images, "nchw": images.transpose(0, 3, 1, 2), "nhw": images[..., 0]}[layout]
    np.savez(tmp_path / "d.npz", images=stored, labels=np.arange(5))
    data = load_images(tmp_path / "d.npz", size=28, channels=1)
    assert torch.equal(data.images, torch.from_numpy(images.transpose(0, 3, 1, 2)).float() / 255)
    assert data.labels.tolist() == [0, 1, 2, 3, 4] and data.layout == "npz"


def test_npz_float_must_be_in_unit_range(tmp_path):
    np.savez(tmp_path / "ok.npz", images=np.full((2, 3, 32, 32), 0.5, np.float32))
    assert load_images(tmp_path / "ok.npz", size=32, channels=3).images.mean().item() == pytest.approx(0.5)
    np.savez(tmp_path / "big.npz", images=np.full((2, 32, 32, 3), 200.0, np.float32))
    with pytest.raises(ValueError, match=r"big\.npz: float images must lie in \[0, 1\]"):
        load_images(tmp_path / "big.npz", size=32, channels=3)
    nan = np.zeros((2, 32, 32, 3), np.float32)
    nan[0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", images=nan)
    with pytest.raises(ValueError, match="NaN"):
        load_images(tmp_path / "nan.npz", size=32, channels=3)
    np.savez(tmp_path / "int.npz", images=np.zeros((2, 32, 32, 3), np.int32))
    with pytest.raises(ValueError, match="dtype int32"):
        load_images(tmp_path / "int.npz", size=32, channels=3)


def test_npz_problems_are_named(tmp_path):
    np.savez(tmp_path / "nokey.npz", pictures=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="no 'images' array \\(keys: pictures\\)"):
        load_images(tmp_path / "nokey.npz", size=28, channels=1)
    np.savez(tmp_path / "obj.npz", images=np.array([object(), object()], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        load_images(tmp_path / "obj.npz", size=28, channels=1)
    np.savez(tmp_path / "amb.npz", images=np.zeros((2, 3, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="ambiguous"):
        load_images(tmp_path / "amb.npz", size=28, channels=1)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "nokey.npz").read_bytes()[:50])
    with pytest.raises(ValueError, match="cut.npz: corrupt"):
        load_images(tmp_path / "cut.npz", size=28, channels=1)


def test_folder_problems_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_images(tmp_path / "missing", size=28, channels=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG or JPEG"):
        load_images(tmp_path / "empty", size=28, channels=1)
    write_png(tmp_path / "mixed" / "a.png", np.zeros((28, 28), np.uint8))
    write_png(tmp_path / "mixed" / "cls" / "b.png", np.zeros((28, 28), np.uint8))
    with pytest.raises(ValueError, match="mixes image files with class folders"):
        load_images(tmp_path / "mixed", size=28, channels=1)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"x\.png: cannot decode"):
        load_images(tmp_path / "broken", size=28, channels=1)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        load_images(tmp_path / "mixed", size=28, channels=2)


def test_patch_keeps_alpha(tmp_path):
    rgba = np.zeros((5, 4, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 255, 128
    write_png(tmp_path / "p.png", rgba)
    patch = load_patch(tmp_path / "p.png")
    assert patch.shape == (4, 5, 4)
    assert patch[3].mean().item() == pytest.approx(128 / 255)
    write_png(tmp_path / "g.png", np.full((3, 3), 255, np.uint8))
    assert load_patch(tmp_path / "g.png").shape == (1, 3, 3)


# ------------------------------------------------------------------------------------------------ any model (#18)

NETS = '''import torch
from torch import nn


class Mlp(nn.Module):
    """On flattened input: no convolution tells the channels."""

    def __init__(self, pixels=64, classes=3):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(pixels, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x):
        return self.net(x)


class Zoo:
    @staticmethod
    def conv(channels=3, classes=4):
        return nn.Sequential(nn.Conv2d(channels, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))
'''


@pytest.fixture
def nets(tmp_path) -> Path:
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


def test_spec_forms(nets):
    assert parse_model_spec("cnn").kind == "built-in"
    tv = parse_model_spec("torchvision:squeezenet1_1")
    assert (tv.kind, tv.name) == ("torchvision", "squeezenet1_1")
    f = parse_model_spec(f"{nets}:Zoo.conv")
    assert (f.kind, f.name, f.file) == ("file", "Zoo.conv", nets)


@pytest.mark.parametrize("spec, words", [
    ("resnet19", "unknown model 'resnet19' (did you mean resnet18?)"),
    ("torchvision:resnet19", "did you mean resnet18"),
    ("torchvision:fasterrcnn_resnet50_fpn", "no classification model"),
    ("missing.py:Net", "missing.py: no such file"),
    ("nets.py", "name the class or factory"),
    ("nets.py:", "name a class or factory"),
    ("", "non-empty"),
])
def test_spec_errors(spec, words):
    with pytest.raises(ModelSpecError, match=re.escape(words)):
        parse_model_spec(spec)


def test_file_model_with_kwargs_and_dotted_name(tmp_path, nets):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                 torch.nn.Linear(8, 4))
    path = save_weights(module, tmp_path / "conv.safetensors")
    loaded = load_model(f"{nets}:Zoo.conv", path, kwargs={"channels": 1})
    assert (loaded.spec.kind, loaded.channels, loaded.num_classes) == ("file", 1, None)
    assert not loaded.model.training
    x = torch.rand(2, 1, 12, 12)
    assert torch.equal(loaded.model(x), module(x))
    with pytest.raises(ValueError, match="channels 3, but its first convolution '0' takes 1"):
        load_model(f"{nets}:Zoo.conv", path, kwargs={"channels": 1}, channels=3)
    with pytest.raises(ValueError, match=r"shape mismatches \(0\.weight: file \[8, 1, 3, 3\] vs model \[8, 3, 3, 3\]"):
        load_model(f"{nets}:Zoo.conv", path)


def test_file_model_without_a_convolution_leaves_channels_open(tmp_path, nets):
    torch.manual_seed(0)
    path = save_weights(load_model_module(nets, "Mlp"), tmp_path / "mlp.pt", format="torch")
    loaded = load_model(f"{nets}:Mlp", path)
    assert loaded.channels is None and loaded.model(torch.rand(5, 1, 8, 8)).shape == (5, 3)


def load_model_module(nets: Path, name: str) -> torch.nn.Module:
    """The class from the file, imported the ordinary way (what the user would do in their own script)."""
    sys.path.insert(0, str(nets.parent))
    try:
        import nets as module  # noqa: PLC0415
        return getattr(module, name)()
    finally:
        sys.path.remove(str(nets.parent))
        sys.modules.pop("nets", None)


def test_importing_the_file_leaves_no_trace(tmp_path, nets, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)   # as in a plain Python (this run may set it)
    path = save_weights(load_model_module(nets, "Mlp"), tmp_path / "mlp.pt", format="torch")
    for pyc in tmp_path.rglob("__pycache__"):            # the ordinary import above may have written one
        for f in pyc.iterdir():
            f.unlink()
        pyc.rmdir()
    before, state = sorted(tmp_path.rglob("*")), (list(sys.path), sys.dont_write_bytecode)
    load_model(f"{nets}:Mlp", path)
    assert sorted(tmp_path.rglob("*")) == before          # no __pycache__ beside the user's file
    assert (sys.path, sys.dont_write_bytecode) == state


def test_torchvision_model_reads_its_class_count_from_the_weights(tmp_path):
    import torchvision

    model = torchvision.models.get_model("squeezenet1_1", weights=None, num_classes=7)
    path = save_weights(model, tmp_path / "sq.safetensors")     # safetensors sorts the keys by name
    loaded = load_model("torchvision:squeezenet1_1", path)
    assert (loaded.num_classes, loaded.channels, loaded.kwargs) == (7, 3, {"num_classes": 7})
    with pytest.raises(ValueError, match="num_classes 5 but the kwargs say 7"):
        load_model("torchvision:squeezenet1_1", path, num_classes=5, kwargs={"num_classes": 7})
    with pytest.raises(ModelSpecError, match="never downloaded"):
        load_model("torchvision:squeezenet1_1", path, kwargs={"weights": "DEFAULT"})
    with pytest.raises(ValueError, match="raised TypeError"):
        load_model("torchvision:squeezenet1_1", path, kwargs={"depth": 3})


def test_built_in_reads_classes_and_channels_from_the_weights(tmp_path):
    path = save_weights(cnn(num_classes=4, channels=3), tmp_path / "m.safetensors")
    loaded = load_model("cnn", path, size=28)
    assert (loaded.num_classes, loaded.channels, loaded.spec.kind) == (4, 3, "built-in")
    with pytest.raises(ModelSpecError, match="not keyword arguments"):
        load_model("cnn", path, size=28, kwargs={"width": 8})
    with pytest.raises(ValueError, match="pass size"):
        load_model("cnn", path)


def test_images_keep_their_own_size_and_channels(tmp_path):
    for i in range(2):
        write_png(tmp_path / "grey" / f"{i}.png", np.full((20, 20), 60, np.uint8))
        write_png(tmp_path / "rgb" / f"{i}.png", np.full((20, 20, 3), 60, np.uint8))
    assert load_images(tmp_path / "grey").images.shape == (2, 1, 20, 20)
    assert load_images(tmp_path / "rgb").images.shape == (2, 3, 20, 20)
    assert image_sizes(tmp_path / "rgb") == {(20, 20): 2}
    np.savez(tmp_path / "d.npz", images=np.zeros((3, 16, 16, 3), np.uint8))
    assert load_images(tmp_path / "d.npz").images.shape == (3, 3, 16, 16)
    assert image_sizes(tmp_path / "d.npz") == {(16, 16): 3}


def test_mixed_or_oblong_sizes_need_a_size(tmp_path):
    write_png(tmp_path / "mixed" / "a.png", np.zeros((28, 28), np.uint8))
    write_png(tmp_path / "mixed" / "b.png", np.zeros((32, 32), np.uint8))
    assert image_sizes(tmp_path / "mixed") == {(28, 28): 1, (32, 32): 1}
    with pytest.raises(ValueError, match=r"different sizes \(28x28 \(1\), 32x32 \(1\)\); give the size"):
        load_images(tmp_path / "mixed")
    assert load_images(tmp_path / "mixed", size=24).images.shape == (2, 1, 24, 24)
    write_png(tmp_path / "oblong" / "a.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(ValueError, match="20x30, not square"):
        load_images(tmp_path / "oblong")


def test_atomic_path_uses_a_unique_name_and_cleans_up(tmp_path):
    target = tmp_path / "r.json"
    (tmp_path / ".r.json.tmp").mkdir()                 # a fixed temporary name would collide with this
    with atomic_path(target) as tmp:
        assert Path(tmp).parent == tmp_path and Path(tmp).name != ".r.json.tmp"
        Path(tmp).write_text("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.json.tmp", "r.json"]


def test_atomic_path_gives_the_permissions_open_would(tmp_path):
    """Not mkstemp's private 0600: a new file gets 0666 less the umask, a replaced one keeps its mode."""
    (tmp_path / "plain.txt").write_text("x")
    with atomic_path(tmp_path / "new.txt") as tmp:
        Path(tmp).write_text("x")
    assert (tmp_path / "new.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode
    (tmp_path / "new.txt").chmod(0o640)
    with atomic_path(tmp_path / "new.txt") as tmp:
        Path(tmp).write_text("y")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640


def test_public_names():
    for name in aio.__all__:
        assert hasattr(aio, name), name
