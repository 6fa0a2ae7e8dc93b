"""Record the scaled-down fine-tuning runs of notebook 05 into data/results/finetune_cpu/.

Each run is ``python -m lozo_core.train`` with the settings below; its summary (with the exact
command and machine) is copied to ``data/results/finetune_cpu/<task>_<optimizer>_s<seed>.json``
as soon as the run ends, so an interruption loses only the run in progress. Runs whose JSON
already exists are skipped; the README's results table is regenerated after each run. Usage:
``python scripts/record_finetune_cpu.py [--only NAME ...] [--results DIR]``.

To re-record the table with new code, record into another folder (``--results
data/results/finetune_cpu_next``, committed run by run across sessions) and move it over the old
one once complete: the README and notebook 05 read one consistent set at all times.
Zeroth-order runs keep their directions in memory (``--keep-directions``: the same numbers, less
time). Each run holds the heavy-job lock with 2 torch threads, so a background campaign's chunks
take turns with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from lozo_core.provenance import REPO_ROOT, heavy_lock
from lozo_core.results import main as update_readme
from lozo_core.tasks import TASKS

RESULTS = REPO_ROOT / "data" / "results" / "finetune_cpu"
COMMON = [
    "--model",
    "smollm2-135m",
    "--k-shot",
    "16",
    "--batch-size",
    "16",
    "--eval-examples",
    "200",
    "--keep-directions",
]
# Learning rates follow our 1/r convention (LOZO paper lr x rank); see notebook 05.
STEPS = ["--steps", "60", "--eval-every", "30"]
LEARNING_RATES = {
    "lozo": "1e-4", "mezo": "5e-5", "lozo-m": "1e-4", "lozo-adam": "1e-4", "zo-sgd-sign": "1e-5",
    "zo-adam": "1e-4", "forward-grad": "5e-5", "fo-adam": "1e-5",
}  # fmt: skip
RUNS = {"zero-shot": ["--optimizer", "zero-shot"]} | {
    name: ["--optimizer", name, "--lr", lr, *STEPS, "--rank", "2", "--interval", "50"]
    for name, lr in LEARNING_RATES.items()
}
THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
SEEDS = (0, 1, 2)
DATA_SEEDS = {0: 13, 1: 21, 2: 42}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--tasks", nargs="*", default=["sst2"], choices=list(TASKS))
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON files")
    args = parser.parse_args()
    results = args.results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for task in args.tasks:
            for name in args.only:
                target = results / f"{task}_{name}_s{seed}.json"
                if target.exists():
                    continue
                run_dir = REPO_ROOT / "runs" / "finetune_cpu" / target.stem
                argv = [
                    *COMMON,
                    *RUNS[name],
                    "--task",
                    task,
                    "--seed",
                    str(seed),
                    "--data-seed",
                    str(DATA_SEEDS[seed]),
                    "--out",
                    str(run_dir.relative_to(REPO_ROOT)),
                ]
                print("running", " ".join(argv), flush=True)
                train = [sys.executable, "-m", "lozo_core.train", *argv]
                done = subprocess.run(
                    ["flock", heavy_lock(), *train], cwd=REPO_ROOT, env=os.environ | THREADS
                )
                if done.returncode != 0:
                    print(
                        f"run failed with exit code {done.returncode}: {target.stem}",
                        file=sys.stderr,
                    )
                    continue
                summary = json.loads((run_dir / "summary.json").read_text())
                target.write_text(json.dumps(summary, indent=2) + "\n")
                (run_dir / "checkpoint.pt").unlink(missing_ok=True)
                print(
                    "recorded",
                    target.relative_to(REPO_ROOT),
                    summary["final_eval_accuracy"],
                    flush=True,
                )
                if results == RESULTS:
                    update_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
