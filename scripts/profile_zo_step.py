"""Where a zeroth-order step's time goes on CPU, and how much a faster Gaussian draw would save.

Records ``data/results/bench/profile_zo_step_cpu_<model>_<dtype>.json``:

* ``generators``: nanoseconds per float32 Gaussian sample for every candidate way of drawing a
  direction for all of the model's parameters (torch per parameter, one flat buffer, a reused
  buffer, bf16; numpy's ``Generator.standard_normal(dtype=float32)`` bridged by
  ``torch.from_numpy``; torch with one generator per parameter in two threads).
* ``breakdown``: for MeZO and LOZO (in-place, side-path paired, side-path sequential), the
  fastest of ``--repeats`` steps under ``torch.profiler``, the main thread's time split into the
  forward passes (the closure), random draws (``aten::randn``), in-place weight writes
  (``add_``, ``addmm_``, ``mul_``, ``copy_``) and the rest (update arithmetic and waiting for
  directions), and the time the library's draw threads spent drawing directions (overlapping
  the main thread).
* ``mezo_variants``: MeZO's passes over the weights (draws, writes, update; a constant closure,
  so no forward) as the library runs them against standalone re-implementations of the
  proposals (the update as one ``add_``; fused restore + update; the passes split over two
  threads; none of them is the library's MeZO, whose order of passes stays), timed round-robin, with the largest weight difference to the library's after
  two real steps on the same batch.

Times are minima over repeats (the machine is shared; the load average is recorded per
section). Run under ``flock /tmp/lozo-heavy.lock``: about five minutes at 4 x 64 on a quiet
2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from lozo_core.bench import method_step, per_example_lm_loss
from lozo_core.models import DTYPES, random_init_like
from lozo_core.optim.directions import Query
from lozo_core.provenance import machine
from lozo_core.rng import stream
from lozo_core.train import write_json_atomic

OUT_DIR = Path(__file__).resolve().parent.parent / "data" / "results" / "bench"
BREAKDOWN_METHODS = ("mezo", "lozo-inplace", "lozo", "lozo-sequential")
LIBRARY = "library MeZO (4 passes, per-parameter streams drawn ahead)"
WRITES = ("aten::add_", "aten::addmm_", "aten::mul_", "aten::copy_")


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def balanced_halves(params: list[torch.Tensor]) -> list[list[int]]:
    """Parameter indices split into two lists of nearly equal total size (largest first)."""
    halves, load = ([], []), [0, 0]
    for i in sorted(range(len(params)), key=lambda i: -params[i].numel()):
        j = load.index(min(load))
        halves[j].append(i)
        load[j] += params[i].numel()
    return [sorted(h) for h in halves]


def generator_candidates(params: list[torch.Tensor], pool: ThreadPoolExecutor) -> dict:
    shapes = [tuple(p.shape) for p in params]
    largest = max(p.numel() for p in params)
    flat = torch.empty(largest)
    flat_np = np.empty(largest, dtype=np.float32)
    halves = balanced_halves(params)

    def torch_per_parameter(dtype=torch.float32):
        g = torch.Generator().manual_seed(1)
        for s in shapes:
            torch.randn(s, generator=g, dtype=dtype)

    def torch_flat():
        torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(1))

    def torch_reused_buffer():
        g = torch.Generator().manual_seed(1)
        for p in params:
            flat[: p.numel()].view(p.shape).normal_(generator=g)

    def numpy_per_parameter(bit_generator):
        rng = np.random.Generator(getattr(np.random, bit_generator)(1))
        for s in shapes:
            torch.from_numpy(rng.standard_normal(s, dtype=np.float32))

    def numpy_reused_buffer():
        rng = np.random.Generator(np.random.SFC64(1))
        for p in params:
            out = flat_np[: p.numel()].reshape(p.shape)
            rng.standard_normal(dtype=np.float32, out=out)
            torch.from_numpy(out)

    def per_parameter_streams(indices):
        for i in indices:
            torch.randn(shapes[i], generator=stream(1, i))

    candidates = {
        "torch.randn per parameter, one generator": torch_per_parameter,
        "torch.randn bf16 per parameter": lambda: torch_per_parameter(torch.bfloat16),
        "torch.randn one flat buffer per step": torch_flat,
        "Tensor.normal_ into one reused buffer": torch_reused_buffer,
        "numpy PCG64 standard_normal(float32) + torch.from_numpy": lambda: numpy_per_parameter(
            "PCG64"
        ),
        "numpy SFC64 standard_normal(float32) + torch.from_numpy": lambda: numpy_per_parameter(
            "SFC64"
        ),
        "numpy Philox standard_normal(float32) + torch.from_numpy": lambda: numpy_per_parameter(
            "Philox"
        ),
        "numpy SFC64 standard_normal(float32, out=reused buffer)": numpy_reused_buffer,
        "torch.randn, one generator per parameter, 1 thread": lambda: per_parameter_streams(
            range(len(params))
        ),
        "torch.randn, one generator per parameter, 2 threads (the library's layout)": lambda: list(
            pool.map(per_parameter_streams, halves)
        ),
    }
    n = sum(p.numel() for p in params)
    times = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()
    for _ in range(3):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    rows = {}
    for name, t in times.items():
        rows[name] = {"s_per_draw_of_all_parameters": min(t), "ns_per_sample": min(t) / n * 1e9}
        rows[name]["times_s"] = t
        print(f"  {name:62s} {min(t):6.3f} s  {rows[name]['ns_per_sample']:5.2f} ns/sample")
    return rows


class DrawClock:
    """Seconds spent in ``Query.draw`` on any thread: the library draws directions on worker
    threads ahead of use (:func:`lozo_core.optim.directions.prefetched`), which
    ``torch.profiler`` does not record."""

    def __init__(self):
        self.seconds, self._lock, self._original = 0.0, threading.Lock(), Query.draw

    def __enter__(self):
        original = self._original

        def timed_draw(query, i):
            t0 = time.perf_counter()
            out = original(query, i)
            with self._lock:
                self.seconds += time.perf_counter() - t0
            return out

        Query.draw = timed_draw
        return self

    def __exit__(self, *exc) -> None:
        Query.draw = self._original


def profiled_step(step: Callable[[], object]) -> dict:
    """One step under the profiler: the main thread's time split into forward / draws / weight
    writes / other (which includes waiting for the draw threads), and the draw threads' time."""
    with DrawClock() as clock, profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        with record_function("zo-step"):
            step()
        wall = time.perf_counter() - t0
    events = prof.events()
    root = next(e for e in events if e.name == "zo-step")
    parts = {"forward": 0.0, "random draws": 0.0, "weight writes": 0.0, "other": 0.0}
    stack = list(root.cpu_children)
    while stack:
        e = stack.pop()
        seconds = e.cpu_time_total / 1e6
        if e.name == "forward":
            parts["forward"] += seconds
        elif e.name in ("aten::randn", "aten::normal_"):
            parts["random draws"] += seconds
        elif e.name in WRITES:
            parts["weight writes"] += seconds
        elif e.cpu_children:
            stack.extend(e.cpu_children)
            parts["other"] += (
                e.cpu_time_total - sum(c.cpu_time_total for c in e.cpu_children)
            ) / 1e6
        else:
            parts["other"] += seconds
    parts["unaccounted (python)"] = wall - sum(parts.values())
    return {"wall_s": wall, **parts, "draw threads (overlapping)": clock.seconds}


