"""Scoring: choice batches, continuation log-probabilities, truncation, and the objectives."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import LoadedModel, load_model
from lozo_core.optim import PairedClosure
from lozo_core.tasks.task import Prompt


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-opt", seed=0)


def token_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("name", ["copa", "winogrande"])
def test_choice_scores_are_mean_log_probs_of_the_continuation(name, tiny):
    examples = T.get_task(name).split("dev")[:3]
    batch = S.encode(tiny.tokenizer, examples)
    assert batch.input_ids.shape[0] == 2 * len(examples) and batch.labels.shape == (3,)
    with torch.no_grad():
        scores = S.candidate_scores(tiny.model, batch, [])
        for i, ex in enumerate(examples):
            for k, (context, continuation) in enumerate(ex.choices):
                head, tail = (
                    token_ids(tiny.tokenizer, context),
                    token_ids(tiny.tokenizer, continuation),
                )
                logits = tiny.model(input_ids=torch.tensor([head + tail])).logits[0, :-1]
                at = torch.arange(len(head) - 1, len(head) + len(tail) - 1)
                expected = logits.log_softmax(-1)[at, tail].mean()
                assert torch.allclose(scores[i, k], expected, atol=1e-5), (i, k)
        doubled = S.candidate_scores(tiny.model, batch.doubled(), [])
    assert batch.doubled().copies == 2
    assert torch.allclose(doubled, torch.cat([scores, scores]), atol=1e-6)


class RiggedBigram(nn.Module):
    """A stub language model: equal next-token logits, plus 5 after token ``a`` for token ``b``
    for each rigged pair ``(a, b)``."""

    config = SimpleNamespace(max_position_embeddings=128)

    def __init__(self, pairs: set[tuple[int, int]], vocab: int):
        super().__init__()
        self.pairs, self.vocab = pairs, vocab

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for a, b in self.pairs:
            logits[..., b] += 5.0 * (input_ids == a)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:])


@pytest.mark.parametrize("name", ["copa", "winogrande"])
@pytest.mark.parametrize("flip", [False, True])
def test_the_candidate_the_model_is_rigged_to_prefer_wins(name, flip, tiny):
    """Rigged to predict each token of one candidate (the correct one, or with ``flip`` the
    other) from the token before it, the model's prediction is that candidate. One example per
    sentence opening, so that WinoGrande's twin sentences do not rig each other."""
    examples = list({ex.text[:20]: ex for ex in T.get_task(name).split("dev")[:40]}.values())[:12]
    target = [1 - ex.label if flip else ex.label for ex in examples]
    pairs = set()
    for ex, k in zip(examples, target, strict=True):
        context, continuation = ex.choices[k]
        head, tail = token_ids(tiny.tokenizer, context), token_ids(tiny.tokenizer, continuation)
        pairs |= set(zip(head[-1:] + tail[:-1], tail, strict=True))
    model = RiggedBigram(pairs, len(tiny.tokenizer))
    predicted = S.predict(model, tiny.tokenizer, examples, [], batch_size=5)
    assert predicted.tolist() == target
    assert S.metrics(T.get_task(name), examples, predicted)["accuracy"] == (0.0 if flip else 1.0)


def test_long_multirc_prompt_keeps_its_end(tiny):
    """The budget drops the passage's beginning; the question, answer and ``Yes or No?`` stay."""
    example = max(T.get_task("multirc").split("dev")[:100], key=lambda ex: len(ex.text))
    full = token_ids(tiny.tokenizer, example.text)
    batch = S.encode(tiny.tokenizer, [example], max_length=64)
    assert len(full) > 64 and batch.input_ids[0].tolist() == full[-64:]
    assert batch.position_ids[0].tolist() == list(range(64))
    kept = tiny.tokenizer.decode(batch.input_ids[0])
    assert kept.endswith("is that correct? yes or no?")
    assert example.text.split("\n")[0].lower()[:40] not in kept


def test_long_choice_rows_keep_the_whole_continuation(tiny):
    example = T.get_task("copa").split("dev")[0]
    tails = [token_ids(tiny.tokenizer, c) for _, c in example.choices]
    batch = S.encode(tiny.tokenizer, [example], max_length=max(map(len, tails)) + 1)
    for row, mask, tail in zip(batch.input_ids, batch.continuation_mask, tails, strict=True):
        assert row[-len(tail) :].tolist() == tail and int(mask.sum()) == len(tail)
    with pytest.raises(
        ValueError, match=r"has \d+ tokens; expected 1 to 2 \(the prompt budget is 3\)"
    ):
        S.encode(tiny.tokenizer, [example], max_length=3)


