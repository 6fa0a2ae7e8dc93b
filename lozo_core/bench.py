"""Step time and peak memory of every method, measured side by side in one run.

``python -m lozo_core.bench --model opt-125m --random-init --device cpu --steps 3 --json OUT``
times, on the same model and batch: inference ``forward`` (batch B, the honest
memory baseline) and ``forward-doubled`` (2B), then every trainable optimizer of
:data:`lozo_core.optim.table.TABLE` as training runs it (side-path rows evaluate both signs in
one forward over the doubled batch, the *paired* mode), and the variants of :data:`VARIANTS`:
LOZO with the in-place engine (the official code's way), LOZO's side path in its
*sequential* mode (two single-batch forwards, no doubled activations), and MeZO with its
directions kept in memory (one draw per step instead of four, one more model's size of memory).

Each method runs in its own child process (same seed, same random-init weights), so peak memory
is per method: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the peak resident set size
from the moment the model is loaded (``VmHWM`` after a reset through ``/proc/self/clear_refs``),
which includes the weights and the interpreter. A child that runs out of memory (the data-segment
limit ``--memory-limit-gib``, or the kernel's OOM killer) is recorded as ``did not fit``.
Times are wall clock on CPU and CUDA events on GPU: ``--warmup`` steps, then the median and
spread over ``--steps``.

Each zeroth-order method is also compared with its own floor, the forwards it cannot avoid
(its row's ``passes``): :math:`n` single-batch forwards, or :math:`n/2` forwards over the doubled
batch in the paired side path. The JSON has ``config``, ``machine`` (CPU model and flags), the
load average at start and end, and ``results.<method>`` with ``label``, ``step_s_median``,
``step_s_min``, ``step_s_max``, ``peak_mem_bytes``, ``rss_loaded_bytes`` and the ratios
``time_vs_<ref>`` and ``mem_vs_<ref>`` for ``ref`` in ``forward``, ``forward-doubled``, ``mezo``
and (time only) ``floor``. It is rewritten after every method, and ``--resume`` skips the
methods it already holds.

The batch is ``--batch-size`` × ``--seq-len`` random tokens and the loss next-token
cross-entropy over every position, unless ``--task`` names a task: then each step takes the
batch a full-protocol training run of seed 0 takes at that step (real prompts, left-padded to
the longest) and the training objective (label-word cross-entropy from the last position's
logits), so a step costs what it costs in the campaign.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import queue as queue_module
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import (
    DTYPES,
    OPT_SIZES,
    LoadedModel,
    decay_groups,
    load_model,
    load_tokenizer,
    random_init_like,
)
from lozo_core.optim import PairedClosure
from lozo_core.optim.table import ROWS, TABLE, Hyper
from lozo_core.provenance import cpu, machine, progress_bar, same_cpu
from lozo_core.train import TrainConfig, splits, step_batch, write_json_atomic


@dataclass(frozen=True)
class Method:
    """A benchmark row: inference over ``batches`` copies of the batch (``row`` None), or the
    optimizer ``row`` of the table, optionally on another ``engine`` or with the side path's
    sequential closure (``paired=False``)."""

    name: str
    label: str
    row: str | None = None
    engine: str | None = None
    paired: bool = True
    batches: int = 1
    keep_directions: bool = False


INFERENCE = (
    Method("forward", "inference, batch B"),
    Method("forward-doubled", "inference, batch 2B", batches=2),
)
VARIANTS = {
    "lozo": (
        Method("lozo-inplace", "LOZO, in-place engine", row="lozo", engine="inplace"),
        Method("lozo-sequential", "LOZO, side path sequential", row="lozo", paired=False),
    ),
    "mezo": (Method("mezo-kept", "MeZO, directions kept", row="mezo", keep_directions=True),),
}
METHODS = {
    m.name: m
    for m in (
        *INFERENCE,
        *(
            v
            for r in ROWS
            if r.trains
            for v in (Method(r.name, r.label, row=r.name), *VARIANTS.get(r.name, ()))
        ),
    )
}
BENCH_MODELS = (*OPT_SIZES, "smollm2-135m", "tiny-opt")
GIB = 2**30


def build_model(name: str, random_init: bool, dtype: torch.dtype) -> nn.Module:
    if random_init and name != "tiny-opt":
        return random_init_like(name, dtype=dtype, seed=0)
    return load_model(name, dtype=dtype).model


def task_workload(args: dict, model: nn.Module, device) -> tuple[list[S.Batch], object]:
    """The first ``warmup + steps`` batches of a full-protocol run of seed 0 on
    ``args["task"]`` (:func:`lozo_core.train.step_batch`) and its per-example training loss."""
    task = T.get_task(args["task"])
    tokenizer = load_tokenizer(args["model"])
    cfg = TrainConfig(
        model=args["model"], task=args["task"], k_shot=0, batch_size=args["batch_size"]
    )
    train_set = splits(cfg)[0]
    loaded = LoadedModel(model, tokenizer, args["model"], "benchmark", causal=True)
    _, candidates = S.scorer(loaded, task)
    objective = S.objective(task, "loss")
    batches = [
        step_batch(tokenizer, model, train_set, cfg.seed, step, cfg.batch_size).to(device)
        for step in range(args["warmup"] + args["steps"])
    ]
    return batches, lambda m, batch: objective(m, batch, candidates)


def per_example_lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, one value per sequence (float32 logits)."""
    logits = model(input_ids=ids).logits[:, :-1].float()
    losses = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
    )
    return losses.view(ids.shape[0], -1).mean(1)


