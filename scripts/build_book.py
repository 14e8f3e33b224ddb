#!/usr/bin/env python3
"""Build the actedit book: jupytext -> papermill -> nbval -> Jupyter Book, skipping what has not changed.

Usage (from the repository root, inside the project's virtual environment)::

    python scripts/build_book.py                         # execute stale chapters, build _build/html
    python scripts/build_book.py --nbval                 # ... and check them with nbval first
    python scripts/build_book.py --params params/paper   # parameters from params/paper/<stem>.yml
    python scripts/build_book.py --only 03_method --force --no-html
    python scripts/build_book.py --list                  # which chapters are stale, and why not

Every entry of ``_toc.yml`` under ``book/_executed/`` is a chapter ``<stem>`` whose source is the Jupytext
MyST notebook ``notebooks/<stem>.md``. A chapter is executed with papermill (kernel ``python3``, working
directory the repository root) into ``book/_executed/<stem>.ipynb`` unless the stamp beside it,
``<stem>.stamp.json``, records the same hash of its inputs: the notebook source, the injected parameters,
the ``actedit`` package sources, ``requirements.lock`` and ``pyproject.toml``. nbval results are stamped
the same way (inputs plus the executed notebook and the sanitize file). Jupyter Book then renders the
executed notebooks with execution off and warnings as errors, and the built HTML is checked for scripts or
styles that would come from the network.

Chapters run in parallel (``--jobs``, default: the usable CPUs, at most 4), each kernel on one torch thread
(``OMP_NUM_THREADS=1``): small CNNs scale poorly across threads, so two one-thread kernels on two cores do more
work than one two-thread kernel, and the book's numbers no longer depend on how many cores the machine has
(torch's CPU kernels reduce in a thread-count-dependent order; the thread count is part of the stamp). A
chapter's front matter may say ``actedit: {after: [<stem>, ...]}`` (it loads models those chapters train: it
waits for them rather than blocking on the cache's lock) and ``cost: <seconds>`` (a scheduling hint for a cold
build; the last measured time is used once a stamp exists). The most work-unlocking chapters start first.

The kernels papermill and nbval start get ``TQDM_DISABLE=1`` (text progress bars on stderr would differ
from run to run) and ``PYTHONHASHSEED=0``. Widget progress bars (``tqdm.auto`` in a kernel ignores
``TQDM_DISABLE``) stay: the book shows them finished, nbval skips widget views and sanitizes their text.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import multiprocessing
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXECUTED_DIR = "book/_executed"
SOURCE_DIRS = ("notebooks",)
SOURCE_SUFFIXES = (".md", ".ipynb")
SANITIZE = "book/nbval_sanitize.cfg"
KERNEL = "python3"
# Bump when the pipeline changes how notebooks are executed, so that every chapter re-runs.
PIPELINE_VERSION = "1"
# Environment for the kernels papermill and nbval start (only defaults: the caller's values win).
KERNEL_ENV = {"TQDM_DISABLE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Scheduling cost of a chapter step with no stamp and no ``cost`` hint (seconds).
DEFAULT_COST = 60.0


class BuildError(RuntimeError):
    """A step of the pipeline failed; the message names the chapter and what to look at."""


@dataclass(frozen=True)
class Chapter:
    """One notebook chapter: its Jupytext source and where the executed copy and its stamp go."""

    stem: str
    source: Path
    executed: Path

    @property
    def stamp(self) -> Path:
        return self.executed.with_name(f"{self.stem}.stamp.json")


# --------------------------------------------------------------------------------------------- toc


def _toc_files(node: object) -> list[str]:
    """Every ``file:`` entry of a jb-book/jb-article toc, in reading order."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("root"), str):
            found.append(node["root"])
        if isinstance(node.get("file"), str):
            found.append(node["file"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                found.extend(_toc_files(child))
    elif isinstance(node, list):
        for child in node:
            found.extend(_toc_files(child))
    return found


def chapters_from_toc(root: Path = ROOT, toc: str = "_toc.yml") -> list[Chapter]:
    """The notebook chapters listed in ``_toc.yml`` (entries under ``book/_executed/``), in toc order."""
    toc_path = root / toc
    if not toc_path.is_file():
        raise FileNotFoundError(f"{toc_path} not found: the book's table of contents is needed")
    entries = _toc_files(yaml.safe_load(toc_path.read_text(encoding="utf-8")))
    chapters = []
    for entry in entries:
        path = Path(entry)
        if path.parent.as_posix() != EXECUTED_DIR:
            continue
        stem = path.name.removesuffix(".ipynb")
        candidates = [root / d / f"{stem}{s}" for d in SOURCE_DIRS for s in SOURCE_SUFFIXES]
        source = next((c for c in candidates if c.is_file()), None)
        if source is None:
            raise FileNotFoundError(
                f"_toc.yml lists {entry} but its source is missing: write notebooks/{stem}.md "
                f"(searched {', '.join(str(c.relative_to(root)) for c in candidates)})")
        chapters.append(Chapter(stem, source, root / EXECUTED_DIR / f"{stem}.ipynb"))
    return chapters


# ----------------------------------------------------------------------------------------- hashing


def load_params(params_dir: Path | None, stem: str) -> dict:
    """Parameters for chapter ``stem``: ``<params_dir>/<stem>.yml`` if given and present, else none."""
    if params_dir is None:
        return {}
    path = params_dir / f"{stem}.yml"
    if not path.is_file():
        return {}
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of parameter names to values, not {type(params).__name__}")
    return params


def _package_files(root: Path) -> list[Path]:
    package = root / "actedit"
    if not package.is_dir():
        return []
    return sorted(p for p in package.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))


def input_hash(chapter: Chapter, params: dict, root: Path = ROOT) -> str:
    """sha256 over everything an execution depends on (see the module docstring)."""
    digest = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + hashlib.sha256(data).digest())

    feed("pipeline", PIPELINE_VERSION.encode())
    feed("notebook", chapter.source.read_bytes())
    feed("params", json.dumps(params, sort_keys=True, default=str).encode())
    # torch's CPU results depend on its thread count: a different count is a different execution
    feed("threads", _kernel_env().get("OMP_NUM_THREADS", "").encode())
    for path in _package_files(root):
        feed(path.relative_to(root).as_posix(), path.read_bytes())
    for name in ("requirements.lock", "pyproject.toml"):
        if (root / name).is_file():
            feed(name, (root / name).read_bytes())
    if b"depends_on_chapters: true" in chapter.source.read_bytes():
        # the summary reads the other executed chapters (their glued numbers): it is stale when any of them changes
        for other in sorted(chapter.executed.parent.glob("*.ipynb")):
            if other != chapter.executed:
                feed(f"executed/{other.name}", other.read_bytes())
    return digest.hexdigest()


