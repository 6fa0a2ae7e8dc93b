"""One training loop for zeroth-order and first-order fine-tuning, and its CLI.

``python -m lozo_core.train --model tiny-opt --task sst2 --optimizer lozo --steps 30
--eval-every 10 --out runs/demo`` writes into the run folder:

* ``trajectory.json`` — the config and every step's measured scalars (a few kB per 1000 steps,
  :mod:`lozo_core.trajectory`): ``python -m lozo_core.replay`` rebuilds the model from it, and
  ``--resume`` continues from it alone (first-order runs cannot be replayed);
* ``checkpoint.pt`` — model and optimizer state at the last evaluation (tensors only, loaded
  with ``weights_only=True``); ``--resume`` prefers it;
* ``metrics.jsonl`` (one line per step and per evaluation) and ``summary.json`` (config,
  accuracies, wall time, passes per step, trainable parameters, machine, command, and
  ``peak_mem_bytes``: the peak memory of the process that ran the last steps, before the final
  test evaluations — peak resident set size on CPU, allocated bytes on CUDA).

Both resume paths reach the same final parameters and metrics as an uninterrupted run, and with
a larger ``--steps`` extend a run to what a run that long from the start gives. Batches
are drawn from ``stream(seed, step, 3)``: every optimizer sees the same data order for a seed.
Evaluation never changes the trajectory (it writes nothing). Usage errors exit 2; a non-finite
loss exits 3 and keeps the last good checkpoint.

Under ``torchrun --nproc-per-node N -m lozo_core.train …`` (:mod:`lozo_core.distributed`) the
process group is joined from the environment, ``--batch-size`` is the global batch and each
process computes the training loss on its contiguous shard; zeroth-order optimizers all-reduce
only their measured scalars, first-order ones train a ``DistributedDataParallel`` model. Rank 0
alone evaluates (so evaluations equal a single process's) and writes the run folder; the
summary and each trajectory chunk record ``world_size``, which is not part of the config, so a
run resumes or replays at another world size.

Data: ``--k-shot K`` trains on K examples per class and evaluates on ``--eval-examples`` dev
examples. ``--k-shot 0`` is MeZO's protocol: 1000 training and 500 validation examples drawn
disjointly from GLUE train, the test set ``--eval-examples`` from GLUE dev (all of it when that
is larger than the split). Then only the validation split is evaluated during training; the test
split at the last step and at the step with the best validation accuracy (rebuilt by replay).

Tasks are ``lozo_core.tasks.TASKS``; a task scored by F1 (MultiRC) also logs its F1.
``--objective loss`` trains on the cross-entropy over the candidates; ``--objective accuracy``
trains a zeroth-order optimizer on the task's metric itself (one minus the batch accuracy, or
one minus the batch F1), as MeZO does with non-differentiable objectives; first-order optimizers
and Forward-Grad need a gradient and reject it.

Learning rates are ours: LOZO's estimator carries ``1/rank``, so the LOZO paper's learning rate
``eta`` corresponds to ``--lr rank*eta`` here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import resource
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lozo_core import distributed
from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import DTYPES, MODEL_NAMES, LoadedModel, decay_groups, load_model
from lozo_core.optim import PairedClosure
from lozo_core.optim.engines import ENGINES
from lozo_core.optim.table import TABLE, Hyper
from lozo_core.provenance import machine, progress_bar
from lozo_core.rng import stream
from lozo_core.schemes import SCHEMES, Scheme, trainable_parameters
from lozo_core.trajectory import Trajectory, replay

DATA_KEY = 3
FORWARDS = ("paired", "sequential")


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    model: str = _option("tiny-opt", f"one of {', '.join(MODEL_NAMES)}, or a local HF folder")
    task: str = _option("sst2", f"one of {', '.join(T.TASKS)}")
    objective: str = _option("loss", f"what training minimises: one of {', '.join(S.OBJECTIVES)}")
    optimizer: str = _option("lozo", f"one of {', '.join(TABLE)}")
    steps: int = _option(100, "optimizer steps (0 for zero-shot)")
    lr: float | None = _option(None, "learning rate (default: the optimizer's row in optim.table)")
    eps: float = _option(1e-3, "perturbation scale ε of zeroth-order estimates")
    rank: int = _option(2, "LOZO rank r")
    interval: int = _option(50, "LOZO lazy interval ν (steps between V refreshes)")
    momentum: float | None = _option(
        None, "momentum β (default: the optimizer's row, where it has one)"
    )
    weight_decay: float = _option(0.0, "decoupled weight decay λ on matrices")
    q: int = _option(1, "queries averaged per zeroth-order step")
    engine: str = _option("sidepath", f"LOZO engine: one of {', '.join(ENGINES)}")
    forwards: str = _option(
        "paired",
        "how the side path evaluates f(θ+εZ) and f(θ−εZ): paired (one forward over the doubled "
        "batch; fastest) or sequential (two single-batch forwards; peak memory ≈ inference). "
        "The in-place engine is always sequential",
    )
    scheme: str = _option("full", f"which parameters train: one of {', '.join(SCHEMES)} (peft)")
    lora_rank: int = _option(8, "LoRA rank r_lora (--scheme lora)")
    virtual_tokens: int = _option(10, "prefix / prompt length (--scheme prefix|prompt)")
    batch_size: int = _option(16, "examples per step")
    k_shot: int = _option(16, "examples per class; 0 = MeZO's 1000/500 train/validation protocol")
    data_seed: int = _option(13, "seed of the k-shot / train-validation draw")
    seed: int = _option(0, "run seed: perturbations, batch order, new heads")
    eval_every: int = _option(50, "steps between evaluations")
    eval_examples: int = _option(200, "test examples drawn from the GLUE dev split")
    validation_examples: int = _option(
        500, "validation examples drawn from GLUE train (--k-shot 0)"
    )
    device: str = _option("cpu", "torch device (cpu, cuda, cuda:1, …)")
    dtype: str = _option("float32", f"model dtype: one of {', '.join(DTYPES)}")

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
            (self.optimizer in TABLE, "optimizer", self.optimizer, f"one of {', '.join(TABLE)}"),
            (self.steps >= 0, "steps", self.steps, "an integer >= 0"),
            (self.lr is None or self.lr >= 0, "lr", self.lr, "a number >= 0"),
            (self.eps > 0, "eps", self.eps, "a number > 0"),
            (self.rank >= 1, "rank", self.rank, "an integer >= 1"),
            (self.interval >= 1, "interval", self.interval, "an integer >= 1"),
            (self.q >= 1, "q", self.q, "an integer >= 1"),
            (self.batch_size >= 1, "batch-size", self.batch_size, "an integer >= 1"),
            (
                self.k_shot >= 0,
                "k-shot",
                self.k_shot,
                "an integer >= 0 (0: the 1000/500/1000 protocol)",
            ),
            (self.eval_every >= 1, "eval-every", self.eval_every, "an integer >= 1"),
            (self.eval_examples >= 1, "eval-examples", self.eval_examples, "an integer >= 1"),
            (
                self.validation_examples >= 1,
                "validation-examples",
                self.validation_examples,
                "an integer >= 1",
            ),
            (self.dtype in DTYPES, "dtype", self.dtype, f"one of {', '.join(DTYPES)}"),
            (self.engine in ENGINES, "engine", self.engine, f"one of {', '.join(ENGINES)}"),
            (self.forwards in FORWARDS, "forwards", self.forwards, f"one of {', '.join(FORWARDS)}"),
            (self.scheme in SCHEMES, "scheme", self.scheme, f"one of {', '.join(SCHEMES)}"),
            (self.lora_rank >= 1, "lora-rank", self.lora_rank, "an integer >= 1"),
            (self.virtual_tokens >= 1, "virtual-tokens", self.virtual_tokens, "an integer >= 1"),
        ]
        for ok, name, value, expected in checks:
            if not ok:
                raise ValueError(f"--{name} {value!r}: expected {expected}")
        row = TABLE[self.optimizer]
        if self.objective != "loss" and row.needs_gradient:
            raise ValueError(
                f"--objective {self.objective!r} has no gradient, and --optimizer "
                f"{self.optimizer} follows one; use --objective loss or a zeroth-order optimizer"
            )
        if self.lr is None:
            self.lr = row.default_lr
        if self.momentum is None:
            self.momentum = row.momentum
        elif row.momentum is None:
            with_momentum = ", ".join(name for name, r in TABLE.items() if r.momentum is not None)
            raise ValueError(
                f"--momentum {self.momentum!r}: --optimizer {self.optimizer} has no momentum; "
                f"expected one of {with_momentum}"
            )
        if not row.trains:
            self.steps = 0

    @property
    def fine_tuning(self) -> Scheme:
        return Scheme(self.scheme, lora_rank=self.lora_rank, virtual_tokens=self.virtual_tokens)

    @property
    def hyper(self) -> Hyper:
        return Hyper(
            lr=self.lr, eps=self.eps, q=self.q, weight_decay=self.weight_decay, seed=self.seed,
            rank=self.rank, interval=self.interval, momentum=self.momentum, engine=self.engine,
        )  # fmt: skip


def build_optimizer(
    cfg: TrainConfig, model: torch.nn.Module, keep_directions: bool = False
) -> torch.optim.Optimizer:
    """The optimizer of ``cfg.optimizer``'s row, weight decay on matrices only;
    ``keep_directions`` trades memory for draws without changing a number (see
    :class:`~lozo_core.optim.optimizer.ZeroOrderOptimizer`)."""
    hyper = dataclasses.replace(cfg.hyper, keep_directions=keep_directions)
    return TABLE[cfg.optimizer].build(decay_groups(model, cfg.weight_decay), hyper)


def optimizer_settings(optimizer: torch.optim.Optimizer) -> dict:
    """The settings ``optimizer`` runs with, code defaults included, as JSON values: its
    ``defaults`` and, for a zeroth-order optimizer, its
    :meth:`~lozo_core.optim.optimizer.ZeroOrderOptimizer.hyperparameters`. A record states them,
    so resuming or replaying it does not silently take a later version's defaults."""
    settings = {k: v for k, v in optimizer.defaults.items() if k != "step"}
    if hasattr(optimizer, "hyperparameters"):
        settings |= optimizer.hyperparameters()
    return json.loads(json.dumps(settings))


