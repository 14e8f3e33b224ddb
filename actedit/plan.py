"""Which models each chapter of the book loads, declared once: the chapter and the book's workflow both read it.

Offers :class:`Models` (a chapter's victims and retrained references R, by the chapter's own keys),
:class:`ModelJob` (one model to train into the cache), one function per chapter that maps the chapter's parameters
to its :class:`Models`, :data:`CHAPTERS` (chapter stem -> that function) and :func:`models_for`.

A chapter's code cell calls its function to get its specs::

    models = plan.tables3_4(dataset=dataset, model=model, triggers=triggers, target=target, seeds=seeds,
                            epochs=epochs, augment=augment, train_limit=train_limit)
    victims = {key: get_victim(spec, ...) for key, spec in models.victims.items()}

and ``workflow/Snakefile`` calls the same function with the chapter's parameters (:func:`models_for`) to make one
training job per model, which the chapter's job waits for; ``python -m actedit.plan train ROLE SPEC_JSON`` is
such a job. Adding a victim to a chapter's function adds a job. Baselines (``run_comparison``), chapter 4's
hand-written second victim and chapter 5's victims (whose datasets may be missing, which the chapter reports)
are still trained inside their chapters.
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Hashable

from .cache import Cache
from .experiments import VictimSpec, _key, get_retrained, get_victim

__all__ = ["Models", "ModelJob", "CHAPTERS", "models_for", "base_configuration", "method", "reading_the_method",
           "table2_models", "tables3_4", "table5_samples", "tables6_7", "table8_repair", "fig4_gamma_lambda",
           "table9_alpha_beta", "table10", "detection", "explorer"]
log = logging.getLogger(__name__)
ROLES = ("victim", "retrained")


@dataclass(frozen=True)
class ModelJob:
    """One model to train into the cache: the victim or the retrained reference R of ``spec``, on ``device``
    (the cache keeps CPU- and GPU-trained weights apart, so the device is part of the job)."""

    role: str
    spec: VictimSpec
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")

    @property
    def key(self) -> str:
        """The cache entry's name: two jobs with the same key are the same model."""
        return self.path().stem

    def path(self, cache: Cache | None = None) -> Path:
        """Where the trained model lies in ``cache`` (default: ``$ACTEDIT_CACHE``)."""
        return (cache or Cache()).path("models", _key(self.spec, self.role, self.device))

    def describe(self) -> str:
        """``victim fashion-mnist/cnn/white y_t=2 seed=0``, plus the fields that differ from the defaults."""
        s, default = self.spec, VictimSpec()
        shown = ("dataset", "model", "trigger", "target", "seed")
        extra = "".join(f" {k}={v}" for k, v in asdict(s).items() if k not in shown and v != getattr(default, k))
        on = "" if self.device == "cpu" else f" on {self.device}"
        return f"{self.role} {s.dataset}/{s.model}/{s.trigger} y_t={s.target} seed={s.seed}{extra}{on}"

    def to_json(self) -> str:
        return json.dumps(asdict(self.spec), sort_keys=True)

    def train(self, *, data_root: str | None = None, cache: Cache | None = None) -> Path:
        """Train the model into ``cache`` (a no-op when it is there already); returns its path."""
        load = get_victim if self.role == "victim" else get_retrained
        load(self.spec, device=self.device, cache=cache, data_root=data_root, progress=False)
        return self.path(cache)


@dataclass(frozen=True)
class Models:
    """The victims and retrained references R a chapter loads, keyed as the chapter keys them."""

    victims: dict[Hashable, VictimSpec] = field(default_factory=dict)
    references: dict[Hashable, VictimSpec] = field(default_factory=dict)

    def jobs(self, device: str = "cpu") -> list[ModelJob]:
        """One :class:`ModelJob` per distinct model trained on ``device`` (the chapter's; references of specs that
        share D_C are one model)."""
        found: dict[str, ModelJob] = {}
        for role, specs in (("victim", self.victims), ("retrained", self.references)):
            for spec in specs.values():
                job = ModelJob(role, spec, device)
                found.setdefault(job.key, job)
        return list(found.values())


def _seeded(dataset: str, model: str, trigger: str, target: int, seeds: list[int], *, reference: bool,
            **changes) -> Models:
    specs = {s: VictimSpec(dataset=dataset, model=model, trigger=trigger, target=target, seed=s, **changes)
             for s in seeds}
    return Models(victims=specs, references=dict(specs) if reference else {})


# One function per chapter, named after it; its arguments are the chapter's parameters of the same names.

def base_configuration(*, dataset: str, model: str, trigger: str, target: int, seed: int, epochs: int,
                       unseen: int) -> Models:
    """Chapter 2: the base victim and its R (key ``seed``)."""
    return _seeded(dataset, model, trigger, target, [seed], reference=True, epochs=epochs, unseen=unseen)


def method(*, dataset: str, model: str, trigger: str, target: int, seed: int) -> Models:
    """Chapter 3: one victim and its R (key ``seed``)."""
    return _seeded(dataset, model, trigger, target, [seed], reference=True)


def reading_the_method(*, seed: int) -> Models:
    """Chapter 4: the base victim and its R (key ``seed``); its second victim is trained in the chapter."""
    return Models(victims={seed: VictimSpec(seed=seed)}, references={seed: VictimSpec(seed=seed)})


def table2_models(*, dataset: str, models: list[str], trigger: str, target: int, seeds: list[int],
                  victim_epochs: int | None) -> Models:
    """Chapter 6: one victim per architecture and seed (key ``(model, seed)``)."""
    extra = {} if victim_epochs is None else {"epochs": victim_epochs}
    return Models(victims={(m, s): VictimSpec(dataset=dataset, model=m, trigger=trigger, target=target, seed=s,
                                              **extra) for m in models for s in seeds})


