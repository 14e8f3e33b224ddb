"""The book pipeline and the built book.

- What the build checks in the built HTML (remote assets) and the pinned environments (fast, no browser); the
  workflow itself (Snakemake, ``actedit.plan``) is tested in ``tests/test_workflow.py``.
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
