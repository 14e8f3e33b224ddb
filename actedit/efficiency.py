"""Timing harness for the paper's efficiency claims (§4.3 "Time Efficiency", Tables 6 and 7; issue 7).

Offers :func:`machine_info`, :func:`time_call`, :func:`forward_pass`, :func:`edit_vs_forward`, :func:`time_ratios`,
:func:`update_time` and :func:`synthetic_images`; every method is run and timed by
:func:`actedit.experiments.run_comparison`, the edit's stages by ``bench/edit_profile.py``. The benchmark
(``bench/run.py``) and the Tables 6/7 chapter both measure through these functions, so the book and the benchmark
report the same quantities measured the same way.

Every measurement follows one protocol: warm-up call(s) first (not recorded), then ``repeats`` timed calls with
:func:`actedit.timing.timed` (which synchronises CUDA before reading the clock), and the **median** is reported
beside the individual runs. When two things are compared (the edit against a forward pass), their repetitions are
interleaved — A, B, A, B, … — and the ratio is the median of the per-repetition ratios, so that load from other
processes on a shared machine hits both sides alike.

>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
...                           torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
>>> r = edit_vs_forward(net, synthetic_images(8, channels=3, size=8), repeats=2)
>>> sorted(k for k in r if k.endswith("_s")), r["ratio"] > 0
(['edit_s', 'forward_s'], True)
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from torch import nn

from .edit import EditConfig, edit_model, set_bn_mode
from .seeding import generator
from .timing import timed
from .training import preserved_modes
from .validation import check_images

__all__ = ["machine_info", "time_call", "forward_pass", "edit_vs_forward", "time_ratios", "update_time",
           "synthetic_images"]
log = logging.getLogger(__name__)

Trigger = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# The machine and the protocol


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Where the numbers come from: CPU model, cores and threads, load, torch/Python versions, the device.

    The load average is part of the record because timings on a shared machine depend on it; ratios taken in one run
    (:func:`edit_vs_forward`) are far less sensitive to it than absolute seconds.
    """
    device = torch.device(device)
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": _cpu_model(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _check_counts(warmup: int, repeats: int) -> None:
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")