def hyper(method: Method, rank: int, interval: int) -> Hyper:
    row = TABLE[method.row]
    engine = method.engine or Hyper.engine
    return Hyper(
        lr=row.default_lr, rank=rank, interval=interval, engine=engine,
        keep_directions=method.keep_directions,
    )  # fmt: skip


def doubled(batch):
    """``[batch; batch]``: token ids stacked, or :meth:`lozo_core.scoring.Batch.doubled`."""
    return batch.doubled() if isinstance(batch, S.Batch) else torch.cat([batch, batch])


def method_step(name: str, model: nn.Module, batches, rank: int, interval: int, loss=None):
    """``(step, paired)``: a zero-argument callable doing one step of method ``name``, and
    whether it evaluates both signs in one doubled forward.

    ``batches``: one batch of token ids used at every step, or a list of batches (token ids or
    :class:`~lozo_core.scoring.Batch`) taken in turn, one per step. ``loss(model, batch)`` gives
    one loss per sequence (default :func:`per_example_lm_loss`).
    """
    method = METHODS[name]
    loss = loss or per_example_lm_loss
    turn = itertools.cycle(batches if isinstance(batches, list) else [batches])
    loss_fn = lambda batch: loss(model, batch)
    if method.row is None:
        sized = doubled if method.batches == 2 else (lambda batch: batch)
        return torch.no_grad()(lambda: loss_fn(sized(next(turn)))), False
    row = TABLE[method.row]
    if not row.zeroth_order:
        opt = row.build(decay_groups(model, 0.0), hyper(method, rank, interval))

        def fo_step():
            opt.zero_grad(set_to_none=True)
            loss_fn(next(turn)).mean().backward()
            opt.step()

        return fo_step, False
    opt = row.build(decay_groups(model, 0.0), hyper(method, rank, interval))
    engine = getattr(getattr(opt, "engine", None), "name", "")
    paired = method.paired and engine.startswith("sidepath")

    def zo_step():
        closure = PairedClosure(loss_fn, next(turn), doubled)
        return opt.step(closure if paired else closure.__call__)

    return zo_step, paired


