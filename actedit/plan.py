"""Which models each chapter of the book loads, declared once: the chapter and the book's workflow both read it.

Offers :class:`Models` (a chapter's victims and retrained references R, by the chapter's own keys),
:class:`ModelJob` (one model to train into the cache), one function per chapter, ``fn(params)``, that maps the
chapter's parameters (the dict its ``check_params`` returns) to its :class:`Models` with
:meth:`VictimSpec.from_params <actedit.experiments.VictimSpec.from_params>`, :data:`CHAPTERS` (chapter stem -> that
function) and :func:`models_for`.

A chapter's code cell calls its function to get its specs::

    models = plan.tables3_4(params)
    victims = {key: get_victim(spec, ...) for key, spec in models.victims.items()}

and ``workflow/Snakefile`` calls the same function with the chapter's parameters (:func:`models_for`) to make one
training job per model, which the chapter's job waits for; ``python -m actedit.plan train ROLE SPEC_JSON`` is
such a job. Adding a victim to a chapter's function adds a job. Still trained inside their chapters: baselines
(``run_comparison``, cached beside the victims) and chapter 4's hand-written second victim. A dataset that is
not on the machine fails its training job with the loader's message (where to put the files); run the chapter
alone with papermill to have it report the dataset as missing instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

from .cache import Cache
from .experiments import VictimSpec, get_retrained, get_victim, model_key

__all__ = ["Models", "ModelJob", "CHAPTERS", "models_for", "base_configuration", "method", "reading_the_method",
           "table1_rows", "table1_datasets", "table2_models", "tables3_4", "table5_samples", "tables6_7", "table8_repair", "fig4_gamma_lambda",
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
        return (cache or Cache()).path("models", model_key(self.spec, self.role, self.device))

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


def _spec(params: Mapping[str, Any], names: tuple[str, ...], /, **changes) -> VictimSpec:
    """``VictimSpec.from_params`` on the parameters ``names`` only (a chapter may have a parameter named like a
    spec field that means something else, e.g. chapter 15's ``alpha`` of Eq. 7)."""
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"the chapter's parameters lack {', '.join(missing)} (is the parameters cell complete?)")
    return VictimSpec.from_params({n: params[n] for n in names}, **changes)


def _seeded(params: Mapping[str, Any], names: tuple[str, ...], *, reference: bool = True) -> Models:
    """A victim (and its R) per seed of ``params["seeds"]`` (key ``seed``)."""
    specs = {s: _spec(params, names, seed=s) for s in params["seeds"]}
    return Models(victims=specs, references=dict(specs) if reference else {})


_BASE = ("dataset", "model", "trigger", "target", "train_limit", "epochs")   # the fields most chapters set

# One function per chapter, named after it; ``params``: the chapter's parameters (its check_params dict).


def base_configuration(params: Mapping[str, Any]) -> Models:
    """Chapter 2: the base victim and its R (key ``seed``)."""
    spec = _spec(params, _BASE + ("seed", "unseen"))
    return Models(victims={spec.seed: spec}, references={spec.seed: spec})


def method(params: Mapping[str, Any]) -> Models:
    """Chapter 3: one victim and its R (key ``seed``)."""
    spec = _spec(params, _BASE + ("seed",))
    return Models(victims={spec.seed: spec}, references={spec.seed: spec})


def reading_the_method(params: Mapping[str, Any]) -> Models:
    """Chapter 4: the base victim and its R (key ``seed``) and each held-out victim and its R (key
    ``("held out", i)``, ``params["held_out"][i]`` its VictimSpec fields); its second victim is trained in the
    chapter."""
    base = _spec(params, ("seed", "train_limit", "epochs"))
    held = {("held out", i): VictimSpec(seed=base.seed, **fields) for i, fields in enumerate(params["held_out"])}
    specs = {base.seed: base, **held}
    return Models(victims=specs, references=dict(specs))


