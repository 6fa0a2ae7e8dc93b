r"""Scoring a task's examples with a model: batches, candidate scores, losses, errors, metrics.

Every example gets one score :math:`s_k` per class :math:`k`; the prediction is
:math:`\arg\max_k s_k`. Two kinds of task (:mod:`lozo_core.tasks`) share that interface:

* label words (SST-2, RTE, CB, WiC, MultiRC): the prompts are left-padded so that all end at the
  last column, and :math:`s_k = z_T[w_k]`, the logit of label word :math:`k`'s first token at the
  last position (one forward per example, only the last position's logits computed);
* choices (COPA, WinoGrande): each ``(context, continuation)`` is a row, the rows of an example
  adjacent (example-major), and :math:`s_k = \frac{1}{|c_k|}\sum_{t \in c_k}
  \log p(x_t \mid x_{<t})`, the mean log-probability of continuation :math:`k`'s tokens (MeZO's
  length-normalised score).

An encoder has no label words: :class:`~lozo_core.models.EncoderClassifier` gives class ``k`` as
output ``k``, so it goes through the label-word path; it cannot score continuations.

Objectives, one value per example so that the side-path engine's doubled batch splits in two:

* ``loss``: :math:`-\log \operatorname{softmax}(s)_y`, the cross-entropy over the candidates;
* ``accuracy``: the task's metric as an error, :math:`1[\arg\max_k s_k \ne y]` (mean: one minus
  the batch accuracy), or for a task scored by F1 (MultiRC) :math:`1 - F_1` of the batch, the
  same value for every example of one copy of the batch (see :attr:`Batch.copies`). Neither has
  a gradient; zeroth-order methods only need its values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lozo_core.models import EncoderClassifier, LoadedModel
from lozo_core.tasks import Example, Task

MAX_PROMPT_TOKENS = 256
OBJECTIVES = ("loss", "accuracy")


def prompt_budget(model: nn.Module) -> int:
    """Tokens a prompt keeps: ``MAX_PROMPT_TOKENS``, or fewer if the model has fewer positions
    than that plus the virtual tokens a prefix or prompt adapter puts before the prompt."""
    positions = getattr(model.config, "max_position_embeddings", MAX_PROMPT_TOKENS)
    adapter = getattr(model, "peft_config", {}).get("default")
    virtual = getattr(adapter, "num_virtual_tokens", 0) or 0
    return min(MAX_PROMPT_TOKENS, positions - virtual)


def label_token_ids(tokenizer, task: Task) -> list[int]:
    """First token id of each label word (MeZO scores single-token verbalizers)."""
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in task.label_words]
    if len(set(ids)) < len(ids):
        raise ValueError(
            f"the label words {task.label_words} of {task.name} share first tokens {ids}"
        )
    return ids


def scorer(loaded: LoadedModel, task: Task, seed: int = 0) -> tuple[nn.Module, list[int]]:
    """The module that scores ``task``'s classes and the output index of each label word.

    A language model scores its label words' tokens (a choice task needs no indices: its
    continuations are in the batch); an encoder is wrapped in an :class:`EncoderClassifier`
    whose head is drawn from ``seed`` and whose outputs are the classes.
    """
    if loaded.causal:
        if task.multiple_choice:
            return loaded.model, []
        return loaded.model, label_token_ids(loaded.tokenizer, task)
    if task.multiple_choice:
        raise ValueError(
            f"task {task.name!r} scores continuations with a language model; "
            f"{loaded.name} is an encoder"
        )
    classes = len(task.label_words)
    return EncoderClassifier(loaded.model, classes, seed), list(range(classes))


@dataclass
class Batch:
    """Left-padded rows: every row ends at the last column.

    Label-word tasks have one row per example. Choice tasks have ``C`` rows per example
    (example-major) and ``continuation_mask`` (rows × longest continuation), true on the last
    columns that hold each row's continuation. ``copies`` counts stacked copies of the same
    examples (2 after :meth:`doubled`), so a batch-level objective can score each copy alone.
    """

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    labels: Tensor
    continuation_mask: Tensor | None = None
    copies: int = 1

    def _map(self, fn, copies: int) -> Batch:
        mask = None if self.continuation_mask is None else fn(self.continuation_mask)
        tensors = (self.input_ids, self.attention_mask, self.position_ids, self.labels)
        return Batch(*(fn(t) for t in tensors), mask, copies)

    def to(self, device) -> Batch:
        return self._map(lambda t: t.to(device), self.copies)

    def doubled(self) -> Batch:
        """``[batch; batch]`` for the side-path engine's one-forward two-point query."""
        return self._map(lambda t: torch.cat([t, t]), 2 * self.copies)


