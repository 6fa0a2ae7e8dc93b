"""The book: its tables and cross-links (fast), then the book at smoke size opened page by page
in headless Chromium: math rendered, every image loaded, no cell showing an error, exercise
solutions (cells tagged ``hide-cell``) collapsed, internal links resolving, a screenshot of
each page under ``build/book/screenshots/``. The browser tests are skipped where no Chromium
(Debian's ``chromium``) is installed."""

import functools
import hashlib
import http.server
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import jupytext
import pytest

from lozo_core.book import (
    BOOK_DIR,
    CHECKS,
    Page,
    build,
    chapter_files,
    cross_link,
    docname,
    inputs_key,
    notebook_page,
    results_page,
    theory_pages,
)
from lozo_core.notebooks import execute, notebook_paths
from lozo_core.provenance import REPO_ROOT
from lozo_core.reads import changed_since, manifest, unchanged
from lozo_core.results import SECTIONS

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_every_notebook_and_theory_text_is_in_one_chapter():
    files = [path for _, paths in chapter_files() for path in paths]
    assert sorted(files) == sorted([*notebook_paths(), *(REPO_ROOT / "theory").glob("*.md")])


def test_cross_links_name_sections_that_exist():
    theory = theory_pages()
    notebooks = {path: notebook_page(path, jupytext.read(path)) for path in notebook_paths()}
    cross_link(theory, notebooks)
    text = "\n".join(t for page in [*theory.values(), *notebooks.values()] for t in page.texts)
    sections = {(c.theory, c.section) for c in CHECKS} | {(c.notebook, c.cell) for c in CHECKS}
    assert text.count(":::{admonition} Checked in") + text.count(
        ":::{admonition} The derivation"
    ) == len(sections)


def test_a_missing_or_ambiguous_section_is_named():
    page = Page("theory/x", ["# X\n\n## Alpha\n\n```\n## Beta in a code fence\n```\n\n## Alps\n"])
    assert page.find("Alpha")[2] == "Alpha"
    with pytest.raises(ValueError, match="theory/x: 0 headings start with 'Beta'"):
        page.find("Beta")
    with pytest.raises(ValueError, match="theory/x: 2 headings start with 'Al'"):
        page.find("Al")


def test_results_page_renders_every_recorded_section():
    page = results_page({docname(path): "title" for path in notebook_paths()})
    for render in SECTIONS.values():
        assert render() in page


def test_an_executed_notebook_names_the_data_it_read_and_goes_stale_when_that_changes(tmp_path):
    data = tmp_path / "data"
    (data / "runs" / "a").mkdir(parents=True)
    (data / "runs" / "a" / "summary.json").write_text("{}")
    (data / "runs" / "b").mkdir()
    (data / "unread.txt").write_text("x")
    source = tmp_path / "reader.py"
    source.write_text(
        "# %%\nfrom pathlib import Path\n"
        f"runs = sorted(Path({str(data)!r}).glob('runs/*/summary.json'))\n"
        "print([r.read_text() for r in runs])\n"
    )
    log = tmp_path / "reads.log"
    started = time.time()
    execute(source, tmp_path / "out", smoke=True, reads=log, data=data)
    record = manifest(log, data)
    assert record["files"] == {"runs/a/summary.json": hashlib.sha256(b"{}").hexdigest()}
    assert record["trees"]["runs"] == ["a", "a/summary.json", "b"]
    assert record["folders"]["."] == ["runs", "unread.txt"]
    assert unchanged(record, data) and not changed_since(record, data, started)
    (data / "unread.txt").write_text("y")
    assert unchanged(record, data), "a file the notebook did not read is not an input"
    (data / "runs" / "b" / "summary.json").write_text("{}")
    assert not unchanged(record, data), "a run that finished where the notebook looked is an input"
    assert changed_since(record, data, started)
    (data / "runs" / "b" / "summary.json").unlink()
    (data / "runs" / "a" / "summary.json").write_text("{ }")
    assert not unchanged(record, data)
    with pytest.raises(ValueError, match="did not run lozo_core.reads.log_reads"):
        manifest(tmp_path / "never-written.log", data)


def test_each_notebook_has_its_own_stable_cache_key():
    keys = [inputs_key(path) for path in notebook_paths()]
    assert len(set(keys)) == len(keys)
    assert keys == [inputs_key(path) for path in notebook_paths()]
    plan = REPO_ROOT / "scripts" / "test-cache-key.toml"
    try:
        plan.write_text("[protocol]\n")
        assert inputs_key(notebook_paths()[0]) != keys[0], "a campaign plan is an input"
    finally:
        plan.unlink()


