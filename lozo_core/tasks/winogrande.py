"""WinoGrande (v1.1, ``winogrande_m`` as ZO-Bench uses it): fill the blank by partial scoring.

A row's ``sentence`` has one blank ``_`` and two ``option``\\s. Each option is substituted into
the part before the blank, and the part after it is scored given each:

    context_k = sentence[:blank] + option_k,   continuation = " " + sentence[blank + 1:].strip()

(Trinh & Le 2018's partial scoring, as in GPT-3 and lm-evaluation-harness). The continuation is
the same for both options, so the mean and the summed log-probability pick the same option.

Where ours differs: ZO-Bench (``WinoGrandeTemplate``/``WinoGrandeDataset``) scores
``option_k + continuation`` after the part before the blank, so its score also includes how
likely each option is at that place; partial scoring compares only how well each option explains
the rest of the sentence. ZO-Bench trains on the gold candidate's log-likelihood; we use the
cross-entropy over the two candidates, as for every task (:mod:`lozo_core.tasks.superglue`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lozo_core.tasks.task import Example, label_index, text_field


@dataclass(frozen=True)
class WinoGrande:
    text: str = "{sentence before _}{option} ⟶ {sentence after _}"
    label_words: tuple[str, ...] = ()

    def __call__(self, row: dict) -> list[Example]:
        label = label_index(row["answer"], ("1", "2"))
        sentence = text_field(row, "sentence")
        if sentence.count("_") != 1:
            raise ValueError(f"sentence has {sentence.count('_')} blanks '_'; expected one")
        before, after = sentence.split("_")
        if not after.strip():
            raise ValueError("nothing follows the blank '_' to score")
        continuation = " " + after.strip()
        choices = tuple((before + text_field(row, f"option{k}"), continuation) for k in (1, 2))
        return [Example(sentence, label, choices)]


WINOGRANDE = WinoGrande()
