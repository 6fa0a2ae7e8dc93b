"""Replay a committed full-protocol run on this machine and compare it with the recording.

    python scripts/replay_check.py data/results/full_protocol/sst2/lozo_s0

Rebuilds the run's final model from ``trajectory.json`` alone (``lozo_core.train.rebuild``: no
forward pass), then compares the parameter fingerprint (bit-identity via SHA-256, else the
largest relative difference of per-parameter norms) and the test accuracy with the run's
``summary.json``. Writes ``data/results/full_protocol/replay_checks/<run>_on_<cpu>.json`` (the
run's path under ``full_protocol`` with ``/`` as ``_``; ``provenance.cpu_slug``) with this
machine, one file per run and replaying CPU.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lozo_core import tasks as T  # noqa: E402
from lozo_core.provenance import cpu_line, cpu_slug, machine  # noqa: E402
from lozo_core.train import TrainConfig, rebuild, score, splits, weights_fingerprint  # noqa: E402
from lozo_core.trajectory import Trajectory  # noqa: E402


def main(run_dir: str) -> int:
    folder = Path(run_dir)
    root = ROOT / "data" / "results" / "full_protocol"
    if not folder.resolve().is_relative_to(root):
        raise SystemExit(f"replay_check: {run_dir} is not a run folder under {root}")
    name = folder.resolve().relative_to(root).as_posix().replace("/", "_")
    summary = json.loads((folder / "summary.json").read_text())
    trajectory = Trajectory.load(folder)
    cfg = TrainConfig(**trajectory.config)
    tick = time.perf_counter()
    model, candidates, loaded = rebuild(cfg, trajectory, trajectory.steps, keep_directions=True)
    replay_s = time.perf_counter() - tick
    fingerprint = weights_fingerprint(model)
    recorded = summary["weights"]
    relative = max(
        abs(fingerprint["norms"][k] - v) / max(abs(v), 1e-30) for k, v in recorded["norms"].items()
    )
    _, _, test_set = splits(cfg)
    task = T.get_task(cfg.task)
    scores = score(model, loaded.tokenizer, task, test_set, candidates, cfg.batch_size, cfg.device)
    accuracy = scores["accuracy"]
    result = {
        "run": str(folder.relative_to(ROOT)) if folder.is_absolute() else str(folder),
        "recorded_on": sorted({cpu_line(c["machine"]) for c in summary.get("chunks", [])}),
        "replayed_on": cpu_line(machine()),
        "bit_identical": fingerprint["sha256"] == recorded["sha256"],
        "max_relative_norm_difference": relative,
        "recorded_test_accuracy": summary["final_eval_accuracy"],
        "replayed_test_accuracy": accuracy,
        "replay_seconds": replay_s,
        "steps": trajectory.steps,
        "machine": machine(),
    }
    out = root / "replay_checks" / f"{name}_on_{cpu_slug()}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