def time_call(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
              device: str | torch.device | None = None, budget_s: float | None = None,
              warmup_fn: Callable[[], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Call ``warmup_fn()`` (default ``fn``) ``warmup`` times untimed, then ``fn()`` up to ``repeats`` times timed;
    ``(last result, stats)``.

    ``budget_s`` stops the repetitions early once the timed runs add up to more than that many seconds (at least one
    run always happens): long calls need fewer repetitions for a stable median. ``stats`` is ``{"seconds": median
    wall time, "min": …, "max": …, "runs": [wall seconds per repetition], "cpu_seconds": median CPU time of this
    process}``. CPU time is what the call consumed whatever else ran on the machine; on a loaded machine it is the
    steadier of the two (with one torch thread it is close to the wall time of an idle machine).

    >>> result, stats = time_call(lambda: sum(range(100)), repeats=3)
    >>> result, len(stats["runs"])
    (4950, 3)
    """
    _check_counts(warmup, repeats)
    if budget_s is not None and not budget_s >= 0:
        raise ValueError(f"budget_s must be None or a non-negative number of seconds, got {budget_s!r}")
    result = None
    for _ in range(warmup):
        result = (warmup_fn or fn)()
    runs, cpu = [], []
    for _ in range(repeats):
        result, wall, used = _timed_call(fn, device)
        runs.append(wall)
        cpu.append(used)
        if budget_s is not None and sum(runs) > budget_s:
            break
    return result, _stats(runs, cpu)


@functools.lru_cache(maxsize=None)
def _optimizer_imports() -> None:
    """The first step of a ``torch.optim`` optimizer in a process imports ``torch._dynamo`` (2-3 s on the book's CPU,
    once per process; :func:`actedit.training.fit`'s SGD does not, its Adam does): paid here, untimed, so that it
    never lands in the time of whichever method happens to be timed first."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.1)
    optimizer.zero_grad()
    weight.sum().backward()
    optimizer.step()


def _timed_call(fn: Callable[[], Any], device: str | torch.device | None) -> tuple[Any, float, float]:
    """``(result, wall seconds, CPU seconds of this process)`` of one call (after :func:`_optimizer_imports`)."""
    _optimizer_imports()
    start = time.process_time()
    with timed(device) as t:
        result = fn()
    return result, t.seconds, time.process_time() - start


def _stats(runs: Sequence[float], cpu: Sequence[float]) -> dict[str, Any]:
    return {"seconds": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": list(runs),
            "cpu_seconds": statistics.median(cpu)}


def update_time(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
                device: str | torch.device | None = None) -> dict[str, Any]:
    """Median seconds of one call of ``fn`` (e.g. one update of an interactive control); the stats of
    :func:`time_call` without the result."""
    return time_call(fn, warmup=warmup, repeats=repeats, device=device)[1]


def synthetic_images(n: int, *, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``[n, channels, size, size]`` uniform float images in [0, 1] (timing needs no real data)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return torch.rand(n, channels, size, size, generator=generator(seed))


# ---------------------------------------------------------------------------------------------------------------------
# (1) The edit against its physical limit: one forward pass over the same images


@torch.no_grad()
def forward_pass(model: nn.Module, images: torch.Tensor, *, batch_size: int = 64,
                 device: str | torch.device = "cpu", bn: str = "frozen") -> None:
    """One forward pass of ``model`` over ``images`` in batches of ``batch_size``, each moved to ``device`` —
    exactly the traffic of the edit's step ① without hooks, trigger or copy.

    ``bn="frozen"`` is an eval-mode pass (the reference of issue 7); ``"update"`` runs BatchNorm in train mode as
    ¬BDK extraction does (and then changes the model's BN statistics: pass a copy). The train/eval mode is restored.
    """
    with preserved_modes(model):
        set_bn_mode(model, bn)
        for start in range(0, images.shape[0], batch_size):
            model(images[start:start + batch_size].to(device))


def _edit_config(config: EditConfig | None, device: str | torch.device) -> EditConfig:
    return dataclasses.replace(config or EditConfig(), device=str(device))


def edit_vs_forward(model: nn.Module, images: torch.Tensor, *, trigger: Trigger | None = None,
                    config: EditConfig | None = None, warmup: int = 1, repeats: int = 5,
                    device: str | torch.device = "cpu") -> dict[str, Any]:
    """Wall time of :func:`actedit.edit_model` ÷ that of one eval-mode :func:`forward_pass` over the same D_U.

    The forward pass uses the edit's batch size and device, so the ratio isolates what the edit adds to the
    unavoidable forward pass (copy, hooks, trigger, factors, checks). Warm-up runs use the first batch only (they
    exist to pay one-off costs — allocator, kernels, thread pools — not to double long measurements). Repetitions
    interleave edit and forward.

    Returns ``{"n", "bdk", "bn", "batch_size", "forward_s", "edit_s" (medians), "ratio" (median of per-repetition
    ratios), "ratio_of_min" (fastest edit ÷ fastest forward), "cpu_ratio" (median ratio of this process's CPU
    times: the least load-sensitive estimate on a shared CPU; meaningless for GPU work), "forward_runs",
    "edit_runs"}``.

    Shape: ``images`` ``[N, C, H, W]`` float in [0, 1].
    """
    check_images(images)
    _check_counts(warmup, repeats)
    config = _edit_config(config, device)
    model = model.to(device)
    warm = images[:config.batch_size]
    for _ in range(warmup):
        forward_pass(model, warm, batch_size=config.batch_size, device=device)
        edit_model(model, warm, trigger=trigger, config=config)
    forward_runs, edit_runs, forward_cpu, edit_cpu = [], [], [], []
    for _ in range(repeats):
        _, wall, used = _timed_call(lambda: forward_pass(model, images, batch_size=config.batch_size, device=device),
                                    device)
        forward_runs.append(wall)
        forward_cpu.append(used)
        _, wall, used = _timed_call(lambda: edit_model(model, images, trigger=trigger, config=config), device)
        edit_runs.append(wall)
        edit_cpu.append(used)
    ratios = [e / f for e, f in zip(edit_runs, forward_runs)]
    cpu_ratios = [e / f for e, f in zip(edit_cpu, forward_cpu) if f > 0]
    return {"n": images.shape[0], "bdk": trigger is not None, "bn": config.bn_mode(trigger is not None),
            "batch_size": config.batch_size, "forward_s": statistics.median(forward_runs),
            "edit_s": statistics.median(edit_runs), "ratio": statistics.median(ratios),
            "ratio_of_min": min(edit_runs) / min(forward_runs),
            "cpu_ratio": statistics.median(cpu_ratios) if cpu_ratios else float("nan"),
            "forward_runs": forward_runs, "edit_runs": edit_runs}


# ---------------------------------------------------------------------------------------------------------------------
# (2) Every method of Tables 6/7 at equal D_U: timed by actedit.experiments.run_comparison


def time_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Each method's time ÷ the edit's (method "ours") in the same setting (BDK/¬BDK) and D_U size.

    ``times``: rows as :func:`actedit.experiments.run_comparison` returns them (columns ``method, bdk, samples,
    seconds``; several sizes may be concatenated). Adds ``edit_seconds`` and ``ratio`` (NaN where the matching
    edit row is missing).
    """
    edits = times[times["method"] == "ours"][["bdk", "samples", "seconds"]]
    edits = edits.rename(columns={"seconds": "edit_seconds"}).drop_duplicates(["bdk", "samples"])
    out = times.merge(edits, on=["bdk", "samples"], how="left")
    out["ratio"] = out["seconds"] / out["edit_seconds"]
    return out
