"""Packaging: the wheel holds every module of ``actedit/``, and a plain (non-editable) ``pip install .`` imports.

Both build from a copy of the sources in a temporary folder (setuptools writes ``build/`` and ``*.egg-info`` next to
what it builds), offline: ``--no-build-isolation`` uses this environment's setuptools, ``--no-deps``/``--no-index``
fetch nothing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _env() -> dict[str, str]:
    """This environment without PYTHONPATH, so that only what pip installed can be imported."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _source_modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "actedit").rglob("*.py")
            if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of what ``pip install .`` reads: pyproject.toml, README.md and the package."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "actedit", src / "actedit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def test_pyproject_finds_every_subpackage():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"       # the lock's floor (tomllib, the pins)
    subpackages = {p.parent.relative_to(ROOT).as_posix().replace("/", ".")
                   for p in (ROOT / "actedit").rglob("__init__.py")}
    assert "actedit.baselines" in subpackages
    from setuptools import find_packages

    found = set(find_packages(str(ROOT), **{k: v for k, v in project["tool"]["setuptools"]["packages"]["find"].items()
                                           if k in ("include", "exclude")}))
    assert subpackages <= found, f"not shipped: {sorted(subpackages - found)}"


def test_wheel_holds_every_module(source, tmp_path):
    _run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path), "."], source)
    (wheel,) = tmp_path.glob("actedit-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("actedit/")}
    modules = _source_modules()
    assert {"actedit/baselines/__init__.py", "actedit/baselines/_common.py"} <= modules
    assert modules <= shipped, f"missing from {wheel.name}: {sorted(modules - shipped)}"


def test_plain_pip_install_imports_the_baselines(source, tmp_path):
    """``pip install .`` (not editable) into a fresh venv, then ``import actedit.baselines`` from outside the checkout.

    The venv is made without pip (fast); this environment's pip installs into it with ``--python``. The heavy
    dependencies (torch, ...) are not installed again: a ``.pth`` file appends this environment's site-packages
    *after* the venv's own, and a plain path line in a ``.pth`` does not run the editable install's finder there,
    so ``actedit`` can only come from what was just installed.
    """
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path).stdout.strip())
    (site / "zz_host_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*PIP, "--python", str(python), "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", "."],
         source)
    probe = ("import pathlib, actedit, actedit.baselines, actedit.baselines._common; "
             "print(pathlib.Path(actedit.__file__).resolve().parent)")
    where = Path(_run([str(python), "-c", probe], tmp_path).stdout.strip())
    assert where == (site / "actedit").resolve(), f"imported actedit from {where}, not the fresh install"
    assert {p.name for p in (where / "baselines").glob("*.py")} >= {"__init__.py", "_common.py"}


# --- the locks: one hashed resolution for every platform, and a CPU variant without the CUDA stack ------------------

def _lock(name: str) -> tuple[dict[str, set[str]], list[str]]:
    """``{normalised name: {versions}}`` of a compiled lock, and the requirement lines that carry no hash."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from lock import normal, pins
    finally:
        sys.path.pop(0)
    text = (ROOT / name).read_text()
    found: dict[str, set[str]] = {}
    for pkg, version, _ in pins(text):
        found.setdefault(normal(pkg), set()).add(version)
    blocks = [b for b in text.split("\n") if b and not b[0].isspace() and not b.startswith("#")]
    unhashed = [b for b in blocks if not b.rstrip().endswith("\\")]   # a pinned line continues with its hashes
    return found, unhashed


def test_the_lock_pins_every_dependency_with_hashes_for_every_platform():
    import tomllib

    lock, unhashed = _lock("requirements.lock")
    assert not unhashed, f"requirements without --hash (pip's hash-checking mode refuses them): {unhashed[:5]}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    from packaging.requirements import Requirement

    missing = {Requirement(d).name for d in wanted} - set(lock)
    assert not missing, f"pyproject dependencies not in requirements.lock: {sorted(missing)}"
    text = (ROOT / "requirements.lock").read_text()
    # universal: the CUDA wheels only where PyPI's torch needs them, platform helpers under their markers
    assert re.search(r"^nvidia-cublas==\S+ ; .*sys_platform == 'linux'", text, re.M)
    assert re.search(r"^colorama==\S+ ; sys_platform == 'win32'", text, re.M)
    assert re.search(r"^torch==\S+ \\$", text, re.M), "torch itself must install on every platform"


def test_the_cpu_lock_is_the_lock_without_torch_and_its_cuda_packages():
    full, _ = _lock("requirements.lock")
    cpu, unhashed = _lock("requirements-cpu.lock")
    assert not unhashed
    torch_stack = {n for n in full if re.match(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$", n)}
    assert {"torch", "torchvision", "triton", "nvidia-cublas"} <= torch_stack
    assert set(cpu) == set(full) - torch_stack
    assert all(cpu[n] == full[n] for n in cpu), "requirements-cpu.lock pins other versions than requirements.lock"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "requirements-cpu.lock" in setup and "download.pytorch.org/whl/cpu" in setup
