"""Files a defender brings: model weights that must not be trusted, and a handful of images.

Offers :func:`load_weights` / :func:`save_weights` (safetensors, or torch state dicts read with
``torch.load(weights_only=True)``), :func:`load_model` (weights into an architecture named by a model spec — a
built-in of :func:`actedit.models.build_model`, ``torchvision:NAME`` or ``path/to/file.py:ClassOrFactory`` — with a
report of every key that does not fit), :func:`parse_model_spec`, :func:`load_images` (an ImageFolder tree, a flat
folder of PNG/JPEG files, or an ``.npz``), :func:`image_sizes`, :func:`load_patch` (a trigger picture, alpha channel
kept), :func:`atomic_path` (write a file by renaming a temporary one into place), :data:`FORMATS` and the result
types :class:`Weights`, :class:`ModelSpec`, :class:`LoadedModel`, :class:`ImageData`.

>>> import tempfile, os                                                   # doctest: +SKIP
>>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")              # doctest: +SKIP
>>> save_weights(build_model("cnn", num_classes=10, channels=1, size=28), path)    # doctest: +SKIP
>>> load_model("cnn", path, size=28).format                               # doctest: +SKIP
'safetensors'
>>> load_model("my_nets.py:Net", "net.pt", kwargs={"width": 32}).model   # doctest: +SKIP

Safety: nothing in a model file is ever executed. Safetensors files hold raw tensors only; torch files are read with
PyTorch's restricted unpickler (``weights_only=True``), which rebuilds tensors and plain containers and refuses any
other import — a checkpoint that would call code (a ``__reduce__`` payload, a pickled ``nn.Module``) raises
``ValueError`` naming what it tried to import. ``.npz`` files are read with ``allow_pickle=False``. Edited weights are
written to a temporary file in the target folder and renamed into place, so a crash never leaves half a file. The
model *spec* is another matter: ``file.py:NAME`` imports the user's own Python file, code the user wrote and trusts,
as ``python file.py`` would run it.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import logging
import os
import pickle
import re
import sys
import zipfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import __version__
from .cache import atomic_write
from .models import MODELS, build_model

__all__ = ["FORMATS", "Weights", "ModelSpec", "ModelSpecError", "LoadedModel", "ImageData", "detect_format",
           "load_weights", "save_weights", "atomic_path", "check_state_dict", "parse_model_spec", "load_model",
           "load_images", "image_sizes", "load_labels", "load_patch", "format_for_suffix", "input_channels",
           "IMAGE_SUFFIXES"]
log = logging.getLogger(__name__)

FORMATS = ("safetensors", "torch")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SUFFIX_FORMAT = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".bin": "torch", ".ckpt": "torch"}
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")   # common checkpoint wrappers
_LUMA = torch.tensor([0.299, 0.587, 0.114])   # ITU-R BT.601, as PIL's convert("L") and actedit.triggers
_MAX_LISTED = 8                               # keys named per category in a mismatch message


# --------------------------------------------------------------------------------------------------- weights

@dataclass(frozen=True)
class Weights:
    """A state dict read from disk: ``state`` maps parameter/buffer names to CPU tensors; ``format`` is the file's."""

    state: dict[str, torch.Tensor]
    format: str
    path: Path
    metadata: dict[str, str]


@dataclass(frozen=True)
class ModelSpec:
    """What a model spec string names (:func:`parse_model_spec`).

    ``kind`` is ``"built-in"`` (``name`` in :data:`actedit.models.MODELS`), ``"torchvision"`` (``name`` a
    classification model of ``torchvision.models``) or ``"file"`` (``name`` a class or factory, dotted names allowed,
    defined in the Python file ``file``).
    """

    text: str
    kind: str
    name: str
    file: Path | None = None


class ModelSpecError(ValueError):
    """A model spec that names nothing usable: malformed, an unknown built-in or torchvision name, a missing
    ``.py`` file, a name the file does not define, or keyword arguments the spec cannot take (the command line's
    exit code 2)."""


