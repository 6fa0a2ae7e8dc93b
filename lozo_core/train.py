"""One training loop for zeroth-order and first-order fine-tuning, and its CLI.

``python -m lozo_core.train --model tiny-opt --task sst2 --optimizer lozo --steps 30
--eval-every 10 --out runs/demo`` writes ``metrics.jsonl`` (one line per step and per eval),
``summary.json`` (config, accuracies, wall time, machine, command) and ``checkpoint.pt``
(written atomically at every eval; ``--resume`` continues from it and reaches the same final
parameters and metrics as an uninterrupted run). Batches are drawn from ``stream(seed, step)``,
so a resumed run sees the same data. Usage errors exit 2; a non-finite loss exits 3 and keeps
the last good checkpoint.

Data: ``--k-shot K`` trains on K examples per class (MeZO/LOZO's k-shot setting);
``--k-shot 0 --eval-examples 1000`` is MeZO's 1000/500/1000 protocol, where the summary also
reports the evaluation accuracy at the step with the best validation accuracy. Tasks are
``lozo_core.tasks.TASKS``; a task scored by F1 (MultiRC) also logs ``eval_f1``.

Objective: ``--objective loss`` is the cross-entropy over the candidates; ``--objective accuracy``
trains a zeroth-order optimizer on the task's metric itself (one minus the batch accuracy, or one
minus the batch F1), as MeZO does with non-differentiable objectives. First-order optimizers and
forward-grad need a gradient and reject it.

Learning rates are ours: LOZO's estimator carries ``1/rank``, so the LOZO paper's learning rate
``eta`` corresponds to ``--lr rank*eta`` here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import DTYPES, MODEL_NAMES, LoadedModel, load_model
from lozo_core.optim import OPTIMIZERS, ForwardGrad
from lozo_core.perturb import PairedClosure
from lozo_core.provenance import machine
from lozo_core.rng import stream

FIRST_ORDER = {"fo-sgd": torch.optim.SGD, "fo-adam": torch.optim.Adam}
OPTIMIZER_NAMES = ("zero-shot", *OPTIMIZERS, *FIRST_ORDER)
NEEDS_GRADIENT = (*FIRST_ORDER, "forward-grad")
DEFAULT_LR = {
    "mezo": 1e-5, "zo-sgd": 1e-5, "zo-sgd-sign": 1e-6, "zo-sgd-mmt": 1e-6, "zo-sgd-cons": 1e-5,
    "zo-adam": 1e-5, "lozo": 2e-5, "lozo-m": 2e-5, "lozo-adam": 1e-5, "forward-grad": 1e-5,
    "fo-sgd": 1e-3, "fo-adam": 1e-5, "zero-shot": 0.0,
}  # fmt: skip


@dataclass
class TrainConfig:
    model: str = "tiny-opt"
    task: str = "sst2"
    objective: str = "loss"
    optimizer: str = "lozo"
    steps: int = 100
    lr: float | None = None
    eps: float = 1e-3
    rank: int = 2
    interval: int = 50
    momentum: float | None = None
    weight_decay: float = 0.0
    q: int = 1
    engine: str = "sidepath"
    batch_size: int = 16
    k_shot: int = 16
    data_seed: int = 13
    seed: int = 0
    eval_every: int = 50
    eval_examples: int = 200
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self):
        checks = [
            (
                self.model in MODEL_NAMES or Path(self.model).exists(),
                "model",
                self.model,
                f"one of {', '.join(MODEL_NAMES)} or a local path",
            ),
            (self.task in T.TASKS, "task", self.task, f"one of {', '.join(T.TASKS)}"),
            (
                self.objective in S.OBJECTIVES,
                "objective",
                self.objective,
                f"one of {', '.join(S.OBJECTIVES)}",
            ),
            (
                self.optimizer in OPTIMIZER_NAMES,
                "optimizer",
                self.optimizer,
                f"one of {', '.join(OPTIMIZER_NAMES)}",
            ),
            (self.steps >= 0, "steps", self.steps, "an integer >= 0"),
            (self.lr is None or self.lr >= 0, "lr", self.lr, "a number >= 0"),
            (self.eps > 0, "eps", self.eps, "a number > 0"),
            (self.rank >= 1, "rank", self.rank, "an integer >= 1"),
            (self.interval >= 1, "interval", self.interval, "an integer >= 1"),
            (self.batch_size >= 1, "batch-size", self.batch_size, "an integer >= 1"),
            (
                self.k_shot >= 0,
                "k-shot",
                self.k_shot,
                "an integer >= 0 (0: the 1000/500/1000 protocol)",
            ),
            (self.eval_every >= 1, "eval-every", self.eval_every, "an integer >= 1"),
            (self.eval_examples >= 1, "eval-examples", self.eval_examples, "an integer >= 1"),
            (self.dtype in DTYPES, "dtype", self.dtype, f"one of {', '.join(DTYPES)}"),
            (self.engine in ("sidepath", "inplace"), "engine", self.engine, "sidepath or inplace"),
        ]
        for ok, name, value, expected in checks:
            if not ok:
                raise ValueError(f"--{name} {value!r}: expected {expected}")
        if self.objective != "loss" and self.optimizer in NEEDS_GRADIENT:
            raise ValueError(
                f"--objective {self.objective!r} has no gradient, and --optimizer "
                f"{self.optimizer} follows one; use --objective loss or a zeroth-order optimizer"
            )
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if self.momentum is None:
            self.momentum = 0.9 if self.optimizer in ("lozo-m", "zo-sgd-mmt") else 0.0
        if self.optimizer == "zero-shot":
            self.steps = 0


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module):
    """The optimizer named by ``cfg.optimizer``, weight decay on matrices only."""
    if cfg.optimizer in FIRST_ORDER:
        decay = [p for p in model.parameters() if p.ndim >= 2]
        rest = [p for p in model.parameters() if p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]
        return FIRST_ORDER[cfg.optimizer](groups, lr=cfg.lr)
    cls = OPTIMIZERS[cfg.optimizer]
    if cls is ForwardGrad:
        return cls(model, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed)
    kwargs = dict(lr=cfg.lr, eps=cfg.eps, q=cfg.q, weight_decay=cfg.weight_decay, seed=cfg.seed)
    if cls.lowrank:
        kwargs.update(
            rank=cfg.rank, interval=cfg.interval, momentum=cfg.momentum, engine=cfg.engine
        )
    elif cfg.optimizer == "zo-sgd-mmt":
        kwargs.update(momentum=cfg.momentum)
    return cls(model, **kwargs)


def splits(cfg: TrainConfig) -> tuple[list[T.Example], list[T.Example], list[T.Example]]:
    """Training, validation and evaluation examples.

    ``k_shot > 0``: k per class from the task's train split, no validation set. ``k_shot == 0``:
    MeZO's 1000/500/1000 protocol (1000 train and 500 validation from the train split, disjoint,
    100 validation for COPA and CB; the evaluation set is ``eval_examples`` from the dev split,
    1000 in the protocol)."""
    task = T.get_task(cfg.task)
    train, dev = task.split("train"), task.split("dev")
    if cfg.k_shot:
        train_set, validation_set = T.k_shot(train, cfg.k_shot, cfg.data_seed), []
    else:
        train_set, validation_set = T.train_validation(
            train, cfg.data_seed, n_validation=task.validation_examples
        )
    eval_set = T.sample(dev, min(cfg.eval_examples, len(dev)), cfg.data_seed)
    return train_set, validation_set, eval_set


def peak_memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def train(
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    command: str = "",
    loaded: LoadedModel | None = None,
) -> dict:
    """Run ``cfg``; write metrics, checkpoints and the summary into ``out``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    loaded = loaded or load_model(cfg.model, dtype=DTYPES[cfg.dtype], seed=cfg.seed)
    task = T.get_task(cfg.task)
    model, candidates = S.scorer(loaded, task, cfg.seed)
    model, budget = model.to(cfg.device), S.prompt_budget(model)
    objective = S.objective(task, cfg.objective)
    train_set, validation_set, eval_set = splits(cfg)
    optimizer = build_optimizer(cfg, model) if cfg.steps else None
    history, start = [], 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=cfg.device, weights_only=False)
        if state["config"] != dataclasses.asdict(cfg):
            raise ValueError(
                f"--resume: {ckpt_path} was written with a different config: {state['config']}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["step"], state["history"]
    metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    def log(record: dict) -> None:
        history.append(record)
        with metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def evaluate(step: int) -> float:
        if optimizer is not None and hasattr(optimizer, "merge"):
            optimizer.merge()
        record = {"step": step}
        for key, examples in (("eval", eval_set), ("validation", validation_set)):
            if examples:
                predicted = S.predict(
                    model,
                    loaded.tokenizer,
                    examples,
                    candidates,
                    batch_size=cfg.batch_size,
                    device=cfg.device,
                )
                for metric, value in S.metrics(task, examples, predicted).items():
                    record[f"{key}_{metric}"] = value
        log(record | {"time_s": time.perf_counter() - t0})
        return record["eval_accuracy"]

    t0 = time.perf_counter() - (history[-1]["time_s"] if history else 0.0)
    if start == 0:
        evaluate(0)
    bar = tqdm(
        range(start, cfg.steps),
        desc=f"{cfg.optimizer} {cfg.task}",
        initial=start,
        total=cfg.steps,
        disable=False,
    )
    for step in bar:
        g = stream(cfg.seed, step, 3)
        pick = torch.randperm(len(train_set), generator=g)[: cfg.batch_size].tolist()
        batch = S.encode(loaded.tokenizer, [train_set[i] for i in pick], budget).to(cfg.device)
        loss_fn = lambda b: objective(model, b, candidates)
        try:
            if cfg.optimizer in FIRST_ORDER:
                optimizer.zero_grad()
                loss = loss_fn(batch).mean()
                loss.backward()
                optimizer.step()
                loss = loss.detach()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at step {step}: {float(loss)}")
            else:
                loss = optimizer.step(PairedClosure(loss_fn, batch, S.Batch.doubled))
        except FloatingPointError as err:
            raise FloatingPointError(f"{err}; last good checkpoint: {ckpt_path}") from err
        log(
            {
                "step": step + 1,
                "loss": float(loss),
                "time_s": time.perf_counter() - t0,
                "peak_mem_bytes": peak_memory_bytes(cfg.device),
            }
        )
        bar.set_postfix(loss=f"{float(loss):.4f}")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            acc = evaluate(step + 1)
            bar.set_postfix(loss=f"{float(loss):.4f}", acc=f"{acc:.3f}")
            save_atomic(
                {
                    "config": dataclasses.asdict(cfg),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step + 1,
                    "history": history,
                },
                ckpt_path,
            )
    evals = [h for h in history if "eval_accuracy" in h]
    accuracies = [h["eval_accuracy"] for h in evals]
    forwards_per_step = 2 * cfg.q if cfg.optimizer not in FIRST_ORDER else 1
    summary = {
        "task": cfg.task, "model": cfg.model, "model_source": loaded.source, "optimizer": cfg.optimizer,
        "seed": cfg.seed, "data_seed": cfg.data_seed, "steps": cfg.steps, "config": dataclasses.asdict(cfg),
        "zero_shot_accuracy": accuracies[0], "final_eval_accuracy": accuracies[-1], "best_eval_accuracy": max(accuracies),
        "eval_examples": len(eval_set), "train_examples": len(train_set), "forwards_per_step": forwards_per_step,
        "wall_time_s": time.perf_counter() - t0, "command": command, "machine": machine(),
        "curve": [{k: h[k] for k in ("step", "loss", "eval_accuracy", "validation_accuracy", "eval_f1", "validation_f1") if k in h} for h in history],
    }  # fmt: skip
    if validation_set:
        chosen = max(evals, key=lambda h: h["validation_accuracy"])
        summary |= {
            "validation_examples": len(validation_set),
            "best_validation_accuracy": chosen["validation_accuracy"],
            "best_validation_step": chosen["step"],
            "eval_accuracy_at_best_validation": chosen["eval_accuracy"],
        }
    write_json_atomic(summary, out / "summary.json")
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lozo_core.train", description=__doc__.splitlines()[0]
    )
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = {int: int, float: float, str: str}.get(type(field.default), float)
        p.add_argument(flag, type=kind, default=field.default, help=f"(default: {field.default})")
    p.add_argument(
        "--out", type=Path, required=True, help="run folder for metrics, checkpoint and summary"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = vars(parser().parse_args(argv))
    out, resume = args.pop("out"), args.pop("resume")
    try:
        cfg = TrainConfig(**args)
        T.get_task(cfg.task).split("dev")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = "python -m lozo_core.train " + shlex.join(argv)
    try:
        summary = train(cfg, out, resume=resume, command=command)
    except FloatingPointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "task",
                    "model",
                    "optimizer",
                    "seed",
                    "steps",
                    "zero_shot_accuracy",
                    "final_eval_accuracy",
                    "wall_time_s",
                )
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
