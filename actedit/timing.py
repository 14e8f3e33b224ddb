"""Wall-clock timing shared by the edit, every baseline and the benchmarks.

Offers :class:`Timer` / :func:`timed`: a context manager that synchronises CUDA before reading the clock, so GPU
work is counted when it finishes and not when it is queued.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

__all__ = ["Timer", "timed"]


@dataclass
class Timer:
    """Holds the elapsed seconds of one :func:`timed` block (``seconds`` is set on exit)."""

    seconds: float = float("nan")


def _sync(device: str | torch.device | None) -> None:
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


@contextmanager
def timed(device: str | torch.device | None = None) -> Iterator[Timer]:
    """Time a block of work.

    >>> with timed() as t:
    ...     _ = sum(range(10))
    >>> t.seconds >= 0
    True
    """
    timer = Timer()
    _sync(device)
    start = time.perf_counter()
    try:
        yield timer
    finally:
        _sync(device)
        timer.seconds = time.perf_counter() - start