def nbval_hash(chapter: Chapter, inputs: str, root: Path = ROOT) -> str:
    """What an nbval pass vouches for: the inputs, the executed notebook and the sanitize rules."""
    digest = hashlib.sha256(inputs.encode())
    digest.update(hashlib.sha256(chapter.executed.read_bytes()).digest())
    sanitize = root / SANITIZE
    if sanitize.is_file():
        digest.update(hashlib.sha256(sanitize.read_bytes()).digest())
    return digest.hexdigest()


def read_stamp(chapter: Chapter) -> dict:
    try:
        stamp = json.loads(chapter.stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def write_stamp(chapter: Chapter, stamp: dict) -> None:
    tmp = chapter.stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, chapter.stamp)


def is_fresh(chapter: Chapter, inputs: str) -> bool:
    return chapter.executed.is_file() and read_stamp(chapter).get("hash") == inputs


# --------------------------------------------------------------------------------------- execution


def _kernel_env() -> dict[str, str]:
    return {**KERNEL_ENV, **os.environ}


def check_kernel() -> None:
    """Make sure kernel ``python3`` runs this interpreter (so notebooks see the venv and ``actedit``)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL).argv
    except NoSuchKernel as error:
        raise BuildError(f"no Jupyter kernel {KERNEL!r}: run `{sys.executable} -m ipykernel install "
                         f"--sys-prefix --name {KERNEL}`") from error
    program = argv[0] if argv else ""
    # jupyter_client runs a bare "python"/"python3" as sys.executable
    if program in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        return
    if Path(program).resolve() != Path(sys.executable).resolve():
        raise BuildError(f"kernel {KERNEL!r} runs {program}, not this environment's {sys.executable}: "
                         f"run `{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL}`")


def execute(chapter: Chapter, params: dict, *, root: Path = ROOT, force: bool = False,
            log=print) -> bool:
    """Execute ``chapter`` unless its stamp matches; returns True if it ran.

    The notebook is converted with jupytext, executed by papermill into ``_build/papermill/`` and moved
    into ``book/_executed/`` only when every cell succeeded. A failed run leaves its partial notebook in
    ``_build/failed/<stem>.ipynb`` and raises ``BuildError``.
    """
    import jupytext
    import nbformat
    import papermill

    inputs = input_hash(chapter, params, root)
    if not force and is_fresh(chapter, inputs):
        log(f"  {chapter.stem}: up to date (stamp {inputs[:12]})")
        return False

    work = root / "_build" / "papermill"
    work.mkdir(parents=True, exist_ok=True)
    chapter.executed.parent.mkdir(parents=True, exist_ok=True)
    chapter.stamp.unlink(missing_ok=True)
    notebook = jupytext.read(chapter.source)
    source_ipynb = work / f"{chapter.stem}.source.ipynb"
    output_ipynb = work / f"{chapter.stem}.ipynb"
    nbformat.write(notebook, source_ipynb)
    code_cells = sum(cell.cell_type == "code" for cell in notebook.cells) + bool(params)
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "its own defaults"
    log(f"  {chapter.stem}: executing {code_cells} code cells with {shown}")

    started = time.perf_counter()
    clock = {"cell": started, "done": 0}

    def on_cell_start(cell, cell_index):  # nbclient hook
        clock["cell"] = time.perf_counter()

    def on_cell_executed(cell, cell_index, execute_reply):  # nbclient hook
        clock["done"] += 1
        now = time.perf_counter()
        log(f"    cell {clock['done']}/{code_cells} ({now - clock['cell']:.1f} s, {now - started:.0f} s total)")

    saved_env = dict(os.environ)
    os.environ.update(_kernel_env())  # the kernel inherits this process's environment
    try:
        papermill.execute_notebook(
            str(source_ipynb), str(output_ipynb), parameters=params or None, kernel_name=KERNEL,
            cwd=str(root), progress_bar=False, log_output=False,
            on_cell_start=on_cell_start, on_cell_executed=on_cell_executed)
    except Exception as error:  # papermill raises its own error types; all mean the same here
        failed = root / "_build" / "failed" / f"{chapter.stem}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        if output_ipynb.is_file():
            shutil.move(output_ipynb, failed)
        raise BuildError(
            f"notebook {chapter.stem} ({chapter.source.relative_to(root)}) failed after "
            f"{time.perf_counter() - started:.0f} s; partial output in {failed.relative_to(root)}\n"
            f"{error}") from error
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    seconds = time.perf_counter() - started
    os.replace(output_ipynb, chapter.executed)
    write_stamp(chapter, {"hash": inputs, "source": chapter.source.relative_to(root).as_posix(),
                          "params": params, "seconds": round(seconds, 1),
                          "executed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    log(f"  {chapter.stem}: executed in {seconds:.1f} s -> {chapter.executed.relative_to(root)}")
    return True


def validate(chapter: Chapter, params: dict, *, root: Path = ROOT, force: bool = False,
             log=print) -> bool:
    """Re-run ``chapter``'s executed notebook under nbval unless a stamp vouches for it; True if it ran."""
    stamp = read_stamp(chapter)
    inputs = input_hash(chapter, params, root)
    if stamp.get("hash") != inputs or not chapter.executed.is_file():
        raise BuildError(f"notebook {chapter.stem}: executed copy missing or stale, execute it before nbval")
    wanted = nbval_hash(chapter, inputs, root)
    if not force and stamp.get("nbval") == wanted:
        log(f"  {chapter.stem}: nbval passed before for these outputs")
        return False
    log(f"  {chapter.stem}: nbval")
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
               "--nbval-sanitize-with", str(root / SANITIZE), "-p", "no:cacheprovider",
               "-o", "addopts=", "-q", str(chapter.executed)]
    # captured, so that chapters checked side by side do not interleave their reports; shown in full on failure
    result = subprocess.run(command, cwd=root, env=_kernel_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        print(result.stdout, flush=True)
        raise BuildError(f"notebook {chapter.stem}: nbval found outputs that differ from "
                         f"{chapter.executed.relative_to(root)} (pytest's report is above)")
    seconds = time.perf_counter() - started
    stamp["nbval"] = wanted
    stamp["nbval_seconds"] = round(seconds, 1)
    write_stamp(chapter, stamp)
    tail = result.stdout.strip().splitlines()[-1:] or [""]
    log(f"  {chapter.stem}: nbval passed in {seconds:.1f} s ({tail[0].strip('= ')})")
    return True


# --------------------------------------------------------------------------------------- scheduling


def chapter_options(chapter: Chapter) -> dict:
    """The ``actedit:`` mapping of a chapter's front matter (MyST source) or notebook metadata (``.ipynb``)."""
    text = chapter.source.read_text(encoding="utf-8")
    if chapter.source.suffix == ".ipynb":
        options = json.loads(text).get("metadata", {}).get("actedit", {})
    else:
        match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
        options = (yaml.safe_load(match.group(1)) or {}).get("actedit", {}) if match else {}
    if not isinstance(options, dict):
        raise ValueError(f"{chapter.source}: the front matter's actedit: must be a mapping, not {options!r}")
    return options


def dependencies(chapters: list[Chapter], known: list[str] | None = None) -> dict[str, set[str]]:
    """stem -> the selected chapters it must wait for (its ``after:`` list; all others if it reads them all).

    ``known`` are the stems ``after:`` may name (default: the selected ones); a chapter named there but not
    selected (``--only``) is not waited for.
    """
    stems = [c.stem for c in chapters]
    known = set(known or stems)
    deps: dict[str, set[str]] = {}
    for chapter in chapters:
        options = chapter_options(chapter)
        after = options.get("after") or []
        if isinstance(after, str) or not all(isinstance(a, str) for a in after):
            raise ValueError(f"{chapter.source}: actedit: after: must be a list of chapter stems, got {after!r}")
        unknown = sorted(set(after) - known)
        if unknown:
            raise ValueError(f"{chapter.source}: actedit: after: names {', '.join(unknown)}, not in _toc.yml")
        if options.get("depends_on_chapters"):
            after = [s for s in stems if s != chapter.stem]
        deps[chapter.stem] = {a for a in after if a in stems and a != chapter.stem}
    # a cycle would leave chapters waiting forever: refuse it up front
    state: dict[str, int] = {}

    def visit(stem: str, path: list[str]) -> None:
        if state.get(stem) == 2:
            return
        if state.get(stem) == 1:
            raise ValueError(f"chapters wait for each other in a cycle: {' -> '.join(path + [stem])}")
        state[stem] = 1
        for dep in sorted(deps[stem]):
            visit(dep, path + [stem])
        state[stem] = 2

    for stem in stems:
        visit(stem, [])
    return deps


def default_jobs() -> int:
    """``$ACTEDIT_BOOK_JOBS``, else the CPUs this process may use, at most 4 (each kernel holds ~2 GiB)."""
    value = os.environ.get("ACTEDIT_BOOK_JOBS")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"ACTEDIT_BOOK_JOBS must be a positive integer, got {value!r}")
        return int(value)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