class HalfAndHalf(nn.Module):
    """A stub scorer: the first half of the rows predicts class 1, the second half class 0."""

    config = SimpleNamespace(max_position_embeddings=128)

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep):
        logits = torch.zeros(len(input_ids), 1, 2)
        logits[: len(input_ids) // 2, 0, 1] = 1.0
        logits[len(input_ids) // 2 :, 0, 0] = 1.0
        return SimpleNamespace(logits=logits)


def stub_batch(labels: list[int]) -> S.Batch:
    ids = torch.ones(len(labels), 3, dtype=torch.long)
    return S.Batch(ids, ids, torch.arange(3).expand(len(labels), 3), torch.tensor(labels))


def test_accuracy_objective_scores_each_half_of_the_doubled_batch():
    model, batch = HalfAndHalf(), stub_batch([1, 0, 1, 1])
    errors = S.objective(T.get_task("sst2"), "accuracy")
    assert errors(model, batch.doubled(), [0, 1]).tolist() == [0, 1, 0, 0, 1, 0, 1, 1]
    plus, minus = PairedClosure(lambda b: errors(model, b, [0, 1]), batch, S.Batch.doubled).pair()
    assert (float(plus), float(minus)) == (0.25, 0.75)
    f1_error = S.objective(T.get_task("multirc"), "accuracy")
    plus, minus = PairedClosure(lambda b: f1_error(model, b, [0, 1]), batch, S.Batch.doubled).pair()
    assert float(plus) == pytest.approx(1 - 6 / 7) and float(minus) == 1.0  # F1: 3 TP, 1 FP; 0 TP
    assert S.objective(T.get_task("copa"), "loss") is S.per_example_loss
    with pytest.raises(ValueError, match="objective 'f1': expected one of loss, accuracy"):
        S.objective(T.get_task("multirc"), "f1")


def test_f1_of_class_one():
    f1 = lambda p, y: S.f1(torch.tensor(p), torch.tensor(y))
    assert f1([1, 1, 0, 0], [1, 0, 1, 0]) == 0.5
    assert f1([0, 0], [0, 0]) == 1.0 and f1([0, 0], [1, 0]) == 0.0
    examples = [T.Example("x", y) for y in (1, 0, 1, 0)]
    scores = S.metrics(T.get_task("multirc"), examples, torch.tensor([1, 1, 0, 0]))
    assert scores == {"accuracy": 0.5, "f1": 0.5}


def test_scorer_rejects_what_it_cannot_score(tiny):
    encoder = LoadedModel(nn.Identity(), tiny.tokenizer, "minilm-l6", "", causal=False)
    with pytest.raises(
        ValueError, match="task 'copa' scores continuations .* minilm-l6 is an encoder"
    ):
        S.scorer(encoder, T.get_task("copa"))
    clash = T.Task("clash", Prompt("{s}", ("0", "1"), ("Yes", "yes")), None, "", "")
    with pytest.raises(
        ValueError, match=r"label words \('Yes', 'yes'\) of clash share first tokens"
    ):
        S.label_token_ids(tiny.tokenizer, clash)
    copa, sst2 = T.get_task("copa").split("dev")[:1], T.get_task("sst2").split("dev")[:1]
    with pytest.raises(ValueError, match="cannot batch label-word and choice examples together"):
        S.encode(tiny.tokenizer, copa + sst2)


def test_a_prompt_starts_with_the_bos_its_tokenizer_adds(tiny):
    import copy

    tokenizer = copy.deepcopy(tiny.tokenizer)
    sst2, copa = (T.get_task(name).split("dev")[:2] for name in ("sst2", "copa"))
    plain = [S.encode(tokenizer, examples, 32) for examples in (sst2, copa)]
    tokenizer.bos_token, tokenizer.add_bos_token = "[CLS]", True  # as OPT's GPT-2 tokenizer: </s>
    for before, after in zip(
        plain, (S.encode(tokenizer, ex, 32) for ex in (sst2, copa)), strict=True
    ):
        first = after.input_ids.gather(1, (after.attention_mask == 0).sum(1, keepdim=True))
        assert (first == tokenizer.bos_token_id).all() and after.input_ids.shape[1] <= 32
        assert torch.equal(after.input_ids[:, -5:], before.input_ids[:, -5:])
