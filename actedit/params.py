"""Checking a chapter's parameters: papermill injects them, and a wrong one should fail with its name.

Offers :func:`check_params` with the specs :func:`number`, :func:`list_of`, :func:`optional` and :class:`Check`::

    check_params(globals(), dataset=(str, DATASETS), seeds=list_of(int), n_images=number(int, lo=1))
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["check_params", "list_of", "number", "optional", "Check"]


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