def breakdown(model, ids, rank: int, interval: int, repeats: int) -> dict:
    def labelled(model_, batch):
        with record_function("forward"):
            return per_example_lm_loss(model_, batch)

    rows = {}
    for method in BREAKDOWN_METHODS:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        step, _ = method_step(method, model, ids, rank, interval, loss=labelled)
        plain_times = timed(step, repeats)
        profiled = [profiled_step(step) for _ in range(repeats)]
        model.load_state_dict(state)
        fastest = min(profiled, key=lambda p: p["wall_s"])
        rows[method] = {"step_s_unprofiled_min": min(plain_times), **fastest}
        print(
            f"  {method:18s} step {rows[method]['step_s_unprofiled_min']:.3f} s | "
            + " | ".join(f"{k} {v:.3f}" for k, v in fastest.items())
        )
    return rows


class MeZOVariant:
    """MeZO's step, re-implemented standalone to time proposed draw layouts.

    ``fused``: restore and update in one pass, :math:`\\theta \\leftarrow \\theta + (\\varepsilon -
    \\eta c) z` after the second forward (three passes over the weights instead of four).
    Parameter ``i``'s direction comes from its own ``stream(seed, k, 0, 0, 0, i)``, as in the
    library, so every variant replays the library's draws; ``parallel``: the passes run in two
    threads over balanced halves of the parameters.
    """

    def __init__(self, params, *, lr, eps, fused, parallel, pool, seed=0):
        self.params, self.lr, self.eps, self.seed, self.k = params, lr, eps, seed, 0
        self.fused, self.parallel, self.pool = fused, parallel, pool
        self.halves = balanced_halves(params)

    def _pass(self, scale: float) -> None:
        keys = (self.seed, self.k, 0, 0, 0)
        if not self.parallel:
            for i, p in enumerate(self.params):
                p.add_(torch.randn(p.shape, generator=stream(*keys, i)), alpha=scale)
            return

        def half(indices):
            for i in indices:
                p = self.params[i]
                p.add_(torch.randn(p.shape, generator=stream(*keys, i)), alpha=scale)

        list(self.pool.map(half, self.halves))

    @torch.no_grad()
    def step(self, closure) -> None:
        self._pass(self.eps)
        plus = float(closure())
        self._pass(-2 * self.eps)
        minus = float(closure())
        c = (plus - minus) / (2 * self.eps)
        if self.fused:
            self._pass(self.eps - self.lr * c)
        else:
            self._pass(self.eps)
            self._pass(-self.lr * c)
        self.k += 1