def _status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes, None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    return _status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (None off Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or any(
        s in text for s in ("can't allocate", "out of memory", "cannot allocate")
    )


def _timed_steps(step, warmup: int, steps: int, cuda: bool) -> list[float]:
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
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
    return times


def _measure(args: dict, method: str, queue) -> None:
    if args["threads"]:
        torch.set_num_threads(args["threads"])
    limit = args.get("memory_limit_bytes")
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if limit:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    device = torch.device(args["device"])
    cuda = device.type == "cuda"
    rss_start = _status_bytes("VmRSS")
    try:
        model = build_model(args["model"], args["random_init"], DTYPES[args["dtype"]]).to(device)
        if args.get("task"):
            batches, loss = task_workload(args, model, device)
        else:
            batches, loss = (
                torch.randint(
                    0,
                    model.config.vocab_size,
                    (args["batch_size"], args["seq_len"]),
                    generator=torch.Generator().manual_seed(0),
                ).to(device),
                None,
            )
        rss_loaded = _status_bytes("VmRSS")
        reset = not cuda and reset_peak_rss()
        step, paired = method_step(method, model, batches, args["rank"], args["interval"], loss)
        times = _timed_steps(step, args["warmup"], args["steps"], cuda)
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    else:
        reason = None
    if reason:
        resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))  # room for the queue's thread
        queue.put({"did_not_fit": reason})
        return
    if cuda:
        peak, source = torch.cuda.max_memory_allocated(), "cuda max_memory_allocated"
    else:
        peak = peak_rss_bytes()
        source = "peak RSS since the model was loaded" if reset else "peak RSS of the process"
    queue.put(
        {
            "times_s": times,
            "peak_mem_bytes": int(peak),
            "peak_mem_source": source,
            "rss_start_bytes": rss_start,
            "rss_loaded_bytes": rss_loaded,
            "parameters": sum(p.numel() for p in model.parameters()),
            "paired": paired,
        }
    )


def run_method(args: dict, method: str) -> dict:
    """Measure ``method`` in a fresh child process; ``did_not_fit`` if it ran out of memory."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(args, method, queue))
    load = {"loadavg_start": os.getloadavg()}
    proc.start()
    proc.join()
    load["loadavg_end"] = os.getloadavg()
    try:
        result = queue.get(timeout=10)
    except queue_module.Empty:
        result = None
    if result is None:
        if proc.exitcode == -9:
            reason = "killed by SIGKILL (the kernel's OOM killer)"
            return {"error": "did not fit", "did_not_fit": reason, **load}
        return {"error": f"child exited with code {proc.exitcode}", **load}
    if "did_not_fit" in result:
        return {"error": "did not fit", **result, **load}
    times = result.pop("times_s")
    floor = floor_forwards(method, result["paired"], args["rank"], args["interval"])
    return {
        "label": METHODS[method].label,
        "step_s_median": statistics.median(times), "step_s_min": min(times), "step_s_max": max(times),
        "steps": len(times), "times_s": times, **result, **({"floor": floor} if floor else {}), **load,
    }  # fmt: skip


def floor_forwards(name: str, paired: bool, rank: int, interval: int) -> dict[str, float] | None:
    """The forwards method ``name`` cannot avoid, from its row's ``passes``: ``{"forward": n}``,
    or ``{"forward-doubled": n / 2}`` in the paired side path; None for inference and for
    methods that differentiate."""
    method = METHODS[name]
    if method.row is None:
        return None
    passes = TABLE[method.row].passes(hyper(method, rank, interval))
    if set(passes) != {"forward"}:
        return None
    n = passes["forward"]
    return {"forward-doubled": n / 2} if paired else {"forward": n}


def _measured(results: dict, name: str) -> dict | None:
    r = results.get(name)
    return r if r is not None and "error" not in r else None


def floor_seconds(results: dict, method: str) -> float | None:
    """The time of ``method``'s floor (``floor``: inference row -> count), if those rows were measured."""
    floor = results[method].get("floor") or {}
    if not floor or not all(_measured(results, ref) for ref in floor):
        return None
    return sum(n * results[ref]["step_s_median"] for ref, n in floor.items())


