"""Tests for actedit.cache: hit, miss, corrupt/truncated/foreign entries rebuilt, atomic and concurrent writes."""
from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import struct
import time
from pathlib import Path

import pytest
import torch

from actedit import cache as cache_mod
from actedit.cache import Cache, key_hash

KEY = {"dataset": "toy", "seed": 0, "epochs": 1}


def state(value: float = 1.0, n: int = 64) -> dict[str, torch.Tensor]:
    return {"w": torch.arange(n, dtype=torch.float32) * value, "b": torch.tensor([value]),
            "steps": torch.tensor(3, dtype=torch.int64)}


class Builder:
    """Counts how often the cache had to build."""

    def __init__(self, value: float = 1.0) -> None:
        self.calls = 0
        self.value = value

    def __call__(self):
        self.calls += 1
        return state(self.value), {"loss": [0.5, 0.25], "note": "built"}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".safetensors")]


def test_miss_then_hit(tmp_path):
    c = Cache(tmp_path)
    assert c.load("models", KEY) is None
    build = Builder()
    s1, m1 = c.get_or_build("models", KEY, build)
    s2, m2 = c.get_or_build("models", KEY, build)
    assert build.calls == 1
    assert same(s1, state()) and same(s2, state())
    assert m1 == m2 == {"loss": [0.5, 0.25], "note": "built"}
    assert c.path("models", KEY).exists() and c.path("models", KEY).suffix == ".safetensors"
    assert Cache(tmp_path).load("models", KEY) is not None       # another instance, same root


def test_key_order_does_not_matter_and_any_change_misses(tmp_path):
    c = Cache(tmp_path)
    c.save("models", KEY, state())
    assert c.load("models", dict(reversed(list(KEY.items())))) is not None
    assert c.load("models", {**KEY, "seed": 1}) is None
    assert c.load("other-kind", KEY) is None
    assert key_hash(KEY) != key_hash({**KEY, "epochs": 2})


def data_start(path: Path) -> int:
    """Offset of the tensor data in a safetensors file (8-byte little-endian header length, then JSON)."""
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + n


def corrupt_data(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    start = data_start(path)
    for i in range(start, start + 4):          # first float of a tensor
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 17])


def rewrite_header(path: Path, change) -> None:
    raw = path.read_bytes()
    start = data_start(path)
    header = json.loads(raw[8:start])
    change(header["__metadata__"])
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[start:])


def other_version(path: Path) -> None:
    rewrite_header(path, lambda meta: meta.update(actedit_version="0.0.0-other"))


def other_key(path: Path) -> None:
    rewrite_header(path, lambda meta: meta.update(key=json.dumps({**KEY, "seed": 99}, sort_keys=True)))


def pickle_instead(path: Path) -> None:
    path.write_bytes(pickle.dumps(state()))


def empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage, reason", [
    (corrupt_data, "checksum mismatch"), (truncate, ""), (other_version, "written by actedit 0.0.0-other"),
    (other_key, "key mismatch"), (pickle_instead, ""), (empty, "")], ids=lambda v: getattr(v, "__name__", ""))
def test_unusable_entry_is_rebuilt_never_loaded(tmp_path, damage, reason, caplog):
    c = Cache(tmp_path)
    c.get_or_build("models", KEY, Builder(1.0))
    path = c.path("models", KEY)
    damage(path)
    with caplog.at_level("WARNING", logger="actedit.cache"):
        assert c.load("models", KEY) is None
    assert "rebuilt" in caplog.text and reason in caplog.text
    build = Builder(2.0)
    rebuilt, meta = c.get_or_build("models", KEY, build)
    assert build.calls == 1 and same(rebuilt, state(2.0))
    loaded = c.load("models", KEY)
    assert loaded is not None and same(loaded[0], state(2.0)) and loaded[1]["note"] == "built"


def test_rewritten_header_alone_still_loads(tmp_path):
    """Control for the header edits above: re-serialising the header unchanged keeps the entry valid."""
    c = Cache(tmp_path)
    c.save("models", KEY, state())
    rewrite_header(c.path("models", KEY), lambda meta: None)
    assert c.load("models", KEY) is not None