def check_settings(recorded: dict, built: dict, source: str) -> None:
    """Refuse to continue or replay a run whose optimizer was built with other settings than
    ``built`` (:func:`optimizer_settings` of this version's optimizer). Settings only one side
    has pass: records written before settings were recorded hold none, and a later torch may add
    options to its optimizers' defaults."""
    changed = sorted(k for k in recorded.keys() & built.keys() if recorded[k] != built[k])
    if changed:
        raise ValueError(
            f"{source}: the run's optimizer had "
            f"{', '.join(f'{k}={recorded[k]!r}' for k in changed)}; this version builds "
            f"{', '.join(f'{k}={built[k]!r}' for k in changed)} from the same config (a default "
            "changed since the run was written, in this code or in torch)"
        )


def splits(cfg: TrainConfig) -> tuple[list[T.Example], list[T.Example], list[T.Example]]:
    """Training, validation and evaluation examples.

    ``k_shot > 0``: k per class from the task's train split, no validation set. ``k_shot == 0``:
    MeZO's 1000/500/1000 protocol (1000 train and ``validation_examples`` validation from the
    train split, disjoint — at most the task's own limit, 100 for COPA and CB; the evaluation set
    is ``eval_examples`` from the dev split, 1000 in the protocol)."""
    task = T.get_task(cfg.task)
    train, dev = task.split("train"), task.split("dev")
    if cfg.k_shot:
        train_set, validation_set = T.k_shot(train, cfg.k_shot, cfg.data_seed), []
    else:
        n_validation = min(cfg.validation_examples, task.validation_examples)
        train_set, validation_set = T.train_validation(
            train, cfg.data_seed, n_validation=n_validation
        )
    eval_set = T.sample(dev, min(cfg.eval_examples, len(dev)), cfg.data_seed)
    return train_set, validation_set, eval_set


