"""The reproduction summary: every claim of the paper, the paper's number, ours, the rule, and the verdict.

Offers :class:`Claim`, :data:`CLAIMS` (claims of the paper), :data:`CHECKS` (set-up checks and the book's
self-checks, listed apart and not counted as claims), :func:`read_results`, :func:`summary_table`,
:func:`counts`, :func:`styled` and :func:`resolve_executed_dir`.

Each chapter writes its headline numbers to ``<stem>.results.json`` beside its executed notebook
(:class:`actedit.verdicts.Results`); this module reads those files, never the notebooks' text output, and applies
the rules of :mod:`actedit.verdicts`, each with the one-line justification the summary shows. A claim about a
defense first passes the victim strength gate (:func:`actedit.verdicts.victim_gate`) on the victims its chapter
recorded: one without a working backdoor makes the claim "not testable".
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from .verdicts import (INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, STATUSES, Results, Rule, Verdict,
                       at_least, at_most, beats, is_value, majority, near_best, restores_ctca, speed_ratio, stat,
                       victim_gate)

__all__ = ["Claim", "CLAIMS", "CHECKS", "read_results", "summary_table", "counts", "styled", "resolve_executed_dir"]

ALL, ANY = "all", "any"   # which recorded victims of the chapter must pass the gate


@dataclass(frozen=True)
class Claim:
    """One claim of the paper (or one check of the book) judged on one chapter's recorded number."""

    claim: str                      # what the paper says, in words
    where: str                      # paper location (table/section)
    paper: str                      # the paper's number(s), mean ± std where the paper prints one
    chapter: str                    # notebook stem that computes ours
    key: str | Callable[[Mapping[str, Any]], Any]   # results key, or a function of the chapter's values
    rule: Rule
    unit: str = ""
    victims: str | None = ALL       # gate: ALL recorded victims must pass, ANY one must, None: no defense judged;
                                    # another string: every recorded victim whose name starts with it must pass
    untestable: str = ""            # reason when no build of this book can test the claim


def _keys(**parts: str) -> Callable[[Mapping[str, Any]], Any]:
    """A value assembled from several results keys: ``{"ctca": values[k1], "victim_ctca": values[k2]}``."""
    def get(values: Mapping[str, Any]) -> Any:
        if any(k not in values for k in parts.values()):
            return None
        return {name: values[k] for name, k in parts.items()}
    return get


_T1 = "05_table1_datasets"
_T2 = "06_table2_models"
_T2_MODELS = {"resnet18": "ResNet18", "vgg16": "VGG16", "efficientnet_v2_s": "EfficientNetV2-S",
              "mobilenet_v3_small": "MobileNetV3-small"}
_T34 = "07_tables3_4_triggers"
_T10 = "13_table10_target_class"
_EFF = "09_tables6_7_efficiency"

