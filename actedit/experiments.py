"""Cached victims and retrained references: what every chapter of the book starts from.

Offers :class:`VictimSpec`, :class:`Victim`, :func:`get_victim` and :func:`get_retrained`. A victim is the model
trained on the poisoned D_T (§3: D = D_C ∪ D_B); the retrained model R is trained the same way on D_C alone and is
the reference of Score (Eq. 6). Both are cached on disk (:mod:`actedit.cache`) keyed by the full specification.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Callable

import torch
from torch import nn

from .cache import Cache
from .data import Splits, load_dataset
from .metrics import evaluate
from .models import build_model
from .poisoning import PoisonConfig, Poisoned, poison
from .seeding import set_seed
from .training import TrainConfig, fit
from .triggers import TRIGGER_DEFAULTS, make_trigger

__all__ = ["VictimSpec", "Victim", "get_victim", "get_retrained", "load_splits", "victim_and_reference", "triggers_for"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VictimSpec:
    """Everything that determines a victim model. Defaults: the book's base configuration (Fashion-MNIST, small
    CNN, white-square trigger, ρ = 5 %, y_t = 2; the paper's base is CIFAR10/ResNet18 with the same ρ and y_t)."""

    dataset: str = "fashion-mnist"
    model: str = "cnn"
    trigger: str = "white"
    rate: float | None = None        # ρ; None: the trigger's row of Tables 3/4
    alpha: float | None = None       # trigger opacity; None: the trigger's row of Tables 3/4
    target: int = 2                  # y_t
    seed: int = 0
    epochs: int = 3
    lr: float = 0.02
    batch_size: int = 128
    augment: bool = False
    unseen: int = 5000               # size of the D_U pool held out of the training split
    train_limit: int | None = None   # truncate D_T (quick runs)
    test_limit: int | None = None
    width: float = 1.0               # channel multiplier of the architecture (actedit.models.build_model)

    def with_(self, **changes) -> "VictimSpec":
        return replace(self, **changes)

    @property
    def poison_rate(self) -> float:
        return self.rate if self.rate is not None else TRIGGER_DEFAULTS[self.trigger].rho

    @property
    def trigger_alpha(self) -> float | None:
        """Opacity of a patch trigger (None: the trigger's own default; steganography/Narcissus have none)."""
        return self.alpha

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, augment=self.augment,
                           seed=self.seed)


