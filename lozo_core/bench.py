"""Step time and peak memory of every method, measured side by side in one run.

``python -m lozo_core.bench --model opt-125m --random-init --device cpu --steps 3 --json OUT``
times, on the same model, batch and sequence length: inference ``forward`` (batch B) and
``forward-doubled`` (2B), ``mezo`` (in-place seed trick), ``lozo-inplace`` (official-code style:
perturb the weights, two forwards), ``lozo-sidepath`` (one forward over the doubled batch, no
weight writes), ``lozo-m``, ``zo-adam``, ``fo-sgd`` and ``fo-adam`` (backpropagation).

Each method runs in its own child process (same seed, same random-init weights), so peak memory
is per method: ``torch.cuda.max_memory_allocated`` on GPU, peak RSS on CPU. Times are wall clock
on CPU and CUDA events on GPU: ``--warmup`` steps, then the median and spread over ``--steps``.
The JSON has ``config``, ``machine`` and ``results.<method>`` with ``step_s_median``,
``step_s_min``, ``step_s_max``, ``peak_mem_bytes`` and ratios to MeZO and to one forward.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lozo_core.models import DTYPES, OPT_SIZES, load_model, random_init_like, tiny_opt
from lozo_core.optim import LOZO, MeZO, PairedClosure, ZOAdam
from lozo_core.provenance import machine
from lozo_core.train import peak_memory_bytes

METHODS = (
    "forward",
    "forward-doubled",
    "mezo",
    "lozo-inplace",
    "lozo-sidepath",
    "lozo-m",
    "zo-adam",
    "fo-sgd",
    "fo-adam",
)
BENCH_MODELS = (*OPT_SIZES, "smollm2-135m", "tiny-opt")


def build_model(name: str, random_init: bool, dtype: torch.dtype) -> nn.Module:
    if name == "tiny-opt":
        return tiny_opt(seed=0, dtype=dtype)
    if random_init:
        return random_init_like(name, dtype=dtype, seed=0)
    return load_model(name, dtype=dtype).model


def per_example_lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, one value per sequence (float32 logits)."""
    logits = model(input_ids=ids).logits[:, :-1].float()
    losses = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
    )
    return losses.view(ids.shape[0], -1).mean(1)


def method_step(method: str, model: nn.Module, ids: torch.Tensor, rank: int, interval: int):
    """A zero-argument callable doing one step of ``method``."""
    loss_fn = lambda batch: per_example_lm_loss(model, batch)
    doubled = torch.cat([ids, ids])
    if method == "forward":
        return torch.no_grad()(lambda: loss_fn(ids))
    if method == "forward-doubled":
        return torch.no_grad()(lambda: loss_fn(doubled))
    if method in ("fo-sgd", "fo-adam"):
        opt = (torch.optim.SGD if method == "fo-sgd" else torch.optim.Adam)(
            model.parameters(), lr=1e-7
        )

        def fo_step():
            opt.zero_grad(set_to_none=True)
            loss_fn(ids).mean().backward()
            opt.step()

        return fo_step
    plain = lambda: loss_fn(ids).mean()
    if method == "mezo":
        opt = MeZO(model, lr=1e-7)
        return lambda: opt.step(plain)
    if method == "zo-adam":
        opt = ZOAdam(model, lr=1e-7)
        return lambda: opt.step(plain)
    engine = "inplace" if method == "lozo-inplace" else "sidepath"
    momentum = 0.9 if method == "lozo-m" else 0.0
    opt = LOZO(model, lr=1e-7, rank=rank, interval=interval, momentum=momentum, engine=engine)
    closure = (
        plain if engine == "inplace" else PairedClosure(loss_fn, ids, lambda b: torch.cat([b, b]))
    )
    return lambda: opt.step(closure)


