"""An edit session on one victim: the γ/λ sweep of Fig. 4 (supplement B.3) and the explorer's computation.

Offers :class:`ExplorerSettings` (one setting of the edit's knobs), :class:`EditSession` (cached extraction, edit,
evaluation, γ × λ grids) and the grid axes :data:`GRID_GAMMAS`, :data:`GRID_LAMS`. The widgets over a session are
:mod:`actedit.widgets`.

The expensive part of the edit is step ① of Fig. 3, the forward pass of D_U (:func:`actedit.edit.extract`); γ and λ
(Eq. 4) only enter steps ③–④. The session therefore caches one extraction per (BDK, BN mode, α, β, N) and redoes
only :func:`~actedit.edit.compute_factors` and :func:`~actedit.edit.apply_factors` when γ or λ move, then evaluates
with :func:`actedit.metrics.evaluate` on the evaluation subset of D_V (:func:`actedit.experiments.eval_index`)::

    session = EditSession.from_victim(get_victim(spec), get_retrained(spec), n_eval=2000)
    grid = session.grid(GRID_GAMMAS, GRID_LAMS)       # Score/ASR/ACC/CTCA per γ, λ, BDK, BN mode

Evaluation reuses the unedited front of the network: the edit changes only the layers in L, the later half, so for
an ``nn.Sequential`` victim the output of the children before the first edited layer is computed once per BN state
and only the rest of the network runs per update (:class:`EditSession` explains why the numbers stay exactly those
of ``evaluate`` on the whole edited model). It is what keeps one update of the explorer near 0.4 s on the book's
base victim at 2,000 evaluation images on one CPU thread, against 1.8-2.6 s evaluating the whole edited model
(measured for issue 19).
"""
from __future__ import annotations

import copy
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from torch import nn

from .cache import state_digest
from .edit import BN_MODES, EditConfig, Extraction, LayerFactor, apply_factors, compute_factors, extract
from .experiments import draw_unseen, eval_index
from .metrics import evaluate, score
from .repair import repair
from .timing import timed
from .validation import check_images, check_labels

__all__ = ["ExplorerSettings", "EditSession", "GRID_GAMMAS", "GRID_LAMS"]
log = logging.getLogger(__name__)

Trigger = Callable[[torch.Tensor], torch.Tensor]
GRID_GAMMAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)   # the γ axis of our Fig. 4
GRID_LAMS = (0.0, 0.5, 1.0, 1.5, 2.0)           # the λ axis of our Fig. 4


