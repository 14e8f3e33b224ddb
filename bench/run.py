#!/usr/bin/env python3
"""actedit benchmarks (issue 7): the edit against one forward pass, every baseline against the edit, the γ/λ
explorer's update time, and (``--book``) the book build. Writes one JSON file and prints a Markdown table.

Usage (repository root, inside the project's virtual environment)::

    python bench/run.py                    # full CPU run (about 20-30 min on 2 cores), JSON under bench/results/
    python bench/run.py --quick            # smoke run (under a minute): small sizes, synthetic data only
    python bench/run.py --device cuda      # the same harness on a GPU (CUDA is synchronised before every clock read)
    python bench/run.py --book             # also build the book cold and warm in a temporary copy (many minutes)
    python bench/run.py --only budgets     # sections: edit, profile, methods, budgets, explorer, book

All measurements go through :mod:`actedit.efficiency` (warm-up, repetitions, medians); the goals are those of
issue 7. Details and how to read the output: bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from actedit import efficiency  # noqa: E402
from actedit.models import build_model  # noqa: E402
from edit_profile import PROFILE_STAGES, profile_edit  # noqa: E402
from actedit.seeding import set_seed  # noqa: E402
from actedit.triggers import make_trigger  # noqa: E402

SECTIONS = ("edit", "profile", "methods", "budgets", "explorer", "book")
GOALS = {
    "edit_over_forward": 1.5,        # issue 7: edit wall time ÷ one eval-mode forward pass, at most
    "baseline_over_edit": 50.0,      # every baseline at least this many times the edit's time, equal D_U
    "explorer_update_s": 0.5,        # one γ/λ update, at most
    "book_cold_s": 15 * 60,          # the whole build, cold, at most
    "book_warm_s": 60,               # nothing changed, at most
    "book_peak_rss_gib": 4.0,        # peak resident memory of the build (largest process), at most
}
FULL = {"models": ["cnn", "resnet18"], "sizes": [4, 64, 512, 5000], "repeats": 5, "big_repeats": 3,
        "profile_sizes": [4, 512], "method_sizes": [5, 50, 500, 5000], "budget_sizes": [50, 500, 5000],
        "budgets": [1, 3, 10, 30], "explorer_repeats": 5}
QUICK = {"models": ["cnn"], "sizes": [4, 32], "repeats": 2, "big_repeats": 2,
         "profile_sizes": [4], "method_sizes": [5, 20], "budget_sizes": [8], "budgets": [1],
         "explorer_repeats": 2}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- sections


def bench_edit(plan: dict, device: str) -> list[dict]:
    """(1) edit ÷ forward for each model, N and setting, on synthetic 3×32×32 inputs."""
    rows = []
    trigger = make_trigger("white", channels=3, size=32)
    for name in plan["models"]:
        set_seed(0)
        model = build_model(name, num_classes=10, channels=3, size=32).eval().to(device)
        for n in plan["sizes"]:
            images = efficiency.synthetic_images(n, channels=3, size=32, seed=n)
            repeats = plan["big_repeats"] if n > 512 else plan["repeats"]
            for bdk in (True, False):
                log(f"edit/forward: {name} N={n} {'BDK' if bdk else '¬BDK'} ({repeats} repetitions)")
                r = efficiency.edit_vs_forward(model, images, trigger=trigger if bdk else None, repeats=repeats,
                                               device=device)
                rows.append({"model": name, **r, "goal": GOALS["edit_over_forward"],
                             "meets_goal": r["ratio"] <= GOALS["edit_over_forward"]})
    return rows


def bench_profile(plan: dict, device: str) -> list[dict]:
    """Where the edit's time goes (stage by stage), per model, N and setting."""
    clock = "wall" if torch.device(device).type == "cuda" else "cpu"
    rows = []
    trigger = make_trigger("white", channels=3, size=32)
    for name in plan["models"]:
        set_seed(0)
        model = build_model(name, num_classes=10, channels=3, size=32).eval().to(device)
        for n in plan["profile_sizes"]:
            images = efficiency.synthetic_images(n, channels=3, size=32, seed=n)
            for bdk in (True, False):
                log(f"profile: {name} N={n} {'BDK' if bdk else '¬BDK'}")
                stages = profile_edit(model, images, trigger=trigger if bdk else None, device=device,
                                     repeats=3 if n <= 512 else 1, clock=clock)
                rows.append({"model": name, "n": n, "bdk": bdk, "clock": clock, "stages": stages})
    return rows