def step_batch(
    tokenizer, model, train_set: list[T.Example], seed: int, step: int, batch_size: int,
    local: slice = slice(None),
) -> S.Batch:  # fmt: skip
    """The examples of training step ``step``: ``batch_size`` drawn without replacement from
    ``train_set`` by the seed's data stream (the same for every method of a seed), ``local``
    this process's shard of them, encoded within the model's prompt budget."""
    g = stream(seed, step, DATA_KEY)
    pick = torch.randperm(len(train_set), generator=g)[:batch_size][local].tolist()
    return S.encode(tokenizer, [train_set[i] for i in pick], S.prompt_budget(model))


def peak_memory_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device="cpu") -> dict:
    """A checkpoint's tensors and plain data; ``ValueError`` if it holds anything else."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds more than tensors and plain data (refused: loading it could run code): "
            f"{str(err).splitlines()[0]}"
        ) from err


def write_json_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _check_config(saved: dict, cfg: TrainConfig, source: Path, done: int) -> None:
    """A run resumes only with its own config (options added since it was written take their
    defaults), except that ``--steps`` may exceed the ``done`` steps it holds: no rate, direction
    or batch depends on a run's length, so a longer run's first ``done`` steps are the shorter
    run's and resuming extends it."""
    theirs, ours = dataclasses.asdict(TrainConfig(**saved)), dataclasses.asdict(cfg)
    if done <= cfg.steps:
        theirs["steps"] = ours["steps"]
    if theirs != ours:
        raise ValueError(f"--resume: {source} was written with a different config: {saved}")


