"""The one table of tasks: a name, a template, a reader and the vendored files under ``data/``.

Adding a task is one row here, with a template (and a reader, if its file format is new).
"""

from __future__ import annotations

from lozo_core.tasks.glue import RTE, SST2, SST2_REVIEW, read_quoted_tsv, read_tsv
from lozo_core.tasks.jsonl import read_jsonl
from lozo_core.tasks.superglue import CB, COPA, MULTIRC, WIC
from lozo_core.tasks.task import Task
from lozo_core.tasks.winogrande import WINOGRANDE

TASKS = {task.name: task for task in (
    Task("sst2", SST2, read_tsv, "glue/sst2/train.tsv", "glue/sst2/dev.tsv"),
    Task("sst2-review", SST2_REVIEW, read_tsv, "glue/sst2/train.tsv", "glue/sst2/dev.tsv"),
    Task("rte", RTE, read_quoted_tsv, "glue/rte/train.tsv", "glue/rte/dev.tsv"),
    Task("copa", COPA, read_jsonl, "superglue/copa/train.jsonl", "superglue/copa/val.jsonl", validation_examples=100),
    Task("cb", CB, read_jsonl, "superglue/cb/train.jsonl", "superglue/cb/val.jsonl", validation_examples=100),
    Task("wic", WIC, read_jsonl, "superglue/wic/train.jsonl", "superglue/wic/val.jsonl"),
    Task("multirc", MULTIRC, read_jsonl, "superglue/multirc/train.jsonl", "superglue/multirc/val.jsonl", metric="f1"),
    Task("winogrande", WINOGRANDE, read_jsonl, "winogrande/train_m.jsonl", "winogrande/dev.jsonl"),
)}  # fmt: skip


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name]