@dataclass(frozen=True)
class Step:
    """One unit of scheduled work: ``execute`` or ``nbval`` one chapter."""

    kind: str
    chapter: Chapter
    params: dict
    force: bool


def run_step(step: Step) -> tuple[bool, float]:
    """Run ``step`` (in a worker process); returns (whether it ran, seconds). Raises ``BuildError``."""
    prefix = f"[{step.chapter.stem}]"

    def log(message: str) -> None:
        message = message.strip().removeprefix(f"{step.chapter.stem}: ")
        print(f"{prefix} {message}", flush=True)

    started = time.perf_counter()
    run = execute if step.kind == "execute" else validate
    ran = run(step.chapter, step.params, force=step.force, log=log)
    return ran, time.perf_counter() - started


def _call_run_step(step: Step) -> tuple[bool, float]:
    # looked up when called, in the worker: what is pickled is this function's name, not run_step itself
    return run_step(step)


class _Inline(concurrent.futures.Executor):
    """An executor that runs each call at submit time (``--jobs 1``: no worker processes)."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(error)
        return future


def step_cost(step: Step) -> float:
    """Expected seconds: the last stamp's measurement, else the front matter's ``cost`` hint split 2:1."""
    stamp = read_stamp(step.chapter)
    measured = stamp.get("seconds" if step.kind == "execute" else "nbval_seconds")
    if isinstance(measured, (int, float)):
        return float(measured)
    hint = chapter_options(step.chapter).get("cost")
    if isinstance(hint, (int, float)):
        return float(hint) * (2 / 3 if step.kind == "execute" else 1 / 3)
    return DEFAULT_COST


def run_steps(steps: list[Step], deps: dict[str, set[str]], *, jobs: int, keep_going: bool,
              log=print) -> tuple[list[str], dict[tuple[str, str], tuple[bool, float]]]:
    """Run ``steps`` on ``jobs`` workers in dependency order; returns (failed chapters, results per step).

    A chapter's ``execute`` waits for the ``execute`` of the chapters in ``deps``; its ``nbval`` for its own
    ``execute``. Among ready steps, the one whose chapter unlocks the most work (its own cost plus that of every
    chapter waiting on it, transitively) starts first. After a failure no new step starts unless
    ``keep_going``; the chapters that wait on a failed one are skipped.
    """
    key = lambda step: (step.chapter.stem, step.kind)  # noqa: E731
    pending = {key(s): s for s in steps}
    costs = {key(s): step_cost(s) for s in steps}
    chapter_cost: dict[str, float] = {}
    for (stem, _), cost in costs.items():
        chapter_cost[stem] = chapter_cost.get(stem, 0.0) + cost
    waiting_on: dict[str, set[str]] = {stem: set() for stem in deps}
    for stem, needs in deps.items():
        for need in needs:
            waiting_on.setdefault(need, set()).add(stem)

    def unlocked(stem: str) -> set[str]:
        seen, todo = set(), [stem]
        while todo:
            for nxt in waiting_on.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    priority = {k: costs[k] + (sum(chapter_cost.get(s, 0.0) for s in unlocked(k[0])) if k[1] == "execute" else 0)
                for k in pending}
    executed: set[str] = set()
    exec_failed: set[str] = set()
    failed: list[str] = []
    results: dict[tuple[str, str], tuple[bool, float]] = {}
    running: dict[concurrent.futures.Future, tuple[str, str]] = {}
    stop = False
    total = len(pending)
    started = time.perf_counter()

    scheduled = {stem for stem, kind in pending if kind == "execute"}

    def ready(k: tuple[str, str]) -> bool:
        stem, kind = k
        needs = {stem} if kind == "nbval" else deps.get(stem, set())
        return all(d in executed or d not in scheduled for d in needs)

    pool: concurrent.futures.Executor
    if jobs > 1:
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"))
    else:
        pool = _Inline()
    try:
        while pending or running:
            # chapters waiting (directly or not) on a failed one cannot run
            for k in [k for k in pending if k[0] in exec_failed
                      or (k[1] == "execute" and deps.get(k[0], set()) & exec_failed)]:
                del pending[k]
                if k[0] not in failed:
                    failed.append(k[0])
                    exec_failed.add(k[0])
                    log(f"[{k[0]}] skipped: it waits for a chapter that failed")
            if not stop:
                for k in sorted((k for k in pending if ready(k)), key=lambda k: -priority[k]):
                    if len(running) >= jobs:
                        break
                    step = pending.pop(k)
                    log(f"== start {k[1]} {k[0]} ({total - len(pending) - len(running)}/{total}, "
                        f"{time.perf_counter() - started:.0f} s)")
                    running[pool.submit(_call_run_step, step)] = k
            if not running:
                if pending and not stop:
                    raise BuildError(f"nothing can start: {', '.join(f'{s} {k}' for s, k in pending)} wait for "
                                     "chapters that are not being built")
                break
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                k = running.pop(future)
                try:
                    results[k] = future.result()
                except BuildError as error:
                    log(f"FAILED: {error}")
                    failed.append(k[0])
                    if k[1] == "execute":
                        exec_failed.add(k[0])
                    if not keep_going:
                        stop = True
                        if running:
                            log(f"waiting for {len(running)} running step(s) to finish, then stopping")
                    continue
                if k[1] == "execute":
                    executed.add(k[0])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if pending:
        log(f"not run after the failure: {', '.join(sorted({s for s, _ in pending}))}")
    return failed, results


# -------------------------------------------------------------------------------------------- html

_REMOTE_ASSET = re.compile(
    r"""<(?:script|img|iframe|source|video|audio)\b[^>]*?\bsrc\s*=\s*["']?((?:https?:)?//[^"'\s>]+)"""
    r"""|<link\b[^>]*?\bhref\s*=\s*["']?((?:https?:)?//[^"'\s>]+)"""
    r"""|@import\s+(?:url\()?["']?((?:https?:)?//[^"')\s]+)""",
    re.IGNORECASE)


