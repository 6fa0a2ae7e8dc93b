"""Record precision drift on a real weight: perturb/restore cycles and a short training run.

Writes ``data/results/bench/drift_<model>_<parameter>.json`` (``kind: drift``): for every method
(MeZO in place, LOZO in place, LOZO side path) and dtype (float32, bfloat16, float16) the
relative drift after up to ``--cycles`` steps at ``lr = 0`` (:func:`lozo_core.drift.cycle_drift`)
and over ``--steps`` training steps against the float64 run (:func:`lozo_core.drift.training_drift`).
Each row is written when measured; a rerun skips the rows already recorded.

    flock /tmp/lozo-heavy.lock python scripts/record_drift.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from lozo_core.drift import METHODS, cycle_drift, training_drift
from lozo_core.models import DTYPES, load_model
from lozo_core.provenance import machine, progress_bar
from lozo_core.train import write_json_atomic

OUT_DIR = Path(__file__).resolve().parent.parent / "data" / "results" / "bench"
CYCLE_CHECKPOINTS = (1, 3, 10, 30, 100, 300, 1000)
STEP_CHECKPOINTS = (1, 5, 10, 25, 50, 100, 200)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--parameter", default="model.layers.0.mlp.up_proj.weight")
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or OUT_DIR / f"drift_{args.model}_{args.parameter.split('.')[-2]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = json.loads(out.read_text()) if out.exists() else {"cycles": {}, "training": {}}
    settings = dict(model=args.model, parameter=args.parameter, eps=args.eps, lr=args.lr, rank=2,
                    interval=50, n_cycles=args.cycles, n_steps=args.steps)  # fmt: skip
    changed = [k for k, v in settings.items() if record.get(k, v) != v]
    if changed:
        raise SystemExit(
            f"{out} holds rows recorded with other settings ({', '.join(changed)}); they would "
            "be relabelled with these. Write to another --out or remove it"
        )
    loaded = load_model(args.model)
    weight = dict(loaded.model.named_parameters())[args.parameter].detach().float().clone()
    del loaded
    record.update(
        kind="drift",
        command=shlex.join(["python", "scripts/record_drift.py", *argv]),
        shape=list(weight.shape),
        weight_std=float(weight.std()),
        **settings,
    )
    rows = [(kind, m, d) for kind in ("cycles", "training") for m in METHODS for d in DTYPES]
    for kind, method, dtype in progress_bar(rows, desc="drift"):
        key = f"{method} {dtype}"
        if key in record[kind]:
            continue
        start, t0 = os.getloadavg(), time.perf_counter()
        if kind == "cycles":
            checkpoints = tuple(c for c in CYCLE_CHECKPOINTS if c <= args.cycles)
            row = cycle_drift(weight, method=method, dtype=DTYPES[dtype], cycles=args.cycles,
                              checkpoints=checkpoints, eps=args.eps)  # fmt: skip
        else:
            checkpoints = tuple(c for c in STEP_CHECKPOINTS if c <= args.steps)
            row = training_drift(weight, method=method, dtype=DTYPES[dtype], steps=args.steps,
                                 checkpoints=checkpoints, lr=args.lr, eps=args.eps)  # fmt: skip
        row.update(
            seconds=time.perf_counter() - t0, loadavg_start=start, loadavg_end=os.getloadavg()
        )
        record[kind][key] = row
        record["machine"] = machine()
        write_json_atomic(record, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
