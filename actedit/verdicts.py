"""Verdicts: the rules that turn a chapter's numbers into a status, each written once with why it is fair.

Offers the four statuses (:data:`REPRODUCED`, :data:`NOT_REPRODUCED`, :data:`INCONCLUSIVE`, :data:`NOT_TESTABLE`),
:class:`Verdict`, :class:`Stat` / :func:`stat` (mean ± std over seeds), the victim strength gate
(:func:`victim_gate`, :data:`GATE`), the rules (:func:`at_most`, :func:`at_least`, :func:`restores_ctca`,
:func:`beats`, :func:`near_best`, :func:`is_value`, :func:`speed_ratio`) and :class:`Results`, which a chapter uses to
glue its headline numbers and write them to ``<stem>.results.json`` beside the executed notebook, where
:mod:`actedit.summary` reads them.

Usage::

    rule = restores_ctca()
    rule.judge({"ctca": [22.1, 35.8, 30.0], "victim_ctca": 85.5})   # Verdict("not reproduced", ...)

A rule's ``judge`` takes the chapter's recorded value; a list of numbers is one number per seed. Every verdict on
a defense goes through :func:`victim_gate` first: a victim without a working backdoor makes the claim
"not testable", never "reproduced".
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

__all__ = ["REPRODUCED", "NOT_REPRODUCED", "INCONCLUSIVE", "NOT_TESTABLE", "STATUSES", "Verdict", "Stat", "stat",
           "Gate", "GATE", "victim_gate", "Rule", "at_most", "at_least", "restores_ctca", "beats", "majority", "near_best",
           "is_value", "speed_ratio", "Results", "results_path", "strength"]

log = logging.getLogger(__name__)

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"      # an "A beats B" margin inside the seed spread or the tie threshold
NOT_TESTABLE = "not testable"      # with a reason: the claim cannot be judged on what this build has
STATUSES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)


@dataclass(frozen=True)
class Verdict:
    """A status and, for "inconclusive" and "not testable", the reason."""

    status: str
    reason: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: must be one of {STATUSES}")

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status


@dataclass(frozen=True)
class Stat:
    """Mean, standard deviation (sample, ddof=1; 0 for one value) and count of a number measured over seeds."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.2f}" if self.n == 1 else f"{self.mean:.2f} ± {self.std:.2f}"


def stat(values: float | Iterable[float]) -> Stat:
    """:class:`Stat` of one number or of one number per seed. NaN and empty input are errors."""
    xs = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    if not xs or any(math.isnan(x) for x in xs):
        raise ValueError(f"stat: need one or more numbers, not NaN, got {values!r}")
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return Stat(mean, std, len(xs))


# ----------------------------------------------------------------------------------------------- the strength gate

@dataclass(frozen=True)
class Gate:
    """When a victim is usable for a verdict on a defense."""

    min_asr: float = 80.0      # % ASR with the training-strength trigger on D_V
    max_acc_gap: float = 3.0   # points of ACC between the victim and its retrained R

    why = ("a defense can only be judged on a model whose backdoor works and whose clean accuracy is that of a "
           "clean model: Eq. 6 divides by the victim's ASR and compares ACC with R's")


GATE = Gate()


def victim_gate(asr: float, acc: float, acc_r: float, gate: Gate = GATE) -> Verdict | None:
    """None when the victim passes ``gate``; otherwise the "not testable" verdict that replaces any claim on it."""
    problems = []
    if not asr >= gate.min_asr:
        problems.append(f"ASR {asr:.1f} % < {gate.min_asr:g} %")
    if not abs(acc - acc_r) <= gate.max_acc_gap:
        problems.append(f"ACC {acc:.1f} % vs R's {acc_r:.1f} % (more than {gate.max_acc_gap:g} points apart)")
    if not problems:
        return None
    return Verdict(NOT_TESTABLE, "victim without a working backdoor (" + "; ".join(problems) + ")")


# ------------------------------------------------------------------------------------------------------- the rules

@dataclass(frozen=True)
class Rule:
    """A criterion in words (``text``), why it is fair (``why``) and the function that applies it."""

    text: str
    why: str
    decide: Callable[[Any], Verdict] = field(repr=False, compare=False)

    def judge(self, value: Any) -> Verdict:
        """The verdict on ``value``; a missing or NaN value is "not testable", never a pass."""
        if value is None:
            return Verdict(NOT_TESTABLE, "the chapter recorded no number")
        try:
            return self.decide(value)
        except (TypeError, ValueError, KeyError) as error:
            return Verdict(NOT_TESTABLE, f"unreadable value {value!r} ({error})")


def _yes(ok: bool) -> Verdict:
    return Verdict(REPRODUCED if ok else NOT_REPRODUCED)