def remote_assets(html_dir: Path) -> list[tuple[str, str]]:
    """(file, url) for every script, style, image or import in ``html_dir`` that points off the machine.

    ``<link>`` elements that are not resources (``rel="canonical"`` and friends) would be caught too;
    the theme as configured emits none.
    """
    found = []
    for path in sorted(html_dir.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in _REMOTE_ASSET.finditer(text):
            url = next(group for group in match.groups() if group)
            found.append((path.relative_to(html_dir).as_posix(), url))
    return found


def build_html(root: Path = ROOT, *, all_pages: bool = False, log=print) -> Path:
    """``jupyter-book build`` with execution off and warnings as errors; returns ``_build/html``."""
    vendor = root / "book" / "_static" / "vendor"
    if not (vendor / "mathjax").is_dir():
        raise BuildError(f"{vendor.relative_to(root)} is missing: run `make setup` (scripts/setup.sh), "
                         "which copies MathJax, RequireJS and the widget manager from npm")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book",
               "build", str(root), "-W", "-n", "--keep-going"]
    if all_pages:
        command.append("--all")
    log("$ " + " ".join(command))
    started = time.perf_counter()
    if subprocess.run(command, cwd=root).returncode != 0:
        raise BuildError("jupyter-book build failed: see the warnings above (they count as errors)")
    html = root / "_build" / "html"
    remote = remote_assets(html)
    if remote:
        listing = "\n".join(f"    {file}: {url}" for file, url in remote[:20])
        raise BuildError(f"the built book loads {len(remote)} assets from the network, e.g.\n{listing}\n"
                         "point them at book/_static/vendor/ in _config.yml")
    log(f"  html built in {time.perf_counter() - started:.1f} s, no remote assets -> {html.relative_to(root)}")
    return html