def test_other_package_version_misses(tmp_path, monkeypatch):
    c = Cache(tmp_path)
    c.save("models", KEY, state())
    monkeypatch.setattr(cache_mod, "__version__", "999.0")
    assert c.load("models", KEY) is None          # different hash, and the header check would refuse it too
    build = Builder()
    c.get_or_build("models", KEY, build)
    assert build.calls == 1


def test_entry_from_another_version_at_the_same_path_is_refused(tmp_path, monkeypatch):
    c = Cache(tmp_path)
    monkeypatch.setattr(cache_mod, "__version__", "999.0")
    c.save("models", KEY, state())
    written = c.path("models", KEY)
    monkeypatch.undo()
    target = c.path("models", KEY)
    assert target != written
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(written.read_bytes())
    assert c.load("models", KEY) is None


def test_loading_never_unpickles(tmp_path):
    """A pickle at an entry's path whose __reduce__ would create a file: refused, and the file never appears."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    c = Cache(tmp_path / "cache")
    path = c.path("models", KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"w": Payload()}))
    assert c.load("models", KEY) is None
    assert not marker.exists()


def test_atomic_write_leaves_no_temporary_files(tmp_path, monkeypatch):
    c = Cache(tmp_path)
    for i in range(3):
        c.save("models", {**KEY, "seed": i}, state(i))
    assert leftovers(tmp_path) == []

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        c.save("models", {**KEY, "seed": 7}, state())
    assert leftovers(tmp_path) == []
    assert not c.path("models", {**KEY, "seed": 7}).exists()
    with pytest.raises(OSError):
        c.save("models", KEY, state(5.0))      # a failed overwrite keeps the old entry whole
    loaded = c.load("models", KEY)
    assert loaded is not None and same(loaded[0], state(0.0))


def _writer(root: str, value: float, barrier, rounds: int) -> None:
    torch.set_num_threads(1)
    c = Cache(root)
    big = {"w": torch.full((1 << 18,), value), "v": torch.tensor([value])}
    barrier.wait()
    for _ in range(rounds):
        c.save("models", KEY, big)


def test_two_processes_writing_the_same_entry(tmp_path):
    """Fork (conftest keeps torch at one thread, so no OpenMP pool is inherited): both writers finish, the entry
    is one writer's whole state, and no temporary file is left."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), v, barrier, 15)) for v in (1.0, 2.0)]
    for p in procs:
        p.start()
    barrier.wait()
    c = Cache(tmp_path)
    seen, deadline = 0, time.monotonic() + 120
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        hit = c.load("models", KEY)            # a reader meanwhile sees nothing or a whole entry, never half
        if hit is not None:
            seen += 1
            assert hit[0]["w"].unique().tolist() == hit[0]["v"].tolist()
    for p in procs:
        p.join(timeout=1)
        if p.is_alive():
            p.kill()
        assert p.exitcode == 0
    hit = c.load("models", KEY)
    assert hit is not None
    value = hit[0]["v"].item()
    assert value in (1.0, 2.0) and torch.equal(hit[0]["w"], torch.full((1 << 18,), value))
    assert leftovers(tmp_path) == []


def test_shared_tensors_can_be_cached(tmp_path):
    tied = torch.arange(6.0)
    c = Cache(tmp_path)
    c.save("models", KEY, {"encoder.weight": tied, "decoder.weight": tied})
    loaded = c.load("models", KEY)
    assert loaded is not None
    assert torch.equal(loaded[0]["encoder.weight"], tied) and torch.equal(loaded[0]["decoder.weight"], tied)


def _get_or_build(root: str, log_path: str, barrier) -> None:
    torch.set_num_threads(1)

    def build():
        with open(log_path, "a") as handle:
            handle.write("built\n")
        time.sleep(0.3)                        # long enough for the other process to arrive meanwhile
        return state(4.0), {"note": "built"}

    barrier.wait()
    loaded, meta = Cache(root).get_or_build("models", KEY, build)
    assert same(loaded, state(4.0)) and meta["note"] == "built"


