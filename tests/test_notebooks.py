"""Every notebook executes end to end at smoke size (LOZO_SMOKE=1).

The run comes from :func:`lozo_core.book.executed`, cached under ``build/book-cache/smoke/`` by a
hash of what the notebook reads: within one suite (and across suites while nothing changes)
this file, ``test_book.py`` and ``test_verdicts.py`` share a single execution per notebook."""

import nbformat
import pytest

from lozo_core.book import executed
from lozo_core.notebooks import notebook_paths


@pytest.mark.slow
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_executes_at_smoke_size(path):
    run = executed(path, smoke=True)
    assert run.exists() and run.with_suffix(".html").exists()
    code = [cell for cell in nbformat.read(run, 4).cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.outputs]
    widgets = [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert not widgets, f"{len(widgets)} widget outputs, which a static page cannot show"
    assert not [o["text"] for o in outputs if "TqdmWarning" in o.get("text", "")]