@dataclass
class LoadedModel:
    """A model built from a spec with a file's weights, in eval mode.

    ``channels`` is the input channel count the weights (or the model's first convolution) say, ``None`` when the
    model does not tell (no convolution before its first linear layer); ``num_classes`` is the class count it was
    built for, ``None`` for a file model (its output width says it).
    """

    model: nn.Module
    format: str
    path: Path
    spec: ModelSpec
    channels: int | None
    num_classes: int | None
    metadata: dict[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        """The spec as given (the built-in name for built-ins)."""
        return self.spec.text


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise ValueError(f"{path}: is not a regular file (a directory?); give the weights file itself")
    return path


def detect_format(path: str | os.PathLike) -> str:
    """``"safetensors"`` or ``"torch"``, from the file's first bytes (never from its name alone).

    A torch file is a zip archive (``torch.save`` since 1.6) or a legacy pickle stream; a safetensors file starts
    with an 8-byte little-endian header length followed by a JSON header.
    """
    path = _require_file(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(9)
    if size == 0:
        raise ValueError(f"{path}: the file is empty (truncated download or failed save?)")
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 8 + header_len > size:
            raise ValueError(f"{path}: truncated safetensors file (header says {header_len} bytes, the file has "
                             f"{size}); download or save it again")
        return "safetensors"
    raise ValueError(f"{path}: not a safetensors or torch checkpoint (unrecognised first bytes {head[:8]!r}); "
                     "export the model with safetensors.torch.save_file or torch.save(model.state_dict(), path)")


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: corrupt or truncated safetensors file ({err}); download or save it again") from err
    return state, metadata


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        what = f"imports {found.group(1)!r}" if found else "holds pickle instructions the safe loader does not allow"
        raise ValueError(
            f"{path}: refused to load: the checkpoint's pickle {what}, which could run code when unpickled. Only "
            "tensors are loaded (torch.load weights_only=True). If this is a whole pickled model from a source you "
            "trust, re-save it as torch.save(model.state_dict(), path) or as safetensors") from err
    except (RuntimeError, EOFError, KeyError, OSError, zipfile.BadZipFile, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: corrupt or truncated torch checkpoint ({first}); download or save it again") \
            from err
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside ``obj``: itself, or one level down under a usual wrapper key (``"state_dict"``, …)."""
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                log.info("%s: using the state dict under key %r", path, key)
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict; save model.state_dict()")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: entries that are not tensors: {', '.join(bad[:_MAX_LISTED])}; expected a state "
                         f"dict (or a checkpoint with one under {', '.join(map(repr, _WRAPPER_KEYS))})")
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith("module.") for k in state):   # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_weights(path: str | os.PathLike) -> Weights:
    """Read a state dict without executing anything in the file.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file and the reason) for an empty,
    truncated or corrupt file, a pickle that imports anything but tensors, or a file that holds no state dict.
    A torch checkpoint that wraps its state dict under ``"state_dict"``, ``"model_state_dict"``, ``"model"``,
    ``"net"`` or ``"weights"`` is unwrapped; a ``"module."`` prefix on every key (``nn.DataParallel``) is removed.
    """
    path = _require_file(path)
    fmt = detect_format(path)
    if fmt == "safetensors":
        state, metadata = _load_safetensors(path)
    else:
        state, metadata = _load_torch(path), {}
    if not state:
        raise ValueError(f"{path}: the state dict is empty")
    return Weights(state, fmt, path, metadata)


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "the weights",
                     hint: str = "") -> None:
    """Raise ``ValueError`` unless ``state`` has exactly ``model``'s keys with the same shapes.

    The message lists missing keys, unexpected keys and shape mismatches (``name: file [..] vs model [..]``).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: file {list(state[k].shape)} vs model {list(v.shape)}"
                  for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or mismatched):
        return

    def listed(what: str, items: list[str]) -> str:
        more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
        return f"{len(items)} {what} ({', '.join(items[:_MAX_LISTED])}{more})"

    parts = [listed(w, i) for w, i in (("missing keys", missing), ("unexpected keys", unexpected),
                                       ("shape mismatches", mismatched)) if i]
    raise ValueError(f"{source} do not fit the model: {'; '.join(parts)}" + (f". {hint}" if hint else ""))


def input_channels(state: Mapping[str, torch.Tensor]) -> int | None:
    """The input channels of the first convolution in a state dict (its first rank-4 weight), or None."""
    for name, t in state.items():
        if name.endswith("weight") and t.ndim == 4:
            return int(t.shape[1])
    return None


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _layer_weight(model: nn.Module, state: Mapping[str, torch.Tensor], *, last: bool) -> torch.Tensor | None:
    """The file's weight for the model's first (or last) conv/linear layer in ``named_modules()`` order — not in the
    file's key order, which safetensors sorts by name."""
    layers = [n for n, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    if not layers:
        return None
    weight = state.get(f"{layers[-1 if last else 0]}.weight")
    return weight if isinstance(weight, torch.Tensor) and weight.ndim >= 2 else None


def _built_in(name: str, state: Mapping[str, torch.Tensor], num_classes: int | None, channels: int | None,
              size: int) -> tuple[nn.Module, int, int]:
    """``build_model(name)`` for the class count and channels given, else for those of the weights' last and first
    layers (a guess when the weights lack those layers: the key check then lists what is missing)."""
    guess = (num_classes or 10, channels or input_channels(state) or 3)    # usually right: built once
    model = build_model(name, num_classes=guess[0], channels=guess[1], size=size)
    first, last = _layer_weight(model, state, last=False), _layer_weight(model, state, last=True)
    wanted = (num_classes or (int(last.shape[0]) if last is not None else guess[0]),
              channels or (int(first.shape[1]) if first is not None else guess[1]))
    if wanted != guess:
        model = build_model(name, num_classes=wanted[0], channels=wanted[1], size=size)
    return (model, *wanted)


def _first_conv_channels(model: nn.Module) -> tuple[str, int] | None:
    """Name and ``in_channels`` of the model's first convolution in ``named_modules()`` order, or None when a linear
    layer (a model on flattened input) or nothing weighted comes first."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return name, int(m.in_channels)
        if isinstance(m, nn.Linear):
            return None
    return None


def parse_model_spec(spec: str | ModelSpec) -> ModelSpec:
    """Read a model spec: a built-in name (:data:`actedit.models.MODELS`), ``torchvision:NAME``, or
    ``path/to/file.py:NAME`` (a class or factory in the file; ``Outer.build`` reaches into the file's objects).

    Raises :class:`ModelSpecError` for a malformed spec, an unknown built-in or torchvision name, or a ``.py`` file
    that does not exist. Nothing is imported but torchvision's model list.
    """
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"model spec must be a non-empty string, got {spec!r}")
    forms = (f"a built-in ({', '.join(MODELS)}), torchvision:NAME (e.g. torchvision:squeezenet1_1), or "
             "path/to/file.py:ClassOrFactory")
    if spec.startswith("torchvision:"):
        from torchvision import models as tv

        name = spec[len("torchvision:"):]
        valid = tv.list_models(module=tv)
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
            raise ModelSpecError(f"model {spec!r}: torchvision has no classification model {name!r}; {hint}")
        return ModelSpec(spec, "torchvision", name)
    head, colon, name = spec.rpartition(":")
    if colon and head.endswith(".py"):
        path = Path(head).expanduser()
        if not name or not all(part.isidentifier() for part in name.split(".")):
            raise ModelSpecError(f"model {spec!r}: after {head}: name a class or factory defined in it, "
                                 f"e.g. {head}:Net")
        if not path.is_file():
            raise ModelSpecError(f"model {spec!r}: {path}: no such file; check the path")
        return ModelSpec(spec, "file", name, path)
    if spec.endswith(".py"):
        raise ModelSpecError(f"model {spec!r}: name the class or factory in the file that builds the model: "
                             f"{spec}:ClassOrFactory")
    if spec in MODELS:
        return ModelSpec(spec, "built-in", spec)
    close = difflib.get_close_matches(spec, MODELS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ModelSpecError(f"unknown model {spec!r}{hint}; give {forms}")


def _import_file(path: Path) -> Any:
    """Import the user's Python file by its path (trusted code: the user's own). Its folder is on ``sys.path`` while
    it runs, so it can import modules beside it; no bytecode cache is written beside it."""
    path = path.resolve()
    name = f"actedit_user_model_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelSpecError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module           # dataclasses and pickling inside the file look their module up here
    folder, dont_write = str(path.parent), sys.dont_write_bytecode
    sys.path.insert(0, folder)
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ValueError(f"{path}: importing it failed: {type(err).__name__}: {err}") from err
    finally:
        sys.dont_write_bytecode = dont_write
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _from_file(spec: ModelSpec, kwargs: Mapping[str, Any]) -> nn.Module:
    module = _import_file(spec.file)
    obj = module
    for part in spec.name.split("."):
        if not hasattr(obj, part):
            defined = sorted(k for k, v in vars(module).items() if not k.startswith("_") and callable(v)
                             and getattr(v, "__module__", None) == module.__name__)
            raise ModelSpecError(f"model {spec.text!r}: {spec.file} defines no {spec.name!r}; it defines "
                                 f"{', '.join(defined) or 'no class or function'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelSpecError(f"model {spec.text!r}: {spec.name} is a {type(obj).__name__}, not a class or factory")
    try:
        model = obj(**kwargs)
    except Exception as err:
        raise ValueError(f"model {spec.text!r}: {spec.name}({_kwargs_text(kwargs)}) raised "
                         f"{type(err).__name__}: {err}") from err
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {spec.text!r}: {spec.name}({_kwargs_text(kwargs)}) returned a "
                        f"{type(model).__name__}, not a torch.nn.Module")
    return model


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _from_torchvision(spec: ModelSpec, kwargs: dict[str, Any]) -> nn.Module:
    from torchvision import models as tv

    if kwargs.get("weights") is not None or kwargs.get("pretrained"):
        raise ModelSpecError(f"model {spec.text!r}: the weights come from the weights file; torchvision's "
                             "pretrained weights are never downloaded (drop 'weights'/'pretrained' from the kwargs)")
    try:
        return tv.get_model(spec.name, **{**kwargs, "weights": None})
    except Exception as err:
        raise ValueError(f"model {spec.text!r}: torchvision.models.get_model({spec.name!r}, "
                         f"{_kwargs_text(kwargs)}) raised {type(err).__name__}: {err}") from err


def load_model(spec: str | ModelSpec, weights: str | os.PathLike, *, num_classes: int | None = None,
               size: int | None = None, channels: int | None = None, kwargs: Mapping[str, Any] | None = None,
               device: str | torch.device = "cpu") -> LoadedModel:
    """Build the architecture ``spec`` names and load the weights in ``weights`` into it, strictly.

    ``spec`` (see :func:`parse_model_spec`):

    - a built-in name, built by :func:`actedit.models.build_model` for ``num_classes`` (default: the rows of the
      weights' last layer), ``channels`` (default: the input channels of the weights' first convolution) and
      ``size`` (required: it decides the stem);
    - ``"torchvision:NAME"``, built by ``torchvision.models.get_model(NAME, weights=None, **kwargs)`` — never a
      download; ``num_classes`` goes into the kwargs unless they have it (default: read from the weights as above);
    - ``"path/to/file.py:NAME"``: the user's own (trusted) file is imported and ``NAME(**kwargs)`` builds the module.

    The weights are never trusted: :func:`load_weights` reads them (safetensors, or ``torch.load(weights_only=True)``).
    For torchvision and file models ``channels``, when given, is checked against the model's first convolution.

    Raises :class:`ModelSpecError` for a spec that names nothing usable, the errors of :func:`load_weights`,
    ``ValueError`` when importing the file or building the model fails (the message carries the original error) or
    when the weights do not fit (missing/unexpected/mismatched keys listed), ``TypeError`` when a factory returns
    something that is not an ``nn.Module``. Tensors are cast to the model's dtypes. Returned in eval mode on
    ``device``.
    """
    spec = parse_model_spec(spec)
    kwargs = dict(kwargs or {})
    loaded = load_weights(weights)
    state = loaded.state
    if spec.kind == "built-in":
        if kwargs:
            raise ModelSpecError(f"model {spec.text!r}: built-in models take num_classes, channels and size, not "
                                 f"keyword arguments ({', '.join(kwargs)})")
        if size is None:
            raise ValueError(f"model {spec.text!r}: the built-in models are built for an input size; pass size")
        model, num_classes, channels = _built_in(spec.name, state, num_classes, channels, size)
        hint = (f"Check that it was saved from {spec.text!r} with {num_classes} classes and {channels} input "
                "channel(s)")
    else:
        if spec.kind == "torchvision":
            given = kwargs.get("num_classes")
            if given is not None and num_classes is not None and given != num_classes:
                raise ValueError(f"model {spec.text!r}: num_classes {num_classes} but the kwargs say {given}")
            if num_classes is not None:
                kwargs["num_classes"] = num_classes
            if "num_classes" not in kwargs:      # the class count the weights were saved with, from a shell model
                with torch.device("meta"):
                    last = _layer_weight(_from_torchvision(spec, kwargs), state, last=True)
                if last is not None:
                    kwargs["num_classes"] = int(last.shape[0])
            model = _from_torchvision(spec, kwargs)
            num_classes = kwargs.get("num_classes", 1000)
        else:
            model = _from_file(spec, kwargs)
        first = _first_conv_channels(model)
        if first is not None:
            if channels is not None and channels != first[1]:
                raise ValueError(f"model {spec.text!r}: channels {channels}, but its first convolution "
                                 f"{first[0]!r} takes {first[1]}")
            channels = first[1]
        hint = f"Check that it was saved from {spec.text}" + (f" with {_kwargs_text(kwargs)}" if kwargs else "")
    check_state_dict(model, state, source=f"{loaded.path}: the weights", hint=hint)
    model.load_state_dict(state, strict=True)
    return LoadedModel(model.to(device).eval(), loaded.format, loaded.path, spec, channels,
                       num_classes if spec.kind != "file" else None, loaded.metadata, kwargs)


def format_for_suffix(path: str | os.PathLike) -> str | None:
    """The format a file name promises: ``.safetensors`` → safetensors, ``.pt/.pth/.bin/.ckpt`` → torch, else None."""
    return _SUFFIX_FORMAT.get(Path(path).suffix.lower())


def save_weights(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike, *,
                 format: str = "safetensors", metadata: Mapping[str, object] | None = None) -> Path:
    """Write a state dict atomically: to a temporary file in the target folder, then renamed over ``path``.

    ``format`` is ``"safetensors"`` (``metadata`` goes into its header as JSON strings, with ``actedit_version``) or
    ``"torch"`` (a plain ``torch.save`` of the tensor dict, loadable with ``weights_only=True``; ``metadata`` is not
    stored). A failure leaves any existing ``path`` as it was and no temporary file behind.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown weights format {format!r}; valid: {', '.join(FORMATS)}")
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    # clone: safetensors refuses tensors that share memory, and the file must not alias the live model
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file name for the weights")
    if not path.parent.exists():
        raise FileNotFoundError(f"{path.parent}: the output folder does not exist; create it first")
    with atomic_path(path) as tmp:
        if format == "safetensors":
            from safetensors.torch import save_file

            header = {"actedit_version": __version__}
            header.update({str(k): v if isinstance(v, str) else json.dumps(v, default=str)
                           for k, v in (metadata or {}).items()})
            save_file(state, tmp, metadata=header)
        else:
            torch.save(state, tmp)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """:func:`actedit.cache.atomic_write` yielding the temporary name as a string: a unique file beside ``path`` for
    the block to write; on success synced and renamed over ``path`` in one step (with the permissions ``open(path,
    "w")`` would give), on failure removed. Either way no half-written ``path`` exists.

    >>> with atomic_path("report.json") as tmp:          # doctest: +SKIP
    ...     Path(tmp).write_text("{}")
    """
    with atomic_write(path) as tmp:
        yield str(tmp)


# --------------------------------------------------------------------------------------------------- images

@dataclass(frozen=True)
class ImageData:
    """Images read from disk, ready for the model.

    Shape:
        images: ``float32 [N, C, size, size]`` in ``[0, 1]``.
        labels: ``int64 [N]``, or ``None`` when the source has no labels.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    names: tuple[str, ...]                  # file paths relative to the folder, or "npz[i]"
    class_names: tuple[str, ...] | None     # ImageFolder class folders (label i is class_names[i] unless numeric)
    source: str
    layout: str                             # "imagefolder", "flat" or "npz"

    def __len__(self) -> int:
        return self.images.shape[0]


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES)


def _decode_file(path: Path, channels: int) -> torch.Tensor:
    """One image file as float ``[C, h, w]`` in [0, 1] at its own size (alpha dropped, PIL's grey/RGB conversion)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):   # 16-bit grey: scale by the type's range
                arr = np.asarray(image, dtype=np.float32) / 65535.0
                t = torch.from_numpy(arr).clamp_(0, 1)[None]
                return t.expand(channels, -1, -1).clone()
            arr = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot decode this image ({err}); remove it or convert it to PNG") from err
    t = torch.from_numpy(arr.copy()).float().div_(255)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, C, h, w]`` → ``[N, C, size, size]``, bilinear with antialiasing (a non-square image is stretched)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def _convert_channels(x: torch.Tensor, channels: int, source: str) -> torch.Tensor:
    """``[N, c, h, w]`` → ``[N, channels, h, w]``: alpha dropped, RGB → grey by BT.601 luma, grey → RGB copied."""
    c = x.shape[1]
    if c in (2, 4):          # grey+alpha, RGBA: drop alpha, as PIL's convert does
        x, c = x[:, :c - 1], c - 1
    if c == channels:
        return x
    if c == 3 and channels == 1:
        return torch.einsum("c,nchw->nhw", _LUMA.to(x), x)[:, None]
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).clone()
    raise ValueError(f"{source}: images with {c} channels cannot be converted to {channels}; use 1, 3 or 4 channels")


def _folder_files(folder: Path) -> tuple[list[Path], torch.Tensor | None, tuple[str, ...] | None, str]:
    """The image files of a folder in reading order, their labels, the class names and the layout."""
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and _visible(d))
    classes = [d for d in subdirs if _image_files(d)]
    top = _image_files(folder)
    if classes and top:
        raise ValueError(f"{folder}: mixes image files with class folders ({', '.join(d.name for d in classes[:3])}"
                         "…); use either a flat folder or one sub-folder per class (ImageFolder layout)")
    if classes:
        names = tuple(d.name for d in classes)
        numeric = all(n.isdigit() for n in names)
        files, labels = [], []
        for index, d in enumerate(classes):
            found = _image_files(d)
            files += found
            labels += [int(d.name) if numeric else index] * len(found)
        return files, torch.tensor(labels, dtype=torch.int64), names, "imagefolder"
    if top:
        return top, None, None, "flat"
    raise ValueError(f"{folder}: no PNG or JPEG images found (looked for {', '.join(IMAGE_SUFFIXES)} directly in "
                     "it and in its sub-folders)")


