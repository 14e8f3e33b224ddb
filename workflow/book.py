#!/usr/bin/env python3
"""The steps of the book's workflow (``workflow/Snakefile``): execute a chapter, nbval it, build the HTML.

Usage (from the repository root, inside the project's virtual environment; Snakemake runs these)::

    python workflow/book.py execute 03_method [--params params/paper]
    python workflow/book.py nbval 03_method
    python workflow/book.py html
    python workflow/book.py times _build/benchmarks     # per-job seconds of the last build
    snakemake --dag ... | python workflow/book.py label-dag | dot -Tsvg > dag.svg   # name the training jobs

Every entry of ``_toc.yml`` under ``book/_executed/`` is a chapter ``<stem>`` whose source is the Jupytext MyST
notebook ``notebooks/<stem>.md``. ``execute`` runs it with papermill (kernel ``python3``, working directory the
repository root) into ``book/_executed/<stem>.ipynb``, injecting ``<params>/<stem>.yml`` where present; a failed
run leaves its partial notebook in ``_build/failed/<stem>.ipynb``. ``nbval`` re-runs the executed notebook under
nbval. ``html`` renders the executed notebooks with Jupyter Book (execution off, warnings as errors) and checks
that no script or style of the built pages comes from the network. What is stale is Snakemake's business.

Kernels run on one torch thread (``OMP_NUM_THREADS=1``; the caller's value wins): small CNNs scale poorly across
threads, and torch's CPU kernels reduce in a thread-count-dependent order, so the book's numbers are one-thread
numbers whatever the machine. They also get ``TQDM_DISABLE=1`` (text progress bars on stderr would differ from
run to run) and ``PYTHONHASHSEED=0``. Widget progress bars (``tqdm.auto`` in a kernel ignores ``TQDM_DISABLE``)
stay: the book shows them finished, nbval skips widget views and sanitizes their text.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXECUTED_DIR = "book/_executed"
SOURCE_DIRS = ("notebooks",)
SOURCE_SUFFIXES = (".md", ".ipynb")
SANITIZE = "book/nbval_sanitize.cfg"
KERNEL = "python3"
# Environment for the kernels papermill and nbval start (only defaults: the caller's values win).
KERNEL_ENV = {"TQDM_DISABLE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class BuildError(RuntimeError):
    """A step of the pipeline failed; the message names the chapter and what to look at."""


@dataclass(frozen=True)
class Chapter:
    """One notebook chapter: its Jupytext source and where the executed copy goes."""

    stem: str
    source: Path
    executed: Path


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


# ------------------------------------------------------------------------------------- parameters


def load_params(params_dir: Path | str | None, stem: str) -> dict:
    """Parameters for chapter ``stem``: ``<params_dir>/<stem>.yml`` if given and present, else none."""
    if not params_dir:
        return {}
    path = Path(params_dir) / f"{stem}.yml"
    if not path.is_file():
        return {}
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of parameter names to values, not {type(params).__name__}")
    return params


def chapter_parameters(chapter: Chapter, params: dict) -> dict:
    """Every parameter the chapter runs with: its ``parameters`` cell's values, then ``params`` over them.

    The cell holds plain assignments (papermill's convention), so running it alone gives the defaults.
    """
    import jupytext

    notebook = jupytext.read(chapter.source)
    cells = [c for c in notebook.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{chapter.source}: expected one code cell tagged 'parameters', found {len(cells)}")
    namespace: dict = {}
    exec(compile(cells[0].source, f"{chapter.source} (parameters cell)", "exec"), namespace)  # noqa: S102
    defaults = {k: v for k, v in namespace.items() if not k.startswith("__")}
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"{chapter.stem}: parameters {', '.join(unknown)} are not in its parameters cell")
    return {**defaults, **params}


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


# --------------------------------------------------------------------------------------- execution


# tcmalloc, the allocator PyTorch's CPU performance guide recommends: preloaded into the training jobs and kernels
# when installed (Debian libtcmalloc-minimal4; `make setup` tries to install it). Allocation does not change any
# arithmetic — the models are bitwise those of glibc's allocator — but a small CNN's training job took 27.6 s
# against 29.9 s (mean of 3-4 runs each). ACTEDIT_TCMALLOC=0 turns it off.
TCMALLOC = tuple(f"/usr/lib/{arch}-linux-gnu/libtcmalloc_minimal.so.4" for arch in ("x86_64", "aarch64")) \
    + ("/usr/lib64/libtcmalloc_minimal.so.4",)


def allocator_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``LD_PRELOAD`` (and a quiet large-allocation report) for tcmalloc when it is installed and not turned off
    with ``ACTEDIT_TCMALLOC=0``; empty otherwise. A preload the caller already has is kept, after tcmalloc."""
    environ = os.environ if environ is None else environ
    if environ.get("ACTEDIT_TCMALLOC", "1") == "0":
        return {}
    library = next((path for path in TCMALLOC if Path(path).is_file()), None)
    preload = environ.get("LD_PRELOAD", "")
    if library is None or "tcmalloc" in preload:
        return {}
    # tcmalloc reports allocations over 1 GiB on stderr, which a kernel would show in a cell's output
    return {"LD_PRELOAD": f"{library} {preload}".strip(), "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}


def kernel_env() -> dict[str, str]:
    return {**KERNEL_ENV, **os.environ, **allocator_env()}


def job_env() -> dict[str, str]:
    """What a training job is started with: :data:`KERNEL_ENV` (the caller's values win) and the allocator."""
    env = kernel_env()
    return {k: env[k] for k in (*KERNEL_ENV, *allocator_env()) if k in env}


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


def execute(chapter: Chapter, params: dict, *, root: Path = ROOT, log=print) -> float:
    """Execute ``chapter`` with ``params`` injected; returns the seconds it took.

    The notebook is converted with jupytext, executed by papermill into ``_build/papermill/`` and moved
    into ``book/_executed/`` only when every cell succeeded. A failed run leaves its partial notebook in
    ``_build/failed/<stem>.ipynb`` and raises ``BuildError``.
    """
    import jupytext
    import nbformat
    import papermill

    work = root / "_build" / "papermill"
    work.mkdir(parents=True, exist_ok=True)
    chapter.executed.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(chapter.source)
    source_ipynb = work / f"{chapter.stem}.source.ipynb"
    output_ipynb = work / f"{chapter.stem}.ipynb"
    nbformat.write(notebook, source_ipynb)
    code_cells = sum(cell.cell_type == "code" for cell in notebook.cells) + bool(params)
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "its own defaults"
    log(f"{chapter.stem}: executing {code_cells} code cells with {shown}")

    started = time.perf_counter()
    clock = {"cell": started, "done": 0}

    def on_cell_start(cell, cell_index):  # nbclient hook
        clock["cell"] = time.perf_counter()

    def on_cell_executed(cell, cell_index, execute_reply):  # nbclient hook
        clock["done"] += 1
        now = time.perf_counter()
        log(f"{chapter.stem}: cell {clock['done']}/{code_cells} ({now - clock['cell']:.1f} s, "
            f"{now - started:.0f} s total)")

    saved_env = dict(os.environ)
    os.environ.update(kernel_env())  # the kernel inherits this process's environment
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
    log(f"{chapter.stem}: executed in {seconds:.1f} s -> {chapter.executed.relative_to(root)}")
    return seconds


def validate(chapter: Chapter, *, root: Path = ROOT, log=print) -> float:
    """Re-run ``chapter``'s executed notebook under nbval; returns the seconds it took. Raises ``BuildError``."""
    if not chapter.executed.is_file():
        raise BuildError(f"notebook {chapter.stem}: {chapter.executed.relative_to(root)} is missing, "
                         "execute it before nbval")
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
               "--nbval-sanitize-with", str(root / SANITIZE), "-p", "no:cacheprovider",
               "-o", "addopts=", "-q", str(chapter.executed)]
    # captured, so that chapters checked side by side do not interleave their reports; shown in full on failure.
    # The re-run writes its results file into a scratch folder: the summary chapter reads the executed run's files,
    # and a re-run rewriting them from scratch while the summary executes would show it half a chapter.
    with tempfile.TemporaryDirectory(prefix=f"nbval-{chapter.stem}-") as scratch:
        result = subprocess.run(command, cwd=root, env={**kernel_env(), "ACTEDIT_RESULTS_DIR": scratch},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        print(result.stdout, flush=True)
        raise BuildError(f"notebook {chapter.stem}: nbval found outputs that differ from "
                         f"{chapter.executed.relative_to(root)} (pytest's report is above)")
    seconds = time.perf_counter() - started
    tail = result.stdout.strip().splitlines()[-1:] or [""]
    log(f"{chapter.stem}: nbval passed in {seconds:.1f} s ({tail[0].strip('= ')})")
    return seconds


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
    """``jupyter-book build`` with execution off and warnings as errors; returns ``_build/html``.

    ``_build/html/index.html`` is touched at the end, so that its time stamp says when the book was built.
    """
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
    (html / "index.html").touch()
    log(f"html built in {time.perf_counter() - started:.1f} s, no remote assets -> {html.relative_to(root)}")
    return html


# ------------------------------------------------------------------------------------------ report


def times(benchmarks: Path, since: float = 0.0) -> list[tuple[str, str, float]]:
    """(kind, name, seconds) of every Snakemake benchmark file under ``benchmarks`` written after ``since``."""
    found = []
    for path in sorted(benchmarks.glob("*/*.tsv")):
        if path.stat().st_mtime < since:
            continue
        with open(path, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if rows:
            found.append((path.parent.name, path.stem, float(rows[-1]["s"])))
    return found


def times_table(rows: list[tuple[str, str, float]]) -> str:
    """What ran, in seconds: one line per chapter (execute, nbval) and per trained model."""
    if not rows:
        return "nothing ran: everything was up to date"
    lines, chapters = [], {}
    for kind, name, seconds in rows:
        chapters.setdefault(name, {})[kind] = seconds
    trained = {name: t["train"] for name, t in chapters.items() if "train" in t}
    if trained:
        lines.append(f"trained {len(trained)} models in {sum(trained.values()):.0f} s "
                     f"(longest {max(trained.values()):.0f} s)")
    def shown(kind: str, seconds: dict) -> str:
        return f"{kind} {seconds[kind]:7.1f}" if kind in seconds else f"{kind} {'-':>7s}"

    for name, t in chapters.items():
        if "execute" in t or "nbval" in t:
            lines.append(f"  {name:32s} {shown('execute', t)}   {shown('nbval', t)}")
    return "\n".join(lines)


COLD_COST = re.compile(r"^\*\*Cold cost:\*\* .*$", re.MULTILINE)


def cold_cost_line(execute_s: float, nbval_s: float | None, models: int, train_s: float, source: str) -> str:
    """The run box's cost line of a chapter, from a cold build's benchmark seconds."""
    nbval = f"{nbval_s:.0f} s" if nbval_s is not None else "not measured"
    trained = (f" It loads {models} model{'s' if models != 1 else ''}, trained before it by the workflow's training "
               f"jobs in {train_s:.0f} s of one core (shared with the chapters that load the same models)."
               if models else " It loads no model trained by the workflow.")
    return (f"**Cold cost:** about {execute_s + (nbval_s or 0):.0f} s on the 2-core build machine (execute "
            f"{execute_s:.0f} s + nbval {nbval}: `make book` executes, `make test` also runs nbval; its kernel on one "
            f"thread while another job runs beside it, empty model cache; {source}).{trained} A warm rebuild loads "
            "the cached models and takes seconds.")


RECORDED = re.compile(r"\(execute (\d+) s \+ nbval (?:(\d+) s|not measured)")


def recorded_seconds(chapter: Chapter) -> dict[str, float]:
    """``{"execute": s, "nbval": s}`` as the chapter's run box records them (its ``**Cold cost:**`` line, written by
    :func:`update_run_boxes` from the last measured cold build); 0 where the box records none. The workflow starts
    its jobs in this order: the longest chapter first, so that it does not start last and run alone."""
    text = chapter.source.read_text(encoding="utf-8") if chapter.source.suffix == ".md" else ""
    line = COLD_COST.search(text)
    found = RECORDED.search(line.group(0)) if line else None
    if not found:
        return {"execute": 0.0, "nbval": 0.0}
    return {"execute": float(found.group(1)), "nbval": float(found.group(2) or 0)}


def job_priorities(seconds: Mapping[str, float], needs: Mapping[str, Iterable[str]]) -> dict[str, float]:
    """The workflow's job priorities (Snakemake starts the highest ready job): each chapter's (by stem) its recorded
    execute ``seconds`` (:func:`recorded_seconds`), each model's (by cache key, from ``needs``: chapter -> keys) one
    more than the longest chapter that loads it, so that the models of the longest chapter train first and the
    chapter starts as soon as they exist — not last, alone on one core while the other idles (list scheduling,
    longest first)."""
    ranks = {stem: float(s) for stem, s in seconds.items()}
    for stem, keys in needs.items():
        for key in keys:
            ranks[key] = max(ranks.get(key, 0.0), ranks.get(stem, 0.0) + 1)
    return ranks


def update_run_boxes(benchmarks: Path, source: str, root: Path = ROOT) -> list[str]:
    """Rewrite the ``**Cold cost:**`` line of each chapter's run box from the Snakemake benchmark files of a
    cold build (``_build/benchmarks``: execute, nbval and train seconds); ``source`` says which build (commit,
    machine). A chapter without an execute benchmark keeps its line. Returns the stems rewritten."""
    from actedit import plan

    seconds = {(kind, name): s for kind, name, s in times(benchmarks)}
    done = []
    for chapter in chapters_from_toc(root):
        if ("execute", chapter.stem) not in seconds or chapter.source.suffix != ".md":
            continue
        keys = {job.key for job in plan.models_for(chapter.stem, chapter_parameters(chapter, {})).jobs()}
        line = cold_cost_line(seconds["execute", chapter.stem], seconds.get(("nbval", chapter.stem)), len(keys),
                              sum(seconds.get(("train", k), 0.0) for k in keys), source)
        text = chapter.source.read_text(encoding="utf-8")
        new, count = COLD_COST.subn(lambda _: line, text, count=1)
        if count and new != text:
            chapter.source.write_text(new, encoding="utf-8")
            done.append(chapter.stem)
    return done


def label_dag(dot: str, params_dir: str | None = None, root: Path = ROOT) -> str:
    """``snakemake --dag`` output with each training job's cache key replaced by the model it trains."""
    from actedit import plan

    names = {}
    for chapter in chapters_from_toc(root):
        parameters = chapter_parameters(chapter, load_params(params_dir, chapter.stem))
        for job in plan.models_for(chapter.stem, parameters).jobs():
            names[job.key] = job.describe().replace(" ", "\\n")
    return re.sub(r"key: ([0-9a-f]+)", lambda m: names.get(m.group(1), m.group(0)), dot)


# -------------------------------------------------------------------------------------------- main


def _chapter(stem: str, root: Path = ROOT) -> Chapter:
    chapters = {c.stem: c for c in chapters_from_toc(root)}
    if stem not in chapters:
        raise BuildError(f"{stem} is not in _toc.yml (known: {', '.join(chapters)})")
    return chapters[stem]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute", help="execute one chapter with papermill")
    run.add_argument("stem")
    run.add_argument("--params", metavar="DIR", help="inject DIR/<stem>.yml where present (e.g. params/paper)")
    check = sub.add_parser("nbval", help="re-run one executed chapter under nbval")
    check.add_argument("stem")
    html = sub.add_parser("html", help="jupyter-book build over the executed chapters")
    html.add_argument("--all-pages", action="store_true", help="make jupyter-book re-render every page")
    report = sub.add_parser("times", help="seconds per job from Snakemake's benchmark files")
    report.add_argument("benchmarks", type=Path)
    report.add_argument("--since", type=float, default=0.0, help="only files written after this Unix time")
    dag = sub.add_parser("label-dag", help="read `snakemake --dag` on stdin, name the models of its training jobs")
    dag.add_argument("--params", metavar="DIR", help="the DAG's parameter files (as its --config params=)")
    sub.add_parser("jobs", help="print the default number of jobs ($ACTEDIT_BOOK_JOBS, else CPUs, at most 4)")
    boxes = sub.add_parser("run-boxes", help="write a cold build's measured seconds into the chapters' run boxes")
    boxes.add_argument("benchmarks", type=Path, help="the cold build's _build/benchmarks")
    boxes.add_argument("--source", required=True, help="which build measured them, e.g. 'commit 073c66f'")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, flush=True)

    try:
        if args.command == "execute":
            check_kernel()
            execute(_chapter(args.stem), load_params(args.params, args.stem), log=log)
        elif args.command == "nbval":
            validate(_chapter(args.stem), log=log)
        elif args.command == "html":
            build_html(all_pages=args.all_pages, log=log)
        elif args.command == "times":
            log(times_table(times(args.benchmarks, args.since)))
        elif args.command == "label-dag":
            sys.stdout.write(label_dag(sys.stdin.read(), args.params))
        elif args.command == "run-boxes":
            log(f"rewrote {', '.join(update_run_boxes(args.benchmarks, args.source)) or 'nothing'}")
        elif args.command == "jobs":
            log(str(default_jobs()))
    except (BuildError, FileNotFoundError, ValueError) as error:
        log(f"FAILED: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
