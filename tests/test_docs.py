"""The book's text: every parameter file it names exists, every chapter opens with its run box, every citation
resolves to references.bib (rendered by sphinxcontrib-bibtex on book/references.md)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("*.md"))
TEXTS = [*CHAPTERS, *sorted((ROOT / "book").glob("*.md")), ROOT / "README.md"]


def test_every_params_path_named_in_the_book_exists():
    named = {}
    for path in TEXTS:
        for match in re.finditer(r"params/[A-Za-z0-9_./-]*", path.read_text()):
            named.setdefault(match.group(0).rstrip("./"), path.relative_to(ROOT).as_posix())
    assert "params/paper/02_base_configuration.yml" in named and "params/paper" in named
    missing = {p: where for p, where in named.items() if not (ROOT / p).exists()}
    assert not missing, f"named but missing: {missing}"


def test_every_params_file_is_valid_yaml_for_an_existing_chapter():
    stems = {p.stem for p in CHAPTERS}
    for path in sorted((ROOT / "params" / "paper").glob("*.yml")):
        assert path.stem in stems, f"{path.name}: no chapter notebooks/{path.stem}.md"
        values = yaml.safe_load(path.read_text())
        assert isinstance(values, dict) and values, path.name
        names = set(re.findall(r"^(\w+)\s*=", _parameters_cell(ROOT / "notebooks" / f"{path.stem}.md"), re.M))
        assert set(values) <= names, f"{path.name} sets parameters the chapter does not have: {set(values) - names}"


def _parameters_cell(chapter: Path) -> str:
    match = re.search(r"```\{code-cell\}[^\n]*\n:tags: \[parameters\]\n(.*?)\n```", chapter.read_text(), re.S)
    assert match, f"{chapter.name}: no parameters cell"
    return match.group(1)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_opens_with_its_run_box(chapter):
    lines = chapter.read_text().splitlines()
    h1 = next(i for i, line in enumerate(lines) if line.startswith("# "))
    following = [line for line in lines[h1 + 1:] if line.strip()]
    assert following[0] == ":::{admonition} Running this chapter", f"{chapter.name}: the run box must follow the H1"
    box = "\n".join(following[:following.index(":::")])
    for part in ("**What it runs:**", "**Cold cost:**", "2-core", "**Paper scale:**",
                 "PARAMS=params/paper make book", f"--only {chapter.stem}", f"notebooks/{chapter.stem}.md",
                 "papermill "):
        assert part in box, f"{chapter.name}: the run box lacks {part!r}"
    assert re.search(r"about \d+ s on the 2-core build machine \(execute \d+ s \+ nbval \d+ s", box)
    assert len(re.findall(r"^\*\*Cold cost:\*\* ", box, re.MULTILINE)) == 1
    paper_file = ROOT / "params" / "paper" / f"{chapter.stem}.yml"
    assert (f"-f params/paper/{chapter.stem}.yml" in box) == paper_file.exists()


def _bib_keys() -> set[str]:
    from pybtex.database import parse_file

    return set(parse_file(str(ROOT / "references.bib")).entries)


def test_every_citation_is_in_references_bib():
    keys = _bib_keys()
    cited = {}
    for path in TEXTS:
        for match in re.finditer(r"\{cite(?::\w+)?\}`([^`]+)`", path.read_text()):
            for key in match.group(1).split(","):
                cited.setdefault(key.strip(), path.name)
    assert {"gu2019badnets", "zeng2023narcissus", "li2021nad", "he2016resnet"} <= set(cited)
    unknown = {k: where for k, where in cited.items() if k not in keys}
    assert not unknown, f"cited but not in references.bib: {unknown}"
    for path in TEXTS:   # the hand-made anchors of the old references page are gone
        assert not re.search(r"\]\(ref-[a-z0-9]+\)", path.read_text()), path.name


def test_the_bibliography_is_generated_from_references_bib():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["bibtex_bibfiles"] == ["references.bib"]
    assert "sphinxcontrib.bibtex" in config["sphinx"]["config"]["extensions"]
    page = (ROOT / "book" / "references.md").read_text()
    assert page.startswith("(references)=\n") and "```{bibliography}" in page
    assert "book/references" in (ROOT / "_toc.yml").read_text()
    assert len(_bib_keys()) >= 15