_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")


def _scan_files(files: list[Path]) -> tuple[Counter, int]:
    """Sizes ``{(h, w): count}`` and channels (1 if every image is grey, else 3) from the files' headers only."""
    from PIL import Image, UnidentifiedImageError

    sizes, grey = Counter(), True
    for path in files:
        try:
            with Image.open(path) as image:
                sizes[(image.height, image.width)] += 1
                grey = grey and image.mode in _GREY_MODES
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot decode this image ({err}); remove it or convert it to PNG") from err
    return sizes, 1 if grey else 3


def _one_size(sizes: Counter, source: object) -> int:
    """The side of the images' one square size; ``ValueError`` asking for a size when there are several or it is
    not square."""
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common(4))
        more = f" and {len(sizes) - 4} more sizes" if len(sizes) > 4 else ""
        raise ValueError(f"{source}: the images have different sizes ({listed}{more}); give the size the model "
                         "takes and they are all resized to it")
    (h, w), = sizes
    if h != w:
        raise ValueError(f"{source}: the images are {h}x{w}, not square; give the size the model takes and they are "
                         "resized to it")
    return h


def _load_folder(folder: Path, size: int | None, channels: int | None, progress: bool | None):
    files, label_tensor, class_names, layout = _folder_files(folder)
    if size is None or channels is None:
        sizes, native = _scan_files(files)
        size = _one_size(sizes, folder) if size is None else size
        channels = native if channels is None else channels
    out = torch.empty(len(files), channels, size, size)
    disable = None if progress is None else not progress      # None: a bar only on a terminal
    for i, f in enumerate(tqdm(files, desc="read images", disable=disable, leave=False)):
        out[i] = _resize(_decode_file(f, channels)[None], size)[0]
    rel = tuple(str(f.relative_to(folder)) for f in files)
    return out, label_tensor, rel, class_names, layout


