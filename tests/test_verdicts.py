"""Every claim notebooks 01, 03 and 04 check reaches the verdict it should at smoke size.

A claim's verdict is the line ``lozo_core.convergence.Verdict`` prints; the notebook sources never
write the word themselves. The executed notebooks come from ``lozo_core.book.executed`` (cached
on the notebook's inputs), so this file and tests/test_notebooks.py share one execution.
Expected values are listed claim by claim (by prefix): a claim that stops holding, a claim that
starts holding where the theory says it fails, a claim that disappears and a new claim without
an expected value all turn the suite red.
"""

import re

import nbformat
import pytest

from lozo_core.book import executed
from lozo_core.notebooks import notebook_paths

VERDICT = re.compile(r"^VERDICT \[(?P<claim>.+)\]: (?P<value>holds|fails) \(")
SECTION = re.compile(r"^## (?P<title>.+)$", re.MULTILINE)

HOLDS, FAILS = "holds", "fails"
EXPECTED = {
    "01_unbiasedness_and_variance": {
        "E ĝ = G for RGE and LGE": HOLDS,
        "the mean's error follows the closed-form 1/√N rate": HOLDS,
        "LGE second moment = (m(nr+2)+2(n+r+1))/r": HOLDS,
        "ε² bias: RGE (ε²/2)∇Δf, LGE (ε²/2)(r∇Δf + 2K)": HOLDS,
        "variance × forward passes = 2(E|ĝ|² - |G|²)": HOLDS,
    },
    "03_subspace_view": {
        "E[ĝ | V] = G V Vᵀ / r": HOLDS,
        "a random V holds r/n": HOLDS,
        "variance split: (n+r+1)/r persists": HOLDS,
        "LOZO-M after a refresh: alignment r/n, energy r(n+r+1)/n²": HOLDS,
        "matched stream ends no higher than the official mismatch": HOLDS,
        "side path leaves weights bit-identical": HOLDS,
    },
    "04_convergence_claims": {
        "MeZO rate on quadratics": HOLDS,
        "exact LGE constant for a diagonal Hessian vs Monte Carlo": HOLDS,
        "LOZO ν=1 rate with the exact diagonal constant": HOLDS,
        "share of diverged runs <= Markov bound": HOLDS,
        "lazy LOZO on an isotropic quadratic: Σ|∇f|² at T=8000 matches": HOLDS,
        "ν=1 bound for lazy LOZO, isotropic, ν=1,": HOLDS,
        "ν=1 bound for lazy LOZO, isotropic, ν=5,": FAILS,
        "ν=1 bound for lazy LOZO, isotropic, ν=25,": FAILS,
        "ν=1 bound for lazy LOZO, isotropic, ν=100,": FAILS,
        "ν=1 bound for lazy LOZO, isotropic, ν=500,": FAILS,
        "ν=1 bound for lazy LOZO, least_squares, ν=1,": HOLDS,
        "ν=1 bound for lazy LOZO, least_squares, ν=5,": HOLDS,
        "ν=1 bound for lazy LOZO, least_squares, ν=25,": HOLDS,
        "ν=1 bound for lazy LOZO, least_squares, ν=100,": FAILS,
        "ν=1 bound for lazy LOZO, least_squares, ν=500,": FAILS,
        "certified subspace bound for lazy LOZO, isotropic": HOLDS,
        "certified subspace bound for lazy LOZO, least_squares": HOLDS,
        "mean step of LOZO and LOZO-M": HOLDS,
        "L-smooth bound with ε terms, mezo": HOLDS,
        "L-smooth bound with ε terms, lozo": HOLDS,
    },
}
# Sections that state no claim of their own: summaries and the exercises.
NO_CLAIM = {"1.5 What these numbers mean", "What the claims show", "Exercises"}


def paths():
    return notebook_paths(list(EXPECTED))


def verdicts_by_section(notebook) -> dict[str, list[tuple[str, str]]]:
    """(claim, "holds" | "fails") for every VERDICT line, grouped by the ``##`` section printing it."""
    found, section = {}, None
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for match in SECTION.finditer(cell.source):
                section = match["title"]
                found.setdefault(section, [])
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if match := VERDICT.match(line):
                    found[section].append((match["claim"], match["value"]))
    return found


@pytest.fixture(scope="module", params=paths(), ids=lambda p: p.stem)
def notebook(request):
    return request.param, nbformat.read(executed(request.param, smoke=True), as_version=4)


def test_every_verdict_line_comes_from_the_verdict_type(notebook):
    path, _ = notebook
    assert "VERDICT" not in path.read_text(), f"{path.name} writes a VERDICT line by hand"


def test_every_claim_ends_in_a_verdict(notebook):
    path, executed_notebook = notebook
    sections = verdicts_by_section(executed_notebook)
    silent = [title for title, found in sections.items() if not found and title not in NO_CLAIM]
    assert not silent, f"{path.stem}: sections without a verdict: {silent}"


def test_each_verdict_has_its_expected_value(notebook):
    path, executed_notebook = notebook
    found = [v for vs in verdicts_by_section(executed_notebook).values() for v in vs]
    expected = EXPECTED[path.stem]
    unlisted = [claim for claim, _ in found if not claim.startswith(tuple(expected))]
    assert not unlisted, f"{path.stem}: verdicts with no expected value: {unlisted}"
    for prefix, value in expected.items():
        matching = [(claim, v) for claim, v in found if claim.startswith(prefix)]
        assert len(matching) == 1, f"{path.stem}: {len(matching)} verdicts for {prefix!r}"
        assert matching[0][1] == value, f"{path.stem}: {matching[0][0]!r} {matching[0][1]}"
