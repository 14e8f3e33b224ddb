#!/usr/bin/env python3
"""The book build's old entry point, now a thin wrapper over the Snakemake workflow (``workflow/Snakefile``).

    python scripts/build_book.py                         # = snakemake all (train, execute, HTML), no nbval
    python scripts/build_book.py --nbval                 # ... and nbval every chapter (what `make book` runs)
    python scripts/build_book.py --only 03_method --no-html     # one chapter, after the models it loads
    python scripts/build_book.py --params params/paper -n       # what a paper-scale build would run

Each option maps onto a Snakemake target or option; the steps themselves are in ``workflow/book.py``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))

from book import _toc_files, chapters_from_toc, default_jobs, remote_assets  # noqa: E402,F401  (tests use them)


def snakemake_command(args: argparse.Namespace) -> list[str]:
    """The snakemake command line that does what ``args`` ask."""
    stems = [c.stem for c in chapters_from_toc(ROOT)]
    unknown = sorted(set(args.only or []) - set(stems))
    if unknown:
        raise ValueError(f"not in _toc.yml: {', '.join(unknown)} (known: {', '.join(stems)})")
    chapters = args.only or stems
    if args.only or args.no_html:
        targets = [f"book/_executed/{s}.ipynb" for s in chapters]
        if args.nbval:
            targets += [f"_build/nbval/{s}.passed" for s in chapters]
    else:
        targets = ["all"]
    program = Path(sys.executable).with_name("snakemake")
    command = [str(program) if program.exists() else (shutil.which("snakemake") or "snakemake"), *targets,
               "--cores", str(args.jobs or default_jobs())]
    if args.force:
        command += ["--forcerun", *(f"book/_executed/{s}.ipynb" for s in chapters)]
    if args.keep_going:
        command.append("--keep-going")
    if args.dry_run:
        command.append("-n")
    command += ["--rerun-triggers", "mtime", "params", "input",
                "--config", f"params={args.params or ''}", f"nbval={int(args.nbval)}"]
    return command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", metavar="DIR", help="inject DIR/<stem>.yml into each chapter that has one")
    parser.add_argument("--only", nargs="+", metavar="STEM", help="only these chapters (and the models they load)")
    parser.add_argument("--force", action="store_true", help="execute the chapters even when up to date")
    parser.add_argument("--nbval", action="store_true", help="check the executed notebooks with nbval")
    parser.add_argument("--no-html", action="store_true", help="skip jupyter-book build")
    parser.add_argument("--keep-going", action="store_true", help="after a failed job, do the others")
    parser.add_argument("--jobs", "-j", type=int, metavar="N", help="jobs side by side (default: usable CPUs, <= 4)")
    parser.add_argument("--dry-run", "-n", action="store_true", help="only say what would run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        command = snakemake_command(parse_args(argv))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
