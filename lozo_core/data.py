"""GLUE SST-2 / RTE readers, MeZO-style prompts and verbalizers, k-shot sampling, batching.

Prompts are MeZO's for decoder models (reused by LOZO): the model scores each label word's
first token at the last prompt position, and training takes the cross-entropy over the
candidates ("classification as language modelling"). An encoder gets a classification head
instead (:class:`lozo_core.models.EncoderClassifier`, class ``k`` = output ``k``); see
:func:`scorer`.

* SST-2: ``{sentence} It was`` + `` terrible`` (0) / `` great`` (1);
* RTE: ``{premise}\\nDoes this mean that "{hypothesis}" is true? Yes or No?\\n`` +
  ``Yes`` (0, entailment) / ``No`` (1).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from lozo_core.models import EncoderClassifier, LoadedModel
from lozo_core.provenance import REPO_ROOT

GLUE_DIR = REPO_ROOT / "data" / "glue"
KSHOT_SEEDS = (13, 21, 42, 87, 100)


@dataclass(frozen=True)
class Example:
    text: str
    label: int


@dataclass(frozen=True)
class Task:
    name: str
    columns: tuple[str, ...]
    label_words: tuple[str, ...]
    template: str

    def prompt(self, row: dict[str, str]) -> str:
        return self.template.format(**{c: row[c].strip() for c in self.columns})


TASKS = {
    "sst2": Task("sst2", ("sentence",), (" terrible", " great"), "{sentence} It was"),
    "rte": Task(
        "rte",
        ("sentence1", "sentence2"),
        ("Yes", "No"),
        '{sentence1}\nDoes this mean that "{sentence2}" is true? Yes or No?\n',
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name]


def read_tsv(path: str | Path, task: str | Task) -> list[Example]:
    """Read a GLUE TSV; a malformed row raises ``ValueError`` naming file, line and reason."""
    task = get_task(task) if isinstance(task, str) else task
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    examples = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        needed = (*task.columns, "label")
        if header is None or any(c not in header for c in needed):
            raise ValueError(
                f"{path}:1: header {header} lacks the {task.name} columns {list(needed)}"
            )
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(
                    f"{path}:{line}: expected {len(header)} tab-separated fields, got {len(row)}"
                )
            record = dict(zip(header, row, strict=True))
            label = record["label"].strip()
            if label not in {str(i) for i in range(len(task.label_words))}:
                raise ValueError(
                    f"{path}:{line}: label {label!r} is not one of 0..{len(task.label_words) - 1}"
                )
            if any(not record[c].strip() for c in task.columns):
                raise ValueError(f"{path}:{line}: empty text field")
            examples.append(Example(task.prompt(record), int(label)))
    return examples


def glue_split(task: str, split: str) -> list[Example]:
    """The vendored ``data/glue/<task>/<split>.tsv``."""
    return read_tsv(GLUE_DIR / task / f"{split}.tsv", task)


def k_shot(examples: list[Example], k: int, seed: int) -> list[Example]:
    """``k`` examples per class, drawn without replacement by ``seed`` (MeZO/LOZO protocol)."""
    rng = random.Random(seed)
    by_label: dict[int, list[Example]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    chosen = []
    for label in sorted(by_label):
        if len(by_label[label]) < k:
            raise ValueError(
                f"k={k} per class but label {label} has only {len(by_label[label])} examples"
            )
        chosen += rng.sample(by_label[label], k)
    rng.shuffle(chosen)
    return chosen


def sample(examples: list[Example], n: int, seed: int) -> list[Example]:
    """``n`` examples drawn without replacement by ``seed``."""
    if n > len(examples):
        raise ValueError(f"asked for {n} examples, only {len(examples)} available")
    return random.Random(seed).sample(examples, n)


def train_validation(
    examples: list[Example], seed: int, n_train: int = 1000, n_validation: int = 500
) -> tuple[list[Example], list[Example]]:
    """MeZO's protocol: disjoint ``n_train`` training and ``n_validation`` validation examples,
    both drawn from the GLUE training split (the test set is then up to 1000 dev examples)."""
    drawn = sample(examples, n_train + n_validation, seed)
    return drawn[:n_train], drawn[n_train:]


def label_token_ids(tokenizer, task: Task) -> list[int]:
    """First token id of each label word (MeZO scores single-token verbalizers)."""
    return [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in task.label_words]


def scorer(loaded: LoadedModel, task: Task, seed: int = 0) -> tuple[nn.Module, list[int]]:
    """The module that scores ``task``'s labels and the output index of each label.

    A language model scores its label words' tokens; an encoder is wrapped in an
    :class:`EncoderClassifier` whose head is drawn from ``seed`` and whose outputs are the classes.
    """
    if loaded.causal:
        return loaded.model, label_token_ids(loaded.tokenizer, task)
    classes = len(task.label_words)
    return EncoderClassifier(loaded.model, classes, seed), list(range(classes))


@dataclass
class Batch:
    """Left-padded prompts: every prompt ends at the last column, so only that logit is needed."""

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    labels: Tensor

    def _map(self, fn) -> Batch:
        return Batch(
            *(fn(t) for t in (self.input_ids, self.attention_mask, self.position_ids, self.labels))
        )

    def to(self, device) -> Batch:
        return self._map(lambda t: t.to(device))

    def doubled(self) -> Batch:
        """``[batch; batch]`` for the side-path engine's one-forward two-point query."""
        return self._map(lambda t: torch.cat([t, t]))


MAX_PROMPT_TOKENS = 256


def prompt_budget(model: nn.Module) -> int:
    """Tokens a prompt keeps: ``MAX_PROMPT_TOKENS``, or fewer if the model has fewer positions."""
    positions = getattr(model.config, "max_position_embeddings", MAX_PROMPT_TOKENS)
    return min(MAX_PROMPT_TOKENS, positions)


def encode(tokenizer, examples: list[Example], max_length: int = MAX_PROMPT_TOKENS) -> Batch:
    """Left-padded token ids with position ids counted from each prompt's first real token.

    Prompts longer than ``max_length`` tokens keep their end (where the label word is scored).
    Equivalent to right padding up to float rounding, and lets the model compute only the last
    position's logits (``logits_to_keep=1``).
    """
    ids = [
        tokenizer(ex.text, add_special_tokens=False)["input_ids"][-max_length:] for ex in examples
    ]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, width - len(x) :] = torch.tensor(x)
        mask[i, width - len(x) :] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return Batch(input_ids, mask, positions, torch.tensor([ex.label for ex in examples]))


def candidate_logits(model: nn.Module, batch: Batch, candidates: list[int]) -> Tensor:
    """Logits of the label words at each prompt's last position: shape (N, classes)."""
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=1,
    )
    return out.logits[:, -1, candidates].float()


def per_example_loss(model: nn.Module, batch: Batch, candidates: list[int]) -> Tensor:
    """Cross-entropy over the label words, one value per example."""
    return nn.functional.cross_entropy(
        candidate_logits(model, batch, candidates), batch.labels, reduction="none"
    )


@torch.no_grad()
def accuracy(
    model: nn.Module,
    tokenizer,
    examples: list[Example],
    candidates: list[int],
    batch_size: int = 16,
    device="cpu",
) -> float:
    """Share of examples whose highest-scoring candidate is the right label."""
    budget = prompt_budget(model)
    correct = 0
    for start in range(0, len(examples), batch_size):
        batch = encode(tokenizer, examples[start : start + batch_size], budget).to(device)
        correct += int((candidate_logits(model, batch, candidates).argmax(1) == batch.labels).sum())
    return correct / len(examples)