CLAIMS: list[Claim] = [
    Claim("BDK editing removes the backdoor (ASR ≈ 0)", "Table 1/2, §3.1", "0.0 ± 0.0 %",
          "03_method", "03_asr_bdk", at_most(1), "%"),
    Claim("BDK editing also removes the target class (CTCA ≈ 0)", "Table 1/2", "0.0 ± 0.0 %",
          "03_method", "03_ctca_bdk", at_most(5), "%"),
    Claim("BDK editing keeps most accuracy: ACC ≥ 87 % of the victim's", "Table 1 (MNIST 86.9 %, CIFAR10 92.9 %)",
          "86.9–92.9 % of the victim's", "03_method", "03_acc_ratio_bdk",
          at_least(87, "the paper's smallest ratio, MNIST's 86.9 %, rounded"), "% of victim"),
    Claim("A few images suffice: BDK with 64 images, ASR ≤ 1 %", "§3, Table 5", "0.0 ± 0.0 % (64 images)",
          "03_method", "03_asr_few", at_most(1), "%"),
    Claim("… and ACC ≥ 87 % of the victim's with 64 images", "Table 5", "64.7 / 70.5 = 91.8 %",
          "03_method", "03_acc_ratio_few", at_least(87, "the paper's smallest ratio, MNIST's 86.9 %, rounded"),
          "% of victim"),
    Claim("Repair (lr 1e-2) restores the target class after BDK", "Table 1/8", "0 → 42.07 ± 7.72 % (CIFAR10)",
          "03_method", "03_repair_bdk", restores_ctca(), "% CTCA"),
    Claim("Repair (lr 1e-2) restores the target class after ¬BDK", "Table 1/8", "0.14 → 55.02 ± 4.41 % (CIFAR10)",
          "03_method", "03_repair_nbdk", restores_ctca(), "% CTCA"),
    Claim("¬BDK editing removes the backdoor on colour data (ASR ≤ 1 %); here on grey Fashion-MNIST",
          "Table 1", "0.3 ± 0.21 % (CIFAR10)", "03_method", "03_asr_nbdk", at_most(1), "%"),
    Claim("λ = 1.0 gives the best Score with BDK (BN frozen)", "Fig. 4, B.3", "λ = 1.0",
          "11_fig4_gamma_lambda", "11_lam1_bdk", near_best(), "Score"),
    Claim("λ = 1.0 gives the best Score without BDK (BN updated)", "Fig. 4, B.3", "λ = 1.0",
          "11_fig4_gamma_lambda", "11_lam1_nbdk", near_best(), "Score"),
    Claim("With BDK, frozen BN moving averages beat updated ones", "Fig. 4, B.3", "frozen better",
          "11_fig4_gamma_lambda", "11_bdk_frozen_margin", beats(), "Score points"),
    Claim("Without BDK, updated BN moving averages beat frozen ones", "Fig. 4, B.3", "updated better",
          "11_fig4_gamma_lambda", "11_nbdk_update_margin", beats(), "Score points"),
    Claim("¬BDK editing points at the target class (largest per-class drop = y_t)", "§4.3", "80 %",
          "14_detection", "14_detection_target_accuracy", at_least(80, "the paper's rate is the bar"), "%",
          victims=ANY),
    Claim("Backdoor detection accuracy on poisoned models", "§4.3", "67 %",
          "14_detection", "14_detection_poisoned_accuracy", at_least(67, "the paper's rate is the bar"), "%",
          victims=ANY),
    Claim("Backdoor detection accuracy on clean models (called clean)", "§4.3", "80 %",
          "14_detection", "14_detection_clean_accuracy", at_least(80, "the paper's rate is the bar"), "%",
          victims=None),
    Claim("Table 1: without BDK the edit fails on MNIST (ASR stays high)", "Table 1, §4.2", "66.81 ± 5.87 %",
          _T1, f"{_T1}_mnist_nbdk_base_asr", at_least(30, "half the paper's 66.81 %: the edit clearly failed"), "%",
          victims="mnist,"),
    Claim("Table 1: repair restores the target class on MNIST after BDK", "Table 1", "0 → 96.09 ± 2.51 %",
          _T1, f"{_T1}_mnist_repair_bdk", restores_ctca(), "% CTCA", victims="mnist,"),
    Claim("Table 1 pattern on Fashion-MNIST: repair after BDK restores the target class", "Table 1 (ours, extra)",
          "0 → 42.07 ± 7.72 % (CIFAR10)", _T1, f"{_T1}_fashion_mnist_repair_bdk", restores_ctca(), "% CTCA",
          victims="fashion-mnist,"),
    # one claim per architecture, gated by that architecture's victims ("<model>, seed <s>"): a width-scaled victim
    # whose backdoor did not take makes only its own claim "not testable"
    *[Claim(f"Table 2: BDK editing removes the backdoor on {shown} (ASR ≈ 0; here width-scaled, Fashion-MNIST)",
            "Table 2, §4.2", "0.0 ± 0.0 % (CIFAR10, full width)", _T2, f"{_T2}_{m}_bdk_base_asr_per_seed",
            at_most(1), "%", victims=f"{m},") for m, shown in _T2_MODELS.items()],
    Claim("Table 3: with BDK, ours has the best Score on most triggers (one victim per trigger, 3 draws of D_U)", "Table 3", "7 of 8 triggers",
          _T34, f"{_T34}_ours_best_count_bdk", majority(), victims=ANY),
    Claim("Table 4: without BDK, ours has the best Score on most triggers (one victim per trigger, 3 draws of D_U)", "Table 4", "7 of 8 triggers",
          _T34, f"{_T34}_ours_best_count_nbdk", majority(), victims=ANY),
    Claim("Table 4: without BDK, ours fails on Narcissus (Score < 30)", "Table 4", "17.73",
          _T34, f"{_T34}_narcissus_nbdk_ours", at_most(30, "far below the other triggers' 80–95"), "Score",
          victims="narcissus,"),
    Claim("Table 5: with BDK the result does not depend on the number of samples", "Table 5, §4.3",
          "ASR 0 for 2 … 5000", "08_table5_samples", "08_table5_samples_bdk_independent",
          is_value(True, "chapter 8's flatness test")),
    Claim("Table 5: without BDK, two samples are the worst case", "Table 5, §4.3", "ASR 24.6 % with 2 samples",
          "08_table5_samples", "08_table5_samples_nbdk_two_worst", is_value(True, "chapter 8's ranking")),
    Claim("Table 5: without BDK, four samples suffice", "Table 5, §4.3", "ASR 0.92 % with 4 samples",
          "08_table5_samples", "08_table5_samples_nbdk_four_enough", is_value(True, "chapter 8's bar")),
    Claim("Table 8: lr 1e-2 is the best repair rate with BDK", "Table 8, B.2", "1e-2",
          "10_table8_repair", "10_table8_repair_lr_bdk", near_best(), "Score"),
    Claim("Table 8: lr 1e-2 is the best repair rate without BDK", "Table 8, B.2", "1e-2",
          "10_table8_repair", "10_table8_repair_lr_nbdk", near_best(), "Score"),
    Claim("Table 9: β = −1 with α ∈ {−1, 0} is best; adding the activation fails (4 checks)", "Table 9, B.4",
          "4 of 4", "12_table9_alpha_beta", "12_table9_alpha_beta_claims_held",
          at_least(4, "all four of the paper's findings"), "of 4"),
    Claim("Table 10: without BDK, ours is best on average over target classes (one victim per class and draw of D_U)", "Table 10, B.5",
          "82.69 vs NAD 68.22", _T10, f"{_T10}_nbdk_ours_margin", beats(), "Score points", victims=ANY),
    Claim("Table 10: with BDK, actFT is (slightly) best on average (one victim per class and draw of D_U)", "Table 10, B.5",
          "93.94 vs ours 90.79", _T10, f"{_T10}_bdk_actft_margin", beats(), "Score points", victims=ANY),
    *[Claim(f"Tables 6/7: the edit is faster than {m} at its reference schedule by the paper's ratio (mean over "
            "the budget curves' D_U sizes)", "Tables 6/7",
            "the paper's ratio: see ours",
            _EFF, f"{_EFF}_speed_{m.lower()}", speed_ratio(), "×") for m in ("actFT", "BaEraser", "basicFT", "NAD")],
    Claim("Tables 6/7: the edit's Score is flat across D_U sizes (BDK)", "Tables 6/7", "92.3–92.5",
          _EFF, f"{_EFF}_score_flat_bdk", is_value("yes", "chapter 9's flatness bar")),
    Claim("Table 1 on CIFAR10/100, CINIC10, TinyImageNet; Table 2 on CIFAR10 at full width",
          "Tables 1/2", "see chapters 5/6", _T1, "–", is_value(True), victims=None,
          untestable="needs CIFAR10 (and the others) + a GPU: run params/paper"),
]