def base_spec():
    """The book's base victim (chapter 2's parameters: 8,000 images of D_T, 6 epochs; the cached model)."""
    from actedit.experiments import VictimSpec

    return VictimSpec(train_limit=8000, epochs=6)


def _methods_victim(quick: bool, device: str):
    """(victim, description) for the method comparison: the book's base victim, or a synthetic stand-in."""
    from actedit.experiments import Victim, VictimSpec, get_victim

    if quick:
        from actedit.data import ImageSet, Splits
        from actedit.poisoning import PoisonConfig, poison

        set_seed(0)
        model = build_model("cnn", num_classes=10, channels=1, size=28).eval().to(device)
        images = efficiency.synthetic_images(96, channels=1, size=28, seed=1)
        part = [ImageSet(images[i:i + 32], torch.arange(32) % 10) for i in (0, 32, 64)]
        splits = Splits(name="synthetic", num_classes=10, channels=1, size=28, top_k=1,
                        class_names=tuple(map(str, range(10))), train=part[0], unseen=part[1], test=part[2])
        trigger = make_trigger("white", channels=1, size=28)
        poisoned = poison(splits.train, trigger, PoisonConfig(rate=0.1, target=2))
        victim = Victim(VictimSpec(), model, splits, trigger, trigger.magnified(3), poisoned)
        return victim, "synthetic 1×28×28 images, untrained small CNN (smoke run)"
    victim = get_victim(base_spec(), device=device, progress=False)
    return victim, (f"the book's base victim ({victim.spec.dataset}, {victim.spec.model}, {victim.spec.trigger} "
                    "trigger)")


def bench_methods(plan: dict, device: str, quick: bool, baseline_epochs: int | None) -> dict:
    """(2) every method of Table 7 at equal D_U; each method's time ÷ the edit's in the same setting."""
    import pandas as pd

    from actedit.experiments import BASELINES, METHODS, Timing, run_comparison, victim_configs, with_epochs

    victim, what = _methods_victim(quick, device)
    methods = [("ours", True), ("ours", False), ("ours +repair", True), ("ours +repair", False)] + [
        (name, bool(m.needs_trigger)) for name, m in METHODS.items() if not name.startswith("ours")]
    configs = {name: (with_epochs(c, baseline_epochs) if baseline_epochs is not None else c)
               for name, c in victim_configs(victim).items()}
    frames = []
    for n in plan["method_sizes"]:
        n = min(n, len(victim.splits.unseen))
        log(f"methods: N={n}: {', '.join(name for name, _ in methods)}")
        unseen = victim.unseen(n)
        rows = run_comparison(victim, victim.model, methods=methods, unseen=unseen, configs=configs, n_eval=100,
                              timing=Timing(repeats=plan["repeats"], warmup=1), device=device)
        frames.append(rows[rows["bdk"].notna()])
    table = efficiency.time_ratios(pd.concat(frames, ignore_index=True))
    baselines = ~table["method"].str.startswith("ours")
    table["goal"] = [GOALS["baseline_over_edit"] if b else math.nan for b in baselines]
    table["meets_goal"] = [bool(r >= GOALS["baseline_over_edit"]) if b else None
                           for b, r in zip(baselines, table["ratio"])]
    found = sorted(set(table.loc[baselines, "method"]))
    return {"data": what, "baseline_epochs": baseline_epochs, "baselines_found": found,
            "baselines_missing": sorted(set(BASELINES) - set(found)),
            "rows": json.loads(table.to_json(orient="records"))}


def bench_budgets(plan: dict, device: str, quick: bool) -> dict:
    """(2b) issue 15: every baseline at its reference schedule and cut to ``plan["budgets"]`` epochs, against the
    edit, at ``plan["budget_sizes"]``; the time each needs to reach the edit's Score; reference ÷ edit time beside
    the paper's ratio for that method (Table 7, same N)."""
    import pandas as pd

    from actedit import paper
    from actedit.experiments import Timing, budget_curves, time_to_score, victim_configs

    victim, what = _methods_victim(quick, device)
    configs = None
    if quick:   # the smoke run: every schedule cut to one epoch, so that it takes seconds
        configs = _one_epoch(victim_configs(victim))
    log(f"budgets: N = {plan['budget_sizes']}, budgets {plan['budgets']} epochs and each reference schedule")
    curves = budget_curves(victim, victim.model if quick else _reference(device), samples=plan["budget_sizes"],
                           budgets=plan["budgets"], configs=configs, n_eval=1000,
                           timing=Timing(repeats=plan["repeats"], warmup=1), device=device, progress=False)
    reach = time_to_score(curves)
    t7 = paper.table7()
    times = t7[(t7.metric == "time") & ~t7.repair.astype(bool)]

    def paper_ratio(method: str, bdk: bool, n: int) -> float:
        mine = times.query("method == @method and bdk == @bdk and samples == @n")["mean"]
        edit = times.query("method == 'ours' and bdk == @bdk and samples == @n")["mean"]
        return float(mine.iloc[0] / edit.iloc[0]) if len(mine) and len(edit) else math.nan

    reach["ratio"] = reach["reference seconds"] / reach["edit seconds"]
    reach["paper ratio"] = [paper_ratio(r["method"], bool(r["bdk"]), int(r["samples"])) for r in reach.to_dict("records")]
    return {"data": what, "schedules": "reference" if not quick else "one epoch (smoke run)",
            "curves": json.loads(curves.to_json(orient="records")),
            "reach": json.loads(pd.DataFrame(reach).to_json(orient="records"))}