def _measure(args: dict, method: str, queue) -> None:
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    device = torch.device(args["device"])
    model = build_model(args["model"], args["random_init"], DTYPES[args["dtype"]]).to(device)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(
        0, model.config.vocab_size, (args["batch_size"], args["seq_len"]), generator=g
    ).to(device)
    step = method_step(method, model, ids, args["rank"], args["interval"])
    cuda = device.type == "cuda"
    for _ in range(args["warmup"]):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args["steps"]):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    peak = peak_memory_bytes(args["device"])
    queue.put(
        {
            "times_s": times,
            "peak_mem_bytes": int(peak),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    )


def run_method(args: dict, method: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(args, method, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return {"error": f"child exited with code {proc.exitcode}"}
    result = queue.get()
    times = result.pop("times_s")
    return {
        "step_s_median": statistics.median(times), "step_s_min": min(times), "step_s_max": max(times),
        "steps": len(times), **result,
    }  # fmt: skip


def add_ratios(results: dict) -> None:
    for r in results.values():
        if "error" in r:
            continue
        for ref in ("mezo", "forward", "forward-doubled"):
            if ref in results and "error" not in results[ref]:
                r[f"time_vs_{ref}"] = r["step_s_median"] / results[ref]["step_s_median"]
                r[f"mem_vs_{ref}"] = r["peak_mem_bytes"] / results[ref]["peak_mem_bytes"]


def goals(results: dict, device: str) -> list[str]:
    """Where each stated target stands (targets, not tests)."""
    lines = []
    side = results.get("lozo-sidepath", {})
    if "time_vs_forward-doubled" in side:
        t = side["time_vs_forward-doubled"]
        lines.append(
            f"LOZO side-path step / doubled forward = {t:.2f} (target <= 1.15): {'met' if t <= 1.15 else 'not met'}"
        )
    if "time_vs_mezo" in side:
        t, target = side["time_vs_mezo"], 0.4 if device == "cpu" else 0.6
        lines.append(
            f"LOZO side-path step / MeZO step = {t:.2f} (target <= {target}): {'met' if t <= target else 'not met'}"
        )
    if "mem_vs_forward-doubled" in side:
        mem = side["mem_vs_forward-doubled"]
        lines.append(
            f"LOZO side-path peak memory / doubled inference = {mem:.3f} (target <= 1.05): {'met' if mem <= 1.05 else 'not met'}"
        )
    if "mem_vs_forward-doubled" in results.get("fo-adam", {}):
        lines.append(
            f"FO-Adam peak memory / doubled inference = {results['fo-adam']['mem_vs_forward-doubled']:.2f}"
        )
    return lines


def table(results: dict) -> str:
    head = f"{'method':16s} {'step s (median)':>16s} {'min':>8s} {'max':>8s} {'peak MiB':>9s} {'x MeZO':>7s} {'x fwd':>6s} {'x fwd2':>7s} {'mem x fwd2':>10s}"
    rows = [head, "-" * len(head)]
    for name, r in results.items():
        if "error" in r:
            rows.append(f"{name:16s} {r['error']}")
            continue
        rows.append(
            f"{name:16s} {r['step_s_median']:16.4f} {r['step_s_min']:8.4f} {r['step_s_max']:8.4f} {r['peak_mem_bytes'] / 2**20:9.0f} "
            f"{r.get('time_vs_mezo', float('nan')):7.2f} {r.get('time_vs_forward', float('nan')):6.2f} "
            f"{r.get('time_vs_forward-doubled', float('nan')):7.2f} {r.get('mem_vs_forward-doubled', float('nan')):10.3f}"
        )
    return "\n".join(rows)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lozo_core.bench", description=__doc__.splitlines()[0]
    )
    p.add_argument("--model", default="opt-125m", help=f"one of {', '.join(BENCH_MODELS)}")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="architecture from its config, random weights (nothing fetched)",
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rank", type=int, default=2)
    p.add_argument("--interval", type=int, default=50)
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads per child (0: torch's default)"
    )
    p.add_argument(
        "--methods", nargs="*", default=list(METHODS), help=f"subset of {', '.join(METHODS)}"
    )
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args(argv)
    if args.model not in BENCH_MODELS:
        p.error(f"--model {args.model!r}: expected one of {', '.join(BENCH_MODELS)}")
    if args.model in OPT_SIZES and not args.random_init:
        p.error(
            f"--model {args.model}: real OPT weights are not fetched by the benchmark; add --random-init"
        )
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        p.error(f"--methods {unknown[0]!r}: expected some of {', '.join(METHODS)}")
    for name in ("batch_size", "seq_len", "steps", "rank", "interval"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: expected an integer >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available on this machine")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    config = {k: v for k, v in vars(args).items() if k != "json"}
    results = {}
    for method in args.methods:
        print(f"measuring {method} ...", flush=True)
        results[method] = run_method(config, method)
    add_ratios(results)
    print(table(results))
    report = goals(results, "cpu" if args.device == "cpu" else "gpu")
    print("\n".join(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "config": config, "machine": machine(), "results": results, "goals": report,
            "command": "python -m lozo_core.bench " + shlex.join(argv), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }  # fmt: skip
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
