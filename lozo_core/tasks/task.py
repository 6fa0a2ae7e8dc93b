"""What a task is: examples, the template that makes them from a data row, and where the rows are.

A *template* is a callable ``row -> list[Example]`` (a list because one MultiRC paragraph yields
one example per answer option) with two attributes: ``label_words`` (empty for a choice task) and
``text``, a one-line description of the prompt for provenance. A *reader* parses one file format
into rows and hands each to the template; :func:`read_row` turns a template's complaint into a
``ValueError`` that names the file and line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from typing import Protocol

from lozo_core.provenance import REPO_ROOT

DATA_DIR = REPO_ROOT / "data"


@dataclass(frozen=True)
class Example:
    """One example and its gold class.

    A label-word example is a prompt ``text``; class ``k`` is scored by the task's label word
    ``k`` after it. A choice example also has ``choices``, one ``(context, continuation)`` per
    class: class ``k`` is scored by the continuation's log-probability given its context
    (``text`` then only identifies the example).
    """

    text: str
    label: int
    choices: tuple[tuple[str, str], ...] = ()


class Template(Protocol):
    text: str
    label_words: tuple[str, ...]

    def __call__(self, row: dict) -> list[Example]: ...


Reader = Callable[[Path, Template], list[Example]]


def text_field(row: dict, name: str, may_be_empty: bool = False) -> str:
    """``row[name]`` stripped; an absent field raises, and so does an empty one unless allowed."""
    if name not in row:
        raise ValueError(f"missing field {name!r}")
    value = str(row[name]).strip()
    if not value and not may_be_empty:
        raise ValueError(f"empty text field {name!r}")
    return value


def label_index(value, labels: tuple) -> int:
    """The class of a raw label: its position in ``labels`` (type and value must both match, so
    the JSON ``1`` is not the boolean ``true``)."""
    value = value.strip() if isinstance(value, str) else value
    for k, allowed in enumerate(labels):
        if type(value) is type(allowed) and value == allowed:
            return k
    raise ValueError(f"label {value!r} is not one of {', '.join(map(repr, labels))}")


@dataclass(frozen=True)
class Prompt:
    """A label-word template (MeZO's classification format): ``text.format(**row)`` is the
    prompt, each field stripped (an empty one is an error unless named in ``may_be_empty``); the
    row's ``label`` equal to ``labels[k]`` is class ``k``, whose label word ``label_words[k]`` is
    scored at the prompt's last position."""

    text: str
    labels: tuple
    label_words: tuple[str, ...]
    may_be_empty: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.labels) != len(self.label_words):
            raise ValueError(
                f"{len(self.labels)} labels {self.labels} but {len(self.label_words)} label words"
            )

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(name for _, name, _, _ in Formatter().parse(self.text) if name)

    def __call__(self, row: dict) -> list[Example]:
        if "label" not in row:
            raise ValueError("missing field 'label'")
        label = label_index(row["label"], self.labels)
        values = {name: text_field(row, name, name in self.may_be_empty) for name in self.fields}
        text = self.text.format(**values)
        return [Example(text, label)]


def read_row(template: Template, row: dict, where: str) -> list[Example]:
    """``template(row)``, with a malformed row reported as ``ValueError("<where>: <reason>")``."""
    try:
        return template(row)
    except (ValueError, KeyError, TypeError) as err:
        reason = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{where}: {reason}") from err


def existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    return path


@dataclass(frozen=True)
class Task:
    """A named task: its template, the reader of its file format, and its vendored files.

    ``metric`` is how the task is scored (``"accuracy"``, or ``"f1"``: binary F1 of class 1,
    reported next to accuracy and used by the accuracy objective). ``validation_examples`` is the
    validation share of MeZO's train/validation draw (100 for the small COPA and CB, as MeZO)."""

    name: str
    template: Template
    reader: Reader
    train: str
    dev: str
    metric: str = "accuracy"
    validation_examples: int = 500

    @property
    def label_words(self) -> tuple[str, ...]:
        return self.template.label_words

    @property
    def multiple_choice(self) -> bool:
        return not self.template.label_words

    def read(self, path: str | Path) -> list[Example]:
        """Every example of a file in this task's format."""
        return self.reader(Path(path), self.template)

    def split(self, name: str) -> list[Example]:
        """The vendored ``"train"`` or ``"dev"`` split (SuperGLUE's ``val``)."""
        files = {"train": self.train, "dev": self.dev}
        if name not in files:
            raise ValueError(f"unknown split {name!r}; expected train or dev")
        return self.read(DATA_DIR / files[name])
