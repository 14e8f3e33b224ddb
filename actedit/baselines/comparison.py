"""The comparison of Tables 3, 4 and 10: every method unlearns the same victim, scored against the retrained R.

Offers :data:`METHODS`, :func:`victim_configs`, :func:`run_comparison` and, for the chapters, :func:`best_methods`
and :func:`score_table` (the paper's table beside ours). The paper (§4.2, supplement B.5)
compares, per victim, actFT, BaEraser and ours under BDK and basicFT, NAD and ours under ¬BDK by Score (Eq. 6):
``Score = 100 · (1 − ASR^U / ASR^V) · ACC^U / ACC^R``, with ASR measured with the verification trigger (alpha × 3).
Ours uses 512 D_U images (§4.1); the paper does not say how many the baselines got in Tables 3/4/10 — Table 7 shows
5000 gives actFT, basicFT and NAD their best scores (BaEraser: 500), so that is the default pool here.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, is_dataclass
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..cache import Cache, state_digest
from ..edit import EditConfig, edit_model
from ..metrics import evaluate, score
from ..seeding import generator
from ..timing import timed
from .activation_finetune import ActFTConfig, act_ft
from .attention_distillation import NADConfig, nad
from .finetune import BasicFTConfig, basic_ft
from .unlearning import BaEraserConfig, ba_eraser

__all__ = ["METHODS", "victim_configs", "run_comparison", "best_methods", "score_table", "in_setting"]
log = logging.getLogger(__name__)

#: (method, BDK) in the column order of Tables 3 and 4 (and Table 10)
METHODS: tuple[tuple[str, bool], ...] = (("actFT", True), ("BaEraser", True), ("ours", True),
                                         ("basicFT", False), ("NAD", False), ("ours", False))
_RUN = {"actFT": act_ft, "BaEraser": ba_eraser, "basicFT": basic_ft, "NAD": nad}


def victim_configs(victim) -> dict[str, Any]:
    """The baselines' configs for ``victim`` (an :class:`actedit.experiments.Victim`).

    basicFT repeats the victim's own recipe (``victim.spec.train_config()``) on D_U; NAD's teacher is that basicFT
    and its student gets the victim's epochs and learning rate; BaEraser unlearns the victim's y_t; actFT keeps
    its defaults (one gentle epoch, trigger × 3).
    """
    recipe = victim.spec.train_config()
    teacher = BasicFTConfig.like(recipe)
    return {"actFT": ActFTConfig(),
            "BaEraser": BaEraserConfig(target=victim.spec.target),
            "basicFT": teacher,
            "NAD": NADConfig(teacher=teacher, epochs=recipe.epochs, lr=recipe.lr, batch_size=recipe.batch_size)}


def run_comparison(victim, reference: nn.Module, *, n_ours: int = 512, n_baselines: int = 5000,
                   methods: Sequence[tuple[str, bool]] = METHODS, configs: Mapping[str, Any] | None = None,
                   edit_config: EditConfig | None = None, n_eval: int | None = None,
                   device: str | torch.device = "cpu", cache: Cache | None = None) -> pd.DataFrame:
    """Unlearn ``victim`` with each method and score it; one row per method plus a "victim" and a "retrained" row.

    Arguments:
        victim: an :class:`actedit.experiments.Victim`; D_U is the first images of its (seeded, shuffled) pool, so
            ours' 512 images are a subset of the baselines' pool.
        reference: the retrained model R of the victim's specification (Eq. 6's ACC^R).
        n_ours: D_U size of the edit (§4.1: 512).
        n_baselines: D_U size of the baselines.
        methods: ``(name, bdk)`` pairs, from :data:`METHODS`.
        configs: per-baseline configs replacing :func:`victim_configs`'s.
        edit_config: :class:`actedit.EditConfig` of ours (paper defaults).
        n_eval: evaluate on this many D_V images (a random subset fixed by seed 0, the same for every model and
            victim of the dataset); None: all of D_V.
        cache: where the baselines' trained weights are kept (:class:`actedit.cache.Cache`); None: nothing is
            cached. An entry is keyed by the victim's specification and a digest of its weights, the method, its
            config, ``n_baselines`` and the device type, and records the training time of the run that made it
            (reported in ``seconds`` on later hits). Ours is never cached: it is what the tables are about and
            takes a fraction of a second.

    Returns columns ``method, bdk, samples, asr, acc, ctca, score, seconds``: ASR/ACC/CTCA in percent on D_V with
    the verification trigger (as :meth:`Victim.evaluate`), Score (Eq. 6; NaN for the two reference rows) and the
    wall time of the call (NAD's includes the basicFT teacher it reuses). The reference rows ("victim",
    "retrained") have ``bdk`` None.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid: {list(METHODS)}")
    configs = {**victim_configs(victim), **(configs or {})}
    test = victim.splits.test
    if n_eval is not None and n_eval < len(test):
        test = test.subset(torch.randperm(len(test), generator=generator(0))[:n_eval].sort().values)

    def measure(model: nn.Module) -> dict:
        return evaluate(model, test.images, test.labels, trigger=victim.verify_trigger, target=victim.spec.target,
                        top_k=victim.splits.top_k, num_classes=victim.splits.num_classes, device=device)

    before = measure(victim.model)
    ref = measure(reference)
    rows = [_row("victim", None, 0, before, math.nan, math.nan),
            _row("retrained", None, 0, ref, math.nan, math.nan)]
    images, labels = victim.unseen(n_baselines) if any(m != "ours" for m, _ in methods) else (None, None)
    small_x, _ = victim.unseen(n_ours)
    edit_config = edit_config or EditConfig(device=str(device))
    teacher: tuple[nn.Module, float] | None = None
    weights = state_digest(victim.model.state_dict()) if cache is not None else None
    for name, bdk in methods:
        trigger = victim.trigger if bdk else None
        reuse = name == "NAD" and teacher is not None and configs["NAD"].teacher == configs["basicFT"]

        def run() -> nn.Module:
            if name == "ours":
                return edit_model(victim.model, small_x, trigger=trigger, config=edit_config)
            if reuse:
                return nad(victim.model, images, labels, config=configs["NAD"], device=device, teacher=teacher[0])
            return _RUN[name](victim.model, images, labels, trigger=trigger, config=configs[name], device=device)

        if cache is None or name == "ours":
            with timed(device) as t:
                model = run()
            own_seconds = t.seconds
        else:
            model, own_seconds = _cached_baseline(cache, victim, weights, name, bdk, configs[name], n_baselines,
                                                  device, run)
        seconds = own_seconds + (teacher[1] if reuse else 0.0)
        if name == "basicFT":
            teacher = (model, own_seconds)
        metrics = measure(model)
        rows.append(_row(name, bdk, n_ours if name == "ours" else n_baselines, metrics,
                         score(metrics["asr"], before["asr"], metrics["acc"], ref["acc"]), seconds))
        log.info("%s (%s): %s", name, "BDK" if bdk else "¬BDK", {k: round(rows[-1][k], 2) for k in
                                                                ("asr", "acc", "ctca", "score")})
    return pd.DataFrame(rows)


