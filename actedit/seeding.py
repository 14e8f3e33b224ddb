"""Seeds: one ``set_seed`` for the global generators and explicit ``torch.Generator`` objects for sampling.

Offers :func:`set_seed` and :func:`generator`. Sampling that must be reproducible (poison indices, data splits,
shuffling) takes a generator from :func:`generator` instead of relying on global state.
"""
from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["set_seed", "generator"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators.

    >>> set_seed(0)
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def generator(seed: int) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded with ``seed``."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    g = torch.Generator()
    g.manual_seed(seed)
    return g
