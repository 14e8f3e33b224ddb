"""Target-class and backdoor detection from the per-class accuracy drop after ¬BDK editing (§4.3).

Offers :class:`DetectConfig`, :class:`DetectionResult`, :func:`detect`, :func:`class_drops`, :func:`backdoor_score`,
:func:`false_alarm_rate`, :data:`STATISTICS` and :data:`THRESHOLD_RATIONALE`.

The paper observes that editing without backdoor knowledge (¬BDK) usually produces "an unusual decrease in accuracy
for a single class", takes that class as the target class, and feeds the per-class accuracies to "a formula [that]
sets the accuracy of the different classes into relation and returned a classification value", compared with a
threshold (§4.3). Neither formula nor threshold is given; ours:

1. per-class drop in percentage points on the defender's labelled images D_U,
   ``d_c = acc_c(f_θ) − acc_c(edit_¬BDK(f_θ))``;
2. suspected target class ``ĉ = argmax_c d_c``;
3. backdoor score ``(d_ĉ − max_{c≠ĉ} d_c) / σ̂`` (``"gap"``): by how many robust standard deviations of the
   other classes' drops (``σ̂ = 1.4826 · MAD``, floored) the largest drop exceeds the runner-up. The margin over the
   *runner-up* encodes "a single class": a clean model may lose two confusable classes at once (Fashion-MNIST's
   shirt and pullover), which a z-score against the median (``"robust_z"``, Neural Cleanse's anomaly index) would
   flag; ``"ratio"`` (largest / second largest drop) is kept for comparison;
4. backdoor likely when the score exceeds the threshold (:data:`THRESHOLD_RATIONALE`).

>>> backdoor_score([85.0, 2.0, -1.0, 0.0, 3.0, 1.0, 0.5, -2.0, 1.5, 0.0])[0]
0
>>> round(backdoor_score([1.0, 70.0, 0.0, -2.0, 73.0, 2.0, 0.0, 1.0, -1.0, 0.0])[1], 2)   # two classes fall
2.02
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from torch import nn

from .edit import EditConfig, edit_model
from .metrics import per_class_accuracy, predict
from .seeding import generator
from .timing import timed
from .validation import check_images, check_labels

__all__ = ["DetectConfig", "DetectionResult", "detect", "class_drops", "backdoor_score", "false_alarm_rate",
           "STATISTICS", "THRESHOLD_RATIONALE"]

STATISTICS = ("gap", "robust_z", "ratio")
_MAD_TO_SIGMA = 1.4826   # MAD × 1.4826 estimates σ of a normal distribution


@dataclass(frozen=True)
class DetectConfig:
    """Settings of the §4.3 detector; the paper gives neither formula nor threshold, so all of these are ours.

    Arguments:
        edit: the ¬BDK edit (paper defaults of Eq. 4/7; BN statistics updated, §3.2).
        edit_samples: how many of the given images the edit sees (the paper's default |D_U| = 512, §4.1);
            per-class accuracy is measured on all of them.
        statistic: ``"gap"``, ``"robust_z"`` or ``"ratio"`` (module docstring).
        threshold: score above which a backdoor is declared. See :data:`THRESHOLD_RATIONALE`.
        floor: lower bound, in percentage points, of the spread σ̂ (gap, robust_z) or the second drop (ratio), so
            that a few identical drops do not give an infinite score; about the accuracy resolution of one image in a
            class of 100.
        min_per_class: classes with fewer labelled images are left out (their accuracy is too coarse).
        batch_size, device: for the forward passes.
    """

    # §4.3: the ¬BDK edit whose per-class accuracy drop is read
    edit: EditConfig = EditConfig()
    edit_samples: int | None = 512
    # the decision (ours: the paper does not give its formula)
    statistic: str = "gap"
    threshold: float = 3.5      # THRESHOLD_RATIONALE
    floor: float = 1.0
    min_per_class: int = 5
    # execution
    batch_size: int = 256
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.edit, EditConfig):
            raise TypeError(f"DetectConfig.edit must be an EditConfig, got {type(self.edit).__name__}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {self.statistic!r}; valid: {', '.join(STATISTICS)}")
        for name in ("threshold", "floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"DetectConfig.{name} must be a finite number, got {value!r}")
        if self.floor <= 0:
            raise ValueError(f"DetectConfig.floor must be positive, got {self.floor!r}")
        if self.edit_samples is not None and (not isinstance(self.edit_samples, int) or self.edit_samples < 1):
            raise ValueError(f"DetectConfig.edit_samples must be a positive int or None, got {self.edit_samples!r}")
        if not isinstance(self.min_per_class, int) or self.min_per_class < 1:
            raise ValueError(f"DetectConfig.min_per_class must be a positive int, got {self.min_per_class!r}")


THRESHOLD_RATIONALE = (
    "gap > 3.5: the top drop must exceed every other class's drop by more than 3.5 robust standard deviations of "
    "those drops - the outlier cut-off of Iglewicz & Hoaglin (1993) for modified z-scores, applied to the margin "
    "over the runner-up; with ten classes whose drops are pure Gaussian noise it raises a false alarm about 2.5 % "
    "of the time (false_alarm_rate(3.5))")


@dataclass
class DetectionResult:
    """What :func:`detect` found. Accuracies and drops are in percent / percentage points, one entry per class
    (``nan`` for a class with fewer than ``min_per_class`` images)."""

    acc_before: list[float]
    acc_after: list[float]
    drops: list[float]
    counts: list[int]
    suspected: int
    score: float
    threshold: float
    statistic: str
    backdoor: bool
    num_images: int
    edit_images: int
    seconds: float = math.nan
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready (``nan`` → ``None``)."""
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, list):
                return [clean(x) for x in v]
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v
        return clean(asdict(self))


