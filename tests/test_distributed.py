"""Data parallelism on torch.distributed: two gloo processes on CPU against one process.

Tolerances. The optimizer test runs tiny-opt in float64 with a float64 loss: two processes with
per-process batch b and one with batch 2b then differ only in summation order, so step scalars
agree to ``rtol=1e-12`` and weights to ``atol=1e-12`` (measured: ~1e-15 and ~1e-14 after weights
moved by ~0.3). The CLI runs in float32 with the loss in float32, and a zeroth-order coefficient
``(f+ - f-)/2ε`` magnifies a loss's rounding (~6e-8) by ``1/2ε``: there final losses agree to
``rtol=1e-5`` and weights to ``atol=1e-5`` (measured after 10 LOZO steps: ~2e-7 and ~4e-7).
"""

import json
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from lozo_core import distributed
from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import load_model
from lozo_core.optim import PairedClosure
from lozo_core.optim.table import TABLE, Hyper
from lozo_core.provenance import REPO_ROOT
from lozo_core.rng import stream
from lozo_core.train import TrainConfig, rebuild, train
from lozo_core.trajectory import Trajectory

WORLD = 2
EXACT = dict(rtol=1e-12, atol=1e-12)
FLOAT32_RTOL, FLOAT32_ATOL = 1e-5, 1e-5


