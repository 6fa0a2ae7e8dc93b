"""Accuracy (and F1 where the task is scored by F1) of a saved run on any file in a task's format.

``python -m lozo_core.evaluate --checkpoint DIR --task sst2 --data PATH.tsv`` prints JSON:
``DIR`` is the ``--out`` folder of a training run or of ``python -m lozo_core.replay`` (its
``checkpoint.pt`` holds the config and the trained weights); ``PATH`` is a TSV for GLUE tasks,
JSONL for the others. Checkpoints are opened with ``torch.load(weights_only=True)``: one that
carries pickled code is refused, not run. Usage errors exit 2 with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import DTYPES, load_model
from lozo_core.optim.engines import holds_pending
from lozo_core.train import TrainConfig, load_checkpoint


def evaluate(
    checkpoint_dir: Path, task: str, data_path: Path, batch_size: int = 16, device: str = "cpu"
) -> dict:
    ckpt_path = checkpoint_dir / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"no checkpoint.pt in {checkpoint_dir} (pass the --out folder of a training run)"
        )
    state = load_checkpoint(ckpt_path, device)
    config = state["config"]
    if holds_pending(state.get("optimizer", {})):
        raise ValueError(
            f"{ckpt_path} (step {state['step']}) holds updates still pending in the deferred side "
            "path, which its weights lack: rebuild them with `python -m lozo_core.replay "
            f"{checkpoint_dir} --step {state['step']} --out DIR` and evaluate DIR"
        )
    spec = T.get_task(task)
    examples = spec.read(data_path)
    loaded = load_model(config["model"], dtype=DTYPES[config["dtype"]], seed=config["seed"])
    model, candidates = S.scorer(loaded, spec, config["seed"])
    try:
        scheme = TrainConfig(**config).fine_tuning
    except (TypeError, ValueError) as err:
        raise ValueError(f"{ckpt_path}: its config does not load in this version: {err}") from err
    model = scheme.apply(model, config["seed"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(
            f"{ckpt_path} was trained on {config['task']}; its weights do not fit a scorer for "
            f"{task}: {str(err).splitlines()[0]}"
        ) from err
    predicted = S.predict(
        model.to(device),
        loaded.tokenizer,
        examples,
        candidates,
        batch_size=batch_size,
        device=device,
    )
    return {
        "checkpoint": str(ckpt_path), "step": state["step"], "model": config["model"], "optimizer": config["optimizer"],
        "trained_on": config["task"], "task": task, "data": str(data_path), "examples": len(examples),
        **S.metrics(spec, examples, predicted),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lozo_core.evaluate", description=__doc__.splitlines()[0]
    )
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        T.get_task(args.task)
        result = evaluate(args.checkpoint, args.task, args.data, args.batch_size, args.device)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