@dataclass
class Victim:
    """A trained (backdoored) model with the data and trigger it was made with."""

    spec: VictimSpec
    model: nn.Module
    splits: Splits
    trigger: Callable[[torch.Tensor], torch.Tensor]          # δ as used for poisoning (and for BDK unlearning)
    verify_trigger: Callable[[torch.Tensor], torch.Tensor]   # δ for verification: alpha × 3, capped (Tables 3/4)
    poisoned: Poisoned
    meta: dict = field(default_factory=dict)

    def evaluate(self, model: nn.Module | None = None, *, device: str = "cpu") -> dict:
        """ASR/ACC/CTCA (percent) of ``model`` (default: the victim) on D_V with the verification trigger."""
        test = self.splits.test
        return evaluate(model if model is not None else self.model, test.images, test.labels,
                        trigger=self.verify_trigger, target=self.spec.target, top_k=self.splits.top_k,
                        num_classes=self.splits.num_classes, device=device)

    def unseen(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images and labels of the D_U pool (the pool is already a seeded random order)."""
        if n > len(self.splits.unseen):
            raise ValueError(f"asked for {n} D_U images but the pool holds {len(self.splits.unseen)}")
        part = self.splits.unseen.subset(slice(0, n))
        return part.images, part.labels


@lru_cache(maxsize=4)
def load_splits(dataset: str, unseen: int, seed: int, train_limit: int | None, test_limit: int | None,
                data_root: str | None = None) -> Splits:
    """:func:`actedit.data.load_dataset`, memoised per process (the notebooks load the same data many times)."""
    return load_dataset(dataset, data_root=data_root, unseen=unseen, seed=seed, train_limit=train_limit,
                        test_limit=test_limit)


def triggers_for(spec: VictimSpec, splits: Splits, *, cache: Cache | None = None, device: str = "cpu",
                 progress: bool = False, data_root: str | None = None) -> tuple[Callable, Callable]:
    """The trigger of ``spec`` for poisoning (and BDK unlearning) and its verification version (alpha × 3).

    ``data_root`` is where the Narcissus surrogate's POOD dataset is read from (as in :func:`get_victim`).
    """
    cache = cache or Cache()
    kwargs = dict(channels=splits.channels, size=splits.size, alpha=spec.trigger_alpha, seed=spec.seed)
    if spec.trigger == "mean":
        kwargs["mean_image"] = splits.train.images.mean(dim=0)
    if spec.trigger == "narcissus":
        from .narcissus import narcissus_pattern
        kwargs["narcissus_pattern"] = narcissus_pattern(spec, splits, cache=cache, device=device, progress=progress,
                                                        data_root=data_root)
    trig = make_trigger(spec.trigger, **kwargs)
    return trig, trig.magnified(3)


def _key(spec: VictimSpec, role: str) -> dict:
    key = {"role": role, **asdict(spec)}
    if spec.width == 1.0:  # the published width: keys (and cached models) of specs from before the field stay valid
        del key["width"]
    if role == "retrained":
        # R sees only D_C, which depends on which indices were poisoned (ρ, seed, clean-label), not on the trigger
        key.update(trigger=None, alpha=None, rate=spec.poison_rate, clean_label=spec.trigger == "narcissus")
        if spec.trigger != "narcissus":  # dirty-label: the poisoned indices, hence D_C, do not depend on y_t
            key.update(target=None)
    return key


def get_victim(spec: VictimSpec = VictimSpec(), *, device: str = "cpu", cache: Cache | None = None,
               data_root: str | None = None, progress: bool = True) -> Victim:
    """Train (or load from the cache) the victim of ``spec``; deterministic for a given spec on CPU."""
    cache = cache or Cache()
    splits = load_splits(spec.dataset, spec.unseen, spec.seed, spec.train_limit, spec.test_limit, data_root)
    trig, verify = triggers_for(spec, splits, cache=cache, device=device, progress=progress, data_root=data_root)
    poisoned = poison(splits.train, trig, PoisonConfig(rate=spec.poison_rate, target=spec.target,
                                                      clean_label=spec.trigger == "narcissus", seed=spec.seed))
    model = _trained(spec, "victim", poisoned.train.images, poisoned.train.labels, splits, cache, device, progress)
    state_meta = cache.load("models", _key(spec, "victim"))
    meta = state_meta[1] if state_meta else {}
    return Victim(spec, model, splits, trig, verify, poisoned, meta)


def get_retrained(spec: VictimSpec = VictimSpec(), *, device: str = "cpu", cache: Cache | None = None,
                  data_root: str | None = None, progress: bool = True) -> nn.Module:
    """The retrained reference R of ``spec``: same architecture and recipe, trained on D_C only (Eq. 6)."""
    cache = cache or Cache()
    victim_splits = load_splits(spec.dataset, spec.unseen, spec.seed, spec.train_limit, spec.test_limit, data_root)
    trig, _ = triggers_for(spec, victim_splits, cache=cache, device=device, progress=progress,
                           data_root=data_root)
    poisoned = poison(victim_splits.train, trig, PoisonConfig(rate=spec.poison_rate, target=spec.target,
                                                             clean_label=spec.trigger == "narcissus", seed=spec.seed))
    return _trained(spec, "retrained", poisoned.clean.images, poisoned.clean.labels, victim_splits, cache, device,
                    progress)


def victim_and_reference(spec: VictimSpec = VictimSpec(), **kwargs) -> tuple[Victim, nn.Module]:
    """Both the victim and its retrained reference R."""
    return get_victim(spec, **kwargs), get_retrained(spec, **kwargs)


def _trained(spec: VictimSpec, role: str, images: torch.Tensor, labels: torch.Tensor, splits: Splits,
             cache: Cache, device: str, progress: bool) -> nn.Module:
    def build() -> tuple[dict, dict]:
        set_seed(spec.seed)
        model = build_model(spec.model, num_classes=splits.num_classes, channels=splits.channels, size=splits.size,
                            width=spec.width)
        history = fit(model, images, labels, config=spec.train_config(), device=device, progress=progress,
                      desc=f"{role} {spec.dataset}/{spec.model}/{spec.trigger}")
        model.eval()
        return model.state_dict(), {"loss": history.loss, "seconds": history.seconds}

    state, meta = cache.get_or_build("models", _key(spec, role), build)
    model = build_model(spec.model, num_classes=splits.num_classes, channels=splits.channels, size=splits.size,
                        width=spec.width)
    model.load_state_dict(state)
    model.to(device).eval()
    return model
