"""Drive a campaign of training runs from a plan (default ``scripts/full_protocol.toml``).

    python scripts/campaign.py [--plan PLAN] status            # progress table with the time left
    python scripts/campaign.py [--plan PLAN] run [--hours H] [--commit]

``run`` takes the plan's items in order (the learning-rate sweep, then the campaign), skips what is
done, and advances the next unfinished run by one chunk at a time (``--until``), each chunk in its
own ``python -m lozo_core.train --resume`` process. Every chunk leaves the run's
``trajectory.json`` (config, per-step losses, evaluations, the machine of every chunk) in the
plan's results folder (``[protocol] results``, default ``data/results/full_protocol/``; the
environment variable ``LOZO_CAMPAIGN_RESULTS`` overrides it); with ``--commit`` it is committed at
once, so the campaign can be stopped at any moment and continued later, on another machine, from
what is committed. ``--hours H`` stops starting chunks after H hours, and does not start a
first-order or zero-shot run — one chunk, with no trajectory to resume from — that would end later
by its estimate on this CPU (``seconds_here``). A run that fails (non-finite loss) is recorded in
``failed.json`` and not retried; so is a run that diverged — with ``[protocol] divergence_ratio =
R``, one whose validation loss after a chunk exceeds R times its step-0 (zero-shot) validation
loss: its trajectory so far is kept, and the time of its remaining chunks is saved. A finished
run whose recorded options differ from the plan's (the plan, or its sweep's choice, changed after
it ran) is *stale*: ``run`` refuses to go on until its folder is deleted or the plan restored.

The plan: ``[protocol]`` (the train options every run shares), one ``[sweep]`` or several named
``[[sweep]]`` tables (learning rates per optimizer, chosen on validation: the highest best
validation accuracy, then the lowest final validation loss; a sweep with ``ties_within_se = k``
counts every accuracy within k standard errors of the highest as tied), and ``[[campaign]]``
blocks (tasks, optimizers, seeds, steps). A sweep or block may carry ``args``, more train
options (``scheme``, ``lora_rank``, ``objective``, ``eval_examples`` …); a block that names a
sweep (``sweep = "lora"``) takes that sweep's chosen rates and its ``args``, then its own (a
sweep's ``steps``, ``eval_every`` and ``eval_examples``, the size of its test, stay its own).
A named block with ``extends = true`` lengthens the same task's runs of the unnamed block: each
of its runs starts from the committed trajectory of the run with its optimizer and seed, once
that run is done (``train --resume`` with more ``--steps``: the first steps are the shorter
run's), so only the added steps are computed; its config must equal that run's but for steps.
``[estimate]`` (optional) gives the seconds ``status`` assumes until a run has measured its own.
``[protocol] threads`` and ``keep_directions`` are run-time choices that change no number
(``train --keep-directions``), so they may change between the chunks of a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "scripts" / "full_protocol.toml"
sys.path.insert(0, str(ROOT))

from lozo_core.optim.table import TABLE  # noqa: E402
from lozo_core.provenance import cpu, heavy_lock, same_cpu  # noqa: E402
from lozo_core.results import sweep_run  # noqa: E402
from lozo_core.tasks import get_task  # noqa: E402
from lozo_core.train import TrainConfig  # noqa: E402
from lozo_core.trajectory import Trajectory  # noqa: E402

ESTIMATE = {  # AMD EPYC (AVX2), fp32, batch 16
    "step": {"mezo": 7.5, "fo-adam": 3.5, "default": 3.5},  # seconds per optimizer step
    "example": 0.12,  # seconds per evaluated example (SST-2: 500 in a minute)
    "load": 30.0,  # seconds to start a chunk: interpreter, model, data
    "task": 1.0,  # a task's step time relative to the step entries (longer prompts, more rows)
}


@functools.cache
def _split_sizes(task: str, k_shot: int, validation: int, test: int) -> tuple[int, int]:
    """Examples in a run's validation and test splits (validation = test with ``k_shot > 0``)."""
    t = get_task(task)
    n_test = min(test, len(t.split("dev")))
    return (n_test if k_shot else min(validation, t.validation_examples)), n_test