def mezo_variants(model, ids, pool: ThreadPoolExecutor, repeats: int) -> dict:
    """What the proposals change: the time of MeZO's passes over the weights (draw, write,
    update) for the library and each variant, with a constant closure so that no forward runs,
    timed round-robin (one step of each per round, so load changes on a shared machine hit all
    alike). Then, from the same start with the real loss, two steps of each variant that
    replays the library's stream, and the largest weight difference to the library's."""
    from lozo_core.optim import MeZO

    lr, eps = 1e-3, 1e-3
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p.detach() for p in model.parameters() if p.requires_grad]
    loss = lambda: per_example_lm_loss(model, ids).mean()
    constant = lambda: torch.tensor(1.0)

    def variant(fused, parallel):
        return MeZOVariant(params, lr=lr, eps=eps, fused=fused, parallel=parallel, pool=pool)

    makers = {
        LIBRARY: lambda: MeZO(model, lr=lr, eps=eps),
        "4 passes, update as one add_ (no temporaries), one thread": lambda: variant(False, False),
        "fused restore + update (3 passes), one thread": lambda: variant(True, False),
        "4 passes, update as one add_, 2 threads": lambda: variant(False, True),
        "fused restore + update, 2 threads": lambda: variant(True, True),
    }
    optimizers = {name: make() for name, make in makers.items()}
    times = {name: [] for name in makers}
    for opt in optimizers.values():
        opt.step(constant)
    for _ in range(repeats):
        for name, opt in optimizers.items():
            t0 = time.perf_counter()
            opt.step(constant)
            times[name].append(time.perf_counter() - t0)
    weights = {}
    for name, make in makers.items():
        model.load_state_dict(initial)
        opt = make()
        opt.step(loss)
        opt.step(loss)
        weights[name] = [p.clone() for p in params]
    model.load_state_dict(initial)
    base = min(times[LIBRARY])
    rows = {}
    for name in makers:
        row = {"passes_s_min": min(times[name]), "passes_s_median": statistics.median(times[name])}
        row["times_s"], row["time_vs_library"] = times[name], row["passes_s_min"] / base
        row["max_abs_weight_difference_vs_library"] = max(
            float((a - b).abs().max()) for a, b in zip(weights[name], weights[LIBRARY], strict=True)
        )
        rows[name] = row
        print(f"  {name:62s} min {row['passes_s_min']:.3f} s  x{row['time_vs_library']:.2f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="opt-125m")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--redo", nargs="*", default=[], help="sections to measure again although recorded"
    )
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or OUT_DIR / f"profile_zo_step_cpu_{args.model}_{args.dtype}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = json.loads(out.read_text()) if out.exists() else {}
    for name in args.redo:
        record.pop(name, None)
    record.update(
        kind="profile",
        command=shlex.join(["python", "scripts/profile_zo_step.py", *argv]),
        config={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        batch=f"{args.batch_size}x{args.seq_len}",
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
    )
    model = random_init_like(args.model, dtype=DTYPES[args.dtype], seed=0)
    params = [p.detach() for p in model.parameters()]
    record["parameters"] = sum(p.numel() for p in params)
    ids = torch.randint(
        0,
        model.config.vocab_size,
        (args.batch_size, args.seq_len),
        generator=torch.Generator().manual_seed(0),
    )
    pool = ThreadPoolExecutor(2)
    sections = {
        "generators": (
            f"Gaussian draws for every parameter of {args.model}",
            lambda: generator_candidates(params, pool),
        ),
        "breakdown": (
            f"one step of each method, {args.batch_size}x{args.seq_len}",
            lambda: breakdown(model, ids, rank=2, interval=50, repeats=args.repeats),
        ),
        "mezo_variants": (
            "MeZO's passes over the weights (no forward), library against proposed layouts",
            lambda: mezo_variants(model, ids, pool, 2 * args.repeats),
        ),
    }
    for name, (title, measure) in sections.items():
        if name in record:
            print(f"{name}: recorded already (--redo {name} to measure again)")
            continue
        print(title)
        start = os.getloadavg()
        rows = measure()
        record[name] = {"loadavg_start": start, "loadavg_end": os.getloadavg(), "rows": rows}
        record["machine"] = machine()
        write_json_atomic(record, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