def tables3_4(*, dataset: str, model: str, triggers: list[str], target: int, seeds: list[int], epochs: int,
              augment: bool, train_limit: int | None) -> Models:
    """Chapter 7: a victim and its R per trigger and seed (key ``(trigger, seed)``)."""
    specs = {(t, s): VictimSpec(dataset=dataset, model=model, trigger=t, target=target, seed=s, epochs=epochs,
                                augment=augment, train_limit=train_limit) for t in triggers for s in seeds}
    return Models(victims=specs, references=dict(specs))


def table5_samples(*, dataset: str, model: str, trigger: str, target: int, seeds: list[int]) -> Models:
    """Chapter 8: one victim per seed (key ``seed``)."""
    return _seeded(dataset, model, trigger, target, seeds, reference=False)


def tables6_7(*, dataset: str, model: str, trigger: str, target: int, seeds: list[int]) -> Models:
    """Chapter 9: a victim and its R per seed (key ``seed``)."""
    return _seeded(dataset, model, trigger, target, seeds, reference=True)


def table8_repair(*, dataset: str, model: str, trigger: str, target: int, seeds: list[int]) -> Models:
    """Chapter 10: one victim per seed (key ``seed``)."""
    return _seeded(dataset, model, trigger, target, seeds, reference=False)


def fig4_gamma_lambda(*, dataset: str, model: str, trigger: str, target: int, seeds: list[int]) -> Models:
    """Chapter 11: a victim and its R per seed (key ``seed``)."""
    return _seeded(dataset, model, trigger, target, seeds, reference=True)


def table9_alpha_beta(*, dataset: str, model: str, trigger: str, target: int, seeds: list[int]) -> Models:
    """Chapter 12: a victim and its R per seed (key ``seed``)."""
    return _seeded(dataset, model, trigger, target, seeds, reference=True)


def table10(*, dataset: str, model: str, trigger: str, targets: list[int], seeds: list[int],
            train_limit: int | None, epochs: int | None, augment: bool) -> Models:
    """Chapter 13: a victim per target class and seed (key ``(target, seed)``) and one R per seed (key ``seed``).

    Dirty-label poisoning draws the poisoned images with the seed alone, so D_C, hence R, is the same for every
    target: R is the base target's (the chapter checks that the poisoned indices agree).
    """
    extra = {} if epochs is None else {"epochs": epochs}

    def spec(target: int, seed: int) -> VictimSpec:
        return VictimSpec(dataset=dataset, model=model, trigger=trigger, target=target, seed=seed,
                          train_limit=train_limit, augment=augment, **extra)

    return Models(victims={(t, s): spec(t, s) for t in targets for s in seeds},
                  references={s: spec(VictimSpec.target, s) for s in seeds})


def detection(*, dataset: str, model: str, trigger: str, targets: list[int], clean_seeds: list[int],
              train_limit: int | None) -> Models:
    """Chapter 14: a poisoned victim per target (key ``target``) and clean models, the R of each clean seed
    (key ``seed``)."""
    def spec(**changes) -> VictimSpec:
        return VictimSpec(dataset=dataset, model=model, trigger=trigger, train_limit=train_limit, **changes)

    return Models(victims={t: spec(target=t) for t in targets}, references={s: spec(seed=s) for s in clean_seeds})


def explorer(*, dataset: str, model: str, trigger: str, target: int, seed: int) -> Models:
    """Chapter 15: one victim and its R (key ``seed``)."""
    return _seeded(dataset, model, trigger, target, [seed], reference=True)


CHAPTERS: dict[str, Callable[..., Models]] = {
    "02_base_configuration": base_configuration,
    "03_method": method,
    "04_reading_the_method": reading_the_method,
    "06_table2_models": table2_models,
    "07_tables3_4_triggers": tables3_4,
    "08_table5_samples": table5_samples,
    "09_tables6_7_efficiency": tables6_7,
    "10_table8_repair": table8_repair,
    "11_fig4_gamma_lambda": fig4_gamma_lambda,
    "12_table9_alpha_beta": table9_alpha_beta,
    "13_table10_target_class": table10,
    "14_detection": detection,
    "15_explorer": explorer,
}


def models_for(stem: str, parameters: dict) -> Models:
    """The models chapter ``stem`` loads with ``parameters`` (all its parameters; extra ones are ignored).

    A chapter without an entry in :data:`CHAPTERS` trains nothing outside itself (empty :class:`Models`).
    """
    function = CHAPTERS.get(stem)
    if function is None:
        return Models()
    names = inspect.signature(function).parameters
    missing = sorted(set(names) - set(parameters))
    if missing:
        raise ValueError(f"chapter {stem}: its parameters lack {', '.join(missing)}, which "
                         f"actedit.plan.{function.__name__} needs (is the parameters cell complete?)")
    return function(**{name: parameters[name] for name in names})


def main(argv: list[str] | None = None) -> int:
    """``python -m actedit.plan train ROLE SPEC_JSON``: train one model into the cache (a workflow job)."""
    parser = argparse.ArgumentParser(prog="python -m actedit.plan", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one victim or retrained reference into $ACTEDIT_CACHE")
    train.add_argument("role", choices=ROLES)
    train.add_argument("spec", help="the VictimSpec's fields as JSON")
    train.add_argument("--device", default="cpu")
    train.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        job = ModelJob(args.role, VictimSpec(**json.loads(args.spec)), args.device)
    except (ValueError, TypeError) as error:
        parser.error(f"bad spec: {error}")
    path = job.train(data_root=args.data_root)
    log.info("%s -> %s", job.describe(), path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