@dataclass(frozen=True)
class ExplorerSettings:
    """One position of the explorer's controls; the defaults are the paper's (BDK, frozen BN, 512 samples)."""

    gamma: float = 0.5      # Eq. 4, scale of the normalised factor
    lam: float = 1.0        # Eq. 4, shift
    bdk: bool = True        # §3.1 BDK (trigger known) or §3.2 ¬BDK
    bn: str = "frozen"      # BN moving averages during extraction, "frozen" or "update" (supplement B.3)
    alpha: float = 0.0      # Eq. 7, weight of the clean activation
    beta: float = -1.0      # Eq. 7, weight of the poisoned activation
    n_images: int = 512     # |D_U| (§4.1: 512 of the 5,000-image pool)
    lr: float = 1e-2        # repair learning rate (Table 8)

    def __post_init__(self) -> None:
        for name in ("gamma", "lam", "alpha", "beta", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"ExplorerSettings.{name} must be a finite number, got {value!r}")
        if self.gamma < 0:
            raise ValueError(f"ExplorerSettings.gamma must be non-negative, got {self.gamma!r}")
        if self.lr < 0:
            raise ValueError(f"ExplorerSettings.lr must be non-negative, got {self.lr!r}")
        if not isinstance(self.bdk, bool):
            raise TypeError(f"ExplorerSettings.bdk must be True (BDK) or False (¬BDK), got {self.bdk!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"ExplorerSettings.bn must be one of {', '.join(BN_MODES)}, got {self.bn!r}")
        if isinstance(self.n_images, bool) or not isinstance(self.n_images, int) or self.n_images < 1:
            raise ValueError(f"ExplorerSettings.n_images must be a positive int, got {self.n_images!r}")

    def edit_config(self, base: EditConfig | None = None) -> EditConfig:
        """``base`` (the paper's defaults when ``None``) with this γ, λ, α, β and BN mode."""
        return replace(base or EditConfig(), gamma=float(self.gamma), lam=float(self.lam), alpha=float(self.alpha),
                       beta=float(self.beta), bn=self.bn)


@dataclass
class _Front:
    """The unedited front of an ``nn.Sequential`` model evaluated once on the evaluation subset.

    ``clean`` is ``front(x)`` and ``triggered`` is ``front(δ(x))`` for the images whose label is not y_t, both
    computed in the batches :func:`actedit.metrics.evaluate` uses.
    """

    cut: int
    clean: torch.Tensor        # front(x) for every evaluation image
    clean_kept: torch.Tensor   # front(x) for the images with y ≠ y_t (what evaluate hands its trigger)
    triggered: torch.Tensor    # front(δ(x)) for the same images


class _FrontTrigger:
    """The trigger seen after the front: ``front(x) ↦ front(δ(x))``, tabulated on the evaluation subset.

    :func:`actedit.metrics.evaluate` applies its trigger to the images whose label is not y_t; called with the
    front's output for exactly those images, this returns the front's output for the same images with δ applied.
    Anything else is refused, so a change in how ``evaluate`` calls its trigger cannot go unnoticed.
    """

    def __init__(self, front: _Front) -> None:
        self.front = front

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape != self.front.clean_kept.shape or not torch.equal(x, self.front.clean_kept):
            raise RuntimeError("the front-of-network trigger was called on other inputs than the non-target "
                               "evaluation images; evaluate with reuse_front=False")
        return self.front.triggered


class EditSession:
    """A victim, its data and a cache of extractions: edits and evaluates one setting of the explorer fast.

    Every result equals the package's own path exactly: for settings ``s``,
    ``session.evaluate_edit(s)`` holds the same ASR/ACC/CTCA/per-class numbers as
    ``evaluate(edit_model(model, unseen_images[:s.n_images], trigger=trigger if s.bdk else None,
    config=s.edit_config(config)), session.test_images, session.test_labels, trigger=verify_trigger, target=target,
    top_k=top_k, num_classes=num_classes)`` — the edit is :func:`extract` → :func:`compute_factors` →
    :func:`apply_factors`, as in :func:`actedit.edit_model`, with the extraction cached per (BDK, BN, α, β, N).

    Front reuse (``reuse_front=True``, ``nn.Sequential`` models): the children before the first layer of L are not
    edited, so their output on the evaluation images depends only on their parameters and BN statistics. It is
    computed once per state of the front (a hash of it; "frozen" extractions all share the victim's) in the batches
    ``evaluate`` uses, and ``evaluate`` then runs the rest of the network on it, with the trigger tabulated in that
    space (:class:`_FrontTrigger`). The same operations on the same tensors give bitwise the same logits.

    Arguments:
        model: the victim f_θ (left unchanged).
        unseen_images, unseen_labels: the D_U pool, ``[P, C, H, W]`` float in [0, 1] and ``[P]`` int64; a setting
            with N samples uses the first N (the pool should already be in random order).
        test_images, test_labels: D_V; the subset :func:`actedit.experiments.eval_index` of ``n_eval`` images is
            evaluated (the one every chapter uses).
        trigger: δ used by BDK editing and BDK repair.
        target: the target class y_t.
        retrained_acc: ACC of the retrained model R (percent), for Score (Eq. 6); ``nan`` makes Score ``nan``.
        retrained: R itself; when given, ACC^R is measured on the evaluation subset (overrides ``retrained_acc``).
        verify_trigger: δ used to measure ASR (default ``trigger``; the book uses the magnified trigger).
        n_eval: size of the evaluation subset (``None``: all of D_V).
        config: the base :class:`EditConfig` (layer selection, pooling, ε, ...); γ, λ, α, β and BN come from the
            settings.
    """

    def __init__(self, model: nn.Module, unseen_images: torch.Tensor, unseen_labels: torch.Tensor,
                 test_images: torch.Tensor, test_labels: torch.Tensor, *, trigger: Trigger, target: int,
                 retrained_acc: float = math.nan, retrained: nn.Module | None = None,
                 verify_trigger: Trigger | None = None, n_eval: int | None = 2000, top_k: int = 1, num_classes: int | None = None, config: EditConfig | None = None,
                 batch_size: int = 256, device: str | torch.device = "cpu", reuse_front: bool = True,
                 cache_size: int = 8, front_cache_size: int = 3) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_images(unseen_images)
        check_labels(unseen_labels, unseen_images.shape[0], num_classes=num_classes)
        check_images(test_images, channels=unseen_images.shape[1])
        check_labels(test_labels, test_images.shape[0], num_classes=num_classes)
        if not callable(trigger):
            raise TypeError("trigger must be a callable on image batches (see actedit.triggers)")
        self.num_classes = num_classes or int(max(unseen_labels.max().item(), test_labels.max().item())) + 1
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < self.num_classes:
            raise ValueError(f"target must be a class index in [0, {self.num_classes}), got {target!r}")
        if isinstance(retrained_acc, bool) or not isinstance(retrained_acc, (int, float)):
            raise TypeError(f"retrained_acc must be a number (percent), got {retrained_acc!r}")
        self.model = model
        self.unseen_images, self.unseen_labels = unseen_images, unseen_labels
        index = eval_index(test_images.shape[0], n_eval)
        test_images, test_labels = test_images[index], test_labels[index]
        self.test_images, self.test_labels = test_images, test_labels
        self.trigger = trigger
        self.verify_trigger = verify_trigger or trigger
        self.target, self.top_k = target, top_k
        self.retrained_acc = float(retrained_acc)
        self.config = config or EditConfig(device=str(device))
        self.batch_size, self.device = batch_size, device
        self.reuse_front = reuse_front
        self._extractions: OrderedDict[tuple, Extraction] = OrderedDict()
        self._fronts: OrderedDict[str, _Front] = OrderedDict()
        self._cache_size, self._front_cache_size = cache_size, front_cache_size
        self.victim_metrics: dict | None = None
        if retrained is not None:
            self.retrained_acc = self.evaluate(retrained)["acc"]
        self.victim_metrics = self.evaluate(model)  # its Score is 0 by Eq. 6: nothing forgotten

    @classmethod
    def from_victim(cls, victim, retrained: nn.Module | None = None, *, seed: int = 0, **kwargs) -> "EditSession":
        """A session on an :class:`actedit.experiments.Victim`: δ for editing and repair, the magnified δ for ASR
        (as :meth:`Victim.evaluate`), y_t, top-k, and ACC^R of ``retrained`` measured on the evaluation subset.

        The D_U pool is put in the order of :func:`actedit.experiments.draw_unseen` with ``seed``, so N samples here
        are the N samples the table chapters draw.
        """
        splits = victim.splits
        pool_x, pool_y = draw_unseen(splits.unseen.images, splits.unseen.labels, len(splits.unseen), seed)
        return cls(victim.model, pool_x, pool_y, splits.test.images, splits.test.labels, trigger=victim.trigger,
                   verify_trigger=victim.verify_trigger, target=victim.spec.target, top_k=splits.top_k,
                   num_classes=splits.num_classes, retrained=retrained, **kwargs)

    # ------------------------------------------------------------------------------------------------ the edit

    def extraction(self, settings: ExplorerSettings) -> Extraction:
        """Step ① and Eq. 7 for ``settings`` (cached per BDK, BN mode, α, β and N)."""
        n = settings.n_images
        if n > self.unseen_images.shape[0]:
            raise ValueError(f"n_images={n} but the D_U pool holds {self.unseen_images.shape[0]} images")
        key = (settings.bdk, settings.bn, float(settings.alpha), float(settings.beta), n)
        if key in self._extractions:
            self._extractions.move_to_end(key)
            return self._extractions[key]
        with timed(self.device) as t:
            result = extract(self.model, self.unseen_images[:n], trigger=self.trigger if settings.bdk else None,
                             config=settings.edit_config(self.config))
        log.debug("extraction %s: %.3f s", key, t.seconds)
        self._extractions[key] = result
        while len(self._extractions) > self._cache_size:
            self._extractions.popitem(last=False)
        return result

    def edit(self, settings: ExplorerSettings) -> tuple[nn.Module, dict[str, LayerFactor]]:
        """The edited model (a copy, in the victim's train/eval mode) and its factors A_l (Eq. 2–5)."""
        extraction = self.extraction(settings)
        factors = compute_factors(extraction, settings.edit_config(self.config))
        return apply_factors(extraction, factors), factors

    def repair(self, model: nn.Module, settings: ExplorerSettings) -> nn.Module:
        """:func:`actedit.repair` of ``model`` on the setting's D_U (with δ under BDK) at the setting's lr."""
        n = settings.n_images
        return repair(model, self.unseen_images[:n], self.unseen_labels[:n],
                      trigger=self.trigger if settings.bdk else None, lr=settings.lr, device=self.device)

    # ------------------------------------------------------------------------------------------ evaluation

    def evaluate(self, model: nn.Module) -> dict:
        """:func:`actedit.metrics.evaluate` on the evaluation subset, plus ``score`` (Eq. 6, percent)."""
        result = evaluate(model, self.test_images, self.test_labels, trigger=self.verify_trigger,
                          target=self.target, top_k=self.top_k, num_classes=self.num_classes,
                          batch_size=self.batch_size, device=self.device)
        return self._with_score(result)

    def evaluate_edit(self, settings: ExplorerSettings) -> tuple[dict, nn.Module, dict[str, LayerFactor]]:
        """Edit for ``settings`` and evaluate: ``(metrics, edited model, factors)``."""
        edited, factors = self.edit(settings)
        front = self._front(self.extraction(settings)) if self.reuse_front else None
        if front is None:
            return self.evaluate(edited), edited, factors
        rest = nn.Sequential(*list(edited.children())[front.cut:])
        result = evaluate(rest, front.clean, self.test_labels, trigger=_FrontTrigger(front),
                          target=self.target, top_k=self.top_k, num_classes=self.num_classes,
                          batch_size=self.batch_size, device=self.device)
        return self._with_score(result), edited, factors

    def _with_score(self, result: dict) -> dict:
        asr_v = (self.victim_metrics or result)["asr"]
        return {**result, "score": score(result["asr"], asr_v, result["acc"], self.retrained_acc)}

    def _cut(self, extraction: Extraction) -> int:
        """Index of the first child of an ``nn.Sequential`` that holds a layer of L (0: nothing to reuse).

        Only models whose forward is ``nn.Sequential``'s own (children applied in order) qualify; a subclass
        with its own ``forward`` may do more than chain its children.
        """
        model = extraction.model
        if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
            return 0
        names = [name for name, _ in model.named_children()]
        firsts = {layer.split(".", 1)[0] for layer in extraction.layers}
        return min(names.index(name) for name in firsts)

    @torch.no_grad()
    def _front(self, extraction: Extraction) -> _Front | None:
        cut = self._cut(extraction)
        if cut == 0:
            return None
        front = nn.Sequential(*list(extraction.model.children())[:cut])
        key = f"{cut}:{state_digest(front.state_dict())}"
        if key in self._fronts:
            self._fronts.move_to_end(key)
            return self._fronts[key]
        front = copy.deepcopy(front).eval()
        keep = self.test_labels != self.target

        def run(x: torch.Tensor) -> torch.Tensor:  # in the batches evaluate() uses
            return torch.cat([front(x[i:i + self.batch_size].to(self.device)).cpu()
                              for i in range(0, x.shape[0], self.batch_size)])

        clean = run(self.test_images)
        triggered = run(self.verify_trigger(self.test_images[keep])) if keep.any() else clean[:0]
        self._fronts[key] = result = _Front(cut, clean, clean[keep], triggered)
        while len(self._fronts) > self._front_cache_size:
            self._fronts.popitem(last=False)
        return result

    # ------------------------------------------------------------------------------------------ Fig. 4 grid

    def grid(self, gammas: Sequence[float] = GRID_GAMMAS, lams: Sequence[float] = GRID_LAMS, *,
             bdk: Sequence[bool] = (True, False), bn: Sequence[str] = BN_MODES,
             base: ExplorerSettings | None = None) -> "pd.DataFrame":  # noqa: F821
        """Score/ASR/ACC/CTCA (percent) for every γ × λ × BDK × BN mode (supplement B.3, Fig. 4).

        One extraction per (BDK, BN) pair; the other settings (α, β, N) come from ``base``. Returns a long
        DataFrame with columns ``bdk, bn, gamma, lam, asr, acc, ctca, score``.
        """
        import pandas as pd

        base = base or ExplorerSettings()
        rows = []
        for known in bdk:
            for mode in bn:
                for g in gammas:
                    for lam in lams:
                        s = replace(base, gamma=float(g), lam=float(lam), bdk=bool(known), bn=mode)
                        m, _, _ = self.evaluate_edit(s)
                        rows.append({"bdk": "BDK" if known else "¬BDK", "bn": mode, "gamma": float(g),
                                     "lam": float(lam), "asr": m["asr"], "acc": m["acc"], "ctca": m["ctca"],
                                     "score": m["score"]})
        return pd.DataFrame(rows)
