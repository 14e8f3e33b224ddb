"""Running experiments: cached victims, every unlearning method in one registry, one runner, one evaluation.

Offers

- victims: :class:`VictimSpec`, :class:`Victim` (with :meth:`Victim.evaluate`), :func:`get_victim`,
  :func:`get_retrained`, :func:`eval_index` (the one evaluation subset of D_V), :func:`draw_unseen` (a seeded
  draw of D_U);
- methods: :class:`Method`, :data:`METHODS` (the edit, the edit + repair and the four baselines of §4.1),
  :func:`run_method`, :func:`victim_configs`, :func:`with_epochs`;
- runners: :func:`run_comparison` (every method on one victim, scored by Eq. 6; Tables 3, 4, 6, 7, 10, timing an
  option of it, :class:`Timing`) and :func:`run_edit_grid` (the edit and repair over sample counts and seeds;
  Tables 1, 2, 5, 8, 9). The γ × λ sweep of Fig. 4 and the explorer re-edit one victim many times:
  :class:`actedit.session.EditSession`.

A victim is the model trained on the poisoned D_T (§3: D = D_C ∪ D_B); the retrained model R is trained the same
way on D_C alone and is the reference of Score (Eq. 6). Both are cached on disk (:mod:`actedit.cache`) keyed by
the full specification::

    victim, reference = victim_and_reference(VictimSpec())
    rows = run_comparison(victim, reference, n_eval=1000)       # one row per method, Score against R
    unlearned = run_method("NAD", victim.model, *victim.unseen(5000))
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .baselines import ActFTConfig, BaEraserConfig, BasicFTConfig, NADConfig, act_ft, ba_eraser, basic_ft, nad
from .cache import Cache, state_digest
from .data import Splits, load_dataset
from .edit import EditConfig, edit_model
from .efficiency import time_call
from .metrics import evaluate, score
from .models import build_model
from .paper import TABLE_METHODS
from .poisoning import PoisonConfig, Poisoned, poison
from .repair import RepairConfig, repair
from .seeding import generator, set_seed
from .training import TrainConfig, fit
from .triggers import TRIGGER_DEFAULTS, make_trigger

__all__ = ["VictimSpec", "Victim", "model_key", "get_victim", "get_retrained", "load_splits", "victim_and_reference",
           "triggers_for", "eval_index", "draw_unseen", "Method", "METHODS", "EditRepairConfig", "run_method",
           "victim_configs", "with_epochs", "Timing", "run_comparison", "run_edit_grid", "BUDGETS", "BASELINES",
           "reference_configs", "budget_configs", "budget_curves", "time_to_score",
           "recorded_budget_curves", "SCHEDULES"]
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

    @classmethod
    def from_params(cls, params: Mapping[str, Any], /, **changes) -> "VictimSpec":
        """The spec a chapter's parameters describe: every field of this class found in ``params`` (e.g. the dict
        :func:`actedit.params.check_params` returns) and not None, then ``changes`` (the loop's trigger, seed …).

        >>> VictimSpec.from_params({"dataset": "mnist", "epochs": None, "seeds": [0, 1]}, seed=1).seed
        1
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names and v is not None}, **changes)

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

    def evaluate(self, model: nn.Module | None = None, n_eval: int | None = None, *,
                 device: str | torch.device = "cpu") -> dict:
        """ASR/ACC/CTCA (percent, and ``per_class``) of ``model`` (default: the victim) on D_V with the verification
        trigger; ``n_eval``: on the fixed subset :func:`eval_index` of that many images (None: all of D_V)."""
        test = self.splits.test.subset(eval_index(len(self.splits.test), n_eval))
        return evaluate(model if model is not None else self.model, test.images, test.labels,
                        trigger=self.verify_trigger, target=self.spec.target, top_k=self.splits.top_k,
                        num_classes=self.splits.num_classes, device=device)

    def unseen(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images and labels of the D_U pool (the pool is already a seeded random order)."""
        if n > len(self.splits.unseen):
            raise ValueError(f"asked for {n} D_U images but the pool holds {len(self.splits.unseen)}")
        part = self.splits.unseen.subset(slice(0, n))
        return part.images, part.labels


def eval_index(total: int, n_eval: int | None) -> torch.Tensor | slice:
    """The evaluation subset of a D_V of ``total`` images: ``n_eval`` indices drawn with seed 0, sorted — the same
    images for every model, victim and seed of a dataset; ``slice(None)`` (all) for ``None`` or ``n_eval ≥ total``.

    >>> eval_index(10, None), eval_index(10, 3).tolist() == eval_index(10, 3).tolist()
    (slice(None, None, None), True)
    """
    if n_eval is not None and (isinstance(n_eval, bool) or not isinstance(n_eval, int) or n_eval < 1):
        raise ValueError(f"n_eval must be a positive int or None (all of D_V), got {n_eval!r}")
    if n_eval is None or n_eval >= total:
        return slice(None)
    return torch.randperm(total, generator=generator(0))[:n_eval].sort().values


def draw_unseen(pool_images: torch.Tensor, pool_labels: torch.Tensor, n: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of the D_U pool drawn without replacement with ``seed`` (``[n, C, H, W]``, ``[n]``); the first
    ``n`` of a larger draw with the same seed (a prefix of one seeded permutation)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if n > len(pool_images):
        raise ValueError(f"asked for {n} D_U images but the pool holds {len(pool_images)}; lower n or enlarge unseen")
    index = torch.randperm(len(pool_images), generator=generator(seed))[:n]
    return pool_images[index], pool_labels[index]


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


def model_key(spec: VictimSpec, role: str, device: str) -> dict:
    """The cache key (kind ``"models"``) of the ``role`` model (``"victim"`` or ``"retrained"``) of ``spec`` trained on
    ``device``: two specs with equal keys share one trained model."""
    # the device type: CPU- and GPU-trained weights differ (kernels, reduction order), so they are other entries
    key = {"role": role, **asdict(spec), "device": torch.device(device).type}
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
    state_meta = cache.load("models", model_key(spec, "victim", device))
    meta = state_meta[1] if state_meta else {}
    return Victim(spec, model, splits, trig, verify, poisoned, meta)


def get_retrained(spec: VictimSpec = VictimSpec(), *, device: str = "cpu", cache: Cache | None = None,
                  data_root: str | None = None, progress: bool = True) -> nn.Module:
    """The retrained reference R of ``spec``: same architecture and recipe, trained on D_C only (Eq. 6)."""
    cache = cache or Cache()
    victim_splits = load_splits(spec.dataset, spec.unseen, spec.seed, spec.train_limit, spec.test_limit, data_root)
    # D_C is D_T without the poisoned indices, which depend on ρ, y_t, the seed and clean-label, never on δ: R needs
    # no trigger (so R's job does not wait for the Narcissus trigger that the victim's job is optimising)
    poisoned = poison(victim_splits.train, _no_trigger, PoisonConfig(rate=spec.poison_rate, target=spec.target,
                                                             clean_label=spec.trigger == "narcissus", seed=spec.seed))
    return _trained(spec, "retrained", poisoned.clean.images, poisoned.clean.labels, victim_splits, cache, device,
                    progress)


def _no_trigger(images: torch.Tensor) -> torch.Tensor:
    return images


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

    state, meta = cache.get_or_build("models", model_key(spec, role, device), build)
    model = build_model(spec.model, num_classes=splits.num_classes, channels=splits.channels, size=splits.size,
                        width=spec.width)
    model.load_state_dict(state)
    model.to(device).eval()
    return model


# ---------------------------------------------------------------------------------------------------------------------
# The methods: one registry for the edit and every baseline

RunFn = Callable[..., nn.Module]   # run(model, images, labels, *, trigger, config, device) -> a new model


@dataclass(frozen=True)
class EditRepairConfig:
    """The edit followed by repair (§3.1; the "+repair" rows of Tables 6-8), timed together as in the paper."""

    edit: EditConfig = field(default_factory=EditConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)   # Table 8's lr 1e-2, one epoch


def _ours(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, trigger=None,
          config: EditConfig | None = None, device: str | torch.device = "cpu") -> nn.Module:
    return edit_model(model, images, trigger=trigger, config=config or EditConfig(device=str(device)))


def _ours_repair(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, trigger=None,
                 config: EditRepairConfig | None = None, device: str | torch.device = "cpu") -> nn.Module:
    config = config or EditRepairConfig(edit=EditConfig(device=str(device)))
    edited = edit_model(model, images, trigger=trigger, config=config.edit)
    return repair(edited, images, labels, trigger=trigger, config=config.repair, device=device)


@dataclass(frozen=True)
class Method:
    """One unlearning method: its name in the paper's tables, how to run it, its default config, and whether it
    needs the trigger δ (True: BDK only; False: ¬BDK, δ is not passed; None: both — the edit with or without δ).

    ``run(model, images, labels, *, trigger, config, device)`` returns a new model and leaves ``model`` unchanged.
    """

    name: str
    run: RunFn
    config: Any
    needs_trigger: bool | None


#: every method of the paper's comparisons, by name (the baselines of §4.1 at their reference schedules;
#: the book runs them with :func:`victim_configs`)
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ours", _ours, EditConfig(), None),
    Method("ours +repair", _ours_repair, EditRepairConfig(), None),
    Method("actFT", act_ft, ActFTConfig(), True),
    Method("BaEraser", ba_eraser, BaEraserConfig(), True),
    Method("basicFT", basic_ft, BasicFTConfig(), False),
    Method("NAD", nad, NADConfig(), False),
)}


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def run_method(name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, trigger=None,
               config: Any = None, device: str | torch.device = "cpu", **extra) -> nn.Module:
    """Unlearn with the method ``name`` of :data:`METHODS` on D_U (``images``, ``labels``); a new model.

    ``trigger``: δ for BDK methods (required there); ¬BDK baselines never see it; the edit runs BDK with it and
    ¬BDK without. ``config``: the method's config (None: its default, :attr:`Method.config`, with the edit on
    ``device``). ``extra`` goes to the method (e.g. NAD's ``teacher=``).
    """
    method = _method(name)
    if method.needs_trigger and trigger is None:
        raise ValueError(f"{name} works with backdoor knowledge (BDK): pass trigger=, the known trigger δ")
    return method.run(model, images, labels, trigger=None if method.needs_trigger is False else trigger,
                      config=config, device=device, **extra)


def _short(epochs: int, lr: float, batch_size: int, seed: int) -> TrainConfig:
    """One schedule of the book's short recipe, every field spelled out (none taken from a config's defaults)."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, weight_decay=5e-4, optimizer="sgd",
                       schedule="cosine", milestones=(), augment=False, seed=seed)


