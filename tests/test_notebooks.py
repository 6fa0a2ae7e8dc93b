"""Every notebook executes end to end at smoke size (LOZO_SMOKE=1)."""

import pytest

from lozo_core.notebooks import execute, notebook_paths


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_executes_at_smoke_size(path, tmp_path):
    executed = execute(path, tmp_path, smoke=True, timeout=900)
    assert executed.exists() and executed.with_suffix(".html").exists()