def _cached_baseline(cache: Cache, victim, weights: str, name: str, bdk: bool, config: Any, samples: int,
                     device: str | torch.device, run) -> tuple[nn.Module, float]:
    """``run()``'s model and training seconds, from ``cache`` when an identical run was made before."""
    key = {"role": "unlearned", "victim": asdict(victim.spec), "weights": weights, "method": name, "bdk": bdk,
           "config": asdict(config) if is_dataclass(config) else repr(config), "samples": samples, "device": torch.device(device).type}
    made: dict[str, nn.Module] = {}

    def build() -> tuple[dict, dict]:
        with timed(device) as t:
            made["model"] = run()
        return made["model"].state_dict(), {"seconds": t.seconds}

    state, meta = cache.get_or_build("unlearned", key, build)
    if "model" in made:
        return made["model"], float(meta["seconds"])
    model = copy.deepcopy(victim.model).to(device)  # the baselines return a copy with the victim's modes
    model.load_state_dict(state)
    return model, float(meta["seconds"])


def _row(method: str, bdk: bool | None, samples: int, metrics: Mapping[str, Any], value: float,
         seconds: float) -> dict:
    return {"method": method, "bdk": bdk, "samples": samples, "asr": metrics["asr"], "acc": metrics["acc"],
            "ctca": metrics["ctca"], "score": value, "seconds": seconds}


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
    :data:`METHODS` order.

    >>> t = pd.DataFrame({"trigger": ["a", "a"], "method": ["actFT", "ours"], "bdk": [True, True],
    ...                   "metric": ["score", "score"], "mean": [90.0, 93.0], "std": [0.0, 0.0]})
    >>> best_methods(t, "trigger", True).to_dict()
    {'a': 'ours'}
    """
    table = _scores(tidy, index, bdk)
    order = [m for m, b in METHODS if b == bdk and m in table.columns]
    return table[order].idxmax(axis=1)


def score_table(paper_df: pd.DataFrame, ours_df: pd.DataFrame, index: str, bdk: bool,
                labels: Mapping[Any, str] | None = None, digits: int = 2) -> pd.DataFrame:
    """One setting of Table 3, 4 or 10 with the paper's cell beside ours: rows ``index``, columns (what, source).

    Both frames are tidy (``index, method, bdk, metric, mean, std``); "victim" rows with metrics ``asr``/``acc``
    give the "(ASR/ACC)" column where present. Each source also gets a "best" column naming its best method. Rows
    follow the paper's order, then ours-only rows; ``labels`` renames index values (e.g. "(a) White").
    """
    from ..report import fmt

    methods = [m for m, b in METHODS if b == bdk]
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