INSPECT = """async () => {
  if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
  const images = Array.from(document.images);
  await Promise.all(images.map((img) => { img.loading = "eager"; return img.decode().catch(() => null); }));
  const text = document.body.cloneNode(true);
  text.querySelectorAll("pre, code, script, style, textarea").forEach((e) => e.remove());
  const math = Array.from(document.querySelectorAll("span.math, div.math"));
  return {
    math: math.length,
    unrendered: math.filter((e) => !e.querySelector("mjx-container")).map((e) => e.textContent.slice(0, 80)),
    rawDisplayMath: text.textContent.includes("$$"),
    images: images.length,
    broken: images.filter((img) => !(img.complete && img.naturalWidth > 0)).map((img) => img.src),
    errors: Array.from(document.querySelectorAll(".cell_output .traceback, .cell_output .output.error"))
      .map((e) => e.textContent.slice(0, 300))
      .concat(Array.from(document.querySelectorAll(".cell_output"))
        .filter((e) => e.textContent.includes("Traceback (most recent call last)"))
        .map((e) => e.textContent.slice(0, 300))),
    collapsed: Array.from(document.querySelectorAll("details.hide"))
      .filter((d) => !d.open && d.querySelector(".cell_input") && !d.querySelector(".cell_input").checkVisibility()).length,
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
    ids: Array.from(document.querySelectorAll("[id]")).map((e) => e.id),
  };
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def book() -> Path:
    build(smoke=True)
    return BOOK_DIR


@pytest.fixture(scope="session")
def site(book):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(book))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def pages(book: Path) -> list[str]:
    """Every HTML page of the site, relative to its root (assets and screenshots aside)."""
    return sorted(
        str(p.relative_to(book))
        for p in book.rglob("*.html")
        if not any(part.startswith("_") or part == "screenshots" for part in p.parts[-2:])
    )


def _local_only(route, *, site: str, outside: list[str]) -> None:
    """Serve requests to the local site; refuse and note every other one."""
    if route.request.url.startswith(site):
        route.continue_()
    else:
        outside.append(route.request.url)
        route.abort()


@pytest.fixture(scope="session")
def visits(book, site) -> dict[str, dict]:
    """Each page opened once in Chromium: what the page shows, and a full-page screenshot."""
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = book / "screenshots"
    shots.mkdir(exist_ok=True)
    found = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            for page_path in pages(book):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                outside, script_errors = [], []
                page.on("pageerror", lambda err, sink=script_errors: sink.append(str(err)))
                page.route("**/*", functools.partial(_local_only, site=site, outside=outside))
                response = page.goto(site + page_path, wait_until="load")
                seen = page.evaluate(INSPECT)
                seen.update(status=response.status, outside=outside, script_errors=script_errors)
                page.screenshot(path=shots / page_path.replace("/", "__").replace(".html", ".png"), full_page=True)  # fmt: skip
                found[page_path] = seen
                page.close()
        finally:
            browser.close()
    return found


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no browser at {CHROMIUM}")
class TestInChromium:
    def test_one_page_per_notebook_and_theory_file(self, book):
        expected = {"index.html", "results.html"} | {
            f"{docname(p)}.html"
            for p in [*notebook_paths(), *sorted((REPO_ROOT / "theory").glob("*.md"))]
        }
        assert expected <= set(pages(book))

    def test_every_page_loads_without_script_errors_or_outside_requests(self, visits):
        for path, seen in visits.items():
            assert seen["status"] == 200, path
            assert seen["script_errors"] == [], f"{path}: {seen['script_errors']}"
            assert seen["outside"] == [], (
                f"{path} asked for resources outside the site: {seen['outside']}"
            )

    def test_math_is_rendered(self, visits):
        for path, seen in visits.items():
            assert seen["unrendered"] == [], (
                f"{path}: math left to MathJax not typeset: {seen['unrendered']}"
            )
            assert not seen["rawDisplayMath"], f"{path}: a raw $$ is left in the text"
        with_math = [p for p, seen in visits.items() if seen["math"]]
        assert {"theory/01_estimator.html", "notebooks/01_unbiasedness_and_variance.html"} <= {
            p for p in with_math
        }

    def test_every_image_loads(self, visits):
        for path, seen in visits.items():
            assert seen["broken"] == [], f"{path}: images that did not load: {seen['broken']}"
        figures = sum(seen["images"] for p, seen in visits.items() if p.startswith("notebooks/"))
        assert figures > 0, "the notebook pages show no figure at all"

    def test_no_cell_shows_an_error(self, visits):
        for path, seen in visits.items():
            assert seen["errors"] == [], f"{path}: {seen['errors'][0]}"

    def test_solution_cells_are_collapsed(self, visits):
        hidden = {
            f"{docname(path)}.html": sum(
                "hide-cell" in cell.metadata.get("tags", []) for cell in jupytext.read(path).cells
            )
            for path in notebook_paths()
        }
        assert sum(hidden.values()) > 0, "no notebook has a hide-cell solution"
        for path, count in hidden.items():
            assert visits[path]["collapsed"] == count, (
                f"{path}: {visits[path]['collapsed']} collapsed code cells, {count} tagged hide-cell"
            )

    def test_internal_links_resolve(self, visits, site):
        targets = {urldefrag(url) for seen in visits.values() for url in seen["links"]}
        internal = {(url, fragment) for url, fragment in targets if url.startswith(site)}
        assert internal, "no internal link found"
        for url in sorted({url for url, _ in internal}):
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    assert response.status == 200, url
            except urllib.error.HTTPError as err:
                pytest.fail(f"internal link {url} answers HTTP {err.code}")
        for url, fragment in sorted(internal):
            path = urlsplit(url).path.lstrip("/") or "index.html"
            if fragment and path in visits:
                assert unquote(fragment) in visits[path]["ids"], f"{url}#{fragment}: no such anchor"

    def test_cross_links_reach_the_checking_sections(self, visits):
        theory = visits["theory/01_estimator.html"]["links"]
        assert any("notebooks/01_unbiasedness_and_variance.html#" in url for url in theory)
        notebook = visits["notebooks/01_unbiasedness_and_variance.html"]["links"]
        assert any("theory/01_estimator.html#" in url for url in notebook)

    def test_a_screenshot_per_page(self, book, visits):
        shots = {p.name for p in (book / "screenshots").glob("*.png")}
        assert shots == {p.replace("/", "__").replace(".html", ".png") for p in visits}
