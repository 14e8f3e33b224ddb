"""Tables and formatting for the book's chapters: seed aggregation, the paper's cells beside ours, verdict columns.

Offers :func:`fmt`, :func:`aggregate`, :func:`side_by_side` (with :func:`within`), :func:`wide`, :func:`not_run` /
:data:`NOT_RUN`, :data:`LABELS`, :func:`edit_pattern` (the Table 1/2 pattern checks) and, for Tables 3, 4 and 10,
:func:`score_table`, :func:`best_methods`, :func:`in_setting`. Running experiments is :mod:`actedit.experiments`,
checking a chapter's parameters :mod:`actedit.params`. A chapter's flow::

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from .paper import TABLE_METHODS

__all__ = ["fmt", "aggregate", "cell", "side_by_side", "within", "wide", "NOT_RUN", "not_run", "edit_pattern", "METRICS",
           "LABELS", "score_table", "best_methods", "in_setting"]
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


def cell(table: pd.DataFrame, default: float | None = None, **where: Any) -> tuple[float, float]:
    """The ``(mean, std)`` of the one row of an :func:`aggregate` table (or :mod:`actedit.paper`'s) whose columns
    equal ``where``; a ``None`` value matches a missing one (the victim's rows have no ``bdk``).

    No matching row raises ``KeyError`` naming the selection, unless ``default`` is given: then ``(default,
    default)``, for a cell a table may lack (a run this build did not do). Two matching rows raise ``ValueError``:
    the selection is ambiguous.

    >>> t = aggregate([{"bdk": True, "asr": 1.0}, {"bdk": True, "asr": 3.0}], by=["bdk"], metrics=["asr"])
    >>> cell(t, bdk=True, metric="asr")
    (2.0, 1.0)
    """
    unknown = [k for k in where if k not in table.columns]
    if unknown:
        raise KeyError(f"cell: the table has no column(s) {unknown}; columns are {list(table.columns)}")
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        mask &= table[column].isna() if value is None else (table[column] == value)
    rows = table[mask]
    if len(rows) == 0:
        if default is not None:
            return float(default), float(default)
        raise KeyError(f"cell: no row with {where}")
    if len(rows) > 1:
        raise ValueError(f"cell: {len(rows)} rows match {where}; name more columns")
    return float(rows["mean"].iloc[0]), float(rows["std"].iloc[0])


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
# Tables 3, 4 and 10: one setting's Scores, the paper's beside ours


def in_setting(tidy: pd.DataFrame, bdk: bool) -> pd.DataFrame:
    """The rows of ``tidy`` whose ``bdk`` is ``bdk`` (rows with a missing ``bdk`` — references — are dropped)."""
    mask = [b is not None and not pd.isna(b) and bool(b) == bdk for b in tidy["bdk"]]
    return tidy.loc[pd.Series(mask, index=tidy.index, dtype=bool)]


def _scores(tidy: pd.DataFrame, index: str, bdk: bool) -> pd.DataFrame:
    """``index × method`` mean Scores of one setting from a tidy frame (columns index, method, bdk, metric, mean)."""
    part = in_setting(tidy[(tidy["metric"] == "score") & (tidy["method"] != "victim")], bdk)
    return part.pivot_table(index=index, columns="method", values="mean", sort=False)


def best_methods(tidy: pd.DataFrame, index: str, bdk: bool) -> pd.Series:
    """The method with the highest mean Score for each value of ``index`` (e.g. each trigger), in one setting.

    ``tidy``: the layout of :mod:`actedit.paper` (``index, method, bdk, metric, mean, std``), e.g.
    ``paper.table3()`` or ours from :func:`actedit.report.aggregate`. Ties go to the first method in
    :data:`actedit.paper.TABLE_METHODS` order.

    >>> t = pd.DataFrame({"trigger": ["a", "a"], "method": ["actFT", "ours"], "bdk": [True, True],
    ...                   "metric": ["score", "score"], "mean": [90.0, 93.0], "std": [0.0, 0.0]})
    >>> best_methods(t, "trigger", True).to_dict()
    {'a': 'ours'}
    """
    table = _scores(tidy, index, bdk)
    order = [m for m, b in TABLE_METHODS if b == bdk and m in table.columns]
    return table[order].idxmax(axis=1)


def score_table(paper_df: pd.DataFrame, ours_df: pd.DataFrame, index: str, bdk: bool,
                labels: Mapping[Any, str] | None = None, digits: int = 2) -> pd.DataFrame:
    """One setting of Table 3, 4 or 10 with the paper's cell beside ours: rows ``index``, columns (what, source).

    Both frames are tidy (``index, method, bdk, metric, mean, std``); "victim" rows with metrics ``asr``/``acc``
    give the "(ASR/ACC)" column where present. Each source also gets a "best" column naming its best method. Rows
    follow the paper's order, then ours-only rows; ``labels`` renames index values (e.g. "(a) White").
    """
    methods = [m for m, b in TABLE_METHODS if b == bdk]
    keys = list(dict.fromkeys(list(paper_df[index]) + list(ours_df[index])))
    columns: dict[tuple[str, str], list[str]] = {}
    for source, frame in (("paper", paper_df), ("ours", ours_df)):
        victim = frame[frame["method"] == "victim"].pivot_table(index=index, columns="metric", values="mean",
                                                                 sort=False)
        if {"asr", "acc"} <= set(victim.columns):
            columns[("victim (ASR/ACC)", source)] = [
                f"{victim.at[k, 'asr']:.{digits}f}/{victim.at[k, 'acc']:.{digits}f}" if k in victim.index else "–"
                for k in keys]
    for method in methods:
        for source, frame in (("paper", paper_df), ("ours", ours_df)):
            part = in_setting(frame[(frame["method"] == method) & (frame["metric"] == "score")], bdk)
            cells = {k: fmt(m, s, digits) for k, m, s in zip(part[index], part["mean"], part["std"])}
            columns[(method, source)] = [cells.get(k, "–") for k in keys]
    for source, frame in (("paper", paper_df), ("ours", ours_df)):
        best = best_methods(frame, index, bdk) if len(_scores(frame, index, bdk)) else pd.Series(dtype=object)
        columns[("best", source)] = [best.get(k, "–") for k in keys]
    out = pd.DataFrame(columns, index=[(labels or {}).get(k, k) for k in keys])
    out.index.name = index
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out
