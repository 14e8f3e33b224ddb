"""What the edit does, layer by layer (§3, Eq. 4–5).

Offers :func:`unit_factors` (the factor of every output unit of every layer in L — one per class for the
classifier head), :func:`edit_each_layer` (the edit applied to each layer of L alone and to all of them) and
:func:`head_row` (the head's factor for one class: its value, its rank, and whether Eq. 4 made it negative, which
flips the sign of that class's logit row).

Usage::

    ex = extract(victim.model, images, trigger=victim.trigger)
    factors = compute_factors(ex)
    unit_factors(factors)                                   # long table: layer, unit, factor
    edit_each_layer(ex, factors, victim.evaluate)           # ASR/ACC/CTCA per edited layer set
    head_row(factors, "head", target=2)                     # {"factor": -0.27, "rank": 0, ...}
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch
from torch import nn

from .edit import Extraction, LayerFactor, apply_factors

__all__ = ["unit_factors", "edit_each_layer", "head_row"]


def _per_unit(lf: LayerFactor) -> torch.Tensor:
    """The factor of each output unit (dim 0 of the weight); a factor that varies inside a unit is averaged."""
    f = lf.factor.detach().float().cpu()
    out = lf.weight_shape[0] if lf.weight_shape else f.shape[0]
    if f.dim() == 0 or f.numel() == 1:
        return f.reshape(1).expand(out).clone()
    if f.shape[0] == out:
        return f.reshape(out, -1).mean(dim=1)
    return f.reshape(-1)   # a factor laid along another dimension: one value per element


def unit_factors(factors: dict[str, LayerFactor]) -> pd.DataFrame:
    """One row per (layer, output unit) of L: columns ``layer, unit, factor``. For a Linear head the units are
    the classes; for a conv layer its output channels. Empty input is an error."""
    if not factors:
        raise ValueError("unit_factors: no layer factors (is the layer list L empty?)")
    rows = [{"layer": name, "unit": i, "factor": float(v)} for name, lf in factors.items()
            for i, v in enumerate(_per_unit(lf).tolist())]
    return pd.DataFrame(rows)


def edit_each_layer(extraction: Extraction, factors: dict[str, LayerFactor],
                    evaluate: Callable[[nn.Module], dict]) -> pd.DataFrame:
    """Eq. 5 applied to each layer of L alone, then to all of them: one row per edited set with ``evaluate``'s
    ``asr``, ``acc`` and ``ctca``. The extraction's model is not changed (each edit works on a copy)."""
    sets = [(name, {name: lf}) for name, lf in factors.items()] + [("all of L", dict(factors))]
    rows = []
    for label, chosen in sets:
        m = evaluate(apply_factors(extraction, chosen))
        rows.append({"edited": label, "ASR (%)": m["asr"], "ACC (%)": m["acc"], "CTCA (%)": m["ctca"]})
    return pd.DataFrame(rows)


def head_row(factors: dict[str, LayerFactor], head: str, target: int) -> dict:
    """The head's factor for class ``target``: ``factor``, ``rank`` (0 = the smallest of all classes),
    ``smallest_other`` (the smallest factor of the other classes) and ``negative`` (Eq. 5 then flips the sign of
    the class's logit row, so the logit of that class turns against whatever made it large)."""
    if head not in factors:
        raise ValueError(f"head_row: layer {head!r} is not in L ({', '.join(factors)})")
    per_class = _per_unit(factors[head])
    if not 0 <= target < per_class.numel():
        raise ValueError(f"head_row: target {target} outside the head's {per_class.numel()} classes")
    value = float(per_class[target])
    others = torch.cat([per_class[:target], per_class[target + 1:]])
    return {"factor": value, "rank": int((per_class < value).sum()), "smallest_other": float(others.min()),
            "negative": value < 0}