def add_ratios(results: dict) -> None:
    """Time and peak memory of every row over ``forward``, ``forward-doubled``, ``mezo`` and its floor."""
    for method, r in results.items():
        if "error" in r:
            continue
        for ref in ("forward", "forward-doubled", "mezo"):
            base = _measured(results, ref)
            if base:
                r[f"time_vs_{ref}"] = r["step_s_median"] / base["step_s_median"]
                r[f"mem_vs_{ref}"] = r["peak_mem_bytes"] / base["peak_mem_bytes"]
        floor = floor_seconds(results, method)
        if floor:
            r["time_vs_floor"] = r["step_s_median"] / floor


def goals(results: dict, device: str) -> list[str]:
    """Where each stated target stands (targets, not tests), and the side path's two modes."""

    def line(text: str, value: float, target: float) -> str:
        return (
            f"{text} = {value:.2f} (target <= {target}): {'met' if value <= target else 'not met'}"
        )

    lines = []
    paired, seq = _measured(results, "lozo"), _measured(results, "lozo-sequential")
    if paired and "time_vs_floor" in paired:
        lines.append(
            line("LOZO side-path (paired) step / doubled forward", paired["time_vs_floor"], 1.15)
        )
    if paired and "time_vs_mezo" in paired:
        target = 0.4 if device == "cpu" else 0.6
        lines.append(
            line("LOZO side-path (paired) step / MeZO step", paired["time_vs_mezo"], target)
        )
    for name, r in (("paired", paired), ("sequential", seq)):
        if r and "mem_vs_forward" in r:
            lines.append(
                line(
                    f"LOZO side-path ({name}) peak memory / single-batch inference",
                    r["mem_vs_forward"],
                    1.05,
                )
            )
    if paired and seq:
        lines.append(
            f"sequential / paired side path: step time x{seq['step_s_median'] / paired['step_s_median']:.2f}, "
            f"peak memory x{seq['peak_mem_bytes'] / paired['peak_mem_bytes']:.2f}"
        )
    if _measured(results, "mezo") and "mem_vs_forward" in results["mezo"]:
        lines.append(
            f"MeZO peak memory / single-batch inference = {results['mezo']['mem_vs_forward']:.2f}"
        )
    if _measured(results, "fo-adam") and "mem_vs_forward" in results["fo-adam"]:
        lines.append(
            f"FO-Adam peak memory / single-batch inference = {results['fo-adam']['mem_vs_forward']:.2f}"
        )
    return lines  # fmt: skip


