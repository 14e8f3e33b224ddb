#!/usr/bin/env python3
"""EfficientNetV2-S on a CPU budget (issue 16): the recipes tried for a width-scaled victim with a working backdoor.

Chapter 6 trains ResNet18, VGG16 and MobileNetV3-small at 4,000 images × 6 epochs; EfficientNetV2-S got no working
backdoor at any recipe tried. This script re-runs those trials — Fashion-MNIST, white square, ρ 5 %, y_t 2, batch 32,
the book's one training loop — and writes what each reached::

    python bench/efficientnet_trials.py                 # all trials, about 15 min on one core
    python bench/efficientnet_trials.py --only book no-regularisation

Each trial trains its victim into its own cache folder (``--cache``, default ``.cache/efficientnet-trials``), so a
re-run only evaluates. The result is ``bench/results/efficientnet-trials.json`` and a Markdown table on stdout:
ASR with the training-strength trigger (the strength gate's, bar 80 %) and with the verification trigger, ACC, on
the book's fixed 2,000-image subset of D_V, and the victim's training time.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import sys
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from actedit import models  # noqa: E402
from actedit.cache import Cache  # noqa: E402
from actedit.experiments import VictimSpec, eval_index, get_victim  # noqa: E402
from actedit.metrics import evaluate  # noqa: E402

BASE = VictimSpec(model="efficientnet_v2_s", width=0.125, train_limit=4000, epochs=6, batch_size=32)
#: name -> (VictimSpec changes, stochastic depth and dropout as torchvision builds them)
TRIALS: dict[str, tuple[dict, bool]] = {
    "book": ({}, True),                                   # the recipe of the other three architectures
    "no-regularisation": ({}, False),                     # stochastic depth 0 and dropout 0 (torchvision: 0.2, 0.2)
    "lr-0.05": ({"lr": 0.05}, True),
    "4000x10": ({"epochs": 10}, True),
    "2500x10": ({"train_limit": 2500, "epochs": 10}, True),
    "8000x5": ({"train_limit": 8000, "epochs": 5}, True),
    "width-0.25": ({"width": 0.25}, True),
}
N_EVAL = 2000


@contextlib.contextmanager
def without_regularisation() -> Iterator[None]:
    """torchvision's EfficientNetV2-S built with ``stochastic_depth_prob=0`` and ``dropout=0`` inside the block
    (a trial, not a recipe of the book: the cache key does not know it, so each trial has its own cache folder)."""
    original = models._torchvision_models

    class Patched:
        def __getattr__(self, name):
            builder = getattr(original(), name)
            if name == "efficientnet_v2_s":
                return functools.partial(builder, stochastic_depth_prob=0.0, dropout=0.0)
            return builder

    models._torchvision_models = Patched
    try:
        yield
    finally:
        models._torchvision_models = original


def run_trial(name: str, cache_root: Path) -> dict:
    changes, regularised = TRIALS[name]
    spec = BASE.with_(**changes)
    started = time.perf_counter()
    with contextlib.nullcontext() if regularised else without_regularisation():
        victim = get_victim(spec, cache=Cache(cache_root / name), progress=False)
    test = victim.splits.test.subset(eval_index(len(victim.splits.test), N_EVAL))
    trained = evaluate(victim.model, test.images, test.labels, trigger=victim.trigger, target=spec.target)
    verified = victim.evaluate(n_eval=N_EVAL)
    return {"trial": name, "width": spec.width, "train_limit": spec.train_limit, "epochs": spec.epochs,
            "batch_size": spec.batch_size, "lr": spec.lr, "stochastic_depth_and_dropout": regularised,
            "asr_training_trigger": round(trained["asr"], 2), "asr_verification_trigger": round(verified["asr"], 2),
            "acc": round(verified["acc"], 2), "victim_training_s": round(sum(victim.meta.get("seconds", [])), 1),
            "this_run_s": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(TRIALS), default=list(TRIALS))
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "efficientnet-trials")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "efficientnet-trials.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.only:
        rows.append(run_trial(name, args.cache))
        print(json.dumps(rows[-1]), flush=True)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads(), "time": time.strftime("%Y-%m-%d %H:%M")},
              "data": f"fashion-mnist, white square, rho 5 %, target {BASE.target}, seed {BASE.seed}; "
                      f"D_V: the fixed {N_EVAL}-image subset", "trials": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| trial | |D_T| × epochs | lr | width | SD+dropout | ASR (training δ) | ASR (verification δ) | ACC | victim s |")
    print("|---|---|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['trial']} | {r['train_limit']} × {r['epochs']} | {r['lr']} | {r['width']} | "
              f"{'on' if r['stochastic_depth_and_dropout'] else 'off'} | {r['asr_training_trigger']} | "
              f"{r['asr_verification_trigger']} | {r['acc']} | {r['victim_training_s']} |")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
