"""Helpers every table chapter of the book uses: formatting, seed aggregation, paper-beside-ours tables,
parameter validation, and the edit/repair grid the chapters run.

Offers

- formatting and tables: :func:`fmt`, :func:`aggregate`, :func:`side_by_side` (with :func:`within`), :func:`wide`,
  :func:`not_run` / :data:`NOT_RUN`, :data:`LABELS`, :func:`edit_pattern` (the Table 1/2 pattern checks);
- parameter validation: :func:`check_params` with :func:`number`, :func:`list_of`, :func:`optional`, :class:`Check`;
- running: :func:`draw_unseen`, :func:`evaluate_victim`, :func:`run_edit_grid`.

A chapter's flow::

    params = check_params(globals(), dataset=(str, DATASETS), seeds=list_of(int), n_images=number(int, lo=1))
    records = run_edit_grid(victim, samples=[512], repair_lrs=[1e-2], seeds=seeds)      # one row per run
    ours = aggregate(records, by=["bdk", "state"], metrics=["asr", "acc", "ctca"])      # tidy, mean/std
    sbs = side_by_side(paper.table1().query("dataset == 'cifar10'"), ours, on=["bdk", "state"],
                       criterion=within(10), stem="05_table1_datasets")
    wide(sbs, ["bdk", "state"], stem="05_table1_datasets")                              # one row per cell key

Tidy frames here have the layout of :mod:`actedit.paper`: key columns, then ``metric``, ``mean``, ``std``.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from .edit import EditConfig, edit_model
from .metrics import evaluate
from .repair import repair
from .seeding import generator
from .timing import timed

__all__ = ["fmt", "aggregate", "side_by_side", "within", "wide", "NOT_RUN", "not_run", "check_params", "list_of",
           "number", "optional", "Check", "draw_unseen", "evaluate_victim", "run_edit_grid", "edit_pattern", "METRICS",
           "LABELS"]
log = logging.getLogger(__name__)

METRICS = ("asr", "acc", "ctca")
# display names of keys and metrics, shared by the chapters' tables and figures
LABELS: dict[str, dict] = {
    "metric": {"asr": "ASR ↓", "acc": "ACC ↑", "ctca": "CTCA ↑", "score": "Score ↑", "time": "Time (s) ↓"},
    "bdk": {True: "BDK", False: "¬BDK", None: "–"},
    "state": {"before": "Before (victim)", "base": "Base", "repair": "+repair"},
}
NOT_RUN = "not run in this build — run with params/paper/{stem}.yml"
_MISSING = "–"


# ---------------------------------------------------------------------------------------------------------------------
# Formatting and aggregation


def _isnan(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt(mean: float | None, std: float | None = None, digits: int = 2) -> str:
    """``"65.49 ± 0.39"``; just the mean when ``std`` is None/NaN; ``"–"`` when the mean is missing.

    >>> fmt(65.49, 0.39), fmt(70.5), fmt(float("nan"))
    ('65.49 ± 0.39', '70.50', '–')
    """
    if _isnan(mean):
        return _MISSING
    if _isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def not_run(stem: str) -> str:
    """The marker shown instead of our number for rows this build does not run.

    >>> not_run("05_table1_datasets")
    'not run in this build — run with params/paper/05_table1_datasets.yml'
    """
    return NOT_RUN.format(stem=stem)


def aggregate(records: pd.DataFrame | Iterable[Mapping[str, Any]], by: Sequence[str],
              metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and standard deviation over the runs (seeds) of each group, in the tidy layout of :mod:`actedit.paper`.

    Arguments:
        records: one row per run (a DataFrame or dicts) with the ``by`` columns and one column per metric.
        by: the grouping keys (e.g. ``["bdk", "state"]``); the seed column is what gets averaged away.
        metrics: the metric columns to summarise.

    Returns columns ``*by, metric, mean, std, n``. ``std`` is the population standard deviation (ddof = 0;
    the paper does not say which it prints) and NaN for a single run, so :func:`fmt` shows no "± 0.00".

    >>> aggregate([{"k": 1, "acc": 60.0}, {"k": 1, "acc": 62.0}], by=["k"], metrics=["acc"])[["mean", "std"]].values.tolist()
    [[61.0, 1.0]]
    """
    frame = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    by, metrics = list(by), list(metrics)
    if frame.empty:
        raise ValueError("aggregate: no records to aggregate")
    missing = [c for c in by + metrics if c not in frame.columns]
    if missing:
        raise ValueError(f"aggregate: records have no column(s) {missing}; columns are {list(frame.columns)}")
    frame["_g"] = frame.groupby(by, sort=False, dropna=False).ngroup()      # groups in order of appearance
    long = frame.melt(id_vars=["_g"] + by, value_vars=metrics, var_name="metric", value_name="value")
    long["value"] = long["value"].astype(float)
    grouped = long.groupby(["_g"] + by + ["metric"], sort=False, dropna=False)["value"]
    out = grouped.agg(mean="mean", std=lambda v: v.std(ddof=0), n="count").reset_index()
    out["_m"] = out["metric"].map({m: i for i, m in enumerate(metrics)})
    out = out.sort_values(["_g", "_m"], kind="stable").drop(columns=["_g", "_m"]).reset_index(drop=True)
    out.loc[out["n"] < 2, "std"] = math.nan
    return _none_for_nan(out, by)