def victim_configs(victim: Victim) -> dict[str, Any]:
    """The baselines' configs the book runs on ``victim``: its short recipe, built explicitly.

    The library defaults are the authors' reference schedules (basicFT: BackdoorBench's 100-epoch FT; NAD: the
    official code's 10-epoch teacher and 20-epoch student); the book cannot afford them in its build budget, so here

    - basicFT repeats the victim's own recipe on D_U: its epochs, lr and batch size (the book's base victim: 3, 0.02,
      128), momentum SGD 0.9, weight decay 5e-4, cosine decay, no augmentation, the victim's seed;
    - NAD: that basicFT as the teacher; the student gets the victim's epochs, lr and batch size with the same
      optimiser and seed 0; β = 500/1000/1000, p = 2;
    - actFT: one epoch at lr 0.01, batch 128, seed 0 (its default, the paper's own description), λ = 1, δ × 3;
    - BaEraser: the same one epoch, unlearning the victim's y_t with bound 3, clean weight 1, δ × 1.
    """
    spec = victim.spec
    recipe = _short(spec.epochs, spec.lr, spec.batch_size, spec.seed)
    teacher = BasicFTConfig(train=recipe)
    one_pass = _short(1, 0.01, 128, 0)
    return {"actFT": ActFTConfig(train=one_pass, lam=1.0, magnify=3.0, layer=None),
            "BaEraser": BaEraserConfig(target=spec.target, train=one_pass, bound=3.0, clean_weight=1.0, magnify=1.0),
            "basicFT": teacher,
            "NAD": NADConfig(teacher=teacher, train=_short(spec.epochs, spec.lr, spec.batch_size, 0),
                             betas=(500.0, 1000.0, 1000.0), p=2.0, layers=None)}


