"""Timing harness for the paper's efficiency claims (§4.3 "Time Efficiency", Tables 6 and 7; issue 7).

Offers :func:`machine_info`, :func:`time_call`, :func:`forward_pass`, :func:`edit_vs_forward`, :func:`profile_edit`,
:class:`Method`, :func:`method_suite`, :func:`compare_methods`, :func:`time_ratios`, :func:`update_time` and
:func:`synthetic_images`. The benchmark (``bench/run.py``) and the Tables 6/7 chapter both measure through these
functions, so the book and the benchmark report the same quantities measured the same way.

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

import copy
import dataclasses
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .capture import TraceDict
from .edit import EditConfig, apply_factors, clone_model, compute_factors, edit_model, extract, select_layers
from .repair import repair
from .seeding import generator
from .timing import timed
from .validation import check_images, check_trigger_output

__all__ = ["machine_info", "time_call", "forward_pass", "edit_vs_forward", "profile_edit", "Method",
           "method_suite", "compare_methods", "time_ratios", "update_time", "synthetic_images", "PROFILE_STAGES"]
log = logging.getLogger(__name__)

Trigger = Callable[[torch.Tensor], torch.Tensor]
MethodFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], nn.Module]

# Stages of the edit timed by profile_edit, in the order edit_model runs them.
PROFILE_STAGES = ("validate", "select_layers", "copy_model", "trigger", "forward", "hooks", "factors", "apply",
                  "finite_check")


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


def _timed_call(fn: Callable[[], Any], device: str | torch.device | None) -> tuple[Any, float, float]:
    """``(result, wall seconds, CPU seconds of this process)`` of one call."""
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
    was_training = model.training
    model.eval()
    if bn == "update":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    try:
        for start in range(0, images.shape[0], batch_size):
            model(images[start:start + batch_size].to(device))
    finally:
        model.train(was_training)


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


def profile_edit(model: nn.Module, images: torch.Tensor, *, trigger: Trigger | None = None,
                 config: EditConfig | None = None, warmup: int = 1, repeats: int = 3,
                 device: str | torch.device = "cpu", clock: str = "wall") -> dict[str, float]:
    """Median seconds of each stage of :func:`actedit.edit_model`, timed one by one (:data:`PROFILE_STAGES`).

    - ``validate``: the input check (:func:`actedit.validation.check_images`);
    - ``select_layers``: computing L;
    - ``copy_model``: :func:`~actedit.edit.clone_model` of the model (the invariant "return a copy");
    - ``trigger``: applying δ to every batch of D_U and checking its output (BDK only);
    - ``forward``: the plain forward pass over D_U in the extraction's BN mode;
    - ``hooks``: what capturing the layers of L adds to that pass (:class:`~actedit.capture.TraceDict` running
      means: forward with hooks − forward);
    - ``factors``: pooling, normalisation and rescaling (Eq. 2–4, :func:`~actedit.edit.compute_factors`);
    - ``apply``: the in-place multiplies of Eq. 5 (:func:`~actedit.edit.apply_factors` without its copy);
    - ``finite_check``: the check that the edited weights are finite (``aminmax`` of each weight in L).

    Plus ``edit_model`` (the whole call), ``sum_of_stages`` and ``unattributed`` (= whole − sum: mode switches,
    Python overhead, and whatever a stage costs differently when run alone). ``clock="cpu"`` reports this
    process's CPU time instead of wall time (steadier on a loaded CPU; not for GPU work). The stages mirror the
    implementation of ``edit_model`` at the time of writing; they are measured on scratch copies and leave
    ``model`` unchanged.
    """
    check_images(images)
    _check_counts(warmup, repeats)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    key = "seconds" if clock == "wall" else "cpu_seconds"
    config = _edit_config(config, device)
    model = model.to(device)
    bdk = trigger is not None
    mode = config.bn_mode(bdk)
    bs = config.batch_size
    layers = select_layers(model, config.layers)
    scratch = copy.deepcopy(model)
    batches = [images[s:s + bs] for s in range(0, images.shape[0], bs)]

    def run_trigger() -> None:
        for x in batches:
            check_trigger_output(trigger(x), x)

    def run_forward() -> None:
        forward_pass(scratch, images, batch_size=bs, device=device, bn=mode)

    def run_capture() -> None:
        with TraceDict(scratch, layers, input=config.activation == "input") as traces:
            forward_pass(scratch, images, batch_size=bs, device=device, bn=mode)
        for t in traces.values():
            t.mean  # noqa: B018 — reading the means is part of capture

    extraction = extract(model, images, trigger=trigger, config=config)
    factors = compute_factors(extraction, config)
    modules = dict(scratch.named_modules())
    edited = [modules[name].weight for name in factors]
    calls: dict[str, Callable[[], Any]] = {
        "validate": lambda: check_images(images),
        "select_layers": lambda: select_layers(model, config.layers),
        "copy_model": lambda: clone_model(model),
        "trigger": run_trigger if bdk else None,
        "forward": run_forward,
        "capture": run_capture,
        "factors": lambda: compute_factors(extraction, config),
        "apply": lambda: apply_factors(extraction, factors, copy_model=False),
        "finite_check": lambda: [bool(torch.isfinite(torch.stack(w.detach().aminmax())).all()) for w in edited],
        "edit_model": lambda: edit_model(model, images, trigger=trigger, config=config),
    }
    result: dict[str, float] = {}
    for name, fn in calls.items():
        result[name] = 0.0 if fn is None else time_call(fn, warmup=warmup, repeats=repeats, device=device)[1][key]
    result["hooks"] = max(result.pop("capture") - result["forward"], 0.0)
    total = result.pop("edit_model")
    ordered = {name: result[name] for name in PROFILE_STAGES}
    ordered["sum_of_stages"] = sum(ordered.values())
    ordered["edit_model"] = total
    ordered["unattributed"] = total - ordered["sum_of_stages"]
    return ordered


# ---------------------------------------------------------------------------------------------------------------------
# (2) Every method of Tables 6/7 at equal D_U


@dataclass(frozen=True)
class Method:
    """One row label of Tables 6/7 and how to run it: ``run(model, images, labels) -> new model``.

    ``method``/``bdk``/``repair`` are the keys of :func:`actedit.paper.table7` (``method`` one of "ours", "actFT",
    "BaEraser", "basicFT", "NAD"); ``name`` is the display label.
    """

    name: str
    method: str
    bdk: bool
    repair: bool
    run: MethodFn


def _baselines_module():
    try:
        from . import baselines
    except ImportError as err:  # another issue writes actedit.baselines; the harness works without it
        log.info("actedit.baselines is not available (%s): baselines are skipped", err)
        return None
    return baselines


def _adjusted(config: Any, **changes: Any) -> Any:
    """``config`` (a frozen dataclass) with the given fields replaced where it has them, recursively into nested
    config dataclasses (NAD's teacher); ``None`` values change nothing."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes or not dataclasses.is_dataclass(config):
        return config
    names = {f.name for f in dataclasses.fields(config)}
    update = {k: v for k, v in changes.items() if k in names}
    for name in names - set(update):
        value = getattr(config, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            update[name] = _adjusted(value, **changes)
    return dataclasses.replace(config, **update)


def method_suite(trigger: Trigger, *, edit_config: EditConfig | None = None, repair_lr: float = 1e-2,
                 target: int | None = None, baseline_epochs: int | None = None,
                 baseline_configs: Mapping[str, Any] | None = None, include: Sequence[str] | None = None,
                 device: str | torch.device = "cpu") -> list[Method]:
    """The methods of Table 7 with the paper's per-method settings, as :class:`Method` s.

    Ours (BDK) and ours (¬BDK): :func:`actedit.edit_model` with ``edit_config``; "+repair": the edit followed by
    :func:`actedit.repair` at ``repair_lr`` (Table 8's 1e-2, one epoch), timed together as in the paper. The four
    baselines come from :mod:`actedit.baselines` (skipped, with a log message, if that package is absent) with
    their default configs — our reading of the paper's settings — unless ``baseline_configs[name]`` replaces one.
    ``target`` sets the backdoor label of configs that have one (BaEraser); ``baseline_epochs`` replaces the
    number of epochs of every baseline config (NAD's teacher included): a reduced schedule, to be stated wherever
    it is used. BDK methods get ``trigger``; ¬BDK methods get none.

    ``include``: keep only these display names (e.g. ``["ours (BDK)", "BaEraser"]``), in the suite's order.
    """
    edit_config = _edit_config(edit_config, device)

    def ours(bdk: bool) -> MethodFn:
        return lambda model, images, labels: edit_model(model, images, trigger=trigger if bdk else None,
                                                        config=edit_config)

    def ours_repair(bdk: bool) -> MethodFn:
        def run(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
            edited = edit_model(model, images, trigger=trigger if bdk else None, config=edit_config)
            return repair(edited, images, labels, trigger=trigger if bdk else None, lr=repair_lr, device=device)
        return run

    methods = [Method("ours (BDK)", "ours", True, False, ours(True)),
               Method("ours (¬BDK)", "ours", False, False, ours(False)),
               Method("ours (BDK) +repair", "ours", True, True, ours_repair(True)),
               Method("ours (¬BDK) +repair", "ours", False, True, ours_repair(False))]
    module = _baselines_module()
    if module is not None:
        for name, fn in module.BASELINES.items():
            config = (baseline_configs or {}).get(name) or module.CONFIGS[name]()
            config = _adjusted(config, epochs=baseline_epochs, target=target)
            methods.append(Method(name, name, module.BDK[name], False,
                                  _baseline_runner(fn, module.BDK[name], trigger, config, device)))
    if include is not None:
        known = {m.name for m in methods}
        missing = [name for name in include if name not in known]
        if missing:
            raise ValueError(f"unknown or unavailable method(s) {missing}; available: {sorted(known)}")
        methods = [m for m in methods if m.name in include]
    return methods


def _baseline_runner(fn: Callable, bdk: bool, trigger: Trigger, config: Any, device: str | torch.device) -> MethodFn:
    def run(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
        return fn(model, images, labels, trigger=trigger if bdk else None, config=config, device=device,
                  progress=False)
    return run


def compare_methods(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, methods: Sequence[Method], *,
                    warmup: int = 0, repeats: int = 1, edit_warmup: int = 1, edit_repeats: int = 5,
                    edit_budget_s: float | None = None, device: str | torch.device = "cpu"
                    ) -> tuple[pd.DataFrame, dict[str, nn.Module]]:
    """Time every method on the same D_U; ``(times, models)``.

    The edits (methods "ours" without repair) are fast: each gets ``edit_warmup`` warm-up runs on the first
    ``EditConfig.batch_size`` images (one-off costs, not a second full run) and up to ``edit_repeats`` timed runs,
    fewer once they add up to ``edit_budget_s`` seconds. Every other method (training for seconds to minutes) gets
    ``warmup``/``repeats`` (default one timed run: the edits' warm-up already paid the process's one-off costs).
    ``times`` has one row per method: ``name, method, bdk, repair, n, seconds`` (median), ``min, max, runs,
    cpu_seconds``; ``models[name]`` is the model of the last run. :func:`time_ratios` divides by the edit's time.
    """
    check_images(images)
    rows, models = [], {}
    head = slice(0, EditConfig().batch_size)
    for m in methods:
        quick = m.method == "ours" and not m.repair
        run = lambda: m.run(model, images, labels)  # noqa: E731
        if quick:
            result, stats = time_call(run, warmup=edit_warmup, repeats=edit_repeats, budget_s=edit_budget_s,
                                      warmup_fn=lambda: m.run(model, images[head], labels[head]), device=device)
        else:
            result, stats = time_call(run, warmup=warmup, repeats=repeats, device=device)
        models[m.name] = result
        rows.append({"name": m.name, "method": m.method, "bdk": m.bdk, "repair": m.repair, "n": images.shape[0],
                     **stats})
        log.info("%s at N=%d: %.3f s", m.name, images.shape[0], stats["seconds"])
    return pd.DataFrame(rows), models


def time_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Each method's time ÷ the edit's (ours, no repair) in the same setting (BDK/¬BDK) and D_U size.

    ``times``: rows as :func:`compare_methods` returns them (several sizes may be concatenated). Adds
    ``edit_seconds`` and ``ratio`` (NaN where the matching edit row is missing).
    """
    edits = times[(times["method"] == "ours") & ~times["repair"]][["bdk", "n", "seconds"]]
    edits = edits.rename(columns={"seconds": "edit_seconds"}).drop_duplicates(["bdk", "n"])
    out = times.merge(edits, on=["bdk", "n"], how="left")
    out["ratio"] = out["seconds"] / out["edit_seconds"]
    return out