def _none_for_nan(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    # grouping and merging turn a None key (e.g. bdk of a "before" row) into NaN; give it back as None
    for c in columns:
        if frame[c].dtype == object:
            frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    return frame


# ---------------------------------------------------------------------------------------------------------------------
# Paper beside ours

Criterion = Callable[[float, float], bool]


def within(tol: float) -> Criterion:
    """A criterion: ours is within ``tol`` percentage points of the paper's mean.

    >>> within(5)(65.49, 61.0), within(5)(65.49, 59.0)
    (True, False)
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"within: tol must be a non-negative number, got {tol!r}")

    def criterion(paper: float, ours: float) -> bool:
        return abs(paper - ours) <= tol

    criterion.__doc__ = f"|paper − ours| ≤ {tol}"
    return criterion


def side_by_side(paper_df: pd.DataFrame, ours_df: pd.DataFrame, on: Sequence[str],
                 metrics: Sequence[str] | None = None,
                 criterion: Criterion | Mapping[str, Criterion] | None = None,
                 stem: str | None = None, numbers: bool = False, digits: int = 2) -> pd.DataFrame:
    """The paper's cells beside ours, one row per (``on`` keys, metric), in the same units.

    Arguments:
        paper_df: tidy paper table (``on`` columns, ``metric``, ``mean``, ``std``), e.g. from :mod:`actedit.paper`.
        ours_df: tidy results in the same layout (e.g. from :func:`aggregate`); may hold rows the paper lacks
            (shown with "–" as the paper's value) and may lack rows the paper has.
        on: the key columns that identify a cell besides ``metric``.
        metrics: keep only these metrics (default: all in either frame), in this order.
        criterion: ``f(paper_mean, ours_mean) -> bool`` deciding "reproduced?", or a dict metric → criterion
            (metrics absent from the dict get "–"); default: no verdict column.
        stem: the chapter stem; rows the paper has and we did not run get :func:`not_run` as "ours".
        numbers: also return the numeric ``paper_mean, paper_std, ours_mean, ours_std`` columns.

    Returns columns ``*on, metric, paper, ours[, reproduced?][, paper_mean, paper_std, ours_mean, ours_std]``;
    "reproduced?" is "yes", "no", "not run" (paper only) or "–" (no paper number or no criterion for the metric).
    """
    on = list(on)
    for name, frame in (("paper_df", paper_df), ("ours_df", ours_df)):
        missing = [c for c in on + ["metric", "mean", "std"] if c not in frame.columns]
        if missing:
            raise ValueError(f"side_by_side: {name} has no column(s) {missing}; columns are {list(frame.columns)}")
    keep = on + ["metric", "mean", "std"]
    left = paper_df[keep].rename(columns={"mean": "paper_mean", "std": "paper_std"}).assign(_p=range(len(paper_df)))
    right = ours_df[keep].rename(columns={"mean": "ours_mean", "std": "ours_std"}).assign(_o=range(len(ours_df)))
    merged = pd.merge(left, right, on=on + ["metric"], how="outer", indicator=True)
    # rows in the paper's order, ours-only rows after them in our order; metrics in the order asked for
    merged["_row"] = merged["_p"].fillna(len(left) + merged["_o"])
    if metrics is not None:
        metrics = list(metrics)
        merged = merged[merged["metric"].isin(metrics)]
        rank = {m: i for i, m in enumerate(metrics)}
        first = merged.groupby(on, dropna=False, sort=False)["_row"].transform("min")
        merged = merged.assign(_row=first * len(metrics) + merged["metric"].map(rank))
    merged = _none_for_nan(merged.sort_values("_row", kind="stable").reset_index(drop=True), on)
    merged["paper"] = [fmt(m, s, digits) for m, s in zip(merged["paper_mean"], merged["paper_std"])]
    ours_missing = merged["_merge"] == "left_only"
    merged["ours"] = [not_run(stem) if (miss and stem) else fmt(m, s, digits)
                      for miss, m, s in zip(ours_missing, merged["ours_mean"], merged["ours_std"])]
    columns = on + ["metric", "paper", "ours"]
    if criterion is not None:
        merged["reproduced?"] = [_verdict(criterion, met, p, o, miss)
                                 for met, p, o, miss in zip(merged["metric"], merged["paper_mean"],
                                                            merged["ours_mean"], ours_missing)]
        columns.append("reproduced?")
    if numbers:
        columns += ["paper_mean", "paper_std", "ours_mean", "ours_std"]
    return merged[columns]


def _verdict(criterion: Criterion | Mapping[str, Criterion], metric: str, paper: float, ours: float,
             ours_missing: bool) -> str:
    if _isnan(paper):
        return _MISSING
    if ours_missing or _isnan(ours):
        return "not run"
    test = criterion.get(metric) if isinstance(criterion, Mapping) else criterion
    if test is None:
        return _MISSING
    return "yes" if test(float(paper), float(ours)) else "no"


def wide(sbs: pd.DataFrame, index: Sequence[str], *, stem: str | None = None,
         labels: Mapping[str, Mapping] | None = None, notes: Mapping[Any, str] | None = None) -> pd.DataFrame:
    """Pivot a :func:`side_by_side` result to one row per ``index`` key and a (metric, paper/ours) column pair.

    Rows whose every "ours" cell is the not-run marker show "–" there and the marker once, in a ``note`` column;
    ``notes`` maps the first index value to a note of its own (e.g. ``{"fashion-mnist": "ours, extra"}``). With a
    "reproduced?" column the row verdict is "yes" when every judged cell is, else "no (<metrics>)". Key values and
    metrics are shown through ``labels`` (default :data:`LABELS`).
    """
    labels = {**LABELS, **(labels or {})}
    index = list(index)
    marker = not_run(stem) if stem else None
    frame = sbs.copy()
    skipped = frame["ours"] == marker if marker else pd.Series(False, index=frame.index)
    frame.loc[skipped, "ours"] = _MISSING
    frame["_key"] = list(zip(*[frame[c] for c in index]))
    order = list(dict.fromkeys(frame["_key"]))
    metrics = list(dict.fromkeys(frame["metric"]))
    rows = []
    for key in order:
        part = frame[frame["_key"] == key].set_index("metric")
        row: dict = {}
        for m in metrics:
            name = labels["metric"].get(m, m)
            row[(name, "paper")] = part["paper"].get(m, _MISSING)
            row[(name, "ours")] = part["ours"].get(m, _MISSING)
        if "reproduced?" in part:
            verdicts = part["reproduced?"]
            judged = verdicts[verdicts.isin(["yes", "no"])]
            failed = [labels["metric"].get(m, m).split()[0] for m in judged.index if judged[m] == "no"]
            row[("reproduced?", "")] = ("not run" if (verdicts == "not run").all() else _MISSING if judged.empty
                                        else "yes" if not failed else f"no ({', '.join(failed)})")
        all_skipped = bool(skipped[frame["_key"] == key].all())
        row[("note", "")] = marker if all_skipped else (notes or {}).get(key[0], "")
        rows.append(row)
    out = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(
        [tuple(labels.get(c, {}).get(v, v) for c, v in zip(index, key)) for key in order], names=index))
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def edit_pattern(cells: pd.DataFrame, *, num_classes: int) -> pd.DataFrame:
    """The qualitative pattern Tables 1 and 2 report, checked on one dataset/model's cells.

    ``cells``: tidy rows of one setting (columns ``bdk, state, metric, mean``; states "before", "base", "repair")
    — the paper's (:func:`actedit.paper.table1`) or ours (:func:`aggregate`). Claims (§4.2, §3.1):

    - BDK editing removes the backdoor (ASR ≤ 1 %) and the target class with it (CTCA ≤ 5 %);
    - BDK editing costs about one class of accuracy: (ACC_before − ACC) / (ACC_before / classes) ≤ 1.5;
    - ¬BDK editing removes the backdoor (ASR ≤ 1 %) — the paper's exception: grayscale MNIST;
    - repair restores the target class: CTCA after repair ≥ ½ · ACC_before (BDK and ¬BDK);
    - repair after BDK keeps the backdoor out (ASR ≤ 10 %).

    Returns columns ``claim, value, holds`` (value NaN and holds None where a cell is missing).
    """
    def get(bdk: bool | None, state: str, metric: str) -> float:
        sel = cells[(cells["state"] == state) & (cells["metric"] == metric)]
        sel = sel[sel["bdk"].isna()] if bdk is None else sel[sel["bdk"] == bdk]
        return float(sel["mean"].iloc[0]) if len(sel) else math.nan

    acc0 = get(None, "before", "acc")
    checks = [
        ("BDK: ASR ≤ 1 %", get(True, "base", "asr"), lambda v: v <= 1),
        ("BDK: CTCA ≤ 5 %", get(True, "base", "ctca"), lambda v: v <= 5),
        ("BDK: ACC drop ≤ 1.5 classes' share", (acc0 - get(True, "base", "acc")) / (acc0 / num_classes),
         lambda v: v <= 1.5),
        ("¬BDK: ASR ≤ 1 %", get(False, "base", "asr"), lambda v: v <= 1),
        ("BDK +repair: CTCA ≥ ½ victim ACC", get(True, "repair", "ctca"), lambda v: v >= acc0 / 2),
        ("¬BDK +repair: CTCA ≥ ½ victim ACC", get(False, "repair", "ctca"), lambda v: v >= acc0 / 2),
        ("BDK +repair: ASR ≤ 10 %", get(True, "repair", "asr"), lambda v: v <= 10),
    ]
    return pd.DataFrame([{"claim": c, "value": v, "holds": None if math.isnan(v) else bool(test(v))}
                         for c, v, test in checks])


# ---------------------------------------------------------------------------------------------------------------------
# Parameter validation (papermill injects parameters; a wrong one should fail with its name)


@dataclass(frozen=True)
class Check:
    """A named predicate for :func:`check_params`: ``test(value)`` true when valid; ``what`` describes valid values.

    >>> even = Check(lambda v: v % 2 == 0, "an even int")
    >>> check_params({"k": 3}, k=(int, even))
    Traceback (most recent call last):
    ValueError: parameter 'k' must be an even int, got 3
    """

    test: Callable[[Any], bool]
    what: str
    error: type[Exception] = ValueError

    def validate(self, name: str, value: object) -> None:
        """Raise naming ``name`` unless ``value`` passes."""
        try:
            ok = self.test(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"parameter {name!r}: {err}") from None
        if not ok:
            raise self.error(f"parameter {name!r} must be {self.what}, got {value!r}")


@dataclass(frozen=True)
class _Number(Check):
    types: Any = float

    def validate(self, name: str, value: object) -> None:
        _check(name, value, self.types)
        super().validate(name, value)


@dataclass(frozen=True)
class _ListOf(Check):
    item: Any = None

    def validate(self, name: str, value: object) -> None:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"parameter {name!r} must be a list, got {type(value).__name__} {value!r}")
        super().validate(name, value)
        for i, x in enumerate(value):
            _check(f"{name}[{i}]", x, self.item)


@dataclass(frozen=True)
class _Optional(Check):
    spec: Any = None

    def validate(self, name: str, value: object) -> None:
        if value is not None:
            _check(name, value, self.spec)


def _is_type(value: object, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False          # True is not a sample count
    if float in types and isinstance(value, int):
        return True           # 1 is a fine learning rate
    return isinstance(value, types)


def _type_name(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def number(types: type | tuple[type, ...] = float, *, lo: float | None = None, hi: float | None = None) -> Check:
    """A finite number of ``types`` in ``[lo, hi]`` (either bound optional). ``number(int, lo=1)``: a count."""
    bounds = f" in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]" if (lo, hi) != (None, None) else ""
    return _Number(lambda v: math.isfinite(v) and (lo is None or v >= lo) and (hi is None or v <= hi),
                   f"a finite {_type_name(types)}{bounds}", types=types)


def list_of(item: Any, *, min_len: int = 1) -> Check:
    """A list (or tuple) of at least ``min_len`` items, each valid under ``item`` (any spec :func:`check_params`
    accepts): ``list_of(int)`` for seeds, ``list_of((str, DATASETS))``, ``list_of(number(float, lo=0))``."""
    return _ListOf(lambda v: len(v) >= min_len, f"a list of at least {min_len} item(s)", item=item)


def optional(spec: Any) -> Check:
    """``None`` or a value valid under ``spec``."""
    return _Optional(lambda v: True, "None or a valid value", spec=spec)


def _check(name: str, value: object, spec: Any) -> None:
    if isinstance(spec, Check):
        spec.validate(name, value)
        return
    if isinstance(spec, type) or (isinstance(spec, tuple) and spec and all(isinstance(t, type) for t in spec)):
        if not _is_type(value, spec):
            raise TypeError(f"parameter {name!r} must be {_type_name(spec)}, got {type(value).__name__} {value!r}")
        return
    if isinstance(spec, tuple) and len(spec) == 2:
        _check(name, value, spec[0])
        allowed = spec[1]
        if isinstance(allowed, Check):
            _check(name, value, allowed)
        elif isinstance(allowed, Collection) and not isinstance(allowed, str):
            if value not in allowed:
                raise ValueError(f"parameter {name!r} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
        else:
            raise TypeError(f"check_params: cannot read the spec {spec!r} given for {name!r}")
        return
    raise TypeError(f"check_params: cannot read the spec {spec!r} given for {name!r}")


def check_params(values: Mapping[str, Any], /, **specs: Any) -> dict[str, Any]:
    """Check a chapter's (papermill-injected) parameters; raise naming the first bad one.

    ``values`` holds the parameters (in a notebook: ``globals()``); each keyword names one and gives its spec:

    - a type or tuple of types, e.g. ``int``, ``(str, type(None))`` — ``TypeError`` otherwise (``bool`` is not an
      ``int``; an ``int`` is a valid ``float``);
    - ``(type, allowed)`` with ``allowed`` a collection, e.g. ``(str, DATASETS)`` — ``ValueError`` if not in it
      (or ``(type, check)`` with a :class:`Check`);
    - a :class:`Check`: :func:`number`, :func:`list_of`, :func:`optional`, or your own.

    Returns the checked ``{name: value}``. Raises ``ValueError`` for a missing parameter.

    >>> check_params({"n_images": 512, "dataset": "mnist"}, n_images=number(int, lo=1), dataset=(str, ("mnist",)))
    {'n_images': 512, 'dataset': 'mnist'}
    >>> check_params({"n_images": "512"}, n_images=int)
    Traceback (most recent call last):
    TypeError: parameter 'n_images' must be int, got str '512'
    """
    out = {}
    for name, spec in specs.items():
        if name not in values:
            raise ValueError(f"parameter {name!r} is missing; add it to the parameters cell")
        _check(name, values[name], spec)
        out[name] = values[name]
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The edit/repair grid (Tables 1, 2, 5, 8, 9)


def draw_unseen(pool_images: torch.Tensor, pool_labels: torch.Tensor, n: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of the D_U pool drawn without replacement with ``seed`` (``[n, C, H, W]``, ``[n]``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if n > len(pool_images):
        raise ValueError(f"asked for {n} D_U images but the pool holds {len(pool_images)}; lower n or enlarge unseen")
    index = torch.randperm(len(pool_images), generator=generator(seed))[:n]
    return pool_images[index], pool_labels[index]


def evaluate_victim(victim, model: nn.Module | None = None, *, n_eval: int | None = None,
                    device: str | torch.device = "cpu") -> dict:
    """ASR/ACC/CTCA (percent) of ``model`` (default: the victim's) on D_V with the verification trigger.

    ``n_eval``: evaluate on a fixed subset of that many D_V images (drawn with seed 0, sorted — the same subset
    for every model, as in :func:`actedit.baselines.comparison`); ``None`` or ≥ |D_V|: all of D_V, i.e.
    :meth:`actedit.experiments.Victim.evaluate`.
    """
    if n_eval is not None and (isinstance(n_eval, bool) or not isinstance(n_eval, int) or n_eval < 1):
        raise ValueError(f"n_eval must be a positive int or None (all of D_V), got {n_eval!r}")
    test = victim.splits.test
    if n_eval is not None and n_eval < len(test):
        test = test.subset(torch.randperm(len(test), generator=generator(0))[:n_eval].sort().values)
    return evaluate(victim.model if model is None else model, test.images, test.labels, trigger=victim.verify_trigger,
                    target=victim.spec.target, top_k=victim.splits.top_k, num_classes=victim.splits.num_classes,
                    device=device)


def run_edit_grid(victim, *, samples: Sequence[int] = (512,), seeds: Sequence[int] = (0,),
                  bdk: Sequence[bool] = (True, False), repair_lrs: Sequence[float] = (),
                  config: EditConfig | None = None, model: nn.Module | None = None, n_eval: int | None = None,
                  device: str | torch.device = "cpu") -> pd.DataFrame:
    """Edit (and optionally repair) a victim over a grid; one record per run.

    For each seed, sample count N and setting (BDK: the victim's trigger; ¬BDK: none), draw N D_U images with the
    seed (:func:`draw_unseen`), edit with ``config`` (paper defaults), evaluate on D_V with the verification trigger
    (state "base"), then repair the edited model at each learning rate (state "repair") with the same D_U.

    Arguments:
        victim: an :class:`actedit.experiments.Victim` (its D_U pool, triggers, test set and target are used).
        model: the model to edit instead of ``victim.model`` (same data and trigger).
        n_eval: evaluate on a fixed subset of D_V (:func:`evaluate_victim`); ``None``: all of it.

    Returns columns ``seed, samples, bdk, state, lr (NaN for base), asr, acc, ctca, seconds`` (edit or repair
    wall time, from :func:`actedit.timing.timed`; vary between machines, never shown as a result).
    """
    net = victim.model if model is None else model
    pool = victim.splits.unseen
    rows: list[dict] = []
    for seed in seeds:
        for n in samples:
            images, labels = draw_unseen(pool.images, pool.labels, n, seed)
            for known in bdk:
                trig = victim.trigger if known else None
                with timed(device) as t:
                    edited = edit_model(net, images, trigger=trig, config=config)
                rows.append(_record(victim, edited, seed, n, known, "base", math.nan, t.seconds, n_eval, device))
                for lr in repair_lrs:
                    with timed(device) as t:
                        fixed = repair(edited, images, labels, trigger=trig, lr=lr, device=device)
                    rows.append(_record(victim, fixed, seed, n, known, "repair", float(lr), t.seconds, n_eval,
                                        device))
    return pd.DataFrame(rows)


def _record(victim, model: nn.Module, seed: int, n: int, known: bool, state: str, lr: float, seconds: float,
            n_eval: int | None, device) -> dict:
    m = evaluate_victim(victim, model, n_eval=n_eval, device=device)
    log.info("seed %d N %d bdk %s %s lr %g: %s", seed, n, known, state, lr, {k: m[k] for k in METRICS})
    return {"seed": seed, "samples": n, "bdk": known, "state": state, "lr": lr,
            **{k: m[k] for k in METRICS}, "seconds": seconds}