def table(results: dict) -> str:
    head = (
        f"{'method':16s} {'step s':>9s} {'min':>8s} {'max':>8s} {'x floor':>8s} {'x MeZO':>7s} "
        f"{'peak MiB':>9s} {'mem x fwd':>9s} {'mem x fwd2':>10s}"
    )
    rows = [head, "-" * len(head)]
    nan = float("nan")
    for name, r in results.items():
        if "error" in r:
            reason = f"did not fit: {r['did_not_fit']}" if "did_not_fit" in r else r["error"]
            rows.append(f"{name:16s} {reason}")
            continue
        rows.append(
            f"{name:16s} {r['step_s_median']:9.4f} {r['step_s_min']:8.4f} {r['step_s_max']:8.4f} "
            f"{r.get('time_vs_floor', nan):8.2f} {r.get('time_vs_mezo', nan):7.2f} {r['peak_mem_bytes'] / 2**20:9.0f} "
            f"{r.get('mem_vs_forward', nan):9.3f} {r.get('mem_vs_forward-doubled', nan):10.3f}"
        )  # fmt: skip
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
    p.add_argument("--seq-len", type=int, help="random tokens per sequence (default 64)")
    p.add_argument(
        "--task",
        help=f"time the training batches and loss of a full-protocol run on this task instead "
        f"of random tokens: one of {', '.join(T.TASKS)}",
    )
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
    p.add_argument(
        "--memory-limit-gib",
        type=float,
        default=None,
        help="data-segment limit per child on CPU, so a method that does not fit fails cleanly "
        "(default: MemAvailable - 3 GiB; 0: none)",
    )
    p.add_argument("--json", type=Path, help="write every figure here (after each method)")
    p.add_argument(
        "--resume", action="store_true", help="keep the methods already measured in --json"
    )
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
    if args.task and args.task not in T.TASKS:
        p.error(f"--task {args.task!r}: expected one of {', '.join(T.TASKS)}")
    if args.task and args.seq_len is not None:
        p.error(
            f"--seq-len {args.seq_len} with --task {args.task}: the task's prompts set the length"
        )
    if not args.task and args.seq_len is None:
        args.seq_len = 64
    for name in ("batch_size", "seq_len", "steps", "rank", "interval"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: expected an integer >= 1")
    if args.warmup < 0:
        p.error(f"--warmup {args.warmup}: expected an integer >= 0")
    if args.memory_limit_gib is not None and args.memory_limit_gib < 0:
        p.error(f"--memory-limit-gib {args.memory_limit_gib}: expected a number >= 0")
    if args.resume and not args.json:
        p.error("--resume needs --json (the file to resume)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available on this machine")
    return args


def memory_limit_bytes(args: argparse.Namespace) -> int | None:
    if args.device != "cpu" or args.memory_limit_gib == 0:
        return None
    if args.memory_limit_gib is not None:
        return int(args.memory_limit_gib * GIB)
    available = available_memory_bytes()
    return None if available is None else max(available - 3 * GIB, GIB)


def resumed_results(path: Path, config: dict) -> dict:
    """The measured rows of an earlier run with the same settings on this CPU: errors are
    measured again, and so is ``did not fit`` unless it was found under the same memory limit.
    Rows from another CPU would mix with this run's in one table of ratios: refused."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    recorded, here = old.get("machine", {}), cpu()
    if not same_cpu(recorded, here):
        raise SystemExit(
            f"--resume: {path} was measured on {recorded.get('cpu_model', '?')} with other CPU "
            f"flags than this {here['cpu_model']}; its ratios cannot take rows from this CPU. "
            "Write to another file (--json) or drop --resume"
        )
    keys = [k for k in config if k not in ("methods", "memory_limit_bytes")]
    changed = [k for k in keys if old["config"].get(k) != config[k]]
    if changed:
        raise SystemExit(
            f"--resume: {path} was recorded with other settings ({', '.join(changed)}); "
            "remove it or drop --resume"
        )
    same_limit = old["config"].get("memory_limit_bytes") == config.get("memory_limit_bytes")
    return {m: r for m, r in old["results"].items()
            if "error" not in r or ("did_not_fit" in r and same_limit)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    config = {
        k: v for k, v in vars(args).items() if k not in ("json", "resume", "memory_limit_gib")
    }
    config["memory_limit_bytes"] = memory_limit_bytes(args)
    results = resumed_results(args.json, config) if args.resume else {}
    record = {
        "kind": "bench", "config": config, "machine": machine(), "loadavg_start": os.getloadavg(),
        "command": "python -m lozo_core.bench " + shlex.join(argv),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }  # fmt: skip
    todo = [m for m in args.methods if m not in results]
    shape = f"{args.batch_size} {args.task}" if args.task else f"{args.batch_size}x{args.seq_len}"
    bar = progress_bar(todo, desc=f"bench {args.model} {args.dtype} {shape}")
    for method in bar:
        bar.set_postfix_str(method)
        results[method] = run_method(config, method)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            ordered = {m: results[m] for m in METHODS if m in results}
            write_json_atomic(
                {**record, "results": ordered, "loadavg_end": os.getloadavg()}, args.json
            )
    results = {m: results[m] for m in METHODS if m in results}
    add_ratios(results)
    print(table(results))
    report = goals(results, "cpu" if args.device == "cpu" else "gpu")
    print("\n".join(report))
    if args.json:
        record.update(results=results, goals=report, loadavg_end=os.getloadavg())
        write_json_atomic(record, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