def _npz_layout(shape: tuple[int, ...], path: Path) -> str:
    """``"nhwc"`` or ``"nchw"`` for a rank-4 array: the axis of size 1, 3 or 4 is the channel axis."""
    first, last = shape[1] in (1, 3, 4), shape[-1] in (1, 3, 4)
    if first and last:
        raise ValueError(f"{path}: ambiguous image layout {list(shape)} (both axis 1 and axis 3 could be channels); "
                         "store images as [N, H, W, C] or [N, C, H, W] with H, W > 4")
    if first:
        return "nchw"
    if last:
        return "nhwc"
    raise ValueError(f"{path}: cannot find the channel axis in images of shape {list(shape)}; expected [N, H, W] "
                     "or [N, H, W, C] / [N, C, H, W] with C in 1, 3, 4")


def _array_to_unit(arr: np.ndarray, path: Path) -> torch.Tensor:
    """The npz value rule: ``uint8`` is 0–255 and divided by 255; floats must already lie in [0, 1]; nothing else."""
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    if np.issubdtype(arr.dtype, np.floating):
        t = torch.from_numpy(arr.astype(np.float32))
        if not torch.isfinite(t).all():
            raise ValueError(f"{path}: images contain NaN or Inf")
        lo, hi = t.min().item(), t.max().item()
        if lo < 0 or hi > 1:
            raise ValueError(f"{path}: float images must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]; store 0-255 data as "
                             "uint8 (or divide by 255), and unnormalised (no mean/std)")
        return t
    raise ValueError(f"{path}: images have dtype {arr.dtype}; use uint8 (0-255) or float (0-1)")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``images`` array of an ``.npz`` as ``[N, C, H, W]`` (as stored: uint8 or float) and its ``labels``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            if "images" not in keys:
                raise ValueError(f"{path}: no 'images' array (keys: {', '.join(keys) or 'none'}); save with "
                                 "np.savez(path, images=..., labels=...)")
            arr = data["images"]
            labels = data["labels"] if "labels" in keys else None
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise ValueError(f"{path}: holds Python objects (pickled arrays), which are never loaded; store plain "
                             "numeric arrays") from err
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path}: corrupt or truncated .npz file ({err})") from err
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if _npz_layout(arr.shape, path) == "nhwc":
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{path}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{path}: 'images' is empty")
    return arr, labels