def results_dir(plan: dict) -> Path:
    default = ROOT / plan["protocol"].get("results", "data/results/full_protocol")
    return Path(os.environ.get("LOZO_CAMPAIGN_RESULTS", default))


def _guess(plan: dict, what: str, *keys: str) -> float:
    """The plan's ``[estimate]`` of ``what`` (seconds per ``step``, per evaluated ``example``, to
    ``load``; a ``task``'s step-time factor) for the first of ``keys`` it names (most specific
    first), else the built-in guess."""
    table = plan.get("estimate", {}).get(what, ESTIMATE[what])
    if not isinstance(table, dict):
        return float(table)
    for key in (*keys, "default"):
        if key in table:
            return float(table[key])
    return _guess({}, what, *keys)


@dataclass
class Item:
    name: str
    folder: Path
    args: dict
    steps: int
    chunk: int
    plan: dict
    rate_key: str = ""
    blocked: bool = False  # waits for its sweep's chosen rate, or for the run it extends
    extends: Path | None = None  # the finished run whose trajectory it continues

    @property
    def zeroth_order(self) -> bool:
        return TABLE[self.args["optimizer"]].zeroth_order

    def state(self) -> tuple[str, int]:
        if self.blocked:
            return "blocked", 0
        if (self.folder / "failed.json").exists():
            return "failed", 0
        if (self.folder / "summary.json").exists():
            return ("stale" if self.mismatch() else "done"), self.steps
        trajectory = self.folder / "trajectory.json"
        if trajectory.exists():
            return "partial", json.loads(trajectory.read_text())["steps"]
        if self.extends:
            return "missing", json.loads((self.extends / "trajectory.json").read_text())["steps"]
        return "missing", 0

    def mismatch(self) -> list[str]:
        """The train options in which this finished run differs from the plan: a run recorded
        before the plan, or its sweep's choice, changed."""
        recorded = json.loads((self.folder / "summary.json").read_text())["config"]
        config = dataclasses.asdict(TrainConfig(**recorded))
        return sorted(k for k, v in self.args.items() if config.get(k) != v)

    def guessed_step(self) -> float:
        """The plan's estimate of one training step's seconds on the AVX2 CPU."""
        task, optimizer = self.args["task"], self.args["optimizer"]
        keys = (f"{self.args.get('scheme', 'full')}/{optimizer}", optimizer)
        return _guess(self.plan, "step", *keys) * _guess(self.plan, "task", task)

    def seconds_left(self) -> float:
        """What is left of this run in the plan's AVX2 seconds (steps, evaluations, chunk starts);
        ``speed_here`` scales it to the CPU at hand."""
        status, done = self.state()
        return 0.0 if status in ("done", "failed", "stale") else self.seconds_from(done)

    def seconds_from(self, done: int) -> float:
        """The plan's AVX2 seconds of this run from step ``done`` to its end."""
        task = self.args["task"]
        per_step = self.guessed_step()
        evals = (self.steps - done) / self.args["eval_every"] + 1
        n_validation, n_test = _split_sizes(
            task,
            self.args["k_shot"],
            self.args.get("validation_examples", 500),
            self.args["eval_examples"],
        )
        tests = 2 if self.steps else 1  # the last step, and the best-validation step if earlier
        chunks = max(1, -(-(self.steps - done) // max(self.chunk, 1)))
        return (
            per_step * (self.steps - done)
            + _guess(self.plan, "example", task) * (evals * n_validation + tests * n_test)
            + _guess(self.plan, "load", task) * chunks
        )


def _base_args(protocol: dict) -> dict:
    keys = ("model", "dtype", "batch_size", "k_shot", "eval_examples", "eps", "rank", "interval")
    optional = ("validation_examples",)
    return {k: protocol[k] for k in keys} | {k: protocol[k] for k in optional if k in protocol}


def _train_args(args: dict, where: str) -> dict:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise SystemExit(
            f"campaign: {where} args {unknown} are not train options; expected some of {sorted(known)}"
        )
    return dict(args)


def sweeps(plan: dict) -> dict[str | None, dict]:
    """The plan's sweeps by name (``None`` for a single unnamed ``[sweep]`` table)."""
    tables = plan.get("sweep", [])
    tables = [tables] if isinstance(tables, dict) else tables
    named = {t.get("name"): t for t in tables}
    if len(named) < len(tables):
        raise SystemExit("campaign: several [[sweep]] tables share a name; name each one")
    return named


def rate_key(sweep: str | None, optimizer: str) -> str:
    """Where a sweep's chosen rate is filed in ``chosen.json``: the optimizer, or ``sweep/optimizer``."""
    return optimizer if sweep is None else f"{sweep}/{optimizer}"


def sweep_items(plan: dict) -> list[Item]:
    protocol, results = plan["protocol"], results_dir(plan)
    items = []
    for sweep_name, sweep in sweeps(plan).items():
        extra = _train_args(sweep.get("args", {}), f"sweep {sweep_name or ''}")
        for optimizer, rates in sweep["lr"].items():
            kind = "zo" if TABLE[optimizer].zeroth_order else "fo"
            for lr in rates:
                args = _base_args(protocol) | extra | {
                    "task": sweep["task"], "optimizer": optimizer, "lr": lr, "seed": sweep["seed"],
                    "data_seed": sweep["data_seed"], "steps": sweep["steps"][kind], "eval_every": sweep["eval_every"],
                }  # fmt: skip
                if "eval_examples" in sweep:
                    args["eval_examples"] = sweep["eval_examples"]
                name = sweep_run(sweep["task"], optimizer, lr, sweep_name)
                key = rate_key(sweep_name, optimizer)
                chunk = protocol["chunk"] if kind == "zo" else args["steps"]
                items.append(Item(name, results / name, args, args["steps"], chunk, plan, key))
    return items


def chosen_rates(plan: dict) -> dict[str, dict]:
    r"""Per swept optimizer (``rate_key``): the grid, every run's validation result and the chosen
    rate, None until all are done. The choice: of the rates whose best validation accuracy
    :math:`a` is within :math:`k\,\sqrt{a^*(1-a^*)/n}` of the highest :math:`a^*` (``n``
    validation examples, ``k`` the sweep's ``ties_within_se``, default 0: equal accuracies only),
    the one with the lowest final validation loss."""
    by_optimizer: dict[str, list] = {}
    for item in sweep_items(plan):
        summary = item.folder / "summary.json"
        failed = item.folder / "failed.json"
        result = {"lr": item.args["lr"], "state": item.state()[0]}
        if result["state"] == "done":
            s = json.loads(summary.read_text())
            final_loss = [p["validation_loss"] for p in s["curve"] if "validation_loss" in p][-1]
            result |= {"best_validation_accuracy": s["best_validation_accuracy"],
                       "best_validation_step": s["best_validation_step"],
                       "final_validation_loss": final_loss,
                       "zero_shot_validation_accuracy": s["zero_shot_validation_accuracy"],
                       "validation_examples": s["validation_examples"]}  # fmt: skip
        elif failed.exists():
            result |= {"error": json.loads(failed.read_text())["error"]}
        by_optimizer.setdefault(item.rate_key, []).append(result)
    ties = {
        rate_key(name, optimizer): sweep.get("ties_within_se", 0)
        for name, sweep in sweeps(plan).items()
        for optimizer in sweep["lr"]
    }
    out = {}
    for optimizer, results in by_optimizer.items():
        finished = [r for r in results if r["state"] in ("done", "failed")]
        scored = [r for r in results if "best_validation_accuracy" in r]
        chosen = None
        if len(finished) == len(results) and scored:
            top = max(r["best_validation_accuracy"] for r in scored)
            se = math.sqrt(top * (1 - top) / scored[0]["validation_examples"])
            tied = [
                r for r in scored if r["best_validation_accuracy"] >= top - ties[optimizer] * se
            ]
            best = min(tied, key=lambda r: r["final_validation_loss"])
            chosen = best["lr"]
            moves = best["best_validation_accuracy"] > best["zero_shot_validation_accuracy"]
        out[optimizer] = {
            "grid": [r["lr"] for r in results],
            "results": results,
            "chosen_lr": chosen,
        }
        if ties[optimizer]:
            out[optimizer]["ties_within_se"] = ties[optimizer]
        if chosen is not None:
            out[optimizer]["moves_off_zero_shot"] = moves
    return out


def campaign_items(plan: dict) -> tuple[list[Item], list[str]]:
    protocol, rates, results = plan["protocol"], chosen_rates(plan), results_dir(plan)
    named = sweeps(plan)
    items, blocked = [], []
    for block in plan["campaign"]:
        sweep = block.get("sweep")
        if sweep is not None and sweep not in named:
            raise SystemExit(
                f"campaign: block {block['task']} names sweep {sweep!r}; the plan has {list(named)}"
            )
        extra = _train_args(
            named.get(sweep, {}).get("args", {}) | block.get("args", {}), block["task"]
        )
        optimizers = list(block["optimizers"])
        chosen = {
            o: rates.get(rate_key(sweep, o), {})
            for o in optimizers + block.get("if_sweep_moves", [])
        }
        for optimizer in block.get("if_sweep_moves", []):
            if chosen[optimizer].get("moves_off_zero_shot"):
                optimizers.append(optimizer)
            elif chosen[optimizer].get("chosen_lr") is None:
                blocked.append(f"{block['task']} {rate_key(sweep, optimizer)}: waits for its sweep")
        for seed, data_seed in block["seeds"]:
            for optimizer in optimizers:
                row = TABLE[optimizer]
                kind = "zo" if row.zeroth_order else "fo"
                waits = row.trains and chosen[optimizer].get("chosen_lr") is None
                if waits:
                    blocked.append(
                        f"{block['task']} {rate_key(sweep, optimizer)}: waits for its sweep"
                    )
                args = _base_args(protocol) | extra | {
                    "task": block["task"], "optimizer": optimizer, "seed": seed, "data_seed": data_seed,
                    "steps": block["steps"][kind] if row.trains else 0,
                    "eval_every": block["eval_every"][kind] if row.trains else 1,
                }  # fmt: skip
                if row.trains and not waits:
                    args["lr"] = chosen[optimizer]["chosen_lr"]
                if "interval" in block:
                    args["interval"] = block["interval"]
                label = optimizer + (f"-{block['name']}" if "name" in block else "")
                name = f"{block['task']}/{label}_s{seed}"
                chunk = protocol["chunk"] if row.zeroth_order else args["steps"]
                item = Item(name, results / name, args, args["steps"], chunk, plan, "", waits)
                if block.get("extends"):
                    item.extends = _extended(item, {i.name: i for i in items}, blocked)
                    item.blocked = item.blocked or item.extends is None
                items.append(item)
    return items, blocked


def _extended(item: Item, earlier: dict[str, Item], blocked: list[str]) -> Path | None:
    """The folder of the finished run ``item`` extends, or None while it is unfinished (noted in
    ``blocked``); a plan whose extending run differs from it in more than steps is refused."""
    name = f"{item.args['task']}/{item.args['optimizer']}_s{item.args['seed']}"
    source = earlier.get(name)
    if source is None or not source.zeroth_order:
        raise SystemExit(
            f"campaign: {item.name} extends {name}, which is not a zeroth-order run of the plan"
        )
    differ = sorted(k for k in {**source.args, **item.args}
                    if k != "steps" and source.args.get(k) != item.args.get(k))  # fmt: skip
    if differ or item.steps <= source.steps:
        raise SystemExit(
            f"campaign: {item.name} must equal {name} but for more steps; it differs in "
            f"{differ or ['steps']}"
        )
    if source.state()[0] != "done":
        blocked.append(f"{item.name}: waits for {name} to finish")
        return None
    return source.folder


def all_items(plan: dict) -> tuple[list[Item], list[str]]:
    campaign, blocked = campaign_items(plan)
    return sweep_items(plan) + campaign, blocked


def speed_here(items: list[Item]) -> tuple[float, int] | None:
    """``(measured / estimated step seconds, chunks)`` over the chunks this CPU (model and flags)
    ran so far, or ``None`` if it ran none: what the plan's AVX2 estimate is worth here."""
    here, measured, estimated, chunks = cpu(), 0.0, 0.0, 0
    for item in items:
        if not (item.folder / "trajectory.json").exists():
            continue
        for _, times in Trajectory.load(item.folder).chunk_times(here):
            measured += sum(times)
            estimated += item.guessed_step() * len(times)
            chunks += 1
    return (measured / estimated, chunks) if estimated else None


def seconds_here(item: Item, items: list[Item]) -> float:
    """What is left of ``item`` in seconds on this CPU: its AVX2 estimate scaled by the wall time
    of the finished runs of its optimizer that ran here (whole runs: a first-order or zero-shot run
    is one chunk), else by :func:`speed_here`, else unscaled."""
    here, measured, estimated = cpu(), 0.0, 0.0
    for other in items:
        summary = other.folder / "summary.json"
        if other.args["optimizer"] != item.args["optimizer"] or not summary.exists():
            continue
        ran = json.loads(summary.read_text())
        if same_cpu(ran["machine"], here) and "wall_time_s" in ran:
            measured += ran["wall_time_s"]
            estimated += other.seconds_from(0)
    if estimated:
        return measured / estimated * item.seconds_left()
    speed = speed_here(items)
    return (speed[0] if speed else 1.0) * item.seconds_left()


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
    speed = speed_here(items)
    if speed:
        factor, chunks = speed
        lines.append(
            f"on this CPU ({cpu()['cpu_model']}), whose {chunks} chunks so far took {factor:.2f}x "
            f"the estimated step time: about {factor * total / 3600:.1f} h"
        )
    return "\n".join(lines)


def write_chosen(plan: dict) -> None:
    path = results_dir(plan) / "sweep" / "chosen.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chosen_rates(plan), indent=2) + "\n")


def commit(paths: list[Path], message: str) -> None:
    for attempt in range(20):
        add = subprocess.run(["git", "add", "--", *map(str, paths)], cwd=ROOT)
        staged = subprocess.run(
            ["git", "diff", "--cached", "--quiet", "--", *map(str, paths)], cwd=ROOT
        )
        if add.returncode == 0 and staged.returncode == 0:
            return
        done = subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", *map(str, paths)], cwd=ROOT
        )
        if add.returncode == 0 and done.returncode == 0:
            return
        time.sleep(3 + attempt)
    print(f"campaign: could not commit {paths}", file=sys.stderr)


def run_chunk(item: Item, protocol: dict) -> int:
    state, done = item.state()
    until = min(done + item.chunk, item.steps)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in item.args.items()]
    train = [sys.executable, "-m", "lozo_core.train", *args, "--out", str(item.folder), "--resume"]
    command = ["flock", heavy_lock(), *train]
    if until < item.steps:
        command.append(f"--until={until}")
    if protocol.get("keep_directions", False):
        command.append("--keep-directions")
    threads = str(protocol["threads"])
    env = os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    print(f"campaign: {item.name} steps {done}..{until} of {item.steps}", flush=True)
    item.folder.mkdir(parents=True, exist_ok=True)
    if item.extends and state == "missing":
        shutil.copyfile(item.extends / "trajectory.json", item.folder / "trajectory.json")
    process = subprocess.run(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(process.stderr[-4000:])
    if process.returncode == 3:
        error = [line for line in process.stderr.splitlines() if line.startswith("error:")]
        record_failure(item, error[-1] if error else "exit 3", command=command)
    return process.returncode


def record_failure(item: Item, error: str, **details) -> None:
    """Mark ``item`` failed (``failed.json``): it is not retried, and its sweep skips it."""
    (item.folder / "failed.json").write_text(
        json.dumps({"error": error, **details}, indent=2) + "\n"
    )


def drop_checkpoints(item: Item) -> None:
    """Delete the checkpoints of a run that will not run again (done, or failed and so never
    retried): git ignores them, and at 135M parameters in fp32 they take about 1 GB per run (a grid
    of a hundred runs filled the disk). The run's JSON keeps every number, and a zeroth-order run's
    trajectory replays its weights (``lozo_core.replay``); an unfinished run keeps its
    ``checkpoint.pt`` to resume from without a replay."""
    if item.state()[0] in ("done", "failed"):
        for path in item.folder.glob("*.pt*"):
            path.unlink()


def divergence(item: Item, ratio: float | None) -> str | None:
    """Why ``item`` counts as diverged (its last validation loss above ``ratio`` times its step-0
    validation loss), or None."""
    trajectory = item.folder / "trajectory.json"
    if ratio is None or not trajectory.exists():
        return None
    losses = [
        (e["step"], e["validation_loss"])
        for e in json.loads(trajectory.read_text())["evals"]
        if "validation_loss" in e
    ]
    if len(losses) < 2 or losses[0][0] != 0:
        return None
    (_, start), (step, last) = losses[0], losses[-1]
    if last > ratio * start:
        return (
            f"diverged: validation loss {last:.4g} at step {step} > {ratio:g} x the step-0 "
            f"validation loss {start:.4g}; stopped"
        )
    return None


def run(plan: dict, hours: float, do_commit: bool, only: list[str] | None = None) -> int:
    deadline = time.time() + hours * 3600
    while time.time() < deadline:
        items, _ = all_items(plan)
        states = {i.name: i.state()[0] for i in items}
        stale = [i for i in items if states[i.name] == "stale"]
        if stale:
            print(
                "campaign: finished runs differ from the plan: "
                + "; ".join(f"{i.name} in {i.mismatch()}" for i in stale)
                + ". Their results would mix with runs at the plan's settings: delete their "
                "folders to rerun them, or restore the plan",
                file=sys.stderr,
            )
            return 2
        pending = [i for i in items if states[i.name] in ("missing", "partial")]
        pending = [i for i in pending if not only or i.args["optimizer"] in only]
        if not pending:
            print("campaign: nothing left that can run now")
            return 0
        item = pending[0]
        if not item.zeroth_order:
            need, left = seconds_here(item, items), deadline - time.time()
            if need > left:
                print(
                    f"campaign: {item.name} runs in one chunk that cannot be resumed and needs "
                    f"about {need / 60:.0f} min here, more than the {left / 60:.0f} min left of "
                    "--hours; stopping",
                    flush=True,
                )
                return 0
        ratio = plan["protocol"].get("divergence_ratio")
        diverged = divergence(item, ratio) if item.state()[0] == "partial" else None
        if diverged:
            print(f"campaign: {item.name} {diverged}", flush=True)
            record_failure(item, diverged)
            code = 0
        else:
            code = run_chunk(item, plan["protocol"])
        write_chosen(plan)
        if do_commit:
            chosen = results_dir(plan) / "sweep" / "chosen.json"
            files = [p for p in item.folder.glob("*.json")] + [chosen]
            state, done = item.state()
            if state == "failed":
                error = json.loads((item.folder / "failed.json").read_text())["error"]
                commit(files, f"Campaign: {item.name} failed: {error}")
            else:
                commit(files, f"Campaign: {item.name} at step {done}/{item.steps}")
        drop_checkpoints(item)
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
    r.add_argument(
        "--hours",
        type=float,
        default=1e9,
        help="stop starting chunks after this long; a first-order or zero-shot run (one chunk) "
        "starts only if it is estimated to finish in time",
    )
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
