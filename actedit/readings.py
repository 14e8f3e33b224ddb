"""The ambiguous parts of §3 as explicit readings, and the evidence that picks the default.

Offers :data:`READINGS`, :func:`reading_config` and :func:`compare_readings`. The paper leaves open which tensors
are "the weights" split into halves, whether A_l is a layer's output or input activation, and how adaptive pooling
maps an activation onto a weight (see :mod:`actedit.edit`). Each reading is a combination of
``EditConfig.layers × activation × pooling``; :func:`compare_readings` runs every reading under BDK and ¬BDK on a
victim and returns one row per (reading, setting) so that a chapter can rank them against the paper's own
observations (BDK: ASR → 0, CTCA → 0, ACC down by about one class's share).
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Callable

import pandas as pd
import torch
from torch import nn

from .edit import ACTIVATIONS, LAYER_SELECTIONS, POOLINGS, EditConfig, edit_model
from .metrics import evaluate, score

__all__ = ["READINGS", "reading_config", "compare_readings", "rank_readings", "matches_paper"]

READINGS: tuple[tuple[str, str, str], ...] = tuple(itertools.product(LAYER_SELECTIONS, ACTIVATIONS, POOLINGS))


def reading_config(reading: tuple[str, str, str], base: EditConfig | None = None) -> EditConfig:
    """The :class:`EditConfig` of one ``(layers, activation, pooling)`` reading."""
    layers, activation, pooling = reading
    return replace(base or EditConfig(), layers=layers, activation=activation, pooling=pooling)


def compare_readings(model: nn.Module, images: torch.Tensor, *, trigger: Callable, test_images: torch.Tensor,
                     test_labels: torch.Tensor, target: int, verify_trigger: Callable | None = None,
                     acc_retrained: float, readings=READINGS, base: EditConfig | None = None,
                     num_classes: int | None = None) -> pd.DataFrame:
    """Edit ``model`` with every reading under BDK and ¬BDK; one row per (reading, setting) with ASR/ACC/CTCA,
    the ACC ratio to the victim's, and Score (Eq. 6) against ``acc_retrained``."""
    verify = verify_trigger or trigger
    kw = dict(trigger=verify, target=target, num_classes=num_classes)
    victim = evaluate(model, test_images, test_labels, **kw)
    rows = []
    for reading in readings:
        cfg = reading_config(reading, base)
        for bdk in (True, False):
            edited = edit_model(model, images, trigger=trigger if bdk else None, config=cfg)
            m = evaluate(edited, test_images, test_labels, **kw)
            rows.append({"layers": reading[0], "activation": reading[1], "pooling": reading[2],
                         "setting": "BDK" if bdk else "¬BDK", "ASR": m["asr"], "ACC": m["acc"], "CTCA": m["ctca"],
                         "ACC ratio": m["acc"] / victim["acc"],
                         "Score": score(m["asr"], victim["asr"], m["acc"], acc_retrained)})
    return pd.DataFrame(rows)


def matches_paper(table: pd.DataFrame) -> pd.Series:
    """Per row of a :func:`compare_readings` table: does the edit do what the paper observed? ASR ≤ 1 % and, under
    BDK, CTCA ≤ 5 % with ACC ≥ 80 % of the victim's (one class of ten lost, not the model)."""
    return (table["ASR"] <= 1.0) & ((table["setting"] != "BDK") | ((table["CTCA"] <= 5.0) & (table["ACC ratio"] >= 0.8)))


def rank_readings(table: pd.DataFrame) -> pd.DataFrame:
    """Rank readings by the paper's observations, across every model and setting in ``table``.

    A reading *matches* a (model, setting) row when ASR ≤ 1 % and, under BDK, CTCA ≤ 5 % with ACC ≥ 80 % of the
    victim's (one class of ten lost, not the model). Readings are sorted by the number of matches, then by mean Score.
    """
    t = table.assign(match=matches_paper(table))
    ranked = (t.groupby(["layers", "activation", "pooling"])
               .agg(matches=("match", "sum"), rows=("match", "size"), mean_score=("Score", "mean"),
                    min_score=("Score", "min"))
               .reset_index()
               .sort_values(["matches", "mean_score"], ascending=False, kind="stable"))
    return ranked.reset_index(drop=True)