def with_epochs(config: Any, epochs: int) -> Any:
    """A baseline config with ``epochs`` passes in each schedule it holds (NAD: the student and its teacher) —
    a reduced schedule, to be stated wherever it is used."""
    changes: dict[str, Any] = {"train": replace(config.train, epochs=epochs)}
    if isinstance(config, NADConfig):
        changes["teacher"] = with_epochs(config.teacher, epochs)
    return replace(config, **changes)


# ---------------------------------------------------------------------------------------------------------------------
# The one runner


@dataclass(frozen=True)
class Timing:
    """How :func:`run_comparison` times the edit, which takes milliseconds: ``warmup`` untimed runs on one batch
    (one-off costs), then up to ``repeats`` timed runs, fewer once they add up to ``budget_s`` seconds; the median
    counts. Methods that train take seconds to minutes and run once. Default: every method runs once."""

    repeats: int = 1
    warmup: int = 0
    budget_s: float | None = None


def run_comparison(victim: Victim, reference: nn.Module, *, methods: Sequence[tuple[str, bool]] = TABLE_METHODS,
                   n_ours: int = 512, n_baselines: int = 5000,
                   unseen: tuple[torch.Tensor, torch.Tensor] | None = None, configs: Mapping[str, Any] | None = None,
                   n_eval: int | None = None, timing: Timing = Timing(), device: str | torch.device = "cpu",
                   cache: Cache | None = None, draws: Sequence[int] = (0,)) -> pd.DataFrame:
    """Unlearn ``victim`` with each method and score it; one row per method and draw of D_U, plus a "victim" and a
    "retrained" row.

    Arguments:
        victim: a :class:`Victim`. D_U is the first images of its (seeded, shuffled) pool: ``n_ours`` for the
            edit (§4.1: 512), ``n_baselines`` for the others, so the edit's images are among the baselines'.
        draws: which D_Us, each a whole comparison: 0, the pool's first images (as above); k ≥ 1, a prefix of the
            pool permuted with seed k (:func:`draw_unseen`), the edit's images again among the baselines'. Repeating
            a comparison over draws gives the spread that comes from the defender's data (the chapters' "A beats
            B" verdicts use it); the victim and R are evaluated once for all of them.
        reference: the retrained model R of the victim's specification (Eq. 6's ACC^R).
        methods: ``(name, bdk)`` pairs of :data:`METHODS` names (default: the columns of Tables 3, 4, 10).
        unseen: ``(images, labels)`` every method gets instead (Tables 6/7: one draw per sample count).
        configs: per-method configs replacing the registry's and :func:`victim_configs`'s.
        n_eval: evaluate on the fixed subset :func:`eval_index` of D_V; None: all of it.
        timing: how the edit is timed (:class:`Timing`).
        cache: where the baselines' trained weights are kept (:class:`actedit.cache.Cache`); None: nothing is
            cached. An entry is keyed by the victim's specification and weights, the method, its config, a digest
            of D_U and the device type, and records the training time of the run that made it (reported in
            ``seconds`` on later hits). The edit is never cached: it is what the tables are about.

    NAD reuses the basicFT model of the same draw as its teacher when their configs agree (its ``seconds`` then
    include the teacher's). Returns columns ``method, bdk, samples, asr, acc, ctca, score, seconds, draw``: percent
    on D_V with the verification trigger (:meth:`Victim.evaluate`), Score (Eq. 6; NaN for the reference rows
    "victim" and "retrained", whose ``bdk`` is None and ``draw`` missing), wall seconds and the draw of D_U.
    """
    for name, bdk in methods:
        method = _method(name)
        if not isinstance(bdk, bool) or (method.needs_trigger is not None and method.needs_trigger != bdk):
            raise ValueError(f"unknown method ({name!r}, {bdk!r}); valid: names of METHODS with the BDK setting "
                             "they support, e.g. ('ours', True), ('NAD', False)")
    listed = list(draws) if not isinstance(draws, (int, str)) else []
    if not listed or len(set(listed)) != len(listed) or any(isinstance(d, bool) or not isinstance(d, int) or d < 0
                                                           for d in listed):
        raise ValueError(f"draws must list distinct non-negative ints (0: the D_U pool's first images), got {draws!r}")
    draws = listed
    if unseen is not None and draws != [0]:
        raise ValueError(f"draws={draws!r} with a given D_U (unseen=...): the draws choose D_U from the victim's pool")
    configs = {**victim_configs(victim), **(configs or {})}
    before = victim.evaluate(n_eval=n_eval, device=device)
    ref = victim.evaluate(reference, n_eval=n_eval, device=device)
    rows = [{**_row(name, None, 0, m, math.nan, math.nan), "draw": None}
            for name, m in (("victim", before), ("retrained", ref))]
    for draw in draws:
        rows += [{**row, "draw": draw} for row in _compare_once(victim, methods, n_ours, n_baselines, unseen, configs,
                                                                 n_eval, timing, device, cache, draw, before, ref)]
    return pd.DataFrame(rows).astype({"draw": "Int64"})   # nullable: <NA> on the victim and retrained rows


