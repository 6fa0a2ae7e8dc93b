"""Tasks as data: readers per file family, MeZO-style templates, sampling, and the task table.

``get_task(name).split("train")`` gives a task's examples; :mod:`lozo_core.scoring` turns them
into batches and scores. Per family: :mod:`~lozo_core.tasks.glue` (SST-2, RTE),
:mod:`~lozo_core.tasks.superglue` (COPA, CB, WiC, MultiRC), :mod:`~lozo_core.tasks.winogrande`;
each module's docstring gives its prompts and where they differ from MeZO and ZO-Bench.
"""

from lozo_core.tasks.sampling import k_shot, sample, train_validation
from lozo_core.tasks.table import TASKS, get_task
from lozo_core.tasks.task import Example, Task

__all__ = ["TASKS", "Example", "Task", "get_task", "k_shot", "sample", "train_validation"]