def at_most(bar: float, why: str = "the paper reports a number near zero; the bar says how near counts") -> Rule:
    """Reproduced when the mean over seeds is ≤ ``bar``."""
    return Rule(f"mean ≤ {bar:g}", why, lambda v: _yes(stat(v).mean <= bar))


def at_least(bar: float, why: str = "the paper's number is a floor the defense must reach") -> Rule:
    """Reproduced when the mean over seeds is ≥ ``bar``."""
    return Rule(f"mean ≥ {bar:g}", why, lambda v: _yes(stat(v).mean >= bar))


def restores_ctca(share: float = 0.5) -> Rule:
    """Repair restores the target class: mean repaired CTCA over seeds ≥ ``share`` × the victim's CTCA.

    The value is ``{"ctca": per-seed repaired CTCA, "victim_ctca": the victim's CTCA}``.
    """
    def decide(v: Mapping) -> Verdict:
        return _yes(stat(v["ctca"]).mean >= share * float(v["victim_ctca"]))
    return Rule(f"mean CTCA ≥ {share:g} × victim's", "the paper's repaired CTCA is about half its victim's or more "
                "(CIFAR10 42 of ~92, MNIST 96); a fixed absolute bar would not follow the victim", decide)


def beats(tie: float = 0.0) -> Rule:
    """"A beats B": the value is A − B, one number per seed (or ``{"margin": [...], "tie": t}`` when the chapter
    computed its own tie threshold). Reproduced when the mean margin exceeds both the seed spread (std) and the tie
    threshold; the reverse margin is "not reproduced"; anything in between is "inconclusive"."""
    def decide(v) -> Verdict:
        margin, own_tie = (v["margin"], float(v.get("tie", 0.0))) if isinstance(v, Mapping) else (v, 0.0)
        s, band_tie = stat(margin), max(tie, own_tie)
        band = max(s.std, band_tie)
        if s.mean > band:
            return Verdict(REPRODUCED)
        if s.mean < -band:
            return Verdict(NOT_REPRODUCED)
        return Verdict(INCONCLUSIVE, f"margin {s.mean:+.2f} within ±{band:.2f} "
                       + ("(the seed spread)" if s.std >= band_tie else "(the tie threshold)"))
    return Rule("margin > max(seed std, tie threshold)", "a margin smaller than the draw-to-draw spread or the "
                "chapter's tie threshold is noise, not a win", decide)


def majority() -> Rule:
    """"Best on most": the value is ``{"wins": k, "of": n, "ties": t}`` over the usable victims, where a tie is a
    victim on which the margin to the best rival lies within the chapter's tie threshold. Reproduced when the clear
    wins are more than half; not reproduced when even wins plus ties are not; otherwise inconclusive."""
    def decide(v: Mapping) -> Verdict:
        wins, of, ties = int(v["wins"]), int(v["of"]), int(v.get("ties", 0))
        if of == 0:
            return Verdict(NOT_TESTABLE, "victim without a working backdoor (none usable)")
        if wins > of / 2:
            return Verdict(REPRODUCED)
        if wins + ties <= of / 2:
            return Verdict(NOT_REPRODUCED)
        return Verdict(INCONCLUSIVE, f"{ties} of {of} usable victims within the tie threshold decide it")
    return Rule("clear best on more than half of the usable victims", "\"most\" in the paper's sense; victims "
                "that fail the strength gate are left out, and a margin within the tie threshold is no win", decide)


def near_best(tie: float = 0.0) -> Rule:
    """The value is ``{"at": Score at the claimed setting (per seed), "best": the grid's best Score, "tie": t}``:
    reproduced when the claimed setting is within the tie threshold (the larger of ``tie`` and ``t``) of the best."""
    def decide(v: Mapping) -> Verdict:
        return _yes(stat(v["best"]).mean - stat(v["at"]).mean <= max(tie, float(v.get("tie", 0.0))))
    return Rule("Score within the tie threshold of the grid's best", "grid points whose Scores differ by less than "
                "the tie threshold are equally good; demanding the exact maximum makes the verdict flip on noise",
                decide)


def is_value(expected: Any, why: str = "the claim names one setting; ours must name the same") -> Rule:
    """Reproduced when the value equals ``expected`` (a setting chosen by the chapter, a yes/no finding)."""
    return Rule(f"= {expected}", why, lambda v: _yes(v == expected))


