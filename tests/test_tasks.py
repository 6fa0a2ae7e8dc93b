"""Tasks as data: the vendored files, the templates against MeZO's, readers, sampling, and the
SST-2/RTE encodings the recorded results depend on."""

import hashlib
from collections import Counter
from functools import cache

import pytest

from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import minilm_tokenizer
from lozo_core.tasks.glue import read_tsv
from lozo_core.tasks.jsonl import read_jsonl
from lozo_core.tasks.task import DATA_DIR

SIZES = {  # train, dev examples (MultiRC: answer options of the first 100 / all 83 paragraphs)
    "sst2": (67349, 872), "sst2-review": (67349, 872), "rte": (2490, 277), "copa": (400, 100),
    "cb": (250, 56), "wic": (5428, 638), "multirc": (5985, 4848), "winogrande": (2558, 1267),
}  # fmt: skip


@cache
def split(name: str, which: str) -> list[T.Example]:
    return T.get_task(name).split(which)


def digest(strings) -> str:
    return hashlib.sha256("\x1e".join(strings).encode()).hexdigest()[:16]


def batch_digest(batch) -> str:
    h = hashlib.sha256()
    for t in (batch.input_ids, batch.attention_mask, batch.position_ids, batch.labels):
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", list(T.TASKS))
def test_every_task_reads_its_vendored_splits(name):
    task = T.get_task(name)
    train, dev = task.split("train"), task.split("dev")
    assert (len(train), len(dev)) == SIZES[name]
    classes = len(task.label_words) or 2
    assert {ex.label for ex in train} == set(range(classes))
    assert all(len(ex.choices) == (classes if task.multiple_choice else 0) for ex in train + dev)


def test_dev_label_counts_match_the_data_readme():
    count = lambda name: Counter(ex.label for ex in T.get_task(name).split("dev"))
    assert count("cb") == {0: 23, 1: 28, 2: 5}
    assert count("copa") == {0: 55, 1: 45}
    assert count("winogrande") == {0: 628, 1: 639}
    assert count("multirc") == {0: 2773, 1: 2075}
    assert count("wic") == {0: 319, 1: 319}


def test_templates_give_mezos_prompts():
    row = {"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.",
           "choice2": "I cut the grass.", "question": "cause", "label": 0, "idx": 0}  # fmt: skip
    (copa,) = T.get_task("copa").template(row)
    assert copa.choices == (
        ("My body cast a shadow over the grass because", " the sun was rising."),
        ("My body cast a shadow over the grass because", " I cut the grass."),
    )
    (effect,) = T.get_task("copa").template(row | {"question": "effect", "label": 1})
    assert effect.label == 1 and effect.choices[0][0].endswith("grass so")
    (cb,) = T.get_task("cb").template(
        {"premise": "It rained.", "hypothesis": "it was wet", "label": "neutral"}
    )
    assert cb == T.Example(
        'Suppose It rained. Can we infer that "it was wet"? Yes, No, or Maybe?\n', 2
    )
    (wic,) = T.get_task("wic").template(
        {"word": "run", "sentence1": "Run rogue.", "sentence2": "She ran.", "label": True}
    )
    assert wic.text.endswith(
        '"run" have the same meaning in these two sentences? Yes, No?\nRun rogue.\nShe ran.\n'
    )
    assert wic.label == 1
    sentence = "Ian ate Dennis's menudo because _ enjoyed eating intestine."
    (wino,) = T.get_task("winogrande").template(
        {"sentence": sentence, "option1": "Ian", "option2": "Dennis", "answer": "2"}
    )
    assert wino.label == 1 and wino.choices == (
        ("Ian ate Dennis's menudo because Ian", " enjoyed eating intestine."),
        ("Ian ate Dennis's menudo because Dennis", " enjoyed eating intestine."),
    )
    paragraph = {"passage": {"text": "P.", "questions": [
        {"question": "Q1?", "answers": [{"text": "a", "label": 1}, {"text": "b", "label": 0}]},
        {"question": "Q2?", "answers": [{"text": "", "label": 0}]},
    ]}}  # fmt: skip
    flat = T.get_task("multirc").template(paragraph)
    assert [ex.label for ex in flat] == [1, 0, 0]
    assert (
        flat[0].text == 'P.\nQuestion: Q1?\nI found this answer "a". Is that correct? Yes or No?\n'
    )
    assert T.get_task("sst2-review").template({"sentence": "fine ", "label": "1"}) == [
        T.Example("Review: fine\nSentiment:", 1)
    ]