def table1_rows(params: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Chapter 5's rows: ``params["runs"]`` (dataset -> architectures) as row -> ``(dataset, architecture)``; a
    dataset's first architecture keys its row by the dataset itself (the row beside the paper's), the others by
    ``"dataset/architecture"`` (extra rows).

    >>> table1_rows({"runs": {"mnist": ["resnet18", "cnn"]}})
    {'mnist': ('mnist', 'resnet18'), 'mnist/cnn': ('mnist', 'cnn')}
    """
    return {(d if i == 0 else f"{d}/{m}"): (d, m) for d, archs in params["runs"].items() for i, m in enumerate(archs)}


def table1_datasets(params: Mapping[str, Any]) -> Models:
    """Chapter 5: a victim and its R per row of :func:`table1_rows` and seed (key ``(row, seed)``), each with its
    dataset's D_U pool (``params["unseen_pool"]``) and its recipe (``params["recipes"][dataset][architecture]``,
    VictimSpec fields)."""
    pools, recipes = params["unseen_pool"], params["recipes"]
    specs = {(row, s): VictimSpec(dataset=d, model=m, trigger=params["trigger"], target=params["target"], seed=s,
                                  **({"unseen": pools[d]} if d in pools else {}), **recipes.get(d, {}).get(m, {}))
             for row, (d, m) in table1_rows(params).items() for s in params["seeds"]}
    return Models(victims=specs, references=dict(specs))


def table2_models(params: Mapping[str, Any]) -> Models:
    """Chapter 6: a victim and its R per architecture of ``params["models"]`` and seed (key ``(model, seed)``), on
    the chapter's dataset with the architecture's recipe (``params["recipes"][model]``, VictimSpec fields; none:
    the book's base recipe)."""
    specs = {(m, s): VictimSpec(dataset=params["dataset"], model=m, trigger=params["trigger"],
                                target=params["target"], seed=s, **params["recipes"].get(m, {}))
             for m in params["models"] for s in params["seeds"]}
    return Models(victims=specs, references=dict(specs))


def tables3_4(params: Mapping[str, Any]) -> Models:
    """Chapter 7: a victim and its R per trigger and seed (key ``(trigger, seed)``)."""
    names = ("dataset", "model", "target", "train_limit", "epochs", "augment")
    specs = {(t, s): _spec(params, names, trigger=t, seed=s) for t in params["triggers"] for s in params["seeds"]}
    return Models(victims=specs, references=dict(specs))


def table5_samples(params: Mapping[str, Any]) -> Models:
    """Chapter 8: a victim and its R (the strength gate) per seed (key ``seed``)."""
    return _seeded(params, _BASE)


def tables6_7(params: Mapping[str, Any]) -> Models:
    """Chapter 9: a victim and its R per seed (key ``seed``)."""
    return _seeded(params, _BASE)


def table8_repair(params: Mapping[str, Any]) -> Models:
    """Chapter 10: a victim and its R (the strength gate) per seed (key ``seed``)."""
    return _seeded(params, _BASE)


def fig4_gamma_lambda(params: Mapping[str, Any]) -> Models:
    """Chapter 11: a victim and its R per seed (key ``seed``)."""
    return _seeded(params, _BASE)


def table9_alpha_beta(params: Mapping[str, Any]) -> Models:
    """Chapter 12: a victim and its R per seed (key ``seed``)."""
    return _seeded(params, _BASE)


def table10(params: Mapping[str, Any]) -> Models:
    """Chapter 13: a victim per target class and seed (key ``(target, seed)``) and one R per seed (key ``seed``).

    Dirty-label poisoning draws the poisoned images with the seed alone, so D_C, hence R, is the same for every
    target: R is the default target's (the chapter checks that the poisoned indices agree).
    """
    names = ("dataset", "model", "trigger", "train_limit", "epochs", "augment")
    return Models(victims={(t, s): _spec(params, names, target=t, seed=s)
                           for t in params["targets"] for s in params["seeds"]},
                  references={s: _spec(params, names, seed=s) for s in params["seeds"]})


def detection(params: Mapping[str, Any]) -> Models:
    """Chapter 14: a poisoned victim per target (key ``target``), its R (key ``("target", target)``; for dirty-label
    triggers one model for all targets) and clean models, the R of each clean seed (key ``("clean", seed)``)."""
    names = ("dataset", "model", "trigger", "train_limit", "epochs")
    victims = {t: _spec(params, names, target=t) for t in params["targets"]}
    return Models(victims=victims,
                  references={**{("target", t): spec for t, spec in victims.items()},
                              **{("clean", s): _spec(params, names, seed=s) for s in params["clean_seeds"]}})


def explorer(params: Mapping[str, Any]) -> Models:
    """Chapter 15: one victim and its R (key ``seed``); its ``alpha`` is Eq. 7's, not the trigger's."""
    spec = _spec(params, _BASE + ("seed",))
    return Models(victims={spec.seed: spec}, references={spec.seed: spec})


CHAPTERS: dict[str, Callable[..., Models]] = {
    "02_base_configuration": base_configuration,
    "03_method": method,
    "04_reading_the_method": reading_the_method,
    "05_table1_datasets": table1_datasets,
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


def models_for(stem: str, parameters: Mapping[str, Any]) -> Models:
    """The models chapter ``stem`` loads with ``parameters`` (all its parameters; extra ones are ignored).

    A chapter without an entry in :data:`CHAPTERS` trains nothing outside itself (empty :class:`Models`).
    """
    function = CHAPTERS.get(stem)
    if function is None:
        return Models()
    try:
        return function(parameters)
    except KeyError as error:
        raise ValueError(f"chapter {stem}: its parameters lack {error.args[0]}, which actedit.plan."
                         f"{function.__name__} needs (is the parameters cell complete?)") from error
    except ValueError as error:
        raise ValueError(f"chapter {stem}: {error}") from error


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