def _one_epoch(configs: dict) -> dict:
    from actedit.experiments import with_epochs

    return {name: with_epochs(c, 1) for name, c in configs.items()}


def _reference(device: str):
    """The base victim's retrained reference R (Eq. 6's ACC^R)."""
    from actedit.experiments import VictimSpec, get_retrained

    return get_retrained(base_spec(), device=device, progress=False)


def bench_explorer(plan: dict, device: str, quick: bool) -> dict:
    """(3) one update of the γ/λ explorer (edit + evaluation + figure), extraction cached."""
    try:
        from actedit import widgets
        from actedit.session import EditSession, ExplorerSettings
    except ImportError as err:
        return {"missing": f"actedit.widgets is not available ({err})"}
    if quick:
        set_seed(0)
        model = build_model("cnn", num_classes=10, channels=1, size=28).eval()
        x = efficiency.synthetic_images(96, channels=1, size=28, seed=2)
        y = torch.arange(96) % 10
        session = EditSession(model, x[:64], y[:64], x[64:], y[64:], device=device, n_eval=None,
                                      trigger=make_trigger("white", channels=1, size=28), target=2)
        settings = ExplorerSettings(n_images=32)
        what = "synthetic data, untrained small CNN (smoke run)"
    else:
        from actedit.experiments import VictimSpec, get_retrained, get_victim

        spec = base_spec()
        session = EditSession.from_victim(get_victim(spec, device=device, progress=False),
                                                  get_retrained(spec, device=device, progress=False), device=device)
        settings = ExplorerSettings()
        what = "the book's base victim, default explorer settings"
    explorer = widgets.Explorer(session, settings)
    result = {"data": what, "goal_s": GOALS["explorer_update_s"]}
    for draw in (False, True):
        t = widgets.update_seconds(explorer, repeats=plan["explorer_repeats"], draw=draw)
        result["with_figure" if draw else "numbers_only"] = t
    result["meets_goal"] = result["with_figure"]["total"] <= GOALS["explorer_update_s"]
    return result


# Runs a command and records the peak RSS of its largest descendant. It must be a small process of its own: on
# Linux a child's ru_maxrss starts from its parent's RSS at fork, which for this script (torch loaded) is large.
_MEASURE = ("import json, resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
            "json.dump({'returncode': rc, 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}, "
            "open(sys.argv[1], 'w'))")