def score(model, tokenizer, task, examples, candidates, batch_size: int, device) -> dict:
    """The task's metrics (accuracy, and F1 where it is scored by F1) and the mean cross-entropy
    over the candidates on ``examples``."""
    budget, predicted, total = S.prompt_budget(model), [], 0.0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = S.encode(tokenizer, examples[start : start + batch_size], budget).to(device)
            scores = S.candidate_scores(model, batch, candidates)
            predicted.append(scores.argmax(1).cpu())
            total += float(torch.nn.functional.cross_entropy(scores, batch.labels, reduction="sum"))
    return S.metrics(task, examples, torch.cat(predicted)) | {"loss": total / len(examples)}


def rebuild(
    cfg: TrainConfig,
    trajectory: Trajectory,
    steps: int,
    loaded: LoadedModel | None = None,
    keep_directions: bool = False,
):
    """The run's model after ``steps`` steps, rebuilt from a fresh load by replaying its
    trajectory (no forward pass); returns ``(model, candidates, loaded)``.

    ``keep_directions``: draw each step's directions once instead of once per pass over the
    weights (a MeZO step retraces four: +eps, -2 eps, +eps, update), holding one direction in
    memory; the same numbers."""
    if steps > trajectory.steps:
        raise ValueError(f"replay: the trajectory has {trajectory.steps} steps, asked for {steps}")
    fresh = load_model(cfg.model, dtype=DTYPES[cfg.dtype], seed=cfg.seed)
    if loaded is not None:
        fresh = dataclasses.replace(fresh, tokenizer=loaded.tokenizer)
    model, candidates = S.scorer(fresh, T.get_task(cfg.task), cfg.seed)
    model = cfg.fine_tuning.apply(model, cfg.seed).to(cfg.device)
    if steps:
        optimizer = build_optimizer(cfg, model, keep_directions)
        check_settings(trajectory.optimizer, optimizer_settings(optimizer), "the trajectory")
        replay(optimizer, trajectory.records[:steps])
        optimizer.merge()
    return model, candidates, fresh


def weights_fingerprint(model: torch.nn.Module) -> dict:
    """SHA-256 of every parameter's bytes (bit-identity) and each one's float64 norm (how far two
    builds differ when the bytes do not agree, e.g. a replay on another CPU)."""
    digest = hashlib.sha256()
    norms = {}
    for name, p in model.state_dict().items():
        digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        norms[name] = float(p.detach().double().norm())
    return {"sha256": digest.hexdigest(), "norms": norms}


def _history_from(trajectory: Trajectory) -> list[dict]:
    """Metrics lines rebuilt from a trajectory (losses are each step's mean query loss)."""
    history, elapsed = [], 0.0
    evals = {e["step"]: e for e in trajectory.evals}
    if 0 in evals:
        history.append(evals[0])
    for record, seconds in zip(trajectory.records, trajectory.times, strict=True):
        elapsed += seconds
        flat = [f for block in record.get("losses", []) for pair in block for f in pair]
        line = {"step": record["step"] + 1, "time_s": elapsed}
        if flat:
            line["loss"] = sum(flat) / len(flat)
        history.append(line)
        if record["step"] + 1 in evals:
            history.append(evals[record["step"] + 1])
    return history


