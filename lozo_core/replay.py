"""Rebuild a run's model from its trajectory, without a forward pass.

``python -m lozo_core.replay RUN_DIR --out OUT_DIR [--step K] [--keep-directions]`` reads
``RUN_DIR/trajectory.json`` (written by ``python -m lozo_core.train``), loads the run's model
fresh, replays the recorded steps (all of them, or the first ``K``; ``--step best`` picks the
best-validation step) and writes ``OUT_DIR/checkpoint.pt``, which
``python -m lozo_core.evaluate --checkpoint OUT_DIR`` accepts. On the machine and build that ran
the run the weights are bit-identical to the live run's; on another CPU they agree to
floating-point tolerance (notebook 06 shows how far). ``--keep-directions`` draws each direction
once per step instead of once per retraced pass (the same weights, one direction in memory).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lozo_core.train import TrainConfig, rebuild, save_atomic
from lozo_core.trajectory import Trajectory


def best_validation_step(trajectory: Trajectory) -> int:
    """The earliest step with the highest validation accuracy."""
    evals = [e for e in trajectory.evals if "validation_accuracy" in e]
    if not evals:
        raise ValueError("--step best: the trajectory has no validation evaluations")
    return max(evals, key=lambda e: e["validation_accuracy"])["step"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lozo_core.replay", description=__doc__.splitlines()[0]
    )
    p.add_argument("run", type=Path, help="a training run's --out folder (holds trajectory.json)")
    p.add_argument("--out", type=Path, required=True, help="folder for the rebuilt checkpoint.pt")
    p.add_argument("--step", default="last", help="steps to replay: an integer, 'last' or 'best'")
    p.add_argument(
        "--keep-directions",
        action="store_true",
        help="draw each direction once per step, holding one in memory (the same weights, faster)",
    )
    args = p.parse_args(argv)
    try:
        trajectory = Trajectory.load(args.run)
        cfg = TrainConfig(**trajectory.config)
        if args.step == "last":
            steps = trajectory.steps
        elif args.step == "best":
            steps = best_validation_step(trajectory)
        elif args.step.isdigit():
            steps = int(args.step)
        else:
            raise ValueError(f"--step {args.step!r}: expected an integer, 'last' or 'best'")
        tick = time.perf_counter()
        model, _, _ = rebuild(cfg, trajectory, steps, keep_directions=args.keep_directions)
        seconds = time.perf_counter() - tick
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    state = {"config": trajectory.config, "model": model.state_dict(), "step": steps}
    save_atomic(state | {"replayed_from": str(args.run)}, args.out / "checkpoint.pt")
    print(
        f"replayed {steps} steps of {args.run} in {seconds:.1f} s -> {args.out / 'checkpoint.pt'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
