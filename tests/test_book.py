"""The book pipeline and the built book.

- Stamp logic of ``scripts/build_book.py`` (fast, no browser): a tiny notebook is executed once, skipped
  the second time, and executed again after a parameter or source change.
- The offline browser test (marker ``book``, needs ``make book`` first): every page of ``_toc.yml`` is
  opened from disk in headless Debian Chromium with the network off (unresolvable hosts, a dead loopback
  proxy). Math must be typeset by MathJax, every figure and table the executed notebook produced must be
  in the page, widgets must render, and no request may leave the machine: Chromium's net log must hold
  no http(s) request made by the page, and the DOM no script, style or image from anywhere but disk.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"


def _load_build_book():
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_book", module)
    spec.loader.exec_module(module)
    return module


build_book = _load_build_book()


# ------------------------------------------------------------------------------------ stamp logic

TINY = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Tiny

```{code-cell} ipython3
:tags: [parameters]

x = 1
```

```{code-cell} ipython3
print(f"x = {x}")
```
"""


def _outputs(path: Path) -> str:
    notebook = json.loads(path.read_text())
    return "".join(out.get("text", "") if isinstance(out.get("text"), str) else "".join(out.get("text", []))
                   for cell in notebook["cells"] for out in cell.get("outputs", []))


@pytest.fixture
def tiny_book(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "tiny.md").write_text(TINY)
    (tmp_path / "actedit").mkdir()
    (tmp_path / "actedit" / "__init__.py").write_text("VALUE = 1\n")
    (tmp_path / "requirements.lock").write_text("x==1\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/_executed/tiny\nchapters:\n  - file: book/references\n")
    return tmp_path


def test_chapters_come_from_the_toc(tiny_book):
    (chapter,) = build_book.chapters_from_toc(tiny_book)
    assert chapter.stem == "tiny"
    assert chapter.source == tiny_book / "notebooks" / "tiny.md"
    assert chapter.executed == tiny_book / "book" / "_executed" / "tiny.ipynb"
    assert chapter.stamp.name == "tiny.stamp.json"


def test_a_toc_entry_without_source_is_an_error(tiny_book):
    (tiny_book / "_toc.yml").write_text("format: jb-book\nroot: book/_executed/missing\n")
    with pytest.raises(FileNotFoundError, match="notebooks/missing.md"):
        build_book.chapters_from_toc(tiny_book)