def train(
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    command: str = "",
    loaded: LoadedModel | None = None,
    until: int | None = None,
    keep_directions: bool = False,
) -> dict | None:
    """Run ``cfg``; write trajectory, metrics, checkpoint and summary into ``out``.

    ``until``: stop after that step (a chunk of a long run), saving the trajectory and a
    checkpoint; the summary is written only when the run reaches ``cfg.steps``.
    ``keep_directions`` is a run-time choice like the thread count (the same numbers, so not
    part of the config); each chunk records it."""
    group, writer = distributed.default_group(), distributed.rank() == 0
    if writer:
        out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path, best_path = (
        out / "checkpoint.pt",
        out / "metrics.jsonl",
        out / "best.pt",
    )
    wall_start = time.perf_counter()
    loaded = loaded or load_model(cfg.model, dtype=DTYPES[cfg.dtype], seed=cfg.seed)
    task = T.get_task(cfg.task)
    model, candidates = S.scorer(loaded, task, cfg.seed)
    model = cfg.fine_tuning.apply(model, cfg.seed).to(cfg.device)
    objective = S.objective(task, cfg.objective)
    if objective is S.batch_f1_error and distributed.world_size() > 1:
        raise ValueError(
            f"--objective accuracy on {cfg.task} minimises 1 - F1, which is not a mean over "
            f"examples: {distributed.world_size()} processes would average their shards' F1s, not "
            "the batch's; run it in one process"
        )
    train_set, validation_set, eval_set = splits(cfg)
    row = TABLE[cfg.optimizer]
    optimizer = build_optimizer(cfg, model, keep_directions) if cfg.steps else None
    local = distributed.shard(min(cfg.batch_size, len(train_set)), group)
    forward = model if row.zeroth_order else distributed.data_parallel(model, group)
    config = dataclasses.asdict(cfg)
    settings = optimizer_settings(optimizer) if optimizer is not None else {}
    trajectory, history, start = Trajectory(config, optimizer=settings), [], 0
    replayable = row.zeroth_order and optimizer is not None
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, cfg.device)
        _check_config(state["config"], cfg, ckpt_path, state["step"])
        check_settings(state.get("optimizer_settings", {}), settings, str(ckpt_path))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["step"], state["history"]
        if replayable:
            trajectory = Trajectory.load(out)
            trajectory.truncate(start)
            trajectory.config, trajectory.optimizer = config, settings
    elif resume and replayable and (out / "trajectory.json").exists():
        trajectory = Trajectory.load(out)
        _check_config(trajectory.config, cfg, out / "trajectory.json", trajectory.steps)
        check_settings(trajectory.optimizer, settings, str(out / "trajectory.json"))
        trajectory.config, trajectory.optimizer = config, settings
        replay(optimizer, trajectory.records)
        start, history = trajectory.steps, _history_from(trajectory)
    distributed.check_agree("--resume: the step to resume from", start, group)
    if writer:
        metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))
    split, key = (validation_set, "validation") if validation_set else (eval_set, "eval")
    effective = optimizer.effective_weights if hasattr(optimizer, "effective_weights") else None
    train_seconds = history[-1]["time_s"] if history else 0.0

    def log(record: dict) -> None:
        history.append(record)
        if writer:
            with metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def evaluate(step: int) -> float:
        with effective() if effective else contextlib.nullcontext():
            scores = score(
                model, loaded.tokenizer, task, split, candidates, cfg.batch_size, cfg.device
            )
        record = {"step": step} | {f"{key}_{metric}": value for metric, value in scores.items()}
        accuracy = scores["accuracy"]
        record["time_s"] = train_seconds
        log(record)
        trajectory.evals.append(record)
        earlier = [h[f"{key}_accuracy"] for h in history[:-1] if f"{key}_accuracy" in h]
        if validation_set and not replayable and step > 0 and accuracy > max(earlier, default=-1.0):
            save_atomic({"step": step, "model": model.state_dict()}, best_path)
        return accuracy

    if start == 0 and writer:
        evaluate(0)
    stop = cfg.steps if until is None else min(until, cfg.steps)
    chunk = {"start": start, "machine": machine(), "world_size": distributed.world_size(),
             "keep_directions": keep_directions}  # fmt: skip
    bar = progress_bar(range(start, stop), desc=f"{cfg.optimizer} {cfg.task}", initial=start,
                       total=cfg.steps, mininterval=10 if not sys.stderr.isatty() else 0.1,
                       disable=not writer)  # fmt: skip
    for step in bar:
        batch = step_batch(loaded.tokenizer, model, train_set, cfg.seed, step, cfg.batch_size,
                           local).to(cfg.device)  # fmt: skip
        loss_fn = lambda b: objective(forward, b, candidates)
        tick = time.perf_counter()
        try:
            if row.zeroth_order:
                closure = PairedClosure(loss_fn, batch, S.Batch.doubled)
                paired = cfg.fine_tuning.pairs and cfg.forwards == "paired"
                loss = optimizer.step(closure if paired else closure.__call__)
            else:
                optimizer.zero_grad()
                loss = loss_fn(batch).mean()
                loss.backward()
                optimizer.step()
                loss = torch.tensor(distributed.reduce_mean([float(loss.detach())], group)[0])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at step {step}: {float(loss)}")
        except FloatingPointError as err:
            last = f"last good checkpoint: {ckpt_path}" if ckpt_path.exists() else (
                "no checkpoint was written yet (the run failed before its first evaluation)"
            )  # fmt: skip
            raise FloatingPointError(f"{err}; {last}") from err
        seconds = time.perf_counter() - tick
        train_seconds += seconds
        if replayable:
            trajectory.append(optimizer.last_record, seconds)
        log({"step": step + 1, "loss": float(loss), "time_s": train_seconds,
             "peak_mem_bytes": peak_memory_bytes(cfg.device)})  # fmt: skip
        bar.set_postfix(loss=f"{float(loss):.4f}")
        if not writer:
            continue
        evaluating = (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps
        if evaluating:
            acc = evaluate(step + 1)
            bar.set_postfix(loss=f"{float(loss):.4f}", **{key[:3]: f"{acc:.3f}"})
        if evaluating or step + 1 == stop:
            if step + 1 == cfg.steps and hasattr(optimizer, "merge"):
                optimizer.merge()
            if replayable:
                trajectory.chunks = [c for c in trajectory.chunks if c["start"] < start]
                trajectory.chunks.append(chunk | {"end": step + 1, "train_time_s": train_seconds})
                trajectory.save(out)
            save_atomic(
                {"config": config, "optimizer_settings": settings, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "step": step + 1, "history": history},
                ckpt_path,
            )  # fmt: skip
    if stop < cfg.steps or not writer:
        return None
    peak = peak_memory_bytes(cfg.device)
    if row.zeroth_order and optimizer is None:
        trajectory.save(out)
    summary = _summary(
        cfg,
        row,
        loaded,
        history,
        train_set,
        validation_set,
        eval_set,
        key,
        trainable_parameters(model),
    )
    summary |= {"optimizer_settings": settings, "train_time_s": train_seconds, "command": command,
                "machine": machine(), "world_size": distributed.world_size(),
                "chunks": trajectory.chunks, "weights": weights_fingerprint(model),
                "peak_mem_bytes": peak}  # fmt: skip
    if validation_set:
        summary |= _test_accuracies(
            cfg, model, effective, loaded, candidates, eval_set, trajectory, summary, best_path,
            keep_directions,
        )  # fmt: skip
    summary["wall_time_s"] = time.perf_counter() - wall_start
    write_json_atomic(summary, out / "summary.json")
    return summary


def _summary(
    cfg, row, loaded, history, train_set, validation_set, eval_set, key, trainable
) -> dict:
    evals = [h for h in history if f"{key}_accuracy" in h]
    accuracies = [h[f"{key}_accuracy"] for h in evals]
    passes = row.passes(cfg.hyper)
    summary = {
        "task": cfg.task, "model": cfg.model, "model_source": loaded.source, "optimizer": cfg.optimizer,
        "seed": cfg.seed, "data_seed": cfg.data_seed, "steps": cfg.steps, "lr": cfg.lr,
        "config": dataclasses.asdict(cfg), "train_examples": len(train_set), "eval_examples": len(eval_set),
        "passes_per_step": passes, "forward_passes": sum(passes.values()) * cfg.steps,
        "trainable_parameters": trainable,
        "curve": [{k: h[k] for k in ("step", "loss", "time_s", f"{key}_accuracy", f"{key}_loss", f"{key}_f1") if k in h}
                  for h in history],
    }  # fmt: skip
    if key == "eval":
        summary |= {"zero_shot_accuracy": accuracies[0], "final_eval_accuracy": accuracies[-1]}
    else:
        chosen = max(evals, key=lambda h: h["validation_accuracy"])
        summary |= {
            "validation_examples": len(validation_set),
            "zero_shot_validation_accuracy": accuracies[0],
            "final_validation_accuracy": accuracies[-1],
            "best_validation_accuracy": chosen["validation_accuracy"],
            "best_validation_step": chosen["step"],
        }
    return summary


def _test_accuracies(
    cfg, model, effective, loaded, candidates, eval_set, trajectory, summary, best_path,
    keep_directions,
) -> dict:  # fmt: skip
    """Test accuracy (and F1, for a task scored by F1) at the last step and at the best-validation
    step — the step of highest validation accuracy, the first where several tie — rebuilt by replay
    for zeroth-order runs, restored from ``best.pt`` (written at each strict improvement) for
    first-order ones."""

    def test(m, cands) -> dict:
        with effective() if effective else contextlib.nullcontext():
            task = T.get_task(cfg.task)
            return score(m, loaded.tokenizer, task, eval_set, cands, cfg.batch_size, cfg.device)

    last = test(model, candidates)
    best_step = summary["best_validation_step"]
    if best_step == cfg.steps:
        at_best, how = last, "last step"
    elif best_step == 0:
        fresh, cands, _ = rebuild(cfg, trajectory, 0, loaded)
        effective, at_best, how = None, test(fresh, cands), "initial model"
    elif trajectory.records:
        fresh, cands, _ = rebuild(cfg, trajectory, best_step, loaded, keep_directions)
        effective, at_best, how = None, test(fresh, cands), "replayed trajectory"
    else:
        model.load_state_dict(torch.load(best_path, weights_only=True)["model"])
        at_best, how = test(model, candidates), "best.pt"
    out = {"final_eval_accuracy": last["accuracy"],
           "eval_accuracy_at_best_validation": at_best["accuracy"], "best_validation_model": how}  # fmt: skip
    if "f1" in last:
        out |= {"final_eval_f1": last["f1"], "eval_f1_at_best_validation": at_best["f1"]}
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lozo_core.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = {int: int, float: float, str: str}.get(type(f.default), float)
        p.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="run folder for trajectory, metrics, checkpoint and summary",
    )
    p.add_argument(
        "--until", type=int, default=None,
        help="stop after this step (one chunk of a long run; continue later with --resume)",
    )  # fmt: skip
    p.add_argument(
        "--resume", action="store_true",
        help="continue from OUT/checkpoint.pt, or else replay OUT/trajectory.json (with a "
        "larger --steps than the run's, extend the run)",
    )  # fmt: skip
    p.add_argument(
        "--keep-directions", action="store_true",
        help="hold each step's random directions in memory instead of regenerating them for "
        "every pass: the same numbers, faster for dense (MeZO-family) directions, one more "
        "model's size of memory; not part of the config",
    )  # fmt: skip
    return p