# -------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, metavar="DIR",
                        help="inject DIR/<stem>.yml into each chapter that has one (e.g. params/paper)")
    parser.add_argument("--only", nargs="+", metavar="STEM", help="only these chapters (still builds HTML)")
    parser.add_argument("--force", action="store_true", help="execute even when the stamp matches")
    parser.add_argument("--nbval", action="store_true", help="check the executed notebooks with nbval")
    parser.add_argument("--force-nbval", action="store_true",
                        help="run nbval even where a stamp says it passed (implies --nbval)")
    parser.add_argument("--no-execute", action="store_true", help="do not execute; fail if a chapter is stale")
    parser.add_argument("--no-html", action="store_true", help="skip jupyter-book build")
    parser.add_argument("--all-pages", action="store_true", help="make jupyter-book re-render every page")
    parser.add_argument("--keep-going", action="store_true", help="after a failed chapter, do the others")
    parser.add_argument("--jobs", "-j", type=int, metavar="N",
                        help="chapters run side by side (default: $ACTEDIT_BOOK_JOBS, else usable CPUs, at most 4)")
    parser.add_argument("--list", action="store_true", help="print each chapter's state and exit")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        chapters = chapters_from_toc(ROOT)
    except (FileNotFoundError, ValueError) as error:
        log(f"error: {error}")
        return 2
    all_chapters = list(chapters)
    if args.jobs is not None and args.jobs < 1:
        log(f"error: --jobs must be at least 1, got {args.jobs}")
        return 2
    if args.only:
        unknown = sorted(set(args.only) - {c.stem for c in chapters})
        if unknown:
            log(f"error: not in _toc.yml: {', '.join(unknown)} (known: {', '.join(c.stem for c in chapters)})")
            return 2
        chapters = [c for c in chapters if c.stem in args.only]
    params = {c.stem: load_params(args.params, c.stem) for c in chapters}

    if args.list:
        for c in chapters:
            inputs = input_hash(c, params[c.stem], ROOT)
            state = "up to date" if is_fresh(c, inputs) else "stale"
            if state == "up to date" and read_stamp(c).get("nbval") == nbval_hash(c, inputs, ROOT):
                state += ", nbval passed"
            log(f"{c.stem:32s} {state}")
        return 0

    started = time.perf_counter()
    if not args.no_execute:
        try:
            check_kernel()
        except BuildError as error:
            log(f"error: {error}")
            return 2
    try:
        jobs = args.jobs if args.jobs is not None else default_jobs()
        deps = dependencies(chapters, known=[c.stem for c in all_chapters])
    except ValueError as error:
        log(f"error: {error}")
        return 2
    steps = []
    for chapter in chapters:
        if not args.no_execute:
            steps.append(Step("execute", chapter, params[chapter.stem], args.force))
        if args.nbval or args.force_nbval:
            steps.append(Step("nbval", chapter, params[chapter.stem], args.force_nbval))
    if steps:
        kinds = " + ".join(k for k, on in (("execute", not args.no_execute), ("nbval", args.nbval or args.force_nbval))
                           if on)
        log(f"== {kinds}: {len(chapters)} chapter(s) on {jobs} worker(s), "
            f"kernels with OMP_NUM_THREADS={_kernel_env().get('OMP_NUM_THREADS')}")
    try:
        failures, results = run_steps(steps, deps, jobs=jobs, keep_going=args.keep_going, log=log)
    except BuildError as error:
        log(f"FAILED: {error}")
        return 1
    ran = [(stem, kind, seconds) for (stem, kind), (did, seconds) in results.items() if did]
    if ran:
        log("== what ran (seconds):")
        for chapter in chapters:
            times = {kind: seconds for stem, kind, seconds in ran if stem == chapter.stem}
            if times:
                log(f"  {chapter.stem:32s} execute {times.get('execute', 0):7.1f}   nbval {times.get('nbval', 0):7.1f}")
    summary = [f"{stem}: {'executed' if did else 'skipped'}" for (stem, kind), (did, _) in results.items()
               if kind == "execute"]
    if failures and not args.keep_going:
        log(f"FAILED chapters: {', '.join(failures)}")
        return 1
    if args.no_execute:
        stale = [c.stem for c in chapters if not is_fresh(c, input_hash(c, params[c.stem], ROOT))]
        if stale:
            log(f"FAILED: stale chapters (run without --no-execute): {', '.join(stale)}")
            return 1
    if failures:
        log(f"FAILED chapters: {', '.join(failures)}")
        return 1
    if not args.no_html:
        log("== jupyter-book build")
        try:
            build_html(ROOT, all_pages=args.all_pages, log=log)
        except BuildError as error:
            log(f"FAILED: {error}")
            return 1
    log(f"== done in {time.perf_counter() - started:.0f} s" + (f" ({'; '.join(summary)})" if summary else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