def test_params_come_from_a_yaml_file_named_like_the_notebook(tmp_path):
    (tmp_path / "tiny.yml").write_text("x: 3\nname: paper\n")
    assert build_book.load_params(tmp_path, "tiny") == {"x": 3, "name": "paper"}
    assert build_book.load_params(tmp_path, "other") == {}
    assert build_book.load_params(None, "tiny") == {}
    (tmp_path / "bad.yml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        build_book.load_params(tmp_path, "bad")


def test_the_hash_covers_source_params_package_and_lock(tiny_book):
    (chapter,) = build_book.chapters_from_toc(tiny_book)
    base = build_book.input_hash(chapter, {}, tiny_book)
    assert build_book.input_hash(chapter, {}, tiny_book) == base
    assert build_book.input_hash(chapter, {"x": 2}, tiny_book) != base
    (tiny_book / "actedit" / "__init__.py").write_text("VALUE = 2\n")
    changed_package = build_book.input_hash(chapter, {}, tiny_book)
    assert changed_package != base
    (tiny_book / "requirements.lock").write_text("x==2\n")
    assert build_book.input_hash(chapter, {}, tiny_book) != changed_package


def test_executed_once_skipped_then_rerun_after_a_parameter_change(tiny_book):
    (chapter,) = build_book.chapters_from_toc(tiny_book)
    log: list[str] = []
    assert build_book.execute(chapter, {}, root=tiny_book, log=log.append) is True
    assert "x = 1" in _outputs(chapter.executed)
    assert json.loads(chapter.stamp.read_text())["hash"] == build_book.input_hash(chapter, {}, tiny_book)

    assert build_book.execute(chapter, {}, root=tiny_book, log=log.append) is False
    assert any("up to date" in line for line in log)

    assert build_book.execute(chapter, {"x": 2}, root=tiny_book, log=log.append) is True
    assert "x = 2" in _outputs(chapter.executed)
    assert build_book.execute(chapter, {"x": 2}, root=tiny_book, log=log.append) is False

    chapter.source.write_text(TINY.replace('print(f"x = {x}")', 'print(f"x is {x}")'))
    assert build_book.execute(chapter, {"x": 2}, root=tiny_book, log=log.append) is True
    assert "x is 2" in _outputs(chapter.executed)


def test_a_failing_notebook_names_itself_and_leaves_no_stamp(tiny_book):
    (chapter,) = build_book.chapters_from_toc(tiny_book)
    chapter.source.write_text(TINY.replace('print(f"x = {x}")', 'raise RuntimeError("broken on purpose")'))
    with pytest.raises(build_book.BuildError, match="notebook tiny .*failed") as error:
        build_book.execute(chapter, {}, root=tiny_book, log=lambda _: None)
    assert "broken on purpose" in str(error.value)
    assert not chapter.stamp.exists()
    assert (tiny_book / "_build" / "failed" / "tiny.ipynb").is_file()


def test_the_hash_covers_the_kernels_thread_count(tiny_book, monkeypatch):
    # torch's CPU results depend on the thread count: a chapter executed with another count is stale
    (chapter,) = build_book.chapters_from_toc(tiny_book)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    default = build_book.input_hash(chapter, {}, tiny_book)
    assert build_book._kernel_env()["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert build_book.input_hash(chapter, {}, tiny_book) != default


# ------------------------------------------------------------------------------------- scheduling


def _chapter_book(tmp_path, fronts: dict[str, str]) -> list:
    """A book of chapters named like ``fronts``' keys whose front matter ends with the given ``actedit:`` lines."""
    (tmp_path / "notebooks").mkdir(parents=True)
    for stem, extra in fronts.items():
        head, body = TINY.split("---\n\n", 1)
        (tmp_path / "notebooks" / f"{stem}.md").write_text(f"{head}{extra}---\n\n{body}")
    stems = list(fronts)
    toc = f"format: jb-book\nroot: book/_executed/{stems[0]}\nchapters:\n"
    toc += "".join(f"  - file: book/_executed/{stem}\n" for stem in stems[1:])
    (tmp_path / "_toc.yml").write_text(toc)
    return build_book.chapters_from_toc(tmp_path)


def test_dependencies_come_from_the_front_matter(tmp_path):
    chapters = _chapter_book(tmp_path, {
        "a": "",
        "b": "actedit:\n  after: [a]\n  cost: 30\n",
        "c": "actedit:\n  after: [b]\n",
        "z": "actedit:\n  depends_on_chapters: true\n",
    })
    assert build_book.dependencies(chapters) == {"a": set(), "b": {"a"}, "c": {"b"}, "z": {"a", "b", "c"}}
    assert build_book.chapter_options(chapters[1]) == {"after": ["a"], "cost": 30}
    # --only b: a is known but not selected, so b does not wait for it
    assert build_book.dependencies([chapters[1]], known=["a", "b", "c", "z"]) == {"b": set()}


@pytest.mark.parametrize("fronts, message", [
    ({"a": "actedit:\n  after: [nope]\n"}, "names nope, not in _toc.yml"),
    ({"a": "actedit:\n  after: a\n"}, "must be a list"),
    ({"a": "actedit:\n  after: [b]\n", "b": "actedit:\n  after: [a]\n"}, "cycle: a -> b -> a"),
])
def test_bad_dependencies_are_refused(tmp_path, fronts, message):
    chapters = _chapter_book(tmp_path, fronts)
    with pytest.raises(ValueError, match=message):
        build_book.dependencies(chapters)


def _fake_steps(monkeypatch, tmp_path, fail: set[str] = frozenset()):
    """Replace run_step with one that appends 'start/end kind stem' lines to a file (workers are processes)."""
    journal = tmp_path / "journal.txt"

    def fake(step):
        with open(journal, "a") as f:
            f.write(f"start {step.kind} {step.chapter.stem}\n")
        time.sleep(0.5)   # long enough that a second worker starts while the first still runs, even on a busy machine
        with open(journal, "a") as f:
            f.write(f"end {step.kind} {step.chapter.stem}\n")
        if step.chapter.stem in fail:
            raise build_book.BuildError(f"notebook {step.chapter.stem} failed on purpose")
        return True, 0.5

    monkeypatch.setattr(build_book, "run_step", fake)
    return journal


@pytest.mark.parametrize("jobs", [1, 2])
def test_steps_run_after_what_they_wait_for_and_the_unlocking_chapter_first(tmp_path, monkeypatch, jobs):
    chapters = _chapter_book(tmp_path / "book", {
        "a": "actedit:\n  cost: 10\n",
        "big": "actedit:\n  cost: 100\n",
        "b": "actedit:\n  after: [a]\n  cost: 200\n",
        "z": "actedit:\n  depends_on_chapters: true\n",
    })
    journal = _fake_steps(monkeypatch, tmp_path)
    steps = [build_book.Step(kind, c, {}, False) for c in chapters for kind in ("execute", "nbval")]
    messages: list[str] = []
    failed, results = build_book.run_steps(steps, build_book.dependencies(chapters), jobs=jobs,
                                           keep_going=False, log=messages.append)
    assert failed == [] and len(results) == 8
    lines = journal.read_text().splitlines()
    at = {line: i for i, line in enumerate(lines)}
    # a unlocks b (cost 200): it is handed out before big, although big costs more on its own (with two workers
    # both start at once, so the order the scheduler hands them out is what is checked, not the journal's)
    starts = [m.split(" (")[0] for m in messages if m.startswith("== start ")]
    assert starts[0] == "== start execute a"
    if jobs == 1:
        assert lines[0] == "start execute a"
    for stem in ("a", "big", "b"):
        assert at[f"end execute {stem}"] < at[f"start nbval {stem}"]
        assert at[f"end execute {stem}"] < at["start execute z"]
    assert at["end execute a"] < at["start execute b"]
    if jobs == 2:  # two run side by side: big starts before a ends
        assert at["start execute big"] < at["end execute a"]


def test_a_failed_chapter_skips_what_waits_for_it(tmp_path, monkeypatch):
    chapters = _chapter_book(tmp_path / "book", {
        "a": "",
        "b": "actedit:\n  after: [a]\n",
        "c": "",
    })
    journal = _fake_steps(monkeypatch, tmp_path, fail={"a"})
    steps = [build_book.Step("execute", c, {}, False) for c in chapters]
    log: list[str] = []
    failed, _ = build_book.run_steps(steps, build_book.dependencies(chapters), jobs=1, keep_going=True,
                                     log=log.append)
    assert failed == ["a", "b"]
    assert "start execute b" not in journal.read_text()
    assert "start execute c" in journal.read_text()
    assert any("b] skipped" in line for line in log)
    # without --keep-going nothing new starts after the failure
    journal.unlink()
    failed, _ = build_book.run_steps(steps, build_book.dependencies(chapters), jobs=1, keep_going=False,
                                     log=log.append)
    assert "a" in failed and "start execute c" not in journal.read_text()


def test_jobs_default_and_its_bad_value(monkeypatch):
    monkeypatch.setenv("ACTEDIT_BOOK_JOBS", "3")
    assert build_book.default_jobs() == 3
    monkeypatch.setenv("ACTEDIT_BOOK_JOBS", "two")
    with pytest.raises(ValueError, match="ACTEDIT_BOOK_JOBS"):
        build_book.default_jobs()
    monkeypatch.delenv("ACTEDIT_BOOK_JOBS")
    assert 1 <= build_book.default_jobs() <= 4


def test_remote_assets_are_found(tmp_path):
    (tmp_path / "page.html").write_text(
        '<script src="https://cdn.example/x.js"></script><script src="_static/local.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/a.css"><a href="https://example.org">a link</a>')
    (tmp_path / "style.css").write_text('@import url("https://fonts.example/b.css");')
    found = build_book.remote_assets(tmp_path)
    assert sorted(url for _, url in found) == [
        "//fonts.example/a.css", "https://cdn.example/x.js", "https://fonts.example/b.css"]


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        if line.lstrip().startswith("--"):      # a hashed lock's `--hash=sha256:...` continuation lines
            continue
        match = re.match(r"^\s*(?:-\s*)?([A-Za-z0-9_.\-]+)\s*(==|=)\s*([^\s#]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return pins


def test_environment_yml_pins_what_requirements_lock_pins():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    conda = _pins((ROOT / "environment.yml").read_text().splitlines())
    conda.pop("python", None)
    assert {"torch", "torchvision", "jupyter-book", "nbval", "papermill", "jupytext"} <= set(lock)
    assert conda == lock, "environment.yml and requirements.lock disagree: " + ", ".join(
        sorted(f"{name} ({conda.get(name)} vs {lock.get(name)})"
               for name in set(conda) ^ set(lock) | {n for n in conda if conda[n] != lock.get(n)}))


def test_web_assets_are_pinned_for_npm_ci():
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"package.json: pin {name} exactly, not {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


# ----------------------------------------------------------------------------- the built book

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _chromium() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def _pages() -> list[str]:
    """The toc's documents, as paths of built HTML pages relative to _build/html."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [f"{entry.removesuffix('.md').removesuffix('.ipynb')}.html"
            for entry in build_book._toc_files(toc)]


def needs_book(test):
    """Mark ``test`` as a browser test of the built book, skipped with the reason when it cannot run."""
    test = pytest.mark.skipif(_chromium() is None, reason="no Chromium: apt-get install chromium "
                              "(scripts/setup.sh does it when run as root)")(test)
    test = pytest.mark.skipif(not (HTML / "index.html").is_file(),
                              reason="the book is not built: run `make book` first (builds _build/html)")(test)
    return pytest.mark.book(test)


class _Page(HTMLParser):
    """Collects the resource URLs, tag counts and class attributes of a dumped DOM."""

    RESOURCE_ATTRS = {"script": "src", "img": "src", "iframe": "src", "source": "src",
                      "video": "src", "audio": "src", "embed": "src", "link": "href"}

    def __init__(self):
        super().__init__()
        self.resources: list[tuple[str, str]] = []
        self.counts: dict[str, int] = {}
        self.classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.classes.append(attrs.get("class") or "")
        name = self.RESOURCE_ATTRS.get(tag)
        if name and attrs.get(name):
            if tag == "link" and not {"stylesheet", "preload", "icon", "modulepreload", "prefetch"} & set(
                    (attrs.get("rel") or "").split()):
                return
            self.resources.append((tag, attrs[name]))


def _open(url: str, tmp: Path, budget_ms: int = 20000) -> tuple[str, list[str], list[str]]:
    """Load ``url`` in headless Chromium with the network off; (DOM, page http(s) requests, console)."""
    net_log = tmp / "net.json"
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={tmp / 'profile'}",
        # Network off: no host resolves, and anything that tries goes to a dead loopback proxy.
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
        f"--log-net-log={net_log}", "--enable-logging=stderr", "--v=0",
        f"--virtual-time-budget={budget_ms}", "--window-size=1280,1600", "--dump-dom", url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"chromium failed on {url}:\n{result.stderr[-2000:]}"
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, _page_requests(net_log), console


def _page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked the network for (Chromium's own update pings are filtered out)."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start_job and "url" in params:
            if "file://" in str(params.get("network_isolation_key", "")) or params.get("initiator") == "null":
                urls.append(params["url"])
    return urls


def _expected_outputs(page: str) -> dict[str, int]:
    """Figures, tables and widget views the executed notebook behind ``page`` produced."""
    notebook = ROOT / page.removesuffix(".html")
    notebook = notebook.with_suffix(".ipynb")
    counts = {"img": 0, "table": 0, "widget": 0, "rows": 0}
    if not notebook.is_file():
        return counts
    for cell in json.loads(notebook.read_text())["cells"]:
        if {"remove-output", "remove-cell"} & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if any(key.startswith("image/") for key in data):
                counts["img"] += 1
            html = data.get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            if "application/vnd.jupyter.widget-view+json" in data:
                counts["widget"] += 1
            elif "<table" in html:
                counts["table"] += 1
                counts["rows"] += html.count("<tr")
    return counts


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Every toc page, opened once: {page: (static html, DOM, page requests, console lines)}."""
    pages = {}
    for page in _pages():
        path = HTML / page
        assert path.is_file(), f"{page} is in _toc.yml but not built: run `make book`"
        tmp = tmp_path_factory.mktemp(Path(page).stem)
        pages[page] = (path.read_text(encoding="utf-8"), *_open(path.as_uri(), tmp))
    return pages


@needs_book
@pytest.mark.parametrize("page", _pages())
def test_page_loads_nothing_from_the_network(page, rendered):
    _, dom, requests, _ = rendered[page]
    assert requests == [], f"{page} asked the network for {requests}"
    parser = _Page()
    parser.feed(dom)
    assert parser.resources, f"{page}: no scripts or styles at all — is this the built page?"
    page_path = HTML / page
    for tag, url in parser.resources:
        parts = urlsplit(url)
        assert parts.scheme in ("", "file", "data", "blob"), f"{page}: <{tag}> loads {url} from the network"
        assert not url.startswith("//"), f"{page}: <{tag}> loads {url} from the network"
        if parts.scheme in ("", "file"):
            target = Path(unquote(parts.path)) if parts.scheme == "file" else page_path.parent / unquote(parts.path)
            assert target.resolve().exists(), f"{page}: <{tag}> points at {url}, which is not on disk"


@needs_book
@pytest.mark.parametrize("page", _pages())
def test_page_renders_math_figures_tables_and_widgets(page, rendered):
    static, dom, _, console = rendered[page]
    errors = [line for line in console if "Uncaught" in line]
    assert errors == [], f"{page}: JavaScript errors:\n" + "\n".join(errors)

    math_nodes = len(re.findall(r'class="math[ "]', static))
    if math_nodes:
        typeset = dom.count("<mjx-container")
        assert typeset >= math_nodes, f"{page}: {math_nodes} math nodes but {typeset} typeset by MathJax"
        assert "<mjx-merror" not in dom and 'data-mjx-error' not in dom, f"{page}: MathJax reported an error"

    parser = _Page()
    parser.feed(dom)
    expected = _expected_outputs(page)
    assert parser.counts.get("img", 0) >= expected["img"], (
        f"{page}: the notebook produced {expected['img']} figures, the page shows {parser.counts.get('img', 0)}")
    assert parser.counts.get("table", 0) >= expected["table"], (
        f"{page}: the notebook produced {expected['table']} tables, the page shows {parser.counts.get('table', 0)}")
    if expected["widget"]:
        rendered_widgets = sum("jupyter-widgets" in c or "lm-Widget" in c for c in parser.classes)
        assert rendered_widgets >= expected["widget"], (
            f"{page}: {expected['widget']} widget views, {rendered_widgets} rendered by the offline widget manager")


def _summary_first() -> list[str]:
    pages = _pages()
    return sorted(pages, key=lambda page: not page.endswith("16_summary.html"))


@needs_book
@pytest.mark.parametrize("page", _summary_first())
def test_results_tables_render_with_their_rows(page, rendered):
    """Every results table a chapter produced is a rendered <table> on its page, with all its rows."""
    _, dom, _, _ = rendered[page]
    expected = _expected_outputs(page)
    if page.endswith("16_summary.html"):
        from actedit.summary import CLAIMS
        tables = re.findall(r'<table[^>]*class="actedit-summary".*?</table>', dom, flags=re.S)
        assert tables, f"{page}: the claims are not a rendered <table>"
        body = re.search(r"<tbody>(.*?)</tbody>", tables[0], flags=re.S)
        assert body and body.group(1).count("<tr") == len(CLAIMS), f"{page}: not one row per claim"
        assert "| claim |" not in dom, f"{page}: raw Markdown table text on the page"
        assert expected["table"] >= 3, f"{page}: counts, claims and checks should be three tables"
    rows = dom.count("<tr")
    assert rows >= expected["rows"], f"{page}: the notebook's tables have {expected['rows']} rows, the page {rows}"


@needs_book
def test_the_introduction_has_math_a_figure_and_a_table(rendered):
    """The introduction is the one page whose content this test knows: it must show all three."""
    intro = next(page for page in rendered if page.endswith("01_introduction.html"))
    _, dom, _, _ = rendered[intro]
    assert dom.count("<mjx-container") >= 10
    assert re.search(r'<img[^>]+src="[^"]*\.png"', dom)
    assert "<table" in dom and "Reproduction summary" in dom


@pytest.mark.book
@pytest.mark.skipif(_chromium() is None, reason="no Chromium: apt-get install chromium")
def test_the_network_check_sees_a_remote_request(tmp_path):
    """The detector itself works: a page that asks for a CDN script is caught (and nothing leaves)."""
    page = tmp_path / "remote.html"
    page.write_text(textwrap.dedent("""\
        <html><head><script src="https://cdn.example.invalid/x.js"></script></head>
        <body><img src="http://images.example.invalid/i.png"></body></html>"""))
    _, requests, _ = _open(page.as_uri(), tmp_path, budget_ms=2000)
    assert "https://cdn.example.invalid/x.js" in requests
    assert "http://images.example.invalid/i.png" in requests