def _left_padded(rows: list[list[int]], pad: int) -> tuple[Tensor, Tensor, Tensor]:
    """Token ids, attention mask, and position ids counted from each row's first real token."""
    width = max(len(x) for x in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, x in enumerate(rows):
        input_ids[i, width - len(x) :] = torch.tensor(x)
        mask[i, width - len(x) :] = 1
    return input_ids, mask, (mask.cumsum(1) - 1).clamp(min=0)


def _start(tokenizer) -> list[int]:
    """The token a prompt starts with: the tokenizer's BOS where it adds one (OPT's ``</s>``, as
    MeZO's encoding has), else nothing (SmolLM2, MiniLM: no BOS of that kind)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos] if getattr(tokenizer, "add_bos_token", False) and bos is not None else []


def _choice_rows(
    tokenizer, examples: list[Example], max_length: int
) -> tuple[list[list[int]], list[int]]:
    """Each example's ``context + continuation`` token rows and the continuations' lengths."""
    count = len(examples[0].choices)
    if any(len(ex.choices) != count for ex in examples):
        raise ValueError(f"examples with different numbers of choices: expected {count} each")
    pairs = [pair for ex in examples for pair in ex.choices]
    tokenize = lambda texts: tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    contexts, continuations = tokenize([c for c, _ in pairs]), tokenize([c for _, c in pairs])
    rows, start = [], _start(tokenizer)
    for (context, continuation), head, tail in zip(pairs, contexts, continuations, strict=True):
        if not head:
            raise ValueError(f"context {context!r} has no tokens")
        if not 1 <= len(tail) < max_length - len(start):
            raise ValueError(
                f"continuation {continuation!r} has {len(tail)} tokens; "
                f"expected 1 to {max_length - len(start) - 1} (the prompt budget is {max_length})"
            )
        rows.append(start + (head + tail)[len(start) - max_length :])
    return rows, [len(tail) for tail in continuations]


def encode(tokenizer, examples: list[Example], max_length: int = MAX_PROMPT_TOKENS) -> Batch:
    """Left-padded token ids with position ids counted from each row's first real token, each row
    starting with the tokenizer's BOS where it adds one (:func:`_start`).

    Rows longer than ``max_length`` tokens keep their end (where the label word or the
    continuation is scored), so a long passage loses its beginning. Left padding is equivalent
    to right padding up to float rounding, and lets the model compute only the last positions'
    logits (``logits_to_keep``).
    """
    if not examples:
        raise ValueError("no examples to encode")
    if len({bool(ex.choices) for ex in examples}) > 1:
        raise ValueError("cannot batch label-word and choice examples together")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    labels = torch.tensor([ex.label for ex in examples])
    if not examples[0].choices:
        texts, start = [ex.text for ex in examples], _start(tokenizer)
        rows = [
            start + x[len(start) - max_length :]
            for x in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        ]
        return Batch(*_left_padded(rows, pad), labels)
    rows, lengths = _choice_rows(tokenizer, examples, max_length)
    longest = max(lengths)
    continuation = torch.arange(longest) >= longest - torch.tensor(lengths).unsqueeze(1)
    return Batch(*_left_padded(rows, pad), labels, continuation)


def candidate_scores(model: nn.Module, batch: Batch, candidates: list[int]) -> Tensor:
    """Each example's score per class, shape ``(N, classes)``: label-word logits at the last
    position, or the mean log-probability of each continuation's tokens."""
    inputs = dict(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
    )
    if batch.continuation_mask is None:
        return model(**inputs, logits_to_keep=1).logits[:, -1, candidates].float()
    mask = batch.continuation_mask
    longest = mask.shape[1]
    logits = model(**inputs, logits_to_keep=longest + 1).logits[:, :-1].float()
    targets = batch.input_ids[:, -longest:].unsqueeze(-1)
    log_probs = logits.gather(-1, targets).squeeze(-1) - logits.logsumexp(-1)
    means = torch.where(mask, log_probs, 0.0).sum(1) / mask.sum(1)
    return means.view(len(batch.labels), -1)


def per_example_loss(model: nn.Module, batch: Batch, candidates: list[int]) -> Tensor:
    """Cross-entropy over the candidates' scores, one value per example."""
    return nn.functional.cross_entropy(
        candidate_scores(model, batch, candidates), batch.labels, reduction="none"
    )


def per_example_error(model: nn.Module, batch: Batch, candidates: list[int]) -> Tensor:
    """``1 - correct`` per example: its mean is one minus the batch accuracy."""
    predicted = candidate_scores(model, batch, candidates).argmax(1)
    return (predicted != batch.labels).float()


def f1(predicted: Tensor, labels: Tensor) -> float:
    r"""Binary F1 of class 1: :math:`2TP / (2TP + FP + FN)`; 1 when there is nothing to find
    and nothing is predicted."""
    hit, truth = predicted == 1, labels == 1
    tp = int((hit & truth).sum())
    wrong = int((hit ^ truth).sum())
    return 1.0 if tp + wrong == 0 else 2 * tp / (2 * tp + wrong)


def batch_f1_error(model: nn.Module, batch: Batch, candidates: list[int]) -> Tensor:
    """``1 - F1`` of each copy of the batch, repeated for each of its examples."""
    predicted = candidate_scores(model, batch, candidates).argmax(1)
    return torch.cat(
        [
            torch.full((len(truth),), 1.0 - f1(guess, truth))
            for guess, truth in zip(
                predicted.chunk(batch.copies), batch.labels.chunk(batch.copies), strict=True
            )
        ]
    ).to(predicted.device)


ERRORS = {"accuracy": per_example_error, "f1": batch_f1_error}


def objective(task: Task, name: str) -> Callable[[nn.Module, Batch, list[int]], Tensor]:
    """``loss`` (cross-entropy) or ``accuracy`` (the error of the task's metric)."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r}: expected one of {', '.join(OBJECTIVES)}")
    return per_example_loss if name == "loss" else ERRORS[task.metric]


@torch.no_grad()
def predict(
    model: nn.Module,
    tokenizer,
    examples: list[Example],
    candidates: list[int],
    batch_size: int = 16,
    device="cpu",
) -> Tensor:
    """The highest-scoring class of each example."""
    budget = prompt_budget(model)
    predicted = []
    for start in range(0, len(examples), batch_size):
        batch = encode(tokenizer, examples[start : start + batch_size], budget).to(device)
        predicted.append(candidate_scores(model, batch, candidates).argmax(1).cpu())
    return torch.cat(predicted)


def metrics(task: Task, examples: list[Example], predicted: Tensor) -> dict[str, float]:
    """Accuracy, and F1 for a task scored by F1."""
    labels = torch.tensor([ex.label for ex in examples])
    scores = {"accuracy": int((predicted == labels).sum()) / len(examples)}
    if task.metric == "f1":
        scores["f1"] = f1(predicted, labels)
    return scores
