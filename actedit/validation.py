"""Input checks shared by the edit, repair, baselines and the CLI: clear errors before anything is touched.

Offers :func:`check_images`, :func:`check_labels`, :func:`check_trigger_output`.
"""
from __future__ import annotations

import math

import torch

__all__ = ["check_images", "check_labels", "check_trigger_output"]


def check_images(images: object, *, channels: int | None = None) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``images`` is a finite float tensor ``[N, C, H, W]`` in [0, 1], N ≥ 1."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a float torch.Tensor [N, C, H, W] in [0, 1], got {type(images).__name__}; "
                        "convert with torch.as_tensor(x).float() / 255 for 0-255 data")
    if not images.is_floating_point():
        raise TypeError(f"images must be a float tensor in [0, 1], got dtype {images.dtype}; "
                        "for uint8 0-255 data use images.float() / 255")
    if images.dtype != torch.float32:
        raise TypeError(f"images must be float32 [N, C, H, W] in [0, 1], got {images.dtype}; use images.float()")
    if images.ndim != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty: at least one image is needed")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"images have {images.shape[1]} channels, the model expects {channels}")
    lo, hi = (v.item() for v in images.detach().aminmax())  # one pass; a NaN anywhere makes both NaN
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("images contain NaN or Inf")
    if lo < 0 or hi > 1:
        raise ValueError(f"images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                         "pass unnormalised images (normalisation belongs inside the model)")


def check_labels(labels: object, n: int, *, num_classes: int | None) -> None:
    """Raise unless ``labels`` is an int64-compatible tensor ``[n]`` with values in ``[0, num_classes)``."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor of class indices, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape [{n}] (one per image), got {tuple(labels.shape)}")
    if n and labels.min().item() < 0:
        raise ValueError(f"labels must be non-negative class indices, got {labels.min().item()}")
    if num_classes is not None and n and labels.max().item() >= num_classes:
        raise ValueError(f"label {labels.max().item()} is out of range for a model with {num_classes} classes")


def check_trigger(trigger: object) -> None:
    if trigger is not None and not callable(trigger):
        raise TypeError(f"trigger must be a callable images -> images or None, got {type(trigger).__name__}; "
                        "build one with actedit.triggers.make_trigger(name, channels=..., size=...)")


def check_trigger_output(out: object, like: torch.Tensor) -> torch.Tensor:
    """Raise unless a trigger's output has the input's shape and is finite; return it."""
    if not isinstance(out, torch.Tensor) or out.shape != like.shape:
        raise ValueError(f"the trigger must return a tensor of the input's shape {tuple(like.shape)}, "
                         f"got {getattr(out, 'shape', type(out).__name__)}")
    if out.dtype != like.dtype:
        raise ValueError(f"the trigger must keep the images' dtype {like.dtype}, got {out.dtype}")
    lo, hi = (v.item() for v in out.detach().aminmax())  # one pass; a NaN anywhere makes both NaN
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("the trigger returned NaN or Inf values")
    if lo < 0 or hi > 1:
        raise ValueError(f"the trigger must return images in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
    return out