def spawn(fn, store, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` in ``WORLD`` forked processes joined in a gloo group (a file
    store: no port to pick)."""

    def join(rank):
        init = f"file://{store}"
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
        try:
            fn(*args, **kwargs)
        finally:
            dist.destroy_process_group()

    torch.multiprocessing.start_processes(join, nprocs=WORLD, start_method="fork")


def optimizer_run(name: str, examples, global_batch: int, steps: int):
    """``steps`` steps of ``name`` on tiny-opt; this process evaluates its shard of each batch.
    Returns each step's recorded scalars, the all-reduced bytes of each step and the weights."""
    loaded = load_model("tiny-opt", dtype=torch.float64)
    model = loaded.model
    candidates = S.label_token_ids(loaded.tokenizer, T.get_task("sst2"))
    optimizer = TABLE[name].build(model, Hyper(lr=1e-2, rank=2, interval=3, seed=5))
    local = distributed.shard(global_batch)

    def loss_fn(b: S.Batch) -> torch.Tensor:
        out = model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                    position_ids=b.position_ids, logits_to_keep=1)  # fmt: skip
        return torch.nn.functional.cross_entropy(
            out.logits[:, -1, candidates], b.labels, reduction="none"
        )

    records, traffic = [], []
    for step in range(steps):
        pick = torch.randperm(len(examples), generator=stream(1, step))[:global_batch][local]
        batch = S.encode(loaded.tokenizer, [examples[i] for i in pick])
        with distributed.count_traffic() as counted:
            optimizer.step(PairedClosure(loss_fn, batch, S.Batch.doubled))
        records.append(optimizer.last_record)
        traffic.append(counted.bytes)
    return records, traffic, [p.detach().clone() for p in model.parameters()]


def scalars(records):
    key = "directional" if "directional" in records[0] else "losses"
    return torch.tensor([r[key] for r in records], dtype=torch.float64)


BYTES_PER_STEP = {"mezo": 16, "lozo": 16, "zo-sgd-cons": 16 + 24, "forward-grad": 16}


@pytest.fixture(scope="module")
def optimizer_runs(tmp_path_factory):
    """Every optimizer of ``BYTES_PER_STEP`` for 6 steps: by two processes with 2 examples each
    (one result per rank), and by one process with the 4-example batch."""
    examples = T.k_shot(T.get_task("sst2").split("train"), 8, 13)
    folder, global_batch, steps = tmp_path_factory.mktemp("runs"), 4, 6

    def worker():
        with pytest.raises(ValueError, match="global batch 5 does not divide by the world size 2"):
            distributed.shard(5)
        results = {
            name: optimizer_run(name, examples, global_batch, steps) for name in BYTES_PER_STEP
        }
        torch.save(results, folder / f"{dist.get_rank()}.pt")

    spawn(worker, folder / "store")
    ranks = [torch.load(folder / f"{r}.pt") for r in range(WORLD)]
    return {
        name: ([rank[name] for rank in ranks], optimizer_run(name, examples, global_batch, steps))
        for name in BYTES_PER_STEP
    }


@pytest.mark.parametrize("name", BYTES_PER_STEP)
def test_two_processes_with_batch_b_match_one_with_2b_step_for_step(name, optimizer_runs):
    ranks, (records, traffic, params) = optimizer_runs[name]
    for rank_records, rank_traffic, rank_params in ranks:
        assert rank_records == ranks[0][0], "ranks recorded different global scalars"
        assert all(torch.equal(x, y) for x, y in zip(rank_params, ranks[0][2], strict=True))
        assert rank_traffic == [BYTES_PER_STEP[name]] * len(records)
    torch.testing.assert_close(scalars(ranks[0][0]), scalars(records), **EXACT)
    assert [r.get("choices") for r in ranks[0][0]] == [r.get("choices") for r in records]
    torch.testing.assert_close(ranks[0][2], params, **EXACT)
    assert traffic == [0] * len(records), "one process communicates nothing"


SMALL = dict(model="tiny-opt", k_shot=8, batch_size=4, eval_examples=16, eval_every=4, lr=1e-3)


def final_loss(summary):
    return [p["loss"] for p in summary["curve"] if "loss" in p][-1]


def weights(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.parametrize("optimizer", ["lozo", "fo-sgd"])
def test_a_run_resumes_at_another_world_size(optimizer, tmp_path):
    cfg = lambda: TrainConfig(**SMALL, optimizer=optimizer, steps=10)
    alone = train(cfg(), tmp_path / "alone")

    train(cfg(), tmp_path / "one-then-two", until=5)
    spawn(train, tmp_path / "store-a", cfg(), tmp_path / "one-then-two", resume=True)
    resumed = json.loads((tmp_path / "one-then-two" / "summary.json").read_text())
    assert resumed["world_size"] == 2
    assert [c["world_size"] for c in resumed["chunks"]] == ([1, 2] if optimizer == "lozo" else [])
    assert final_loss(resumed) == pytest.approx(final_loss(alone), rel=FLOAT32_RTOL)
    torch.testing.assert_close(
        weights(tmp_path / "one-then-two"), weights(tmp_path / "alone"), rtol=0, atol=FLOAT32_ATOL
    )
    if optimizer == "fo-sgd":
        return
    spawn(train, tmp_path / "store-b", cfg(), tmp_path / "two-then-one", until=6)
    (tmp_path / "two-then-one" / "checkpoint.pt").unlink()
    again = train(cfg(), tmp_path / "two-then-one", resume=True)
    assert [c["world_size"] for c in again["chunks"]] == [2, 1]
    assert final_loss(again) == pytest.approx(final_loss(alone), rel=FLOAT32_RTOL)


def test_an_f1_objective_is_refused_across_processes(tmp_path):
    cfg = TrainConfig(**SMALL, task="multirc", optimizer="lozo", objective="accuracy",
                      engine="inplace", steps=2)  # fmt: skip
    with pytest.raises(Exception, match="would average their shards' F1s"):
        spawn(train, tmp_path / "store", cfg, tmp_path / "run")


def test_torchrun_cli_matches_one_process_and_replays_at_world_size_one(tmp_path):
    out = tmp_path / "R"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "lozo_core.train", "--model", "tiny-opt", "--optimizer", "lozo", "--steps", "10",
         "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(tmp_path.rglob("summary.json"))) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["command"].startswith("torchrun --nproc-per-node 2 -m lozo_core.train")

    cfg = TrainConfig(model="tiny-opt", optimizer="lozo", steps=10)
    alone = train(cfg, tmp_path / "alone")
    assert final_loss(summary) == pytest.approx(final_loss(alone), rel=FLOAT32_RTOL)
    assert summary["final_eval_accuracy"] == alone["final_eval_accuracy"]

    replayed, _, _ = rebuild(cfg, Trajectory.load(out), 10)
    live = weights(out)
    assert all(torch.equal(p, live[k]) for k, p in replayed.state_dict().items())


def test_traffic_counters_nest():
    with distributed.count_traffic() as outer:
        with distributed.count_traffic() as inner:
            distributed._record(torch.zeros(2, dtype=torch.float64))
        distributed._record(torch.zeros(1, dtype=torch.float64))
    assert (inner.bytes, outer.bytes) == (16, 24)