def _run_measured(command: list[str], cwd: Path, env: dict, logfile: Path) -> dict:
    """Run ``command``; wall seconds and the peak resident memory of its largest process (children included)."""
    report = logfile.with_suffix(".rusage.json")
    started = time.perf_counter()
    with open(logfile, "w") as out:
        subprocess.run([sys.executable, "-c", _MEASURE, str(report), *command], cwd=cwd, env=env, stdout=out,
                       stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    usage = json.loads(report.read_text())
    return {"seconds": seconds, "returncode": usage["returncode"], "peak_rss_gib": usage["maxrss_kib"] / 2**20,
            "log": str(logfile)}


# What a fresh clone does not have (build outputs, caches) or the copy shares by link (.venv).
_NOT_COPIED = {".venv", "_build", ".cache", "book/_executed", "node_modules", ".git", ".pytest_cache", "bench/results",
               ".snakemake"}


def _copy_repository(src: Path, dst: Path) -> None:
    """Copy the working tree to ``dst`` without build outputs and caches (what a fresh clone plus setup has)."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(src)
        return {n for n in names if (rel / n).as_posix() in _NOT_COPIED or n == "__pycache__"}
    shutil.copytree(src, dst, symlinks=True, ignore=ignore)


def bench_book(args) -> dict:
    """(4) the book build cold (fresh copy: no executed notebooks, no HTML, no model cache) and warm (again)."""
    work = Path(tempfile.mkdtemp(prefix="actedit-book-bench-"))
    copy = work / "repo"
    _copy_repository(ROOT, copy)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "PYTHONPATH": str(copy), "ACTEDIT_CACHE": str(copy / ".cache" / "actedit")}
    command = [sys.executable, "scripts/build_book.py", *shlex.split(args.book_args)]
    result = {"command": " ".join(command[1:]), "copy": str(copy), "goals": {
        k: GOALS[k] for k in ("book_cold_s", "book_warm_s", "book_peak_rss_gib")}}
    for phase in ("cold", "warm"):
        log(f"book: {phase} build in {copy} (log: {work / (phase + '.log')})")
        result[phase] = _run_measured(command, copy, env, work / f"{phase}.log")
        if result[phase]["returncode"] != 0:
            result["error"] = f"{phase} build failed; see {work / (phase + '.log')}"
            break
    if "error" not in result and not args.keep_book_copy:
        shutil.rmtree(copy, ignore_errors=True)
    peak = max(result[p]["peak_rss_gib"] for p in ("cold", "warm") if p in result)
    result["peak_rss_gib"] = peak
    result["meets_goal"] = ("error" not in result and result["cold"]["seconds"] <= GOALS["book_cold_s"]
                            and result["warm"]["seconds"] <= GOALS["book_warm_s"] and peak <= GOALS["book_peak_rss_gib"])
    return result


# ------------------------------------------------------------------------------------------------- output


def _s(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def _num(x, spec: str = ".1f", unit: str = "") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec) + unit


def _ok(flag) -> str:
    return "–" if flag is None else ("yes" if flag else "**no**")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# actedit benchmark ({'quick' if result['quick'] else 'full'})", "",
             f"{m['device_name']} — {m['usable_cpus']} usable CPUs, {m['torch_threads']} torch threads, "
             f"torch {m['torch']}, device `{m['device']}`, load average {m['load_average']} at start", ""]
    if "edit" in result:
        lines += ["## Edit ÷ one eval-mode forward pass (goal ≤ 1.5)", "",
                  "| model | N | setting | forward | edit | ratio (median) | ratio (CPU time) | goal met |",
                  "|---|---:|---|---:|---:|---:|---:|---|"]
        for r in result["edit"]:
            lines.append(f"| {r['model']} | {r['n']} | {'BDK' if r['bdk'] else '¬BDK'} ({r['bn']} BN) | "
                         f"{_s(r['forward_s'])} | {_s(r['edit_s'])} | {r['ratio']:.2f} | {r['cpu_ratio']:.2f} | "
                         f"{_ok(r['meets_goal'])} |")
        lines.append("")
    if "profile" in result:
        stages = list(PROFILE_STAGES) + ["unattributed", "edit_model"]
        lines += ["## Where the edit's time goes (median per stage)", "",
                  "| model | N | setting | " + " | ".join(stages) + " |",
                  "|---|---:|---|" + "---:|" * len(stages)]
        for r in result["profile"]:
            st = r["stages"]
            lines.append(f"| {r['model']} | {r['n']} | {'BDK' if r['bdk'] else '¬BDK'} | "
                         + " | ".join(_s(st[k]) for k in stages) + " |")
        lines += ["", f"(clock: {result['profile'][0]['clock'] if result['profile'] else '–'})", ""]
    if "methods" in result:
        mt = result["methods"]
        lines += [f"## Every method at equal D_U (goal: baseline ≥ 50 × the edit) — {mt['data']}", ""]
        if mt["baseline_epochs"] is not None:
            lines += [f"Baseline schedules reduced to {mt['baseline_epochs']} epoch(s).", ""]
        if mt["baselines_missing"]:
            lines += [f"Missing baselines: {', '.join(mt['baselines_missing'])} (actedit.baselines not available).", ""]
        lines += ["| method | N | time | ÷ edit (same setting) | goal met |", "|---|---:|---:|---:|---|"]
        for r in mt["rows"]:
            ratio = r.get("ratio")
            setting = "BDK" if r["bdk"] else "¬BDK"
            lines.append(f"| {r['method']} ({setting}) | {r['samples']} | {_s(r['seconds'])} | "
                         f"{'–' if ratio is None else f'{ratio:.1f}×'} | {_ok(r.get('meets_goal'))} |")
        lines.append("")
    if "budgets" in result:
        bu = result["budgets"]
        lines += [f"## Baselines at their reference schedules: time to the edit's Score — {bu['data']} "
                  f"({bu['schedules']})", "",
                  "| baseline | N | edit: Score, time | reference: epochs, Score, time | to the edit's Score | "
                  "reference ÷ edit | paper's ratio |", "|---|---:|---|---|---|---:|---:|"]
        for r in bu["reach"]:
            e, t = r["epochs to edit's score"], r["seconds to edit's score"]
            to = "never" if e is None else f"{e} ep., {_s(t)}"
            paper_r = r.get("paper ratio")
            lines.append(f"| {r['method']} ({'BDK' if r['bdk'] else '¬BDK'}) | {r['samples']} | "
                         f"{_num(r['edit score'])}, {_s(r['edit seconds'])} | {r['reference epochs']} ep., "
                         f"{_num(r['reference score'])}, {_s(r['reference seconds'])} | {to} | "
                         f"{_num(r['ratio'], '.0f', '×')} | {_num(paper_r, '.0f', '×')} |")
        lines.append("")
    if "explorer" in result:
        ex = result["explorer"]
        lines += ["## γ/λ explorer update (goal ≤ 0.5 s)", ""]
        if "missing" in ex:
            lines += [f"Not measured: {ex['missing']}.", ""]
        else:
            lines += [f"{ex['data']}: numbers only {_s(ex['numbers_only']['total'])}, with the figure "
                      f"{_s(ex['with_figure']['total'])} — goal met: {_ok(ex['meets_goal'])}", ""]
    if "book" in result:
        b = result["book"]
        lines += ["## Book build (goals: cold ≤ 15 min, warm ≤ 60 s, peak RSS ≤ 4 GiB)", ""]
        for phase in ("cold", "warm"):
            if phase in b:
                lines.append(f"- {phase}: {_s(b[phase]['seconds'])}, peak RSS {b[phase]['peak_rss_gib']:.2f} GiB, "
                             f"exit {b[phase]['returncode']}")
        lines += [f"- goals met: {_ok(b['meets_goal'])}" + (f" ({b['error']})" if "error" in b else ""), ""]
    return "\n".join(lines)


def _clean(value):
    """JSON-safe: NaN/Inf become null (strict JSON has no NaN), tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def default_output(device: str, quick: bool) -> Path:
    info = efficiency.machine_info(device)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{torch.device(device).type}-{info['device_name']}".lower()).strip("-")
    return ROOT / "bench" / "results" / (f"{slug}.quick.local.json" if quick else f"{slug}.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, synthetic data, no book")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", type=Path, help="JSON file to write (default bench/results/<device>.json)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--book", action="store_true", help="also time the book build cold and warm (many minutes)")
    parser.add_argument("--book-args", default="", metavar="ARGS",
                        help="arguments of scripts/build_book.py for --book (default: none, i.e. `make book`; "
                             "--nbval: also nbval, `make test`'s book step)")
    parser.add_argument("--keep-book-copy", action="store_true", help="keep the temporary repository copy")
    parser.add_argument("--models", nargs="+", help="models for the edit and profile sections (default: cnn resnet18)")
    parser.add_argument("--sizes", nargs="+", type=int, help="N for the edit section (default: 4 64 512 5000)")
    parser.add_argument("--method-sizes", nargs="+", type=int, help="N for the methods section (default: 5 50 500 5000)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--baseline-epochs", type=int, help="reduce every baseline's epochs (default: their configs)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    plan = dict(QUICK if args.quick else FULL)
    for key in ("models", "sizes", "method_sizes"):
        if getattr(args, key):
            plan[key] = getattr(args, key)
    sections = list(args.only or [s for s in SECTIONS if s != "book" or args.book])
    if args.quick and "book" in sections:
        sections.remove("book")
    result: dict = {"quick": args.quick, "goals": GOALS, "plan": plan, "machine": efficiency.machine_info(args.device),
                    "sections": sections}
    started = time.perf_counter()
    if "edit" in sections:
        result["edit"] = bench_edit(plan, args.device)
    if "profile" in sections:
        result["profile"] = bench_profile(plan, args.device)
    if "methods" in sections:
        result["methods"] = bench_methods(plan, args.device, args.quick, args.baseline_epochs)
    if "budgets" in sections:
        result["budgets"] = bench_budgets(plan, args.device, args.quick)
    if "explorer" in sections:
        result["explorer"] = bench_explorer(plan, args.device, args.quick)
    if "book" in sections:
        result["book"] = bench_book(args)
    result["seconds"] = time.perf_counter() - started
    result["load_average_end"] = efficiency.machine_info(args.device)["load_average"]

    out = args.out or default_output(args.device, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(result), indent=1, default=str, allow_nan=False) + "\n")
    print(markdown(result))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
