"""SuperGLUE COPA, CB, WiC and MultiRC: MeZO's templates (``large_models/templates.py``, the same
in ZO-Bench's ``zo-bench/templates.py``), read from the SuperGLUE v2 JSONL files.

* ``copa`` (choice): context ``{premise without its final "."} because`` (question ``cause``) or
  ``… so`` (``effect``); continuations `` {choice1}`` / `` {choice2}`` with the first word
  lower-cased unless it is "I" (MeZO's CopaTemplate, capitalization "correct");
* ``cb``: ``Suppose {premise} Can we infer that "{hypothesis}"? Yes, No, or Maybe?\\n`` +
  ``Yes`` (entailment) / ``No`` (contradiction) / ``Maybe`` (neutral);
* ``wic``: ``Does the word "{word}" have the same meaning in these two sentences? Yes,
  No?\\n{sentence1}\\n{sentence2}\\n`` + ``No`` (false) / ``Yes`` (true);
* ``multirc``: one example per answer option, ``{paragraph}\\nQuestion: {question}\\nI found this
  answer "{answer}". Is that correct? Yes or No?\\n`` + ``No`` (0) / ``Yes`` (1).

Where ours differ from MeZO and ZO-Bench:

* Candidates are scored as in MeZO's evaluation: a continuation by the mean log-probability of its
  tokens (MeZO's default, length-normalised: COPA's two choices differ in length, and a sum would
  favour the shorter). A label word by its first token's logit at the last prompt position;
  MeZO scores the whole word, the same thing for these single-token words. See
  :mod:`lozo_core.scoring`.
* MeZO tokenizes prompt and candidate together and takes the last ``len(full) - len(prompt)``
  tokens as the candidate; we tokenize context and continuation separately and concatenate, so
  the scored tokens are exactly the continuation's. MeZO's OPT tokenizer also prepends ``</s>``;
  we add no special tokens, as for SST-2 and RTE.
* Training loss: the cross-entropy over the candidates' scores for every task. MeZO trains its
  classification tasks so, but COPA (and ZO-Bench also WinoGrande) with
  ``--train_as_classification False``: the negative log-likelihood of the gold continuation
  alone.
* Every text field is stripped of surrounding whitespace (MeZO strips SST-2's and COPA's only).
* MultiRC: MeZO and ZO-Bench report accuracy over the answer options; SuperGLUE scores it by
  F1a (F1 over all answer options of the class "correct") and exact match per question. We
  report accuracy and F1a, not exact match. Answer options with an empty text (one in the
  vendored training file, three in the full one) are kept, as in MeZO
  (``I found this answer ""``). Passages longer than the prompt budget
  (``scoring.MAX_PROMPT_TOKENS`` = 256, kept small for the CPU) lose their beginning, the end
  with the question and answer being kept: with SmolLM2's tokenizer that cuts 78% of the dev
  prompts (median 370 tokens), where MeZO's 2048-token limit cuts none — our MultiRC numbers are
  not comparable to MeZO's. The summary records test F1a beside accuracy; the best validation
  step and the learning-rate sweeps select by accuracy.
* BoolQ is not offered: the shared data holds its validation file only.
"""

from __future__ import annotations

from dataclasses import dataclass

from lozo_core.tasks.task import Example, Prompt, label_index, text_field

CB = Prompt(
    'Suppose {premise} Can we infer that "{hypothesis}"? Yes, No, or Maybe?\n',
    labels=("entailment", "contradiction", "neutral"),
    label_words=("Yes", "No", "Maybe"),
)
WIC = Prompt(
    'Does the word "{word}" have the same meaning in these two sentences? Yes, No?\n'
    "{sentence1}\n{sentence2}\n",
    labels=(False, True),
    label_words=("No", "Yes"),
)


def lower_first_word(text: str) -> str:
    """MeZO's COPA capitalization: the first word lower-cased unless it is "I"."""
    first, *rest = text.split(" ")
    return " ".join([first if first == "I" else first.lower(), *rest])


@dataclass(frozen=True)
class Copa:
    text: str = '{premise without final "."} because|so ⟶ {choice} (first word lower-cased)'
    label_words: tuple[str, ...] = ()

    def __call__(self, row: dict) -> list[Example]:
        label = label_index(row["label"], (0, 1))
        conjunction = {"cause": " because", "effect": " so"}.get(row["question"])
        if conjunction is None:
            raise ValueError(f"question {row['question']!r} is not one of 'cause', 'effect'")
        context = text_field(row, "premise").removesuffix(".") + conjunction
        choices = tuple(
            (context, " " + lower_first_word(text_field(row, f"choice{k}"))) for k in (1, 2)
        )
        return [Example(context, label, choices)]


@dataclass(frozen=True)
class MultiRC:
    """A paragraph row flattened into one binary example per (question, answer option)."""

    prompt: Prompt = Prompt(
        '{paragraph}\nQuestion: {question}\nI found this answer "{answer}". '
        "Is that correct? Yes or No?\n",
        labels=(0, 1),
        label_words=("No", "Yes"),
        may_be_empty=("answer",),
    )

    @property
    def text(self) -> str:
        return self.prompt.text

    @property
    def label_words(self) -> tuple[str, ...]:
        return self.prompt.label_words

    def __call__(self, row: dict) -> list[Example]:
        passage = row["passage"]
        return [
            example
            for question in passage["questions"]
            for answer in question["answers"]
            for example in self.prompt(
                {
                    "paragraph": passage["text"],
                    "question": question["question"],
                    "answer": answer["text"],
                    "label": answer["label"],
                }
            )
        ]


COPA = Copa()
MULTIRC = MultiRC()
