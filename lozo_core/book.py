"""The notebooks and derivations as a static HTML book: ``python -m lozo_core.book [--smoke]``.

Writes the Sphinx source under ``build/book-src/`` (``conf.py``, a front page, one page per
``theory/*.md`` and per executed notebook, and the recorded results rendered by
:mod:`lozo_core.results`) and runs sphinx-build with MyST-NB and the Sphinx Book Theme into
``build/book/``; MathJax is served from the site itself, so the book reads offline.

Notebooks run through :func:`lozo_core.notebooks.execute` at the size ``LOZO_SMOKE`` (or
``--smoke``) selects. An executed notebook is kept as ``build/book-cache/SIZE/STEM-KEY/`` with
``KEY`` a hash of its code (:func:`inputs_key`) and ``reads.json`` the data it read
(:func:`lozo_core.reads.manifest`): a rebuild runs only the notebooks whose code or data
changed, so a campaign's new runs re-execute the notebooks that read them and no others.

Cross-links come from :data:`CHECKS`: each theory section links to the notebook sections that
check it, and each of those sections links back to the derivation.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from lozo_core.notebooks import DATA_DIR, execute, notebook_paths
from lozo_core.provenance import REPO_ROOT, SMOKE_ENV, is_smoke, machine
from lozo_core.reads import changed_since, manifest, unchanged
from lozo_core.results import SECTIONS

BUILD_DIR = REPO_ROOT / "build"
BOOK_DIR = BUILD_DIR / "book"
SOURCE_DIR = BUILD_DIR / "book-src"
DOCTREE_DIR = BUILD_DIR / "book-doctrees"
CACHE_DIR = BUILD_DIR / "book-cache"
THEORY_DIR = REPO_ROOT / "theory"


@dataclass(frozen=True)
class Chapter:
    """A part of the book: its pages in reading order (``theory/NN`` or ``notebooks/NN``, the
    file whose name starts with ``NN_``) and what it shows, for the front page."""

    caption: str
    pages: tuple[str, ...]
    shows: str


CHAPTERS = (
    Chapter(
        "Start here",
        ("notebooks/00",),
        "What is in this checkout, listed from the tree itself: the library's modules, the "
        "notebooks, the derivations and the recorded runs.",
    ),
    Chapter(
        "I. The estimator",
        ("theory/01", "notebooks/01"),
        "LOZO's low-rank two-point estimator is unbiased, with the $1/r$ factor that the official "
        "code folds into its learning rate, and its second moment is never below MeZO's: low "
        "rank buys memory, cost and structure, not lower variance. Derived exactly, checked by "
        "sympy and by Monte Carlo.",
    ),
    Chapter(
        "II. The subspace view",
        ("theory/02", "notebooks/03"),
        "Between refreshes of $V$, LOZO is MeZO on the coordinates $B$ of $f(W_0+BV^\\top)$; a "
        "random rank-$r$ subspace sees about $r/n$ of the gradient; LOZO-M loses most of its "
        "momentum at each refresh; on refresh steps the official code applies a different "
        "random direction from the one it measured.",
    ),
    Chapter(
        "III. Convergence",
        ("theory/03", "notebooks/04"),
        "The $O(C/T)$ rate and the $2/C$ step-size threshold, proved for $\\nu=1$ and measured "
        "on problems whose constants are known, one verdict per claim; what the LOZO paper "
        "states and this project does not reproduce.",
    ),
    Chapter(
        "IV. Gradient spectra",
        ("notebooks/02",),
        "How low rank the fine-tuning gradients of real pretrained layers (SmolLM2-135M, "
        "MiniLM-L6) are, against random init and a Gaussian matrix of the same shape, and how "
        "much of their energy a random rank-$r$ subspace captures.",
    ),
    Chapter(
        "V. Fine-tuning",
        ("notebooks/05", "notebooks/06", "notebooks/08"),
        "SmolLM2-135M on SST-2 and RTE on CPU: LOZO next to MeZO, the ZO-Bench optimizers and "
        "first-order Adam, from recorded runs with gains over zero-shot paired by seed; then "
        "MeZO's full protocol with learning rates chosen on validation.",
    ),
    Chapter(
        "VI. Performance",
        ("notebooks/07",),
        "Step time and peak memory per method on one model and batch, live and recorded: the "
        "side path perturbs through the forward pass and never writes a perturbation into the "
        "weights.",
    ),
)


@dataclass(frozen=True)
class Check:
    """The section of ``theory/THEORY_*.md`` whose heading starts with ``section`` is checked by
    the section of ``notebooks/NOTEBOOK_*.py`` whose heading starts with ``cell``."""

    theory: str
    section: str
    notebook: str
    cell: str


CHECKS = (
    Check("01", "Unbiasedness", "01", "1.1"),
    Check("01", "Unbiasedness", "01", "1.3"),
    Check("01", "Unbiasedness", "03", "3.1"),
    Check("01", "Second moments", "01", "1.2"),
    Check("01", "What the numbers mean", "01", "1.4"),
    Check("01", "What the numbers mean", "03", "3.6"),
    Check("01", "What the numbers mean", "07", "7.1"),
    Check("02", "The lazy interval", "03", "3.1"),
    Check("02", "The lazy interval", "03", "3.2"),
    Check("02", "The lazy interval", "02", "2.3"),
    Check("02", "The interval ν", "03", "3.3"),
    Check("02", "The interval ν", "07", "7.4"),
    Check("02", "The interval ν", "06", "6.5"),
    Check("02", "LOZO-M", "03", "3.4"),
    Check("02", "The random stream", "03", "3.5"),
    Check("03", "Quadratics", "04", "Claim 1"),
    Check("03", "Quadratics", "04", "Claim 2"),
    Check("03", "Step sizes", "04", "Claim 3"),
    Check("03", "$L$-smooth", "04", "Claim 6"),
    Check("03", "Lazy intervals", "04", "Claim 4"),
    Check("03", "LOZO-M", "04", "Claim 5"),
    Check("03", "Where the bounds are tight", "04", "What the claims show"),
)

# (README results section in lozo_core.results.SECTIONS, heading, the notebook that reads it)
RESULTS = (
    ("spectra", "Are fine-tuning gradients low rank?", "notebooks/02"),
    ("full_protocol", "Full-protocol fine-tuning on CPU", "notebooks/06"),
    ("finetune_cpu", "Scaled-down fine-tuning on CPU (60 steps)", "notebooks/05"),
    ("schemes_grid", "Schemes × tasks: full, LoRA and prefix fine-tuning", "notebooks/08"),
    ("bench", "Memory and speed", "notebooks/07"),
)

CONF = """\
project = "LOZO Lab"
author = "LOZO Lab"
extensions = ["myst_nb", "sphinx-mathjax-offline"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
nb_execution_mode = "off"
nb_merge_streams = True
nb_code_prompt_show = "Show the solution"
nb_code_prompt_hide = "Hide the solution"
html_theme = "sphinx_book_theme"
html_title = "LOZO Lab"
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "use_download_button": True,
    "use_fullscreen_button": False,
}
"""

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _headings(text: str) -> list[tuple[int, int, str]]:
    """``(line, level, title)`` of every Markdown heading in ``text`` outside code fences."""
    found, fenced = [], False
    for i, line in enumerate(text.splitlines()):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append((i, len(match[1]), match[2]))
    return found


def _label(docname: str, prefix: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{docname} {prefix}".lower()).strip("-")


@dataclass
class Page:
    """A page's Markdown: a theory file's text, or a notebook's Markdown cells in order."""

    docname: str
    texts: list[str]

    @property
    def title(self) -> str:
        titles = [t for text in self.texts for _, level, t in _headings(text) if level == 1]
        if not titles:
            raise ValueError(f"{self.docname}: no level-1 heading, expected one as its title")
        return titles[0]

    def find(self, prefix: str) -> tuple[int, int, str]:
        """``(text, line, title)`` of the one heading whose title starts with ``prefix``."""
        hits = [
            (k, line, title)
            for k, text in enumerate(self.texts)
            for line, _, title in _headings(text)
            if title.startswith(prefix)
        ]
        if len(hits) != 1:
            raise ValueError(
                f"{self.docname}: {len(hits)} headings start with {prefix!r}, expected exactly "
                "one (the tables in lozo_core.book name sections by the start of their heading)"
            )
        return hits[0]

    def insert(self, prefix: str, block: str, *, target: str | None = None) -> None:
        """Put ``block`` right after the heading starting with ``prefix``; with ``target``,
        make the heading a cross-reference target of that name."""
        k, line, _ = self.find(prefix)
        lines = self.texts[k].splitlines()
        label = ["", f"({target})="] if target else []
        lines[line : line + 1] = [*label, lines[line], "", block, ""]
        self.texts[k] = "\n".join(lines)


