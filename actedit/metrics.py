"""Evaluation metrics of the paper (§4.1, Eq. 6): ASR, ACC, CTCA, per-class accuracy, top-k, and Score.

Offers :func:`predict`, :func:`evaluate`, :func:`per_class_accuracy` and :func:`score`. All are pure functions of a
model and data; none changes the model (its train/eval mode is restored).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .training import preserved_modes

__all__ = ["predict", "evaluate", "per_class_accuracy", "score"]

Trigger = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256, top_k: int = 1,
            device: str | torch.device = "cpu") -> torch.Tensor:
    """Top-k class indices of ``model`` in eval mode: ``[N, top_k]`` int64 (column 0 is the arg-max).

    256 images per batch: on a CPU the book's models then keep their activations in cache, about 25 % faster on
    one thread than 512 (a GPU may prefer larger batches)."""
    with preserved_modes(model):
        model.eval()
        out = []
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start:start + batch_size].to(device))
            out.append(logits.topk(top_k, dim=1).indices.cpu())
    return torch.cat(out) if out else torch.empty(0, top_k, dtype=torch.long)


def per_class_accuracy(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy in percent of each class c: ``100 · |{i : y_i = c, y_i ∈ pred_i}| / |{i : y_i = c}|``.

    ``pred`` is ``[N, k]`` (top-k) or ``[N]``; a class with no sample gets ``nan``.
    """
    if pred.ndim == 1:
        pred = pred[:, None]
    hit = (pred == labels[:, None]).any(dim=1)
    result = []
    for c in range(num_classes):
        mask = labels == c
        result.append(100.0 * hit[mask].float().mean().item() if mask.any() else math.nan)
    return result


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    trigger: Trigger | None = None,
    target: int | None = None,
    top_k: int = 1,
    num_classes: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict:
    """ASR, ACC and CTCA of ``model`` on a labelled test set D_V, in percent.

    - ACC  = 100 · mean over all clean images of [y ∈ top-k(f(x))].
    - CTCA = ACC restricted to clean images of the target class y_t.
    - ASR  = 100 · mean over images with y ≠ y_t of [arg max f(x ⊕ δ) = y_t] — the trigger δ is applied and only the
      top-1 prediction counts, whatever ``top_k`` is (a backdoor "succeeds" when it decides the label).

    Returns ``{"acc", "asr", "ctca", "per_class"}``; ``asr``/``ctca`` are ``nan`` without trigger/target.

    Shape: ``images`` ``[N, C, H, W]`` float in [0, 1]; ``labels`` ``[N]`` int64.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    k = num_classes or int(labels.max().item()) + 1
    pred = predict(model, images, batch_size=batch_size, top_k=top_k, device=device)
    per_class = per_class_accuracy(pred, labels, k)
    acc = 100.0 * (pred == labels[:, None]).any(dim=1).float().mean().item()
    result = {"acc": acc, "asr": math.nan, "ctca": math.nan, "per_class": per_class}
    if target is not None:
        result["ctca"] = per_class[target] if target < len(per_class) else math.nan
    if trigger is not None and target is not None:
        keep = labels != target
        if keep.any():
            poisoned = trigger(images[keep])
            top1 = predict(model, poisoned, batch_size=batch_size, top_k=1, device=device)[:, 0]
            result["asr"] = 100.0 * (top1 == target).float().mean().item()
    return result


def score(asr_unlearned: float, asr_victim: float, acc_unlearned: float, acc_retrained: float) -> float:
    """Score of Eq. 6, in percent: ``100 · (1 − ASR^U / ASR^V) · ACC^U / ACC^R``.

    Forgetting (first factor) times utility relative to the retrained model R (second factor). ``nan`` when the
    victim has no backdoor (ASR^V = 0) or R has ACC 0.

    >>> round(score(0.0, 95.0, 65.0, 70.0), 2)
    92.86
    """
    if asr_victim <= 0 or acc_retrained <= 0:
        return math.nan
    return 100.0 * (1.0 - asr_unlearned / asr_victim) * acc_unlearned / acc_retrained
