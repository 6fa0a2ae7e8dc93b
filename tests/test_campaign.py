"""The campaign driver: a tiny plan runs in resumable chunks, sweeps choose on validation."""

import json
import os
import subprocess
import sys

from lozo_core.provenance import REPO_ROOT

PLAN = """
[protocol]
model = "tiny-opt"
dtype = "float32"
batch_size = 4
k_shot = 0
eval_examples = 16
validation_examples = 16
eps = 1e-3
rank = 2
interval = 3
chunk = 4
threads = 1

[sweep]
task = "sst2"
seed = 0
data_seed = 13
eval_every = 4
steps = { zo = 6, fo = 2 }
lr = { lozo = [1e-3, 1e-2] }

[[campaign]]
task = "sst2"
optimizers = ["lozo"]
seeds = [[0, 13]]
steps = { zo = 6 }
eval_every = { zo = 4 }
"""


def campaign(tmp_path, *args):
    env = os.environ | {
        "LOZO_CAMPAIGN_RESULTS": str(tmp_path / "results"),
        "LOZO_HEAVY_LOCK": str(tmp_path / "lock"),
    }
    command = [sys.executable, "scripts/campaign.py", "--plan", str(tmp_path / "plan.toml"), *args]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_a_tiny_campaign_runs_in_chunks_and_resumes(tmp_path):
    (tmp_path / "plan.toml").write_text(PLAN)
    first = campaign(tmp_path, "run", "--hours", "0.0001")
    assert first.returncode == 0, first.stderr
    trajectory = json.loads(
        (tmp_path / "results/sweep/sst2_lozo_lr0.001/trajectory.json").read_text()
    )
    assert trajectory["steps"] == 4 and trajectory["chunks"][0]["machine"]["cpu_model"]
    done = campaign(tmp_path, "run")
    assert done.returncode == 0, done.stderr
    chosen = json.loads((tmp_path / "results/sweep/chosen.json").read_text())
    assert chosen["lozo"]["chosen_lr"] in (1e-3, 1e-2) and len(chosen["lozo"]["results"]) == 2
    summary = json.loads((tmp_path / "results/sst2/lozo_s0/summary.json").read_text())
    assert summary["lr"] == chosen["lozo"]["chosen_lr"]
    assert "eval_accuracy_at_best_validation" in summary
    status = campaign(tmp_path, "status")
    assert "missing" not in status.stdout and "partial" not in status.stdout, status.stdout
