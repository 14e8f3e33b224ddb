"""Tests of the summary (glue read-back, verdicts) and of the readings' ranking."""
import json
import math

import nbformat
import pandas as pd
import pytest

from actedit.readings import READINGS, rank_readings, reading_config
from actedit.summary import CLAIMS, Claim, read_glued, summary_table


def _glued_notebook(path, values: dict) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": repr(v)},
                                           metadata={"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}})
                    for k, v in values.items()]
    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text="noise\n"))
    nb.cells.append(cell)
    nbformat.write(nb, str(path))


def test_read_glued_parses_values(tmp_path):
    _glued_notebook(tmp_path / "a.ipynb", {"x": 1.5, "name": "params · output · channel", "n": 3})
    assert read_glued(tmp_path / "a.ipynb") == {"x": 1.5, "name": "params · output · channel", "n": 3}


def test_summary_verdicts_follow_the_numbers(tmp_path):
    claims = [Claim("low", "T1", "0", "ch", "asr", lambda v: v <= 1.0, "%"),
              Claim("high", "T1", "90", "ch", "acc", lambda v: v >= 90.0, "%"),
              Claim("absent", "T2", "1", "missing", "k", lambda v: True)]
    _glued_notebook(tmp_path / "ch.ipynb", {"asr": 0.5, "acc": 80.0})
    table = summary_table(tmp_path, claims)
    assert table["verdict"].tolist() == ["reproduced", "not reproduced", "–"]
    assert table["ours"].tolist()[:2] == ["0.50 %", "80.00 %"]


def test_summary_finds_a_relative_dir_from_another_working_directory(tmp_path, monkeypatch):
    # nbval runs the summary from book/_executed/, papermill from the root: a relative executed_dir must work in both
    import actedit.summary as summary
    (tmp_path / "book" / "_executed").mkdir(parents=True)
    _glued_notebook(tmp_path / "book" / "_executed" / "ch.ipynb", {"asr": 0.5})
    claims = [Claim("low", "T1", "0", "ch", "asr", lambda v: v <= 1.0, "%")]
    monkeypatch.setattr(summary, "_checkout_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path / "book" / "_executed")
    assert summary_table("book/_executed", claims)["verdict"].tolist() == ["reproduced"]
    monkeypatch.chdir(tmp_path)
    assert summary_table("book/_executed", claims)["verdict"].tolist() == ["reproduced"]


def test_summary_refuses_a_missing_dir(tmp_path, monkeypatch):
    import actedit.summary as summary
    monkeypatch.setattr(summary, "_checkout_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="executed_dir 'nowhere'"):
        summary_table("nowhere")


def test_every_claim_names_a_chapter_source():
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    for claim in CLAIMS:
        assert (root / "notebooks" / f"{claim.chapter}.md").exists(), claim.chapter


def test_readings_cover_every_combination_and_build_configs():
    assert len(READINGS) == len(set(READINGS)) == 24
    cfg = reading_config(("tensors", "input", "flat"))
    assert (cfg.layers, cfg.activation, cfg.pooling) == ("tensors", "input", "flat")


def test_rank_readings_prefers_matching_readings():
    rows = []
    for layers, asr, ctca, ratio, sc in [("params", 0.0, 0.0, 0.9, 90.0), ("modules", 0.0, 0.0, 0.5, 50.0),
                                         ("tensors", 50.0, 80.0, 1.0, 40.0)]:
        for setting in ("BDK", "¬BDK"):
            rows.append({"layers": layers, "activation": "output", "pooling": "channel", "setting": setting,
                         "ASR": asr, "ACC": 80.0, "CTCA": ctca, "ACC ratio": ratio, "Score": sc})
    ranked = rank_readings(pd.DataFrame(rows))
    assert ranked["layers"].tolist() == ["params", "modules", "tensors"]
    assert ranked["matches"].tolist() == [2, 1, 0]