def test_sst2_and_rte_encodings_are_unchanged():
    """SST-2 pinned from the pre-split ``lozo_core/data.py`` (same prompts, draws, token ids);
    RTE re-pinned when its CSV quoting began to be undone (the draws are unchanged)."""
    tokenizer = minilm_tokenizer()
    sst2, rte = T.get_task("sst2"), T.get_task("rte")
    shots = T.k_shot(split("sst2", "train"), 16, 13)
    assert digest(ex.text for ex in shots) == "8260e0cb46675ba0"
    assert shots[0] == T.Example("is almost entirely witless and inane , It was", 0)
    train, validation = T.train_validation(split("rte", "train"), 13)
    assert (digest(ex.text for ex in train), digest(ex.text for ex in validation)) == (
        "c23467cbfe988434",
        "41c2afead95828ca",
    )
    assert digest(ex.text for ex in T.sample(sst2.split("dev"), 200, 13)) == "786d01695c0a2225"
    assert digest(ex.text for ex in T.sample(rte.split("dev"), 200, 13)) == "a3010f25f9b148c5"
    batch = S.encode(tokenizer, shots[:2])
    assert batch.input_ids[0].tolist() == [0] * 7 + [2003, 2471, 4498, 15966, 3238, 1998, 27118, 2638, 1010, 2009, 2001]  # fmt: skip
    assert batch.position_ids[0].tolist() == [0] * 8 + list(range(1, 11))
    assert batch.labels.tolist() == [0, 1] and batch.continuation_mask is None
    assert batch_digest(S.encode(tokenizer, shots, 128)) == "c4091ca9f04f3ba3"
    assert batch_digest(S.encode(tokenizer, train[:16], 128)) == "7c7cf254349568ea"
    assert batch_digest(S.encode(tokenizer, train[:16])) == "1cef3a82b82e8d3f"
    assert S.label_token_ids(tokenizer, sst2) == [6659, 2307]
    assert S.label_token_ids(tokenizer, rte) == [2748, 2053]


@pytest.mark.parametrize(
    ("task", "content", "message"),
    [
        ("sst2", "sentence\tlabel\ngood movie\t1\nno label here\n", r":3: expected 2 tab-separated fields, got 1"),
        ("sst2", "sentence\tlabel\ngood movie\t7\n", r":2: label '7' is not one of '0', '1'"),
        ("sst2", "sentence\tlabel\n \t1\n", r":2: empty text field 'sentence'"),
        ("rte", "sentence1\tlabel\na\t0\n", r":1: header \['sentence1', 'label'\] lacks the columns"),
        ("cb", '{"premise": "a", "hypothesis": "b", "label": "entailment"}\n{"premise": "a"\n', r":2: not valid JSON"),
        ("cb", '{"premise": "a", "hypothesis": "b", "label": "maybe"}\n', r":1: label 'maybe' is not one of 'entailment'"),
        ("wic", '{"word": "a", "sentence1": "b", "sentence2": "c", "label": 1}\n', r":1: label 1 is not one of False, True"),
        ("copa", '{"premise": "a.", "choice1": "b", "choice2": "c", "question": "why", "label": 0}\n', r":1: question 'why' is not one of"),
        ("copa", '[1, 2]\n', r":1: expected a JSON object, got list"),
        ("multirc", '{"passage": {"text": "p", "questions": [{"question": "q", "answers": [{"text": "a"}]}]}}\n', r":1: missing field 'label'"),
        ("winogrande", '{"sentence": "_ and _", "option1": "a", "option2": "b", "answer": "1"}\n', r":1: sentence has 2 blanks"),
        ("winogrande", '{"sentence": "a _ b", "option1": "a", "answer": "1"}\n', r":1: missing field 'option2'"),
    ],
)  # fmt: skip
def test_reader_rejects_malformed_rows_with_file_and_line(task, content, message, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    with pytest.raises(ValueError, match=r"bad.txt" + message):
        T.get_task(task).read(bad)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data file not found: .*nope.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl", T.get_task("copa").template)
    with pytest.raises(FileNotFoundError, match="data file not found"):
        read_tsv(tmp_path / "nope.tsv", T.get_task("sst2").template)
    with pytest.raises(ValueError, match="unknown split 'test'; expected train or dev"):
        T.get_task("copa").split("test")
    with pytest.raises(ValueError, match="unknown task 'cola'; expected one of sst2, sst2-review"):
        T.get_task("cola")


def test_k_shot_sampling_is_seeded_and_balanced():
    train_set = split("sst2", "train")
    a, b = T.k_shot(train_set, 16, 13), T.k_shot(train_set, 16, 13)
    assert a == b and sorted(ex.label for ex in a) == [0] * 16 + [1] * 16
    assert T.k_shot(train_set, 16, 21) != a
    with pytest.raises(ValueError, match="k=17 per class but label 2 has only 16 examples"):
        T.k_shot(T.get_task("cb").split("train"), 17, 13)


def test_mezo_protocol_splits_are_disjoint_and_sized():
    train_set, validation_set = T.train_validation(split("rte", "train"), seed=13)
    assert len(train_set) == 1000 and len(validation_set) == 500
    assert not {ex.text for ex in train_set} & {ex.text for ex in validation_set}
    assert T.train_validation(split("rte", "train"), seed=21)[0] != train_set
    copa = T.get_task("copa")
    train_set, validation_set = T.train_validation(copa.split("train"), 13, n_validation=100)
    assert (len(train_set), len(validation_set)) == (300, 100)
    assert not {ex.text for ex in train_set} & {ex.text for ex in validation_set}


def test_rte_fields_are_unquoted():
    """GLUE's RTE TSV quotes 454 train and 48 dev fields CSV-style; the prompts hold the text."""
    train, dev = split("rte", "train"), split("rte", "dev")
    valero = [ex.text for ex in train if "Valero Energy Corp., on Monday" in ex.text]
    assert valero[0].startswith('Valero Energy Corp., on Monday, said it found "extensive" addit')
    rte = T.get_task("rte")
    verbatim = {w: read_tsv(DATA_DIR / getattr(rte, w), rte.template) for w in ("train", "dev")}
    changed = {
        w: sum(a.text != b.text for a, b in zip(s, verbatim[w], strict=True))
        for w, s in (("train", train), ("dev", dev))
    }
    assert changed == {"train": 454, "dev": 48}
