#!/usr/bin/env python3
"""Rewrite the lock files (``make lock``): one resolution for every platform, with hashes, from PyPI.

- ``requirements.lock``: ``pyproject.toml``'s dependencies with the ``book`` and ``test`` extras, plus
  ``requirements.in`` (the build tools), resolved by ``uv pip compile --universal`` for Python >= 3.11 on every OS
  and machine: platform-only packages carry environment markers (the CUDA wheels that PyPI's torch needs on Linux,
  ``appnope`` on macOS, ``colorama`` on Windows), and every file is pinned by its SHA-256, so pip installs in
  hash-checking mode. This is what ``make setup`` installs.
- ``requirements-cpu.lock``: the same pins without torch, torchvision and the packages only they need (triton,
  ``nvidia-*``, ``cuda-*``), for the CPU-only set-up: torch's CPU wheels come from PyTorch's own index
  (``ACTEDIT_TORCH=cpu make setup``; see the README).
- ``environment.yml``: its pip section is rewritten with the pins (and markers) of ``requirements.lock``; the
  conda-forge section keeps its packages, with the lock's versions.

Existing pins are kept (uv prefers the versions already in the output file); ``--upgrade`` re-resolves to the
newest releases. Needs ``uv`` (``python -m pip install uv``) and access to PyPI.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK, CPU_LOCK, ENV = ROOT / "requirements.lock", ROOT / "requirements-cpu.lock", ROOT / "environment.yml"
PYTHON_FLOOR = "3.11"
TORCH_ONLY = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def pins(text: str) -> list[tuple[str, str, str]]:
    """``(name, version, marker)`` of each requirement line of a compiled lock, in file order."""
    return [(m[1], m[2], (m[3] or "").strip()) for line in text.splitlines() if (m := _PIN.match(line))]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def uv() -> list[str]:
    try:
        import uv as uv_module  # noqa: F401
    except ImportError:
        if shutil.which("uv"):
            return ["uv"]
        sys.exit("lock: uv is needed: python -m pip install uv  (https://docs.astral.sh/uv/)")
    return [sys.executable, "-m", "uv"]


def compile_lock(output: Path, *, upgrade: bool, exclude: list[str] = ()) -> None:
    cmd = [*uv(), "pip", "compile", "pyproject.toml", "requirements.in", "--all-extras", "--universal",
           "--python-version", PYTHON_FLOOR, "--generate-hashes", "--index-url", "https://pypi.org/simple",
           "--custom-compile-command", "make lock", "--quiet", "-o", str(output.relative_to(ROOT))]
    cmd += [arg for name in exclude for arg in ("--no-emit-package", name)]
    if upgrade:
        cmd.append("--upgrade")
    subprocess.run(cmd, cwd=ROOT, check=True)


def rewrite_environment(lock_text: str) -> None:
    locked = {normal(name): (name, version, marker) for name, version, marker in pins(lock_text)}
    text = ENV.read_text()
    head, _, _ = text.partition("  - pip:\n")
    conda = set()

    def conda_pin(match: re.Match) -> str:
        name = normal(match[1])
        if name == "python":
            return match[0]
        if name not in locked:
            sys.exit(f"lock: environment.yml's conda package {match[1]} is not in requirements.lock")
        conda.add(name)
        return f"  - {match[1]}={locked[name][1]}"

    head = re.sub(r"^  - ([A-Za-z0-9_.\-]+)=(?!=)[^\s#]+", conda_pin, head, flags=re.M)
    lines = [f"      - {name}=={version}" + (f" ; {marker}" if marker else "")
             for name, version, marker in pins(lock_text) if normal(name) not in conda]
    ENV.write_text(head + "  - pip:\n" + "\n".join(lines) + "\n      - -e .\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="re-resolve to the newest releases")
    args = parser.parse_args(argv)
    compile_lock(LOCK, upgrade=args.upgrade)
    text = LOCK.read_text()
    torch_only = sorted({name for name, _, _ in pins(text) if TORCH_ONLY.match(normal(name))})
    shutil.copyfile(LOCK, CPU_LOCK)   # the main lock's pins as preferences: the CPU lock never drifts from it
    compile_lock(CPU_LOCK, upgrade=False, exclude=torch_only)
    rewrite_environment(text)
    print(f"lock: {LOCK.name} ({len(pins(text))} pins), {CPU_LOCK.name} (without {', '.join(torch_only)}), "
          f"{ENV.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
