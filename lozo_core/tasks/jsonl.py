"""The JSON Lines reader shared by the SuperGLUE and WinoGrande files: one JSON object a line."""

from __future__ import annotations

import json
from pathlib import Path

from lozo_core.tasks.task import Example, Template, existing_file, read_row


def read_jsonl(path: Path, template: Template) -> list[Example]:
    """Every example of a JSONL file; a malformed line raises ``ValueError`` naming file, line
    and reason."""
    path = existing_file(path)
    examples = []
    with path.open(encoding="utf-8") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line}: expected a JSON object, got {type(row).__name__}")
            examples += read_row(template, row, f"{path}:{line}")
    return examples