def class_drops(before: Sequence[float], after: Sequence[float]) -> list[float]:
    """``d_c = before_c − after_c`` in percentage points (``nan`` where either is ``nan``)."""
    return [b - a for b, a in zip(before, after)]


def _scores(drops: torch.Tensor, statistic: str, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised core of :func:`backdoor_score`: ``drops [M, K]`` (finite, K ≥ 3) → argmax ``[M]``, score ``[M]``."""
    ordered, order = drops.sort(dim=1, descending=True, stable=True)
    top, first, rest = order[:, 0], ordered[:, 0], ordered[:, 1:]
    if statistic == "ratio":
        return top, first / rest[:, 0].clamp_min(floor)
    med = rest.quantile(0.5, dim=1)
    spread = (_MAD_TO_SIGMA * (rest - med[:, None]).abs().quantile(0.5, dim=1)).clamp_min(floor)
    if statistic == "gap":
        return top, (first - rest[:, 0]) / spread
    return top, (first - med) / spread


def backdoor_score(drops: Sequence[float], statistic: str = "gap", *, floor: float = 1.0) -> tuple[int, float]:
    """The suspected class ``ĉ = argmax d`` and how much its drop stands out (``nan`` entries are ignored).

    With ``rest`` the drops of the other classes, ``σ̂ = max(1.4826 · median|rest − median(rest)|, floor)``:

    - ``"gap"``: ``(d_ĉ − max(rest)) / σ̂`` — the margin over the runner-up, in robust standard deviations;
    - ``"robust_z"``: ``(d_ĉ − median(rest)) / σ̂`` — the anomaly index of Neural Cleanse (Wang et al. 2019);
    - ``"ratio"``: ``d_ĉ / max(max(rest), floor)``.

    Needs at least three classes with a drop.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")
    valid = [(c, d) for c, d in enumerate(drops) if math.isfinite(d)]
    if len(valid) < 3:
        raise ValueError(f"need per-class drops of at least 3 classes, got {len(valid)}; give labelled images of "
                         "more classes")
    classes = [c for c, _ in valid]
    top, score = _scores(torch.tensor([[d for _, d in valid]], dtype=torch.float64), statistic, floor)
    return classes[int(top[0])], float(score[0])


def false_alarm_rate(threshold: float, *, statistic: str = "gap", num_classes: int = 10, trials: int = 100_000,
                     seed: int = 0) -> float:
    """Share of models flagged when the per-class drops are pure noise: i.i.d. normal drops of ``num_classes``
    classes (Monte Carlo, ``trials`` draws from ``generator(seed)``). Scale-free for ``"gap"`` and ``"robust_z"``
    (the floor is set to zero); a yardstick for the threshold, not a guarantee for real models."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")
    drops = torch.randn(trials, num_classes, generator=generator(seed), dtype=torch.float64)
    floor = 1e-12 if statistic != "ratio" else 1.0
    return float((_scores(drops, statistic, floor)[1] > threshold).double().mean())


def detect(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, num_classes: int | None = None,
           config: DetectConfig | None = None) -> DetectionResult:
    """Edit ¬BDK and compare per-class accuracy before and after (§4.3); the caller's model is not changed.

    Arguments:
        model: the classifier to inspect.
        images: labelled clean images D_U, ``float32 [N, C, H, W]`` in [0, 1]; the first ``config.edit_samples``
            feed the edit, all of them are scored. Ten or more per class keep the drops steady.
        labels: ``int64 [N]`` class indices.
        num_classes: classes of the model (default: inferred from the labels).
        config: :class:`DetectConfig`.

    Returns a :class:`DetectionResult` with the per-class drops, the suspected target class, the score, the
    threshold and the decision.
    """
    config = config or DetectConfig()
    check_images(images)
    check_labels(labels, images.shape[0], num_classes=num_classes)
    k = num_classes or int(labels.max().item()) + 1
    n_edit = images.shape[0] if config.edit_samples is None else min(config.edit_samples, images.shape[0])
    with timed(config.device) as t:
        edited = edit_model(model, images[:n_edit], config=config.edit)
        kwargs = dict(batch_size=config.batch_size, device=config.device)
        before = per_class_accuracy(predict(model, images, **kwargs), labels, k)
        after = per_class_accuracy(predict(edited, images, **kwargs), labels, k)
    counts = torch.bincount(labels, minlength=k).tolist()
    drops = [d if n >= config.min_per_class else math.nan for d, n in zip(class_drops(before, after), counts)]
    suspected, score = backdoor_score(drops, config.statistic, floor=config.floor)
    return DetectionResult(before, after, drops, counts, suspected, score, config.threshold, config.statistic,
                           score > config.threshold, images.shape[0], n_edit, t.seconds,
                           {k_: v for k_, v in asdict(config).items()})