def speed_ratio(factor: float = 3.0) -> Rule:
    """The speed claim for one method: the value is ``{"ours": [baseline seconds / edit seconds, ...],
    "paper": the paper's ratio for that method}``; reproduced when our mean ratio is at least the paper's divided
    by ``factor`` (the same order of magnitude)."""
    def decide(v: Mapping) -> Verdict:
        return _yes(stat(v["ours"]).mean >= float(v["paper"]) / factor)
    return Rule(f"speed-up ≥ paper's ratio / {factor:g}", "seconds depend on hardware; the paper's claim is how "
                f"many times faster the edit is than each method, kept here within a factor of {factor:g}", decide)


# --------------------------------------------------------------------------------------------- the results file

def results_path(stem: str, folder: str | Path | None = None) -> Path:
    """Where chapter ``stem`` writes its results: ``<folder>/<stem>.results.json``.

    ``folder`` defaults to ``$ACTEDIT_RESULTS_DIR`` or else the checkout's ``book/_executed`` (where the build
    writes the executed notebooks, so the results lie beside them whichever directory the kernel runs in).
    """
    if folder is None:
        folder = os.environ.get("ACTEDIT_RESULTS_DIR") or Path(__file__).resolve().parent.parent / "book" / "_executed"
    return Path(folder) / f"{stem}.results.json"


def _plain(value: Any) -> Any:
    """JSON-ready copy of ``value`` (numpy/torch scalars to Python numbers, tuples to lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"results: {type(value).__name__} is not a number, string, list or dict")


class Results:
    """A chapter's results file: ``glue`` shows a number in the prose and records it; ``victim`` records a victim's
    strength for the gate. Every call rewrites ``<stem>.results.json`` (atomically), so a chapter that stops early
    leaves what it had computed.

    Usage (in a chapter)::

        results = Results("03_method")
        results.victim("base", asr=99.6, acc=90.0, acc_r=90.3)
        results.glue("03_asr_bdk", 0.0)            # glued for the prose and written to the JSON
        results.record("03_ctca_repair_bdk", [22.1, 35.8, 30.0])   # per-seed numbers, not glued
    """

    def __init__(self, stem: str, folder: str | Path | None = None):
        if not stem or "/" in stem:
            raise ValueError(f"Results: stem {stem!r} must be a chapter's file name without suffix")
        self.stem = stem
        self.path = results_path(stem, folder)
        self.values: dict[str, Any] = {}
        self.victims: dict[str, dict[str, float]] = {}

    def record(self, key: str, value: Any) -> Any:
        """Store ``value`` under ``key`` (and write the file); returns ``value``."""
        self.values[key] = _plain(value)
        self._write()
        return value

    def glue(self, key: str, value: Any, display: bool = False) -> Any:
        """:meth:`record`, and ``myst_nb.glue`` the value so the prose can show it with ``{glue:}`` (hidden unless
        ``display``; a drop-in for ``myst_nb.glue``)."""
        from myst_nb import glue

        self.record(key, value)
        glue(key, value, display=display)
        return value

    def victim(self, name: str, *, asr: float, acc: float, acc_r: float) -> Verdict | None:
        """Record a victim's ASR, ACC and its retrained R's ACC; returns :func:`victim_gate`'s verdict."""
        self.victims[name] = {"asr": float(asr), "acc": float(acc), "acc_r": float(acc_r)}
        self._write()
        return victim_gate(asr, acc, acc_r)

    def _write(self) -> None:
        from .cache import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path, fsync=False) as tmp:
            tmp.write_text(json.dumps({"chapter": self.stem, "values": self.values, "victims": self.victims},
                                      indent=1, ensure_ascii=False))
        log.debug("wrote %s", self.path)

    @staticmethod
    def read(path: str | Path) -> dict[str, Any]:
        """The ``{"chapter", "values", "victims"}`` a chapter wrote; a malformed file is an error naming it."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("values"), dict):
            raise ValueError(f"{path}: not a results file (no 'values' object)")
        data.setdefault("victims", {})
        return data


def strength(victim, retrained, *, n_eval: int | None = None, device: str = "cpu") -> dict[str, float]:
    """``{"asr", "acc", "acc_r"}`` for the gate: the victim's ASR with the training-strength trigger (not the
    magnified verification one) and ACC on D_V (or a seed-0 subset of ``n_eval`` images), and R's ACC on the same."""
    from .experiments import eval_index
    from .metrics import evaluate

    test = victim.splits.test.subset(eval_index(len(victim.splits.test), n_eval))
    kw = dict(target=victim.spec.target, top_k=victim.splits.top_k, num_classes=victim.splits.num_classes,
              device=device)
    m = evaluate(victim.model, test.images, test.labels, trigger=victim.trigger, **kw)
    r = evaluate(retrained, test.images, test.labels, **kw)
    return {"asr": m["asr"], "acc": m["acc"], "acc_r": r["acc"]}
