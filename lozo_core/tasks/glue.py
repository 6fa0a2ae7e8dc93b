"""GLUE SST-2 and RTE: the TSV reader and MeZO's templates (``large_models/templates.py``).

* ``sst2``: ``{sentence} It was`` + `` terrible`` (0) / `` great`` (1) — MeZO's SST2Template;
* ``sst2-review``: ``Review: {sentence}\\nSentiment:`` + `` negative`` / `` positive`` — a second
  format for the same task (ZO-Bench's finding that the prompt must fit the task; notebook 08
  §8.5 compares the two formats' zero-shot and fine-tuned accuracies);
* ``rte``: ``{premise}\\nDoes this mean that "{hypothesis}" is true? Yes or No?\\n`` + ``Yes`` (0,
  entailment) / ``No`` (1) — MeZO's RTETemplate (PromptSource), on GLUE's columns
  ``sentence1``/``sentence2``.

SST-2's TSVs are read with ``csv.QUOTE_NONE``: a field is the text between tabs, verbatim (its
sentences hold bare ``"`` tokens). RTE's files quote fields CSV-style on 454 train and 48 dev rows
(``"… found ""extensive"" damage …"``); :func:`read_quoted_tsv` undoes that quoting, so the prompt
holds the sentence as written (``… found "extensive" damage …``), as in SuperGLUE's RTE JSONL that
MeZO reads. The 60-step RTE runs recorded at commit 4e67b78 kept the quotes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lozo_core.tasks.task import Example, Prompt, existing_file, read_row

SST2 = Prompt("{sentence} It was", labels=("0", "1"), label_words=(" terrible", " great"))
SST2_REVIEW = Prompt(
    "Review: {sentence}\nSentiment:", labels=("0", "1"), label_words=(" negative", " positive")
)
RTE = Prompt(
    '{sentence1}\nDoes this mean that "{sentence2}" is true? Yes or No?\n',
    labels=("0", "1"),
    label_words=("Yes", "No"),
)


def read_tsv(path: Path, template: Prompt, quoting: int = csv.QUOTE_NONE) -> list[Example]:
    """Read a GLUE TSV (one header row), fields verbatim; a malformed row raises ``ValueError``
    naming file, line and reason."""
    path = existing_file(path)
    examples = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=quoting)
        header = next(reader, None)
        needed = [*template.fields, "label"]
        if header is None or any(c not in header for c in needed):
            raise ValueError(f"{path}:1: header {header} lacks the columns {needed}")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{line}: expected {len(header)} tab-separated fields, got {len(row)}"
                )
            examples += read_row(template, dict(zip(header, row, strict=True)), f"{path}:{line}")
    return examples


def read_quoted_tsv(path: Path, template: Prompt) -> list[Example]:
    """Read a GLUE TSV whose fields may be CSV-quoted (RTE), undoing the quoting."""
    return read_tsv(path, template, quoting=csv.QUOTE_MINIMAL)
