"""Drive the full-protocol campaign (issue 13) from the plan in ``scripts/full_protocol.toml``.

    python scripts/campaign.py status            # progress table with the time left
    python scripts/campaign.py run [--hours H] [--commit]

``run`` takes the plan's items in order (the learning-rate sweep, then the campaign), skips
what is done, and advances the next unfinished run by one chunk at a time (``--until``), each
chunk in its own ``python -m lozo_core.train --resume`` process. Every chunk leaves the run's
``trajectory.json`` (config, per-step losses, evaluations, the machine of every chunk) in
``data/results/full_protocol/``; with ``--commit`` it is committed at once, so the campaign can
be stopped at any moment and continued later, on another machine, from what is committed.
A run that fails (non-finite loss) is recorded in ``failed.json`` and not retried.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "scripts" / "full_protocol.toml"
RESULTS = Path(os.environ.get("LOZO_CAMPAIGN_RESULTS", ROOT / "data" / "results" / "full_protocol"))
sys.path.insert(0, str(ROOT))

from lozo_core.optim.table import TABLE  # noqa: E402

SECONDS_PER_STEP_GUESS = {"mezo": 7.5, "fo-adam": 3.5}  # AMD EPYC (AVX2), fp32, batch 16
EVAL_SECONDS_GUESS = 60.0  # 500 validation examples


@dataclass
class Item:
    name: str
    folder: Path
    args: dict
    steps: int
    chunk: int

    @property
    def zeroth_order(self) -> bool:
        return TABLE[self.args["optimizer"]].zeroth_order

    def state(self) -> tuple[str, int]:
        if (self.folder / "failed.json").exists():
            return "failed", 0
        if (self.folder / "summary.json").exists():
            return "done", self.steps
        trajectory = self.folder / "trajectory.json"
        if trajectory.exists():
            return "partial", json.loads(trajectory.read_text())["steps"]
        return "missing", 0

    def seconds_left(self) -> float:
        status, done = self.state()
        if status in ("done", "failed"):
            return 0.0
        per_step = SECONDS_PER_STEP_GUESS.get(self.args["optimizer"], 3.5)
        trajectory = self.folder / "trajectory.json"
        if trajectory.exists():
            times = json.loads(trajectory.read_text())["times"]
            per_step = sum(times) / len(times) if times else per_step
        evals = (self.steps - done) / self.args["eval_every"] + 1
        return per_step * (self.steps - done) + EVAL_SECONDS_GUESS * evals + 150.0


def _base_args(protocol: dict) -> dict:
    keys = ("model", "dtype", "batch_size", "k_shot", "eval_examples", "eps", "rank", "interval")
    optional = ("validation_examples",)
    return {k: protocol[k] for k in keys} | {k: protocol[k] for k in optional if k in protocol}


def sweep_items(plan: dict) -> list[Item]:
    protocol, sweep = plan["protocol"], plan["sweep"]
    items = []
    for optimizer, rates in sweep["lr"].items():
        kind = "zo" if TABLE[optimizer].zeroth_order else "fo"
        for lr in rates:
            args = _base_args(protocol) | {
                "task": sweep["task"], "optimizer": optimizer, "lr": lr, "seed": sweep["seed"],
                "data_seed": sweep["data_seed"], "steps": sweep["steps"][kind], "eval_every": sweep["eval_every"],
            }  # fmt: skip
            name = f"sweep/{sweep['task']}_{optimizer}_lr{lr:g}"
            items.append(Item(name, RESULTS / name, args, args["steps"], protocol["chunk"]))
    return items


def chosen_rates(plan: dict) -> dict[str, dict]:
    """Per swept optimizer: the grid, every run's validation result and the chosen rate
    (highest best-validation accuracy, then lowest final validation loss); None until done."""
    by_optimizer: dict[str, list] = {}
    for item in sweep_items(plan):
        summary = item.folder / "summary.json"
        failed = item.folder / "failed.json"
        result = {"lr": item.args["lr"], "state": item.state()[0]}
        if summary.exists():
            s = json.loads(summary.read_text())
            final_loss = [p["validation_loss"] for p in s["curve"] if "validation_loss" in p][-1]
            result |= {"best_validation_accuracy": s["best_validation_accuracy"],
                       "best_validation_step": s["best_validation_step"],
                       "final_validation_loss": final_loss,
                       "zero_shot_validation_accuracy": s["zero_shot_validation_accuracy"]}  # fmt: skip
        elif failed.exists():
            result |= {"error": json.loads(failed.read_text())["error"]}
        by_optimizer.setdefault(item.args["optimizer"], []).append(result)
    out = {}
    for optimizer, results in by_optimizer.items():
        finished = [r for r in results if r["state"] in ("done", "failed")]
        scored = [r for r in results if "best_validation_accuracy" in r]
        chosen = None
        if len(finished) == len(results) and scored:
            best = max(
                scored, key=lambda r: (r["best_validation_accuracy"], -r["final_validation_loss"])
            )
            chosen = best["lr"]
            moves = best["best_validation_accuracy"] > best["zero_shot_validation_accuracy"]
        out[optimizer] = {
            "grid": [r["lr"] for r in results],
            "results": results,
            "chosen_lr": chosen,
        }
        if chosen is not None:
            out[optimizer]["moves_off_zero_shot"] = moves
    return out


def campaign_items(plan: dict) -> tuple[list[Item], list[str]]:
    protocol, rates = plan["protocol"], chosen_rates(plan)
    items, blocked = [], []
    for block in plan["campaign"]:
        optimizers = list(block["optimizers"])
        for optimizer in block.get("if_sweep_moves", []):
            if rates.get(optimizer, {}).get("moves_off_zero_shot"):
                optimizers.append(optimizer)
            elif rates.get(optimizer, {}).get("chosen_lr") is None:
                blocked.append(f"{block['task']} {optimizer}: waits for its sweep")
        for seed, data_seed in block["seeds"]:
            for optimizer in optimizers:
                row = TABLE[optimizer]
                kind = "zo" if row.zeroth_order else "fo"
                if row.trains and rates.get(optimizer, {}).get("chosen_lr") is None:
                    blocked.append(f"{block['task']} {optimizer}: waits for its sweep")
                    continue
                args = _base_args(protocol) | {
                    "task": block["task"], "optimizer": optimizer, "seed": seed, "data_seed": data_seed,
                    "steps": block["steps"][kind] if row.trains else 0,
                    "eval_every": block["eval_every"][kind] if row.trains else 1,
                }  # fmt: skip
                if row.trains:
                    args["lr"] = rates[optimizer]["chosen_lr"]
                if "interval" in block:
                    args["interval"] = block["interval"]
                label = optimizer + (f"-{block['name']}" if "name" in block else "")
                name = f"{block['task']}/{label}_s{seed}"
                chunk = protocol["chunk"] if row.zeroth_order else args["steps"]
                items.append(Item(name, RESULTS / name, args, args["steps"], chunk))
    return items, blocked


def all_items(plan: dict) -> tuple[list[Item], list[str]]:
    campaign, blocked = campaign_items(plan)
    return sweep_items(plan) + campaign, blocked


def status(plan: dict) -> str:
    items, blocked = all_items(plan)
    lines = [f"{'run':42} {'state':8} {'steps':>11} {'hours left':>10}"]
    total = 0.0
    for item in items:
        state, done = item.state()
        left = item.seconds_left()
        total += left
        lines.append(f"{item.name:42} {state:8} {done:>5}/{item.steps:<5} {left / 3600:>10.2f}")
    lines += [f"blocked: {b}" for b in dict.fromkeys(blocked)]
    lines.append(
        f"{len(items)} runs planned; about {total / 3600:.1f} h of compute left on an AVX2 CPU"
    )
    return "\n".join(lines)


def write_chosen(plan: dict) -> None:
    path = RESULTS / "sweep" / "chosen.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chosen_rates(plan), indent=2) + "\n")


def commit(paths: list[Path], message: str) -> None:
    for attempt in range(20):
        add = subprocess.run(["git", "add", "--", *map(str, paths)], cwd=ROOT)
        done = subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", *map(str, paths)], cwd=ROOT
        )
        if add.returncode == 0 and done.returncode == 0:
            return
        time.sleep(3 + attempt)
    print(f"campaign: could not commit {paths}", file=sys.stderr)


def run_chunk(item: Item, threads: int) -> int:
    state, done = item.state()
    until = min(done + item.chunk, item.steps)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in item.args.items()]
    lock = os.environ.get("LOZO_HEAVY_LOCK", "/tmp/lozo-heavy.lock")
    train = [sys.executable, "-m", "lozo_core.train", *args, "--out", str(item.folder), "--resume"]
    command = ["flock", lock, *train]
    if until < item.steps:
        command.append(f"--until={until}")
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(f"campaign: {item.name} steps {done}..{until} of {item.steps}", flush=True)
    item.folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.run(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(process.stderr[-4000:])
    if process.returncode == 3:
        error = [line for line in process.stderr.splitlines() if line.startswith("error:")]
        (item.folder / "failed.json").write_text(
            json.dumps({"error": error[-1] if error else "exit 3", "command": command}, indent=2)
            + "\n"
        )
    return process.returncode


def run(plan: dict, hours: float, do_commit: bool, only: list[str] | None = None) -> int:
    deadline = time.time() + hours * 3600
    while time.time() < deadline:
        items, _ = all_items(plan)
        pending = [i for i in items if i.state()[0] in ("missing", "partial")]
        pending = [i for i in pending if not only or i.args["optimizer"] in only]
        if not pending:
            print("campaign: nothing left that can run now")
            return 0
        item = pending[0]
        code = run_chunk(item, plan["protocol"]["threads"])
        write_chosen(plan)
        if do_commit:
            files = [p for p in item.folder.glob("*.json")] + [RESULTS / "sweep" / "chosen.json"]
            commit(files, f"Campaign: {item.name} at step {item.state()[1]}/{item.steps}")
        if code not in (0, 3):
            print(f"campaign: {item.name} exited {code}; stopping", file=sys.stderr)
            return code
        print(status(plan), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="print the progress table")
    r = sub.add_parser("run", help="run what is missing, one chunk at a time")
    r.add_argument("--hours", type=float, default=1e9, help="stop starting chunks after this long")
    r.add_argument("--commit", action="store_true", help="git-commit each chunk's JSON at once")
    r.add_argument("--only", nargs="*", help="run only these optimizers' items")
    p.add_argument("--plan", type=Path, default=PLAN, help="the plan (TOML)")
    args = p.parse_args(argv)
    plan = tomllib.loads(args.plan.read_text())
    if args.command == "status":
        print(status(plan))
        return 0
    return run(plan, args.hours, args.commit, args.only)


if __name__ == "__main__":
    sys.exit(main())
