"""Retraining: train from scratch on the clean part D_C of D_T — the "perfect unlearning" reference of Tables 6/7 and
the model R of Score (Eq. 6).

Offers :func:`retrain`, a thin wrapper of :func:`actedit.experiments.get_retrained` (which caches R on disk): the
same architecture and recipe as the victim of ``spec``, trained on D_C only. Unlike the four unlearning baselines it
needs the training data, not the victim, so its signature is the victim's specification.
"""
from __future__ import annotations

import torch
from torch import nn

from ..cache import Cache
from ..experiments import VictimSpec, get_retrained

__all__ = ["retrain"]


def retrain(spec: VictimSpec = VictimSpec(), *, device: str | torch.device = "cpu", cache: Cache | None = None,
            data_root: str | None = None, progress: bool = False) -> nn.Module:
    """The retrained model R of ``spec`` (trained on D_C with the victim's recipe; loaded from the cache if there).

    Time it with :func:`actedit.timing.timed` and a fresh ``Cache`` to measure the cost of retraining (Table 7).
    """
    if not isinstance(spec, VictimSpec):
        raise TypeError(f"retrain takes the victim's VictimSpec, got {type(spec).__name__}")
    return get_retrained(spec, device=str(device), cache=cache, data_root=data_root, progress=progress)