def _launcher() -> str:
    """``python``, or the torchrun command line that started this process."""
    if not distributed.launched_by_torchrun():
        return "python"
    per_node, world = int(os.environ["LOCAL_WORLD_SIZE"]), int(os.environ["WORLD_SIZE"])
    nodes = f"--nnodes {world // per_node} " if world > per_node else ""
    return f"torchrun {nodes}--nproc-per-node {per_node}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = vars(parser().parse_args(argv))
    out, resume, until = args.pop("out"), args.pop("resume"), args.pop("until")
    keep_directions = args.pop("keep_directions")
    try:
        cfg = TrainConfig(**args)
        T.get_task(cfg.task).split("dev")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = f"{_launcher()} -m lozo_core.train {shlex.join(argv)}"
    try:
        with distributed.process_group_from_env(cfg.device):
            summary = train(
                cfg, out, resume=resume, command=command, until=until,
                keep_directions=keep_directions,
            )  # fmt: skip
            writer = distributed.rank() == 0
    except FloatingPointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not writer:
        return 0
    if summary is None:
        print(json.dumps({"stopped_at": until, "steps": cfg.steps, "out": str(out)}))
        return 0
    keys = ("task", "model", "optimizer", "seed", "steps", "final_eval_accuracy",
            "eval_accuracy_at_best_validation", "train_time_s")  # fmt: skip
    print(json.dumps({k: summary[k] for k in keys if k in summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
