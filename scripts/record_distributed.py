"""Record bytes all-reduced and step time of data-parallel MeZO, LOZO and FO-SGD (DDP) on CPU.

``python scripts/record_distributed.py [--world-size 2] [--model opt-125m] [--batch-size 4]
[--seq-len 64] [--steps 5]`` relaunches itself under ``torchrun --standalone --nproc-per-node N``
(gloo). Every process builds the same random-init model and token batch (seed 0), keeps its
shard of the global batch (``--batch-size`` sequences), and runs ``--warmup`` then ``--steps``
steps of each method: ``mezo`` (in-place), ``lozo`` (side-path, doubled batch), and ``fo-sgd``
(backpropagation in ``DistributedDataParallel``). A barrier precedes each timed step; rank 0's
wall time is the step time, and :func:`lozo_core.distributed.count_traffic` the all-reduce
payload of each step (on a ring each process sends and receives about 2(N-1)/N times it). After
the last step every process hashes its weights: ``ranks_identical`` says whether they agree.
``load_average_1min`` (before and after each method) shows how busy the machine was.
Rank 0 writes ``data/results/distributed/cpu_<model>_n<N>_b<B>x<T>.json`` with the command and
machine. Run it under ``flock /tmp/lozo-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

from lozo_core import distributed
from lozo_core.models import OPT_SIZES, random_init_like, tiny_opt
from lozo_core.optim import LOZO, MeZO, PairedClosure
from lozo_core.provenance import REPO_ROOT, machine
from lozo_core.train import weights_fingerprint

OUT = REPO_ROOT / "data" / "results" / "distributed"
METHODS = ("mezo", "lozo", "fo-sgd")
FIRST_ORDER = "fo-sgd"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world-size", type=int, default=2, help="processes (gloo, CPU)")
    p.add_argument("--model", default="opt-125m", choices=(*OPT_SIZES, "tiny-opt"))
    p.add_argument("--batch-size", type=int, default=4, help="global batch (sequences)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: 2/N)")
    args = p.parse_args(argv)
    if args.world_size < 1 or args.batch_size % args.world_size:
        p.error(
            f"--batch-size {args.batch_size} must divide by --world-size {args.world_size} (>= 1)"
        )
    return args


def next_token_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, one value per sequence."""
    logits = model(input_ids=ids).logits[:, :-1]
    losses = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
    )
    return losses.view(ids.shape[0], -1).mean(1)


def method_step(method: str, model: nn.Module, ids: torch.Tensor, group):
    """A zero-argument callable doing one data-parallel step of ``method`` on this shard."""
    if method == FIRST_ORDER:
        wrapped = distributed.data_parallel(model, group)
        opt = torch.optim.SGD(model.parameters(), lr=1e-7)

        def fo_step():
            opt.zero_grad(set_to_none=True)
            next_token_loss(wrapped, ids).mean().backward()
            opt.step()

        return fo_step
    loss_fn = lambda batch: next_token_loss(model, batch)
    if method == "mezo":
        opt = MeZO(model, lr=1e-7, process_group=group)
        return lambda: opt.step(lambda: loss_fn(ids).mean())
    opt = LOZO(model, lr=1e-7, rank=2, interval=50, engine="sidepath", process_group=group)
    closure = PairedClosure(loss_fn, ids, lambda b: torch.cat([b, b]))
    return lambda: opt.step(closure)


def measure(args: argparse.Namespace, method: str) -> dict:
    group = distributed.default_group()
    tiny = args.model == "tiny-opt"
    model = tiny_opt(seed=0) if tiny else random_init_like(args.model, seed=0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.batch_size, args.seq_len), generator=g)
    ids = ids[distributed.shard(args.batch_size, group)]
    step = method_step(method, model, ids, group)
    load_before = os.getloadavg()[0]
    for _ in range(args.warmup):
        step()
    times, traffic = [], []
    for _ in range(args.steps):
        if group is not None:
            dist.barrier(group)
        with distributed.count_traffic() as counted:
            tick = time.perf_counter()
            step()
            times.append(time.perf_counter() - tick)
        traffic.append((counted.bytes, counted.calls))
    fingerprints = [None] * distributed.world_size(group)
    mine = weights_fingerprint(model)["sha256"]
    if group is None:
        fingerprints = [mine]
    else:
        dist.all_gather_object(fingerprints, mine, group=group)
    if len(set(traffic)) != 1:
        raise RuntimeError(f"{method}: all-reduce traffic changed between steps: {traffic}")
    return {
        "step_s_median": statistics.median(times), "step_s_min": min(times),
        "step_s_max": max(times), "steps": len(times),
        "allreduce_bytes_per_step": traffic[0][0], "allreduce_calls_per_step": traffic[0][1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "ranks_identical": len(set(fingerprints)) == 1,
        "load_average_1min": [load_before, os.getloadavg()[0]],
    }  # fmt: skip


def worker(args: argparse.Namespace, command: str) -> None:
    torch.set_num_threads(args.threads or max(1, 2 // args.world_size))
    with distributed.process_group_from_env("cpu") as world:
        results = {method: measure(args, method) for method in METHODS}
        if distributed.rank() != 0:
            return
    fo = results[FIRST_ORDER]
    for method in METHODS:
        r = results[method]
        r["time_vs_fo_ddp"] = r["step_s_median"] / fo["step_s_median"]
        if fo["allreduce_bytes_per_step"]:
            r["bytes_vs_fo_ddp"] = r["allreduce_bytes_per_step"] / fo["allreduce_bytes_per_step"]
    record = {
        "config": {**vars(args), "backend": "gloo", "world_size": world, "random_init": True,
                   "loss": "next-token cross-entropy on random token ids"},
        "machine": machine(), "command": command, "results": results,
    }  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"cpu_{args.model}_n{world}_b{args.batch_size}x{args.seq_len}.json"
    (OUT / name).write_text(json.dumps(record, indent=1) + "\n")
    for method, r in results.items():
        print(
            f"{method:7s} {r['step_s_median']:.3f} s/step  {r['allreduce_bytes_per_step']:>12,d} B/step"
            f"  ×{r['time_vs_fo_ddp']:.2f} FO time  ranks identical: {r['ranks_identical']}"
        )
    print(f"wrote {(OUT / name).relative_to(REPO_ROOT)}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    command = shlex.join(["python", "scripts/record_distributed.py", *argv])
    if distributed.launched_by_torchrun():
        worker(args, command)
        return 0
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc-per-node", str(args.world_size), __file__, *argv]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or max(1, 2 // args.world_size))}
    return subprocess.run(launch, cwd=REPO_ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