CHECKS: list[Claim] = [
    Claim("Set-up: the base victim carries a strong backdoor (ASR ≥ 90 %)", "§4.1 base configuration", "94.53 %",
          "02_base_configuration", "02_victim_asr", at_least(90, "the paper's victims are at 94–100 %"), "%",
          victims=None),
    Claim("Self-check: the default reading of §3 matches the paper's observations on both victims",
          "§3 (ambiguities)", "–", "04_reading_the_method", "04_default_matches",
          at_least(4, "all four observations"), "of 4 cases", victims=None),
    Claim("Self-check: … and is the best reading or ties with it", "§3 (ambiguities)", "–", "04_reading_the_method",
          "04_default_supported", is_value(True, "the reading was chosen by these criteria"), victims=None),
    Claim("Self-check: the default reading holds on victims it was not chosen on", "§3 (ambiguities)", "–",
          "04_reading_the_method", "04_default_confirmed", is_value(True, "held-out victims"), victims=None),
]


def _checkout_root() -> Path:
    """The source checkout this package was imported from (the directory holding ``pyproject.toml``)."""
    return Path(__file__).resolve().parent.parent


def resolve_executed_dir(executed: str | Path) -> Path:
    """The directory of executed chapters named by ``executed``.

    A relative path is tried against the working directory first, then against the source checkout: papermill
    runs the summary from the repository root but nbval runs it from the notebook's own directory, and both must
    read the same chapters. A directory found in neither place is an error, not an all-"not run" table.
    """
    path = Path(executed)
    if path.is_dir():
        return path
    tried = [str(path.resolve())]
    if not path.is_absolute():
        beside = _checkout_root() / path
        if beside.is_dir():
            return beside
        tried.append(str(beside))
    raise FileNotFoundError(f"executed_dir {str(executed)!r}: no such directory (tried {', '.join(tried)}); "
                            "execute the chapters first (make book) or pass the folder that holds them")


def read_results(executed: str | Path, stem: str) -> dict[str, Any] | None:
    """The results chapter ``stem`` wrote in ``executed`` (``{"values", "victims"}``), or None if it did not run."""
    path = resolve_executed_dir(executed) / f"{stem}.results.json"
    return Results.read(path) if path.is_file() else None


