"""Activation capture (§3.1 step ①): context managers that hook layers by dotted name and average their activations.

Offers :func:`get_module`, :class:`Trace` and :class:`TraceDict`, after baukit's ``nethook``, and
:class:`Features`, which keeps the last outputs *with* their autograd graph for losses (NAD, actFT). Hooks exist only inside
the ``with`` block: ``__exit__`` removes every one of them, also when the block raises.

>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> with TraceDict(net, ["0", "2"]) as td:
...     _ = net(torch.ones(5, 3)); _ = net(torch.zeros(5, 3))
>>> td["0"].mean.shape, td["0"].count
(torch.Size([4]), 10)
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Iterable

import torch
from torch import nn

__all__ = ["get_module", "Trace", "TraceDict", "RunningMean", "Features"]


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()``; ``LookupError(name)`` if there is none."""
    for n, m in model.named_modules():
        if n == name:
            return m
    raise LookupError(name)


class RunningMean:
    """Mean over all samples seen so far of a per-sample activation (accumulated in float64)."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.count = 0

    def add(self, batch: torch.Tensor) -> None:
        s = batch.detach().sum(dim=0, dtype=torch.float64)
        self.sum = s if self.sum is None else self.sum.add_(s)
        self.count += batch.shape[0]

    @property
    def finite(self) -> bool:
        """Whether every value seen was finite, read from the float64 sum: no float32/16 batch can overflow it, so
        a NaN or ±Inf anywhere shows up there. Spares a full ``isfinite`` pass (and a device sync) per batch."""
        return self.sum is None or bool(torch.isfinite(self.sum).all())

    @property
    def mean(self) -> torch.Tensor:
        if self.sum is None:
            raise RuntimeError("no activation was recorded: did the forward pass reach this layer?")
        return (self.sum / self.count).float()


class Trace(AbstractContextManager):
    """Record the running mean of one layer's output (or input) over every forward pass inside the block.

    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    >>> with Trace(net, "0") as t:
    ...     _ = net(torch.ones(4, 3))
    >>> t.mean.shape
    torch.Size([2])
    """

    def __init__(self, model: nn.Module, layer: str, *, input: bool = False) -> None:
        self.module = get_module(model, layer)
        self.layer = layer
        self.input = input
        self.record = RunningMean()
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        value = inputs[0] if self.input else output
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"layer {self.layer!r} produced {type(value).__name__}, not a tensor")
        self.record.add(value)

    def __enter__(self) -> "Trace":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @property
    def mean(self) -> torch.Tensor:
        return self.record.mean

    @property
    def count(self) -> int:
        return self.record.count


class TraceDict(AbstractContextManager, dict):
    """Several :class:`Trace` s at once, a dict from layer name to trace; all hooks go on exit.

    Unknown layer names raise ``LookupError`` before any hook is registered.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str], *, input: bool = False) -> None:
        super().__init__()
        for name in layers:  # resolve every name first: a bad name leaves no hook behind
            self[name] = Trace(model, name, input=input)

    def __enter__(self) -> "TraceDict":
        entered = []
        try:
            for trace in self.values():
                trace.__enter__()
                entered.append(trace)
        except BaseException:
            for trace in entered:
                trace.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for trace in self.values():
            trace.__exit__(*exc)


class Features(AbstractContextManager):
    """Keep the outputs (or inputs) of named layers from the last forward pass inside the block, graph attached.

    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    >>> with Features(net, ["1"]) as f:
    ...     _ = net(torch.rand(4, 1, 4, 4))
    >>> f["1"].shape, f["1"].requires_grad
    (torch.Size([4, 2, 2, 2]), True)

    Every hook is removed on exit, also when the block raises. Unknown names raise ``LookupError`` before any
    hook is registered.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str], *, input: bool = False) -> None:
        self.modules = {name: get_module(model, name) for name in layers}
        self.input = input
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            value = inputs[0] if self.input else output
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"layer {name!r} produced {type(value).__name__}, not a tensor")
            self.outputs[name] = value
        return hook

    def __enter__(self) -> "Features":
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.outputs:
            raise RuntimeError(f"layer {name!r} recorded nothing: did a forward pass run inside the block?")
        return self.outputs[name]