def _admonition(title: str, body: str, kind: str = "seealso") -> str:
    return f":::{{admonition}} {title}\n:class: {kind}\n\n{body}\n:::"


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def source_file(ref: str) -> Path:
    """The file a chapter entry ``theory/NN`` or ``notebooks/NN`` names."""
    folder, number = ref.split("/")
    suffix = {"theory": ".md", "notebooks": ".py"}.get(folder)
    matches = sorted((REPO_ROOT / folder).glob(f"{number}_*{suffix}")) if suffix else []
    if len(matches) != 1:
        raise ValueError(
            f"book entry {ref!r} names {len(matches)} files; expected exactly one "
            f"theory/{number}_*.md or notebooks/{number}_*.py"
        )
    return matches[0]


def docname(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def chapter_files() -> list[tuple[Chapter, list[Path]]]:
    """Each chapter with its files; every notebook and theory text must be in exactly one."""
    chapters = [(chapter, [source_file(ref) for ref in chapter.pages]) for chapter in CHAPTERS]
    listed = [path for _, paths in chapters for path in paths]
    for path in [*notebook_paths(), *sorted(THEORY_DIR.glob("*.md"))]:
        if listed.count(path) != 1:
            raise ValueError(
                f"{path.relative_to(REPO_ROOT)} is in {listed.count(path)} chapters of "
                "lozo_core.book.CHAPTERS; expected exactly one"
            )
    return chapters


def _notebook_title(path: Path) -> str:
    return next((line for line in path.read_text().splitlines() if line.startswith("# # ")), "")


def inputs_key(path: Path) -> str:
    """A hash of the code the notebook ``path`` runs: its own source, the library (this module
    aside), the campaign plans (``scripts/*.toml``), ``theory/``, every notebook's title (the
    tour lists them) and the installed packages' versions. The data it reads is checked apart,
    by :func:`lozo_core.reads.unchanged`."""
    library = sorted(p for p in (REPO_ROOT / "lozo_core").rglob("*.py") if p.name != "book.py")
    library += sorted((REPO_ROOT / "scripts").glob("*.toml"))
    theory = sorted(
        p for p in THEORY_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    digest = hashlib.sha256()
    for file in [path, *library, *theory]:
        digest.update(f"{file.relative_to(REPO_ROOT)}\0".encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    for other in notebook_paths():
        digest.update(f"{other.name}\0{_notebook_title(other)}\0".encode())
    packages = sorted(
        {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()}
    )
    digest.update("\0".join(packages).encode())
    return digest.hexdigest()[:16]


def executed(path: Path, *, smoke: bool) -> Path:
    """The notebook ``path`` executed at the chosen size: the cached run when its code and the
    data it read are unchanged, else a new run through :func:`lozo_core.notebooks.execute`."""
    size = "smoke" if smoke else "full"
    folder = CACHE_DIR / size / f"{path.stem}-{inputs_key(path)}"
    target, reads = folder / f"{path.stem}.ipynb", folder / "reads.json"
    if target.exists() and reads.exists() and unchanged(json.loads(reads.read_text()), DATA_DIR):
        print(
            f"  {path.name}: code and data read unchanged, reusing {folder.relative_to(REPO_ROOT)}"
        )
        return target
    partial = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"  {path.name}: running at {size} size ...", flush=True)
    start, started = time.perf_counter(), time.time()
    try:
        execute(path, partial, smoke=smoke, reads=partial / "reads.log")
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        raise RuntimeError(
            f"{path.name} failed at {size} size; the partly executed notebook is "
            f"{partial / target.name}\n{err}"
        ) from err
    record = manifest(partial / "reads.log", DATA_DIR)
    if changed_since(record, DATA_DIR, started):
        print("    data it read changed while it ran: used now, not kept for the next build")
    else:
        (partial / "reads.json").write_text(json.dumps(record, indent=1) + "\n")
    (partial / "reads.log").unlink()
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    for old in folder.parent.glob(f"{path.stem}-*"):
        if old != folder:
            shutil.rmtree(old)
    print(f"    done in {time.perf_counter() - start:.0f} s")
    return target


def _link(page: Page, prefix: str, text: str) -> str:
    return f"[{text}](#{_label(page.docname, prefix)})"


def cross_link(theory: dict[Path, Page], notebooks: dict[Path, Page]) -> None:
    """Insert the :data:`CHECKS` links: theory section → notebook sections, and back."""
    checked_by: dict[tuple[Path, str], list[str]] = {}
    derived_in: dict[tuple[Path, str], list[str]] = {}
    for check in CHECKS:
        text, nb = source_file(f"theory/{check.theory}"), source_file(f"notebooks/{check.notebook}")
        section, cell = theory[text].find(check.section)[2], notebooks[nb].find(check.cell)[2]
        number = nb.stem.split("_", 1)[0]
        checked_by.setdefault((text, check.section), []).append(
            _link(notebooks[nb], check.cell, f"Notebook {number}: {cell}")
        )
        derived_in.setdefault((nb, check.cell), []).append(
            _link(theory[text], check.section, f"{theory[text].title} — {section}")
        )
    for (path, prefix), links in checked_by.items():
        target = _label(theory[path].docname, prefix)
        theory[path].insert(prefix, _admonition("Checked in", _bullets(links)), target=target)
    for (path, prefix), links in derived_in.items():
        target = _label(notebooks[path].docname, prefix)
        notebooks[path].insert(
            prefix, _admonition("The derivation", _bullets(links)), target=target
        )


SMOKE_NOTE = _admonition(
    "Smoke size",
    f"This book was built at smoke size (`{SMOKE_ENV}=1`): the notebooks ran their smallest "
    "problems, to check that the code works, so their numbers are not the results. `make book` "
    f"without `{SMOKE_ENV}` runs them at laptop size.",
    kind="warning",
)


def front_page(
    chapters: list[tuple[Chapter, list[Path]]], titles: dict[Path, str], *, smoke: bool
) -> str:
    parts = [
        "# LOZO Lab",
        "",
        "A research notebook and theory companion for zeroth-order (ZO) fine-tuning of language "
        "models, centred on **LOZO** (low-rank ZO; Chen et al., ICLR 2025, arXiv 2410.07698), "
        "next to **MeZO** (Malladi et al., NeurIPS 2023) and the optimizers benchmarked by "
        "**ZO-Bench** (Zhang et al., ICML 2024). Each derivation links to the notebook sections "
        "that check it. Every notebook page is the notebook executed, outputs and figures "
        "included, and prints the provenance of its numbers: model, data, seed, steps, machine.",
        "",
        "## What it shows",
        "",
    ]
    for chapter, paths in chapters:
        read = ", then ".join(f"[{titles[p]}]({docname(p)}{_suffix(p)})" for p in paths)
        parts += [f"**{chapter.caption}.** {chapter.shows} Read: {read}.", ""]
    parts += [
        "[Recorded results](results.md): every table of recorded runs, rendered from "
        "`data/results/`.",
        "",
        "## Where to start",
        "",
        "New to zeroth-order optimization: read part I in order, the derivation and then the "
        "notebook that checks it. Looking for results: part V and the recorded results. To run "
        "anything yourself, from a clone: `make demo` executes every notebook at laptop size, "
        "`make lab` opens them in JupyterLab, `make book` rebuilds this site.",
        "",
        "## This build",
        "",
    ]
    m = machine()
    parts.append(
        f"Built {m['date']} at {'smoke' if smoke else 'laptop'} size (`{SMOKE_ENV}="
        f"{int(smoke)}`) on {m['cpu_model']} ×{m['cpu_count']}, Python {m['python']}, torch "
        f"{m['torch']}, commit {m['git_commit']}. A notebook whose inputs did not change since an "
        "earlier build is not run again: each notebook page prints the provenance line of the "
        "run that produced it."
    )
    if smoke:
        parts += ["", SMOKE_NOTE]
    parts += [""]
    for chapter, paths in chapters:
        entries = "\n".join(docname(p) for p in paths)
        parts += [f"```{{toctree}}\n:caption: {chapter.caption}\n:hidden:\n\n{entries}\n```", ""]
    parts += ["```{toctree}\n:caption: Results\n:hidden:\n\nresults\n```", ""]
    return "\n".join(parts)


def _suffix(path: Path) -> str:
    return ".md" if path.suffix == ".md" else ".ipynb"


def results_page(titles: dict[str, str]) -> str:
    """Every README results section of :mod:`lozo_core.results`, rendered now."""
    names = [name for name, _, _ in RESULTS]
    if sorted(names) != sorted(SECTIONS):
        raise ValueError(
            f"lozo_core.book.RESULTS lists {sorted(names)}; lozo_core.results.SECTIONS has "
            f"{sorted(SECTIONS)}: every results section needs a heading in the book"
        )
    parts = [
        "# Recorded results",
        "",
        "Rendered from the JSON under `data/results/` when this book was built, by the functions "
        "of `lozo_core.results` that write the README's results sections. Each JSON holds the "
        "command that produced it and the machine it ran on.",
    ]
    for name, heading, ref in RESULTS:
        path = source_file(ref)
        parts += [
            "",
            f"## {heading}",
            "",
            f"Read with [{titles[docname(path)]}]({docname(path)}.ipynb).",
            "",
            SECTIONS[name](),
        ]
    return "\n".join(parts) + "\n"


def theory_pages() -> dict[Path, Page]:
    return {
        path: Page(docname(path), [path.read_text()]) for path in sorted(THEORY_DIR.glob("*.md"))
    }


def notebook_page(path: Path, notebook: nbformat.NotebookNode) -> Page:
    return Page(docname(path), [c.source for c in notebook.cells if c.cell_type == "markdown"])


def _write(path: Path, content: str | bytes, written: set[Path]) -> None:
    """Write ``content`` unless ``path`` already holds it (sphinx-build then skips the page)."""
    data = content.encode() if isinstance(content, str) else content
    written.add(path)
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_source(source: Path, *, smoke: bool) -> None:
    """The Sphinx project under ``source``: notebooks executed (or reused), pages cross-linked."""
    chapters = chapter_files()
    print(f"notebooks ({'smoke' if smoke else 'laptop'} size):")
    runs = {path: nbformat.read(executed(path, smoke=smoke), 4) for path in notebook_paths()}
    notebooks = {path: notebook_page(path, nb) for path, nb in runs.items()}
    theory = theory_pages()
    cross_link(theory, notebooks)
    written: set[Path] = set()
    for page in theory.values():
        _write(source / f"{page.docname}.md", page.texts[0] + "\n", written)
    for path, nb in runs.items():
        page = notebooks[path]
        if smoke:
            page.insert(page.title, SMOKE_NOTE)
        markdown = iter(page.texts)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = next(markdown)
        _write(source / f"{page.docname}.ipynb", nbformat.writes(nb), written)
    titles = {path: page.title for path, page in {**theory, **notebooks}.items()}
    _write(source / "index.md", front_page(chapters, titles, smoke=smoke), written)
    by_docname = {docname(path): title for path, title in titles.items()}
    _write(source / "results.md", results_page(by_docname), written)
    _write(source / "conf.py", CONF, written)
    for stale in [p for p in source.rglob("*") if p.is_file() and p not in written]:
        stale.unlink()


def build(*, smoke: bool) -> Path:
    """Write the source to ``build/book-src/``, run sphinx-build into ``build/book/`` (emptied
    first, so it holds exactly the current pages; the doctrees in ``build/book-doctrees/`` keep
    the build incremental), and return its ``index.html``. Any Sphinx warning fails the build:
    a broken link, a missing cross-reference target, a page outside every chapter."""
    write_source(SOURCE_DIR, smoke=smoke)
    shutil.rmtree(BOOK_DIR, ignore_errors=True)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q"]
    print("sphinx-build ...", flush=True)
    done = subprocess.run(
        [*command, "-d", str(DOCTREE_DIR), str(SOURCE_DIR), str(BOOK_DIR)], check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"sphinx-build exited with {done.returncode}; its messages are above")
    return BOOK_DIR / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=f"smoke size (as {SMOKE_ENV}=1)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        index = build(smoke=args.smoke or is_smoke())
    except (RuntimeError, ValueError) as err:
        print(f"book not built: {err}", file=sys.stderr)
        return 1
    print(f"book built in {time.perf_counter() - start:.0f} s: open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
