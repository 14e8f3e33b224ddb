"""The reproduction summary: every claim of the paper, the paper's number, ours, and whether it reproduced.

Offers :func:`read_glued`, :class:`Claim`, :data:`CLAIMS` and :func:`summary_table`. Chapters publish their headline
numbers with ``myst_nb.glue(name, value, display=False)``; :func:`read_glued` reads those values back out of the
executed notebooks (the ``scrapbook`` metadata myst-nb writes), so the summary chapter never recomputes or retypes
a number. Each :class:`Claim` names the chapter and glue key that hold our number, the paper's number, and the
criterion that decides "reproduced".
"""
from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

__all__ = ["read_glued", "Claim", "CLAIMS", "summary_table", "resolve_executed_dir"]

_PREFIX = "application/papermill.record/"


def read_glued(notebook: str | Path) -> dict[str, object]:
    """``{name: value}`` of every ``glue``-d variable in an executed notebook (values parsed from ``text/plain``)."""
    data = json.loads(Path(notebook).read_text())
    out: dict[str, object] = {}
    for cell in data.get("cells", []):
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            bundle = output.get("data", {})
            text = bundle.get(meta.get("mime_prefix", "") + "text/plain")
            if text is None:
                continue
            text = "".join(text) if isinstance(text, list) else text
            try:
                out[meta["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                out[meta["name"]] = text.strip("'\"")
    return out


@dataclass(frozen=True)
class Claim:
    """One claim of the paper checked by one chapter."""

    claim: str                      # what the paper says, in words
    where: str                      # paper location (table/section)
    paper: str                      # the paper's number(s), as printed
    chapter: str                    # notebook stem that computes ours
    key: str                        # glue key of our number
    reproduced: Callable[[object], bool]  # criterion applied to our number
    unit: str = ""


def _le(x: float) -> Callable[[object], bool]:
    return lambda v: isinstance(v, (int, float)) and not math.isnan(v) and v <= x


def _ge(x: float) -> Callable[[object], bool]:
    return lambda v: isinstance(v, (int, float)) and not math.isnan(v) and v >= x


def _true(v: object) -> bool:
    return v is True or v == "True" or v == 1


CLAIMS: list[Claim] = [
    Claim("The victim carries a strong backdoor (ASR ≥ 90 %)", "§4.1 base configuration", "94.53 %",
          "02_base_configuration", "02_victim_asr", _ge(90), "%"),
    Claim("BDK editing removes the backdoor (ASR ≈ 0)", "Table 1/2, §3.1", "0.0 %",
          "03_method", "03_asr_bdk", _le(1), "%"),
    Claim("BDK editing also removes the target class (CTCA ≈ 0)", "Table 1/2", "0.0 %",
          "03_method", "03_ctca_bdk", _le(5), "%"),
    Claim("BDK editing keeps most accuracy: ACC ≥ 87 % of the victim's", "Table 1 (MNIST 86.9 %, CIFAR10 92.9 %)",
          "86.9–92.9 % of the victim's", "03_method", "03_acc_ratio_bdk", _ge(87), "% of victim"),
    Claim("A few images suffice: BDK with 64 images, ASR ≤ 1 %", "§3, Table 5", "0.0 % (64 images)",
          "03_method", "03_asr_few", _le(1), "%"),
    Claim("… and ACC ≥ 87 % of the victim's with 64 images", "Table 5", "64.7 / 70.5 = 91.8 %",
          "03_method", "03_acc_ratio_few", _ge(87), "% of victim"),
    Claim("Repair (lr 1e-2) restores part of the target class after BDK (CTCA ≥ 20 %)", "Table 1/8",
          "0 → 42.07 % (CIFAR10)", "03_method", "03_ctca_repair_bdk", _ge(20), "%"),
    Claim("Repair (lr 1e-2) restores part of the target class after ¬BDK (CTCA ≥ 20 %)", "Table 1/8",
          "0.14 → 55.02 % (CIFAR10)", "03_method", "03_ctca_repair_nbdk", _ge(20), "%"),
    Claim("¬BDK editing removes the backdoor on this data (ASR ≤ 1 %)", "Table 1 (CIFAR10 0.3 %; MNIST 66.8 %)",
          "0.3 % (colour) / 66.81 % (MNIST)", "03_method", "03_asr_nbdk", _le(1), "%"),
    Claim("λ = 1.0 gives the best Score with BDK (BN frozen)", "Fig. 4, B.3", "λ = 1.0",
          "11_fig4_gamma_lambda", "11_best_lam_bdk", lambda v: v == 1.0),
    Claim("λ = 1.0 gives the best Score without BDK (BN updated)", "Fig. 4, B.3", "λ = 1.0",
          "11_fig4_gamma_lambda", "11_best_lam_nbdk", lambda v: v == 1.0),
    Claim("With BDK, frozen BN moving averages beat updated ones (Score difference ≥ 0)", "Fig. 4, B.3", "frozen better",
          "11_fig4_gamma_lambda", "11_bdk_frozen_minus_update", _ge(0), "points"),
    Claim("Without BDK, updated BN moving averages beat frozen ones (Score difference ≥ 0)", "Fig. 4, B.3",
          "updated better", "11_fig4_gamma_lambda", "11_nbdk_update_minus_frozen", _ge(0), "points"),
    Claim("¬BDK editing points at the target class (largest per-class drop = y_t)", "§4.3", "80 %",
          "14_detection", "14_detection_target_accuracy", _ge(80), "%"),
    Claim("Backdoor detection accuracy on poisoned models", "§4.3", "67 %",
          "14_detection", "14_detection_poisoned_accuracy", _ge(67), "%"),
    Claim("Backdoor detection accuracy on clean models (called clean)", "§4.3", "80 %",
          "14_detection", "14_detection_clean_accuracy", _ge(80), "%"),
    Claim("Table 1: without BDK the edit fails on MNIST (ASR stays high)", "Table 1, §4.2", "66.81 %",
          "05_table1_datasets", "05_table1_datasets_mnist_nbdk_base_asr", _ge(30), "%"),
    Claim("Table 1: repair restores the target class on MNIST after BDK (CTCA ≥ half the victim's)", "Table 1",
          "0 → 96.09 %", "05_table1_datasets", "05_table1_datasets_mnist_bdk_repair_ctca", _ge(47), "%"),
    Claim("Table 1 pattern on Fashion-MNIST: repair after BDK brings CTCA back (≥ 20 %)", "Table 1 (ours, extra)",
          "0 → 42.07 % (CIFAR10)", "05_table1_datasets", "05_table1_datasets_fashion_mnist_bdk_repair_ctca",
          _ge(20), "%"),
    Claim("Table 3: with BDK, ours has the best Score on most (more than half of the) triggers", "Table 3",
          "7 of 8 triggers", "07_tables3_4_triggers", "07_tables3_4_triggers_ours_best_bdk", _ge(5), "of 8"),
    Claim("Table 4: without BDK, ours has the best Score on most (more than half of the) triggers", "Table 4",
          "7 of 8 triggers", "07_tables3_4_triggers", "07_tables3_4_triggers_ours_best_nbdk", _ge(5), "of 8"),
    Claim("Table 4: without BDK, ours fails on Narcissus (Score < 30)", "Table 4", "17.73",
          "07_tables3_4_triggers", "07_tables3_4_triggers_narcissus_nbdk_ours", _le(30)),
    Claim("Table 5: with BDK the result does not depend on the number of samples", "Table 5, §4.3", "ASR 0 for 2 … 5000",
          "08_table5_samples", "08_table5_samples_bdk_independent", _true),
    Claim("Table 5: without BDK, two samples are the worst case", "Table 5, §4.3", "ASR 24.6 % with 2 samples",
          "08_table5_samples", "08_table5_samples_nbdk_two_worst", _true),
    Claim("Table 5: without BDK, four samples suffice", "Table 5, §4.3", "ASR 0.92 % with 4 samples",
          "08_table5_samples", "08_table5_samples_nbdk_four_enough", _true),
    Claim("Table 8: lr 1e-2 is the best repair rate with BDK", "Table 8, B.2", "1e-2",
          "10_table8_repair", "10_table8_repair_bdk_best_lr", lambda v: v == 0.01),
    Claim("Table 8: lr 1e-2 is the best repair rate without BDK", "Table 8, B.2", "1e-2",
          "10_table8_repair", "10_table8_repair_nbdk_best_lr", lambda v: v == 0.01),
    Claim("Table 9: β = −1 with α ∈ {−1, 0} is best; adding the activation fails (4 checks)", "Table 9, B.4",
          "4 of 4", "12_table9_alpha_beta", "12_table9_alpha_beta_claims_held", _ge(4), "of 4"),
    Claim("Table 10: without BDK, ours is best on average over target classes", "Table 10, B.5", "82.69 vs NAD 68.22",
          "13_table10_target_class", "13_table10_target_class_nbdk_ours_best_on_average", _true),
    Claim("Table 10: with BDK, actFT is (slightly) best on average", "Table 10, B.5", "93.94 vs ours 90.79",
          "13_table10_target_class", "13_table10_target_class_bdk_actft_best_on_average", _true),
    Claim("Tables 6/7: the edit is faster than every baseline at every D_U size", "Tables 6/7", "0.38 s vs 2.4–623 s",
          "09_tables6_7_efficiency", "09_tables6_7_efficiency_edit_faster_than_every_baseline", _true),
    Claim("Tables 6/7: the edit's Score is flat across D_U sizes (BDK)", "Tables 6/7", "92.3–92.5",
          "09_tables6_7_efficiency", "09_tables6_7_efficiency_score_flat_bdk", lambda v: v == "yes"),
    Claim("The default reading of §3 matches the paper's observations on both victims", "§3 (ambiguities)",
          "–", "04_reading_the_method", "04_default_matches", _ge(4), "of 4 cases"),
    Claim("… and is the best reading or ties with it", "§3 (ambiguities)", "–", "04_reading_the_method",
          "04_default_supported", _true),
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


def summary_table(executed: str | Path, claims: list[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim: the paper's number, ours (from the executed chapter in ``executed``) and the verdict.

    ``executed`` is resolved by :func:`resolve_executed_dir`. A chapter that was not executed (or does not glue
    the key) gives "not run" rather than a verdict.
    """
    executed = resolve_executed_dir(executed)
    cache: dict[str, dict] = {}
    rows = []
    for c in claims:
        path = executed / f"{c.chapter}.ipynb"
        if c.chapter not in cache:
            cache[c.chapter] = read_glued(path) if path.exists() else {}
        value = cache[c.chapter].get(c.key)
        if value is None:
            ours, verdict = "not run", "–"
        else:
            ours = f"{value:.2f} {c.unit}".strip() if isinstance(value, float) else f"{value} {c.unit}".strip()
            verdict = "reproduced" if c.reproduced(value) else "not reproduced"
        rows.append({"claim": c.claim, "paper": c.paper, "where": c.where, "ours": ours, "verdict": verdict,
                     "chapter": c.chapter})
    return pd.DataFrame(rows)