def test_two_processes_building_the_same_entry_build_once(tmp_path):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    log_path = tmp_path / "builds.log"
    procs = [ctx.Process(target=_get_or_build, args=(str(tmp_path / "cache"), str(log_path), barrier))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
        assert p.exitcode == 0
    assert log_path.read_text().splitlines() == ["built"]
    hit = Cache(tmp_path / "cache").load("models", KEY)
    assert hit is not None and same(hit[0], state(4.0))


# --- stale entries: a change in the code that trains a model, or another device, is another entry -------------------

_BUILD_ONCE = """
import json, sys, torch
from actedit.cache import Cache
c, key, built = Cache(sys.argv[1]), {"dataset": "toy", "seed": 0}, []
def build():
    built.append(1)
    return {"w": torch.tensor([float(sys.argv[2])])}, {}
state, _ = c.get_or_build("models", key, build)
print(json.dumps({"path": str(c.path("models", key)), "built": bool(built), "w": state["w"].item()}))
"""


def _package_copy(tmp_path: Path) -> Path:
    import shutil

    src = Path(cache_mod.__file__).resolve().parent
    dest = tmp_path / "pkg"
    shutil.copytree(src, dest / "actedit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _get_or_build_in(pkg: Path, root: Path, value: float) -> dict:
    """``get_or_build`` in a fresh interpreter that imports the package copy at ``pkg`` (its code as it is now)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(pkg), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _BUILD_ONCE, str(root), str(value)], cwd=pkg, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_a_change_in_training_code_is_a_new_entry_and_the_old_one_is_not_served(tmp_path):
    pkg, root = _package_copy(tmp_path), tmp_path / "cache"
    first = _get_or_build_in(pkg, root, 1.0)
    assert first["built"] and first["w"] == 1.0
    again = _get_or_build_in(pkg, root, 2.0)                 # control: same code, same entry, not rebuilt
    assert not again["built"] and again["w"] == 1.0 and again["path"] == first["path"]
    # a comment, and code the models do not depend on, change nothing
    _append(pkg / "actedit" / "training.py", "\n# a comment about the loop\n")
    _append(pkg / "actedit" / "summary.py", "\nUNRELATED = 1\n")
    _append(pkg / "actedit" / "experiments.py", "\ndef unrelated_helper():\n    return 1\n")
    kept = _get_or_build_in(pkg, root, 3.0)
    assert not kept["built"] and kept["w"] == 1.0 and kept["path"] == first["path"]
    # the training loop changes (one more statement): the old weights must not come back
    _append(pkg / "actedit" / "training.py", "\nTRAINING_CHANGED = True\n")
    changed = _get_or_build_in(pkg, root, 4.0)
    assert changed["built"] and changed["w"] == 4.0
    assert changed["path"] != first["path"]
    # the old entry, even copied to the new path, is refused: its header names other sources
    Path(changed["path"]).write_bytes(Path(first["path"]).read_bytes())
    rebuilt = _get_or_build_in(pkg, root, 5.0)
    assert rebuilt["built"] and rebuilt["w"] == 5.0


class _Recorder(Cache):
    """Records the (kind, key) of the first entry asked for, and stops before anything is trained."""

    class Stop(Exception):
        pass

    def __init__(self, root) -> None:
        super().__init__(root)
        self.asked: list[tuple[str, dict]] = []

    def get_or_build(self, kind, key, build):
        self.asked.append((kind, key))
        raise self.Stop


@pytest.mark.parametrize("trigger, kind", [("white", "models"), ("narcissus", "narcissus")])
def test_victims_trained_on_another_device_are_other_entries(tmp_path, trigger, kind):
    """A GPU-trained victim (or Narcissus pattern) is not served to a CPU run, nor the reverse."""
    from actedit.experiments import VictimSpec, get_victim

    spec = VictimSpec(trigger=trigger, train_limit=600, test_limit=100, unseen=100)
    paths = {}
    for device in ("cpu", "cuda"):
        recorder = _Recorder(tmp_path)
        with pytest.raises(_Recorder.Stop):
            get_victim(spec, device=device, cache=recorder, progress=False)
        (asked_kind, key), = recorder.asked
        assert asked_kind == kind
        paths[device] = recorder.path(kind, key)
    assert paths["cpu"] != paths["cuda"]


def test_a_docstring_change_keeps_the_code_digest(tmp_path):
    """Only code counts: a module whose docstrings and comments change has the same digest; a code change does not."""
    base = "def f(x):\n    '''Add one.'''\n    return x + 1  # why\n"
    paths = {}
    for name, text in {"base": base, "doc": base.replace("Add one.", "Adds one to x."),
                       "comment": base.replace("# why", "# because"), "code": base.replace("+ 1", "+ 2")}.items():
        paths[name] = tmp_path / f"{name}.py"
        paths[name].write_text(text)
    digest = {name: cache_mod._code_digest(path) for name, path in paths.items()}
    assert digest["base"] == digest["doc"] == digest["comment"] != digest["code"]


def test_one_definition_of_a_module_can_be_a_source(tmp_path):
    """``experiments.get_victim`` in SOURCES: that function's code counts, the rest of the module does not."""
    path = tmp_path / "m.py"
    path.write_text("def f(x):\n    return x + 1\n\ndef g(x):\n    return x\n")
    before = cache_mod._code_digest(path, "f")
    path.write_text("def f(x):\n    return x + 1\n\ndef g(x):\n    return -x\n\nNEW = 1\n")
    cache_mod._code_digest.cache_clear()
    assert cache_mod._code_digest(path, "f") == before
    path.write_text("def f(x):\n    return x + 2\n")
    cache_mod._code_digest.cache_clear()
    assert cache_mod._code_digest(path, "f") != before
    with pytest.raises(LookupError, match="'h'"):
        cache_mod._code_digest(path, "h")


def test_every_module_named_in_sources_exists():
    for kind, names in cache_mod.SOURCES.items():
        assert cache_mod.source_digest(kind)                  # raises FileNotFoundError for a missing module
        assert {"training", "models", "poisoning", "data", "cache"} <= set(names), kind


def test_waiting_for_a_held_entry_times_out_with_a_clear_error(tmp_path):
    import filelock

    c = Cache(tmp_path, lock_timeout=0.2)
    lock_path = c.path("models", KEY).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True)
    build = Builder()
    with filelock.FileLock(str(lock_path)):
        with pytest.raises(cache_mod.CacheLockTimeout) as caught:
            c.get_or_build("models", KEY, build)
    assert str(lock_path) in str(caught.value) and "0.2 s" in str(caught.value)
    assert build.calls == 0 and not c.path("models", KEY).exists()
    c.get_or_build("models", KEY, build)                     # released: builds once
    assert build.calls == 1
    with pytest.raises(ValueError, match="lock_timeout"):
        Cache(tmp_path, lock_timeout=-1)


def test_without_flock_the_lock_falls_back_to_a_lock_file(tmp_path, monkeypatch):
    import filelock

    class NoFlock(filelock.SoftFileLock):
        def _acquire(self) -> None:
            raise NotImplementedError("FileSystem does not appear to support flock")

    monkeypatch.setattr(filelock, "FileLock", NoFlock)
    build = Builder()
    c = Cache(tmp_path, lock_timeout=0.2)
    c.get_or_build("models", KEY, build)
    c.get_or_build("models", KEY, build)
    assert build.calls == 1 and c.load("models", KEY) is not None
    # a lock file left by a killed process: a clear error after the timeout, naming the file
    other = {**KEY, "seed": 5}
    lock_path = c.path("models", other).with_suffix(".lock")
    lock_path.write_text("")
    with pytest.raises(cache_mod.CacheLockTimeout, match="stale") as caught:
        c.get_or_build("models", other, build)
    assert str(lock_path) in str(caught.value) and build.calls == 1


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with cache_mod.atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed while writing")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    with cache_mod.atomic_write(target) as a, cache_mod.atomic_write(target) as b:
        assert a != b and a.parent == target.parent          # unique temporary names, same folder (same device)
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