def _load_npz(path: Path, size: int | None, channels: int | None):
    arr, labels = _read_npz(path)
    if channels is None:                       # grey (+alpha) stays grey, RGB(A) stays RGB
        channels = 1 if arr.shape[1] in (1, 2) else 3
    if size is None:
        size = _one_size(Counter({tuple(arr.shape[2:]): arr.shape[0]}), path)
    x = _convert_channels(_array_to_unit(np.ascontiguousarray(arr), path), channels, str(path))
    x = _resize(x, size)
    label_tensor = None
    if labels is not None:
        label_tensor = _labels_from_array(labels, f"{path}['labels']")
    return x.contiguous(), label_tensor, tuple(f"npz[{i}]" for i in range(x.shape[0])), None, "npz"


def _labels_from_array(arr: np.ndarray, source: str) -> torch.Tensor:
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise ValueError(f"{source}: labels must be a 1-D array of class indices, got shape {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{source}: labels must be integer class indices, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{source}: labels must be non-negative class indices, got {arr.min()}")
    return torch.from_numpy(arr.astype(np.int64))


def load_labels(path: str | os.PathLike) -> torch.Tensor:
    """Class indices from a ``.npy`` file (read with ``allow_pickle=False``) or a text file of integers separated by
    whitespace or commas, one per image, in the order :func:`load_images` returns the images. Returns ``int64 [N]``."""
    path = _require_file(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: not a plain numeric .npy array ({err})") from err
        return _labels_from_array(arr, str(path))
    tokens = path.read_text().replace(",", " ").split()
    try:
        values = [int(t) for t in tokens]
    except ValueError as err:
        raise ValueError(f"{path}: labels must be integers separated by whitespace or commas ({err})") from err
    return _labels_from_array(np.asarray(values, dtype=np.int64), str(path))


def image_sizes(path: str | os.PathLike) -> Counter:
    """How many images of each size ``(height, width)`` the source :func:`load_images` would read holds — from the
    files' headers, without decoding them. Raises the errors :func:`load_images` raises for the source."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; give a folder of images or an .npz file")
    if path.is_dir():
        return _scan_files(_folder_files(path)[0])[0]
    if path.suffix.lower() == ".npz":
        arr = _read_npz(path)[0]
        return Counter({tuple(arr.shape[2:]): arr.shape[0]})
    raise ValueError(f"{path}: expected a folder of images or an .npz file, got a {path.suffix or 'plain'} file")


def load_images(path: str | os.PathLike, *, size: int | None = None, channels: int | None = None,
                labels: str | os.PathLike | None = None, progress: bool | None = False) -> ImageData:
    """Read the defender's images: an ImageFolder tree, a flat folder of PNG/JPEG files, or an ``.npz``.

    - **ImageFolder** (``root/<class>/*.png``): labels from the class folders — the folder name itself when every
      class folder is a number (``0/``, ``1/``, …), else the index in sorted order (torchvision's rule).
    - **flat folder** (``root/*.png``): unlabelled, in sorted file-name order.
    - **npz**: key ``images`` as ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` (the axis of size 1, 3 or 4 is
      the channel axis; ambiguous shapes are refused) and optional ``labels`` ``[N]``. Value rule: ``uint8`` is
      0–255 and is divided by 255; float arrays must already be in [0, 1] (refused otherwise, never rescaled by
      guess); other dtypes are refused. Read with ``allow_pickle=False``.

    Every image is converted to ``channels`` (alpha dropped; RGB → grey by BT.601 luma; grey → RGB repeated) and
    resized to ``size`` × ``size`` (bilinear, antialiased; non-square images are stretched). ``size=None`` keeps the
    images' own size, which must then be one square size for all of them (``ValueError`` otherwise, asking for a
    size); ``channels=None`` keeps 1 channel when every image is grey, else 3. ``labels`` (a file for
    :func:`load_labels`) overrides the source's labels. ``progress``: a tqdm bar while decoding files (``None``: only
    when stderr is a terminal).

    Shape: returns ``ImageData.images`` ``float32 [N, channels, size, size]`` in [0, 1].
    """
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 8):
        raise ValueError(f"size must be an int of at least 8 pixels, got {size!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; give a folder of images or an .npz file")
    if path.is_dir():
        images, label_tensor, names, class_names, layout = _load_folder(path, size, channels, progress)
    elif path.suffix.lower() == ".npz":
        images, label_tensor, names, class_names, layout = _load_npz(path, size, channels)
    else:
        raise ValueError(f"{path}: expected a folder of images or an .npz file, got a {path.suffix or 'plain'} file")
    if images.shape[-1] < 8:
        raise ValueError(f"{path}: the images are {images.shape[-1]} px; at least 8 are needed (pass a larger size)")
    if labels is not None:
        label_tensor = load_labels(labels)
    if label_tensor is not None and label_tensor.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images in {path} but {label_tensor.shape[0]} labels; give one label "
                         "per image")
    return ImageData(images.contiguous(), label_tensor, names, class_names, str(path), layout)


def load_patch(path: str | os.PathLike) -> torch.Tensor:
    """A trigger picture as float ``[K, h, w]`` in [0, 1] for :class:`actedit.triggers.PatchTrigger`, alpha kept:
    K = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); palette images become RGBA when they have transparency."""
    from PIL import Image, UnidentifiedImageError

    path = _require_file(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            elif mode == "1":
                image = image.convert("L")
            elif mode == "PA":
                image = image.convert("RGBA")
            elif mode not in ("L", "LA", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in mode else "RGB")
            arr = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot decode the trigger picture ({err}); give a PNG") from err
    t = torch.from_numpy(arr.copy()).float().div_(255)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