def _describe(value: Any, unit: str) -> str:
    """Our number as the table shows it: mean ± std over seeds (n) where there are several."""
    def num(v: Any) -> str:
        s = stat(v)
        return str(s) + (f" (n={s.n})" if s.n > 1 else "")

    if isinstance(value, Mapping):
        if "ctca" in value:
            return f"{num(value['ctca'])} (victim {float(value['victim_ctca']):.2f})"
        if "at" in value:
            return f"{num(value['at'])} (grid best {num(value['best'])})"
        if "ours" in value:
            return f"{num(value['ours'])}× (paper {float(value['paper']):.1f}×)"
        if "wins" in value:
            return f"{value['wins']} of {value['of']} usable"
        if "margin" in value:
            return f"{num(value['margin'])} (tie ±{float(value.get('tie', 0)):.2f})"
    if isinstance(value, (bool, str, int)):
        return f"{value} {unit}".strip() if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return f"{num(value)} {unit}".strip()


def _judge(c: Claim, data: dict[str, Any] | None) -> tuple[str, Verdict]:
    if c.untestable:
        return "–", Verdict(NOT_TESTABLE, c.untestable)
    if data is None:
        return "not run", Verdict(NOT_TESTABLE, "the chapter was not executed in this build")
    values = data["values"]
    value = c.key(values) if callable(c.key) else values.get(c.key)
    try:
        ours = "–" if value is None else _describe(value, c.unit)
    except (TypeError, ValueError, KeyError):   # NaN or a malformed value: shown as is, judged "not testable" below
        ours = repr(value)
    if c.victims is not None:   # the strength gate comes first: a weak victim makes any number moot
        victims = data.get("victims", {})
        if c.victims not in (ALL, ANY):
            victims = {name: v for name, v in victims.items() if name.startswith(c.victims)}
        if not victims:
            return ours, Verdict(NOT_TESTABLE, "the chapter recorded no victim strength for the gate")
        failed = {name: victim_gate(**v) for name, v in victims.items()}
        failed = {name: f for name, f in failed.items() if f is not None}
        if (c.victims == ANY and len(failed) == len(victims)) or (c.victims != ANY and failed):
            name, first = next(iter(failed.items()))
            return ours, Verdict(NOT_TESTABLE, f"{name}: {first.reason}")
    if value is None:
        return "–", Verdict(NOT_TESTABLE, "the chapter recorded no number for this claim")
    return ours, c.rule.judge(value)


def summary_table(executed: str | Path, claims: list[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim: where, the paper's number, ours, the rule and why, the status and its reason, the chapter.

    ``executed`` is resolved by :func:`resolve_executed_dir`; each chapter's ``<stem>.results.json`` there is read
    once. A chapter that was not executed makes its claims "not testable" with that reason.
    """
    executed = resolve_executed_dir(executed)
    loaded: dict[str, dict | None] = {}
    rows = []
    for c in claims:
        if c.chapter not in loaded:
            loaded[c.chapter] = read_results(executed, c.chapter)
        ours, verdict = _judge(c, loaded[c.chapter])
        rows.append({"claim": c.claim, "where": c.where, "paper": c.paper, "ours": ours, "rule": c.rule.text,
                     "why": c.rule.why, "status": verdict.status, "reason": verdict.reason, "chapter": c.chapter})
    return pd.DataFrame(rows)


def counts(table: pd.DataFrame) -> dict[str, int]:
    """``{status: number of rows}`` for every status, in :data:`actedit.verdicts.STATUSES` order."""
    found = table["status"].value_counts()
    return {s: int(found.get(s, 0)) for s in STATUSES}


COLOURS = {REPRODUCED: "#d4edda", NOT_REPRODUCED: "#f8d7da", INCONCLUSIVE: "#fff3cd", NOT_TESTABLE: "#e2e3e5"}


def styled(table: pd.DataFrame, uuid: str = "summary"):
    """``table`` as a pandas Styler: status second and coloured by status, the rule with its justification in small
    type, the chapter a link to its page; every text escaped for HTML."""
    def colour(status: str) -> str:
        return f"background-color: {COLOURS.get(status, '')}; font-weight: bold"

    shown = table.copy()
    shown["status"] = [f"{s}: {r}" if r else s for s, r in zip(table["status"], table["reason"])]
    shown["rule"] = [f"{html.escape(r)}<br><small><i>{html.escape(w)}</i></small>"
                     for r, w in zip(table["rule"], table["why"])]
    shown = shown[["claim", "status", "paper", "ours", "rule", "where", "chapter"]]
    statuses = list(table["status"])
    formats = {c: (lambda v: html.escape(str(v))) for c in ("claim", "status", "paper", "ours", "where")}
    formats["chapter"] = lambda stem: f'<a href="{html.escape(stem)}.html">{html.escape(stem[:2])}</a>'
    return (shown.style.hide(axis="index").set_uuid(uuid).format(formats)
            .apply(lambda col: [colour(s) for s in statuses], subset=["status"])
            .set_table_styles([{"selector": "td, th", "props": "font-size: 0.8em; vertical-align: top; padding: 2px 4px"}])
            .set_table_attributes('class="actedit-summary"'))