def _compare_once(victim: Victim, methods: Sequence[tuple[str, bool]], n_ours: int, n_baselines: int,
                  unseen: tuple[torch.Tensor, torch.Tensor] | None, configs: Mapping[str, Any], n_eval: int | None,
                  timing: Timing, device: str | torch.device, cache: Cache | None, draw: int,
                  before: Mapping[str, Any], ref: Mapping[str, Any]) -> list[dict]:
    """:func:`run_comparison`'s rows of the methods on one draw of D_U."""
    rows: list[dict] = []
    teacher: tuple[nn.Module, float] | None = None

    def drawn(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if draw == 0:
            return victim.unseen(n)
        return draw_unseen(victim.splits.unseen.images, victim.splits.unseen.labels, n, draw)

    for name, bdk in methods:
        quick = name == "ours"
        images, labels = unseen if unseen is not None else drawn(n_ours if quick else n_baselines)
        trigger = victim.trigger if bdk else None
        config = configs.get(name)
        reuse = name == "NAD" and teacher is not None and config.teacher == configs.get("basicFT")
        extra = {"teacher": teacher[0]} if reuse else {}

        def run(x: torch.Tensor = images, y: torch.Tensor = labels) -> nn.Module:
            return run_method(name, victim.model, x, y, trigger=trigger, config=config, device=device, **extra)

        if cache is not None and not name.startswith("ours"):
            model, seconds = _cached(cache, victim, name, bdk, config, images, labels, device, run)
        elif quick:
            head = slice(0, EditConfig().batch_size)
            model, stats = time_call(run, warmup=timing.warmup, repeats=timing.repeats, budget_s=timing.budget_s,
                                     warmup_fn=lambda: run(images[head], labels[head]), device=device)
            seconds = stats["seconds"]
        else:
            model, stats = time_call(run, warmup=0, repeats=1, device=device)
            seconds = stats["seconds"]
        if name == "basicFT":
            teacher = (model, seconds)
        metrics = victim.evaluate(model, n_eval=n_eval, device=device)
        rows.append(_row(name, bdk, len(images), metrics, score(metrics["asr"], before["asr"], metrics["acc"],
                                                                 ref["acc"]),
                         seconds + (teacher[1] if reuse else 0.0)))
        log.info("%s (%s), draw %d: %s", name, "BDK" if bdk else "¬BDK", draw,
                 {k: round(rows[-1][k], 2) for k in ("asr", "acc", "ctca", "score")})
    return rows


def _cached(cache: Cache, victim: Victim, name: str, bdk: bool, config: Any, images: torch.Tensor,
            labels: torch.Tensor, device: str | torch.device, run: Callable[[], nn.Module]) -> tuple[nn.Module, float]:
    """``run()``'s model and training seconds, from ``cache`` when an identical run was made before."""
    key = {"role": "unlearned", "victim": asdict(victim.spec), "weights": state_digest(victim.model.state_dict()),
           "method": name, "bdk": bdk, "config": asdict(config), "samples": len(images),
           "data": state_digest({"x": images, "y": labels}), "device": torch.device(device).type}
    made: dict[str, Any] = {}

    def build() -> tuple[dict, dict]:
        made["model"], stats = time_call(run, warmup=0, repeats=1, device=device)
        return made["model"].state_dict(), {"seconds": stats["seconds"]}

    state, meta = cache.get_or_build("unlearned", key, build)
    if "model" in made:
        return made["model"], float(meta["seconds"])
    model = copy.deepcopy(victim.model).to(device)  # the methods return a copy with the victim's modes
    model.load_state_dict(state)
    return model, float(meta["seconds"])


def _row(method: str, bdk: bool | None, samples: int, metrics: Mapping[str, Any], value: float,
         seconds: float) -> dict:
    return {"method": method, "bdk": bdk, "samples": samples, "asr": metrics["asr"], "acc": metrics["acc"],
            "ctca": metrics["ctca"], "score": value, "seconds": seconds}


# ---------------------------------------------------------------------------------------------------------------------
# Budget curves: each baseline's Score against its training budget, and the time it needs to reach the edit's

#: the training budgets (epochs) of the budget curves, below each baseline's reference schedule
BUDGETS: tuple[int, ...] = (1, 3, 10, 30)
BASELINES: tuple[str, ...] = ("actFT", "BaEraser", "basicFT", "NAD")


def reference_configs(victim: Victim) -> dict[str, Any]:
    """The baselines' reference schedules (:data:`METHODS`' defaults: basicFT BackdoorBench's 100 epochs, NAD the
    official 10 + 20, actFT and BaEraser one gentle pass) for ``victim``: BaEraser unlearns the victim's y_t."""
    return {name: (replace(METHODS[name].config, target=victim.spec.target) if name == "BaEraser"
                   else METHODS[name].config) for name in BASELINES}


#: the baselines' schedules a chapter can choose (its ``baseline_schedule`` parameter): the book's short recipe or
#: the authors' reference schedules
SCHEDULES: dict[str, Callable[[Victim], dict[str, Any]]] = {"short": victim_configs, "reference": reference_configs}


def budget_configs(config: Any, budgets: Sequence[int] = BUDGETS) -> list[tuple[int, Any]]:
    """``(epochs, config)`` of each budget below the reference's epochs (:func:`with_epochs`: the same schedule
    with fewer epochs; NAD: teacher and student alike), then the reference itself, last.

    >>> [e for e, _ in budget_configs(BasicFTConfig())]
    [1, 3, 10, 30, 100]
    """
    reference = config.train.epochs
    return [(e, with_epochs(config, e)) for e in sorted(set(budgets)) if e < reference] + [(reference, config)]


def budget_curves(victim: Victim, reference: nn.Module, *, samples: Sequence[int], budgets: Sequence[int] = BUDGETS,
                  methods: Sequence[str] = BASELINES, configs: Mapping[str, Any] | None = None,
                  n_eval: int | None = None, timing: Timing = Timing(), device: str | torch.device = "cpu",
                  cache: Cache | None = None, progress: bool = True) -> pd.DataFrame:
    """The edit and every baseline at every budget of its reference schedule, at each D_U size in ``samples``.

    For each N: the first N images of the victim's D_U pool; the edit with BDK and without (timed per ``timing``),
    and each baseline of ``methods`` with its setting's knowledge (actFT, BaEraser: BDK; basicFT, NAD: ¬BDK) at each
    of :func:`budget_configs` of its config (``configs``, else :func:`reference_configs`). Trained baselines go
    through ``cache`` like :func:`run_comparison`'s (a hit reports the training time of the run that made it).

    Returns one row per run: ``method, bdk, samples, epochs`` (0 for the edit), ``reference`` (True for the
    reference schedule and the edit), ``asr, acc, ctca, score`` (Eq. 6 against the victim and ``reference``) and
    ``seconds`` (training or edit wall time).
    """
    from tqdm.auto import tqdm

    unknown = [m for m in methods if m not in BASELINES]
    if unknown:
        raise ValueError(f"budget_curves: {unknown} are not baselines; valid: {', '.join(BASELINES)}")
    configs = {**reference_configs(victim), **(configs or {})}
    before = victim.evaluate(n_eval=n_eval, device=device)
    acc_r = victim.evaluate(reference, n_eval=n_eval, device=device)["acc"]
    schedules = {name: budget_configs(configs[name], budgets) for name in methods}
    bar = tqdm(total=len(samples) * (2 + sum(map(len, schedules.values()))), desc="budget curves",
               disable=not progress)
    rows = []

    def add(name: str, bdk: bool, n: int, epochs: int, is_reference: bool, model: nn.Module, seconds: float) -> None:
        m = victim.evaluate(model, n_eval=n_eval, device=device)
        rows.append({**_row(name, bdk, n, m, score(m["asr"], before["asr"], m["acc"], acc_r), seconds),
                     "epochs": epochs, "reference": is_reference})
        bar.update()

    for n in samples:
        images, labels = victim.unseen(n)
        for bdk in (True, False):
            trig = victim.trigger if bdk else None
            model, stats = time_call(lambda: run_method("ours", victim.model, images, labels, trigger=trig,
                                                        device=device),
                                     warmup=timing.warmup, repeats=timing.repeats, budget_s=timing.budget_s,
                                     device=device)
            add("ours", bdk, n, 0, True, model, stats["seconds"])
        for name, epochs, config in ((name, e, c) for name in methods for e, c in schedules[name]):
            bdk = bool(METHODS[name].needs_trigger)
            trig = victim.trigger if bdk else None

            def run(config: Any = config, name: str = name, trig=trig) -> nn.Module:
                return run_method(name, victim.model, images, labels, trigger=trig, config=config, device=device)

            if cache is not None:
                model, seconds = _cached(cache, victim, name, bdk, config, images, labels, device, run)
            else:
                model, stats = time_call(run, warmup=0, repeats=1, device=device)
                seconds = stats["seconds"]
            add(name, bdk, n, epochs, config == configs[name], model, seconds)
    bar.close()
    return pd.DataFrame(rows)


def time_to_score(curves: pd.DataFrame) -> pd.DataFrame:
    """From :func:`budget_curves`: for each baseline and N, the cheapest budget whose Score reaches the edit's
    (the edit in the same setting: BDK for actFT and BaEraser, ¬BDK for basicFT and NAD) and its training time,
    or none ("never within the reference schedule"); with the reference schedule's Score and time.

    Returns ``method, bdk, samples, edit score, edit seconds, reference epochs, reference score, reference seconds,
    epochs to edit's score`` (None: never) ``, seconds to edit's score`` (NaN: never).

    >>> c = pd.DataFrame([{"method": "ours", "bdk": False, "samples": 50, "epochs": 0, "reference": True,
    ...                    "score": 80.0, "seconds": 0.01},
    ...                   *[{"method": "basicFT", "bdk": False, "samples": 50, "epochs": e, "reference": e == 100,
    ...                      "score": s, "seconds": t} for e, s, t in ((1, 10.0, 1.0), (10, 85.0, 9.0), (100, 90.0, 90.0))]])
    >>> r = time_to_score(c).iloc[0]
    >>> int(r["epochs to edit's score"]), float(r["seconds to edit's score"]), float(r["reference score"])
    (10, 9.0, 90.0)
    """
    rows = []
    for (name, bdk, n), part in curves[curves["method"] != "ours"].groupby(["method", "bdk", "samples"], sort=False):
        edit = curves[(curves["method"] == "ours") & (curves["bdk"] == bdk) & (curves["samples"] == n)].iloc[0]
        part = part.sort_values("epochs", kind="stable")
        ref = part[part["reference"]].iloc[-1]
        reached = part[part["score"] >= edit["score"]]
        first = reached.iloc[0] if len(reached) else None
        rows.append({"method": name, "bdk": bool(bdk), "samples": int(n), "edit score": float(edit["score"]),
                     "edit seconds": float(edit["seconds"]), "reference epochs": int(ref["epochs"]),
                     "reference score": float(ref["score"]), "reference seconds": float(ref["seconds"]),
                     "epochs to edit's score": None if first is None else int(first["epochs"]),
                     "seconds to edit's score": math.nan if first is None else float(first["seconds"])})
    table = pd.DataFrame(rows)
    if len(table):   # ints and None, not floats and NaN
        table["epochs to edit's score"] = pd.Series([r["epochs to edit's score"] for r in rows], dtype=object)
    return table


def recorded_budget_curves(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The budget curves that ``python bench/run.py --only budgets`` recorded in ``path`` (its JSON): the
    :func:`budget_curves` frame and a dict of where they come from (``data``, ``schedules``, ``machine``, ``time``).

    For a chapter that shows the benchmark's larger N beside what it computes itself; the numbers are the
    benchmark's, read, not recomputed. A missing file, or one without a budgets section, raises ValueError naming it.
    """
    import json

    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the benchmark results {path}: {error}") from error
    section = result.get("budgets") if isinstance(result, dict) else None
    if not isinstance(section, dict) or not section.get("curves"):
        raise ValueError(f"{path} holds no budgets section: run `python bench/run.py --only budgets`")
    curves = pd.DataFrame(section["curves"])
    missing = {"method", "bdk", "samples", "epochs", "reference", "score", "seconds"} - set(curves.columns)
    if missing:
        raise ValueError(f"{path}: the budget curves lack the columns {sorted(missing)}")
    machine = result.get("machine", {})
    return curves, {"data": section.get("data", ""), "schedules": section.get("schedules", ""),
                    "machine": f"{machine.get('cpu_model', '?')}, {machine.get('torch_threads', '?')} torch thread(s), "
                               f"torch {machine.get('torch', '?')}, {machine.get('device', '?')}",
                    "time": machine.get("time", "")}


# ---------------------------------------------------------------------------------------------------------------------
# The edit over sample counts and seeds (Tables 1, 2, 5, 8, 9); the γ × λ grid of Fig. 4 is actedit.session

_METRICS = ("asr", "acc", "ctca")


def run_edit_grid(victim: Victim, *, samples: Sequence[int] = (512,), seeds: Sequence[int] = (0,),
                  bdk: Sequence[bool] = (True, False), repair_lrs: Sequence[float] = (),
                  config: EditConfig | None = None, model: nn.Module | None = None, n_eval: int | None = None,
                  device: str | torch.device = "cpu") -> pd.DataFrame:
    """Edit (and optionally repair) a victim over a grid; one record per run.

    For each seed, sample count N and setting (BDK: the victim's trigger; ¬BDK: none), draw N D_U images with the
    seed (:func:`draw_unseen`), edit with ``config`` (paper defaults), evaluate on D_V with the verification trigger
    (state "base"), then repair the edited model at each learning rate (state "repair") with the same D_U.

    Arguments:
        victim: a :class:`Victim` (its D_U pool, triggers, test set and target are used).
        model: the model to edit instead of ``victim.model`` (same data and trigger).
        n_eval: evaluate on the fixed subset :func:`eval_index` of D_V; ``None``: all of it.

    Returns columns ``seed, samples, bdk, state, lr (NaN for base), asr, acc, ctca, seconds`` (edit or repair
    wall time; varies between machines, never shown as a result).
    """
    net = victim.model if model is None else model
    pool = victim.splits.unseen
    rows: list[dict] = []

    def record(result: nn.Module, seed: int, n: int, known: bool, state: str, lr: float, seconds: float) -> None:
        m = victim.evaluate(result, n_eval=n_eval, device=device)
        log.info("seed %d N %d bdk %s %s lr %g: %s", seed, n, known, state, lr, {k: m[k] for k in _METRICS})
        rows.append({"seed": seed, "samples": n, "bdk": known, "state": state, "lr": lr,
                     **{k: m[k] for k in _METRICS}, "seconds": seconds})

    for seed in seeds:
        for n in samples:
            images, labels = draw_unseen(pool.images, pool.labels, n, seed)
            for known in bdk:
                trig = victim.trigger if known else None
                edited, stats = time_call(lambda: edit_model(net, images, trigger=trig, config=config),
                                          warmup=0, repeats=1, device=device)
                record(edited, seed, n, known, "base", math.nan, stats["seconds"])
                for lr in repair_lrs:
                    fixed, stats = time_call(lambda: repair(edited, images, labels, trigger=trig, lr=lr, device=device),
                                             warmup=0, repeats=1, device=device)
                    record(fixed, seed, n, known, "repair", float(lr), stats["seconds"])
    return pd.DataFrame(rows)

