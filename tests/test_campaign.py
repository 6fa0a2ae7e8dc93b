"""The campaign driver: a tiny plan runs in resumable chunks, sweeps choose on validation."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import tomllib

from lozo_core.provenance import REPO_ROOT
from lozo_core.trajectory import Trajectory

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
keep_directions = true

[sweep]
task = "sst2"
seed = 0
data_seed = 13
eval_every = 4
steps = { zo = 6, fo = 6 }
lr = { lozo = [1e-3, 1e-2], fo-adam = [1e-3] }

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


@pytest.fixture
def driver(monkeypatch):
    """``scripts/campaign.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location("campaign", REPO_ROOT / "scripts/campaign.py")
    driver = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "campaign", driver)
    spec.loader.exec_module(driver)
    return driver


def test_a_tiny_campaign_runs_in_chunks_and_resumes(tmp_path):
    (tmp_path / "plan.toml").write_text(PLAN)
    first = campaign(tmp_path, "run", "--hours", "0.0001")
    assert first.returncode == 0, first.stderr
    trajectory = json.loads(
        (tmp_path / "results/sweep/sst2_lozo_lr0.001/trajectory.json").read_text()
    )
    assert trajectory["steps"] == 4 and trajectory["chunks"][0]["machine"]["cpu_model"]
    assert trajectory["chunks"][0]["keep_directions"] is True
    assert (tmp_path / "results/sweep/sst2_lozo_lr0.001/checkpoint.pt").exists()
    done = campaign(tmp_path, "run")
    assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "results").rglob("*.pt")), "finished runs keep no checkpoints"
    chosen = json.loads((tmp_path / "results/sweep/chosen.json").read_text())
    assert chosen["lozo"]["chosen_lr"] in (1e-3, 1e-2) and len(chosen["lozo"]["results"]) == 2
    assert chosen["fo-adam"]["chosen_lr"] == 1e-3, "a first-order sweep run longer than a chunk"
    summary = json.loads((tmp_path / "results/sst2/lozo_s0/summary.json").read_text())
    assert summary["lr"] == chosen["lozo"]["chosen_lr"]
    assert "eval_accuracy_at_best_validation" in summary
    status = campaign(tmp_path, "status")
    assert "missing" not in status.stdout and "partial" not in status.stdout, status.stdout
    assert "on this CPU" in status.stdout and "chunks so far took" in status.stdout, status.stdout

    longer = '\n[[campaign]]\ntask = "sst2"\nname = "steps-10"\noptimizers = ["lozo"]\n'
    longer += "seeds = [[0, 13]]\nsteps = { zo = 10 }\neval_every = { zo = 4 }\nextends = true\n"
    (tmp_path / "plan.toml").write_text(PLAN + longer.replace("zo = 4", "zo = 2"))
    refused = campaign(tmp_path, "status")
    assert refused.returncode == 1 and "differs in ['eval_every']" in refused.stderr
    (tmp_path / "plan.toml").write_text(PLAN + longer)
    extended = campaign(tmp_path, "run")
    assert extended.returncode == 0, extended.stderr
    assert "sst2/lozo-steps-10_s0 steps 6..10 of 10" in extended.stdout, extended.stdout
    source, result = (
        Trajectory.load(tmp_path / f"results/sst2/{run}") for run in ("lozo_s0", "lozo-steps-10_s0")
    )
    assert result.steps == result.config["steps"] == 10
    assert result.records[:6] == source.records and result.chunks[:-1] == source.chunks


GRID = """
[protocol]
model = "tiny-opt"
dtype = "float32"
batch_size = 4
k_shot = 0
eval_examples = 8
validation_examples = 8
eps = 1e-3
rank = 2
interval = 3
chunk = 4
threads = 1
results = "{results}"

[[sweep]]
name = "full"
task = "sst2"
seed = 0
data_seed = 13
eval_every = 2
steps = {{ zo = 2 }}
lr = {{ lozo = [1e-3] }}

[[sweep]]
name = "lora"
task = "sst2"
seed = 0
data_seed = 13
eval_every = 2
steps = {{ zo = 2 }}
args = {{ scheme = "lora", lora_rank = 2 }}
lr = {{ lozo = [1e-2, 1e-1] }}

[[campaign]]
task = "copa"
sweep = "lora"
name = "lora"
optimizers = ["zero-shot", "lozo"]
seeds = [[0, 13]]
steps = {{ zo = 2 }}
eval_every = {{ zo = 2 }}
args = {{ objective = "accuracy" }}

[estimate]
example = {{ copa = 225.0 }}
"""


def test_a_plan_carries_train_args_per_sweep_and_block_and_its_results_folder(tmp_path):
    results = tmp_path / "grid"
    (tmp_path / "plan.toml").write_text(GRID.format(results=results))
    env = os.environ | {"LOZO_HEAVY_LOCK": str(tmp_path / "lock")}
    env.pop("LOZO_CAMPAIGN_RESULTS", None)
    command = [sys.executable, "scripts/campaign.py", "--plan", str(tmp_path / "plan.toml")]
    before = subprocess.run(
        [*command, "status"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert "sweep/lora/sst2_lozo_lr0.1" in before.stdout
    zero_shot = next(
        line for line in before.stdout.splitlines() if "copa/zero-shot-lora_s0" in line
    )
    assert zero_shot.split()[-1] == "1.01"  # 8 validation and 8 test examples at 225 s, a 30 s load
    assert "blocked: copa lora/lozo: waits for its sweep" in before.stdout, before.stdout
    done = subprocess.run(
        [*command, "run"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    chosen = json.loads((results / "sweep/chosen.json").read_text())
    assert set(chosen) == {"full/lozo", "lora/lozo"} and chosen["lora/lozo"]["chosen_lr"] in (
        1e-2,
        1e-1,
    )
    assert (
        json.loads((results / "sweep/full/sst2_lozo_lr0.001/summary.json").read_text())["config"][
            "scheme"
        ]
        == "full"
    )
    run = json.loads((results / "copa/lozo-lora_s0/summary.json").read_text())
    assert run["lr"] == chosen["lora/lozo"]["chosen_lr"]
    assert (run["config"]["scheme"], run["config"]["lora_rank"], run["config"]["objective"]) == (
        "lora",
        2,
        "accuracy",
    )
    zero = json.loads((results / "copa/zero-shot-lora_s0/summary.json").read_text())
    assert (
        zero["config"]["scheme"] == "lora"
        and zero["trainable_parameters"] == run["trainable_parameters"]
    )
    (tmp_path / "plan.toml").write_text(
        GRID.format(results=results).replace("objective =", "objectiv =")
    )
    bad = subprocess.run(
        [*command, "status"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "['objectiv'] are not train options" in bad.stderr


def test_a_run_whose_validation_loss_explodes_is_called_diverged(tmp_path, driver):
    item = driver.Item("r", tmp_path, {"optimizer": "lozo", "task": "sst2"}, 300, 100, {})
    evals = [{"step": 0, "validation_loss": 0.96}, {"step": 100, "validation_loss": 2.5}]
    (tmp_path / "trajectory.json").write_text(json.dumps({"evals": evals, "steps": 100}))
    assert driver.divergence(item, None) is None
    assert driver.divergence(item, 3.0) is None
    evals.append({"step": 200, "validation_loss": 12.6})
    (tmp_path / "trajectory.json").write_text(json.dumps({"evals": evals, "steps": 200}))
    assert driver.divergence(item, 3.0).startswith("diverged: validation loss 12.6 at step 200")
    (tmp_path / "checkpoint.pt").write_bytes(b"weights")
    driver.drop_checkpoints(item)
    assert (tmp_path / "checkpoint.pt").exists(), "a partial run keeps what it resumes from"
    driver.record_failure(item, driver.divergence(item, 3.0))
    driver.drop_checkpoints(item)
    assert not (tmp_path / "checkpoint.pt").exists(), "a failed run is never resumed"


def test_a_finished_run_that_differs_from_the_plan_is_stale_and_stops_the_campaign(
    tmp_path, driver, monkeypatch
):
    monkeypatch.setenv("LOZO_CAMPAIGN_RESULTS", str(tmp_path / "results"))
    plan = tomllib.loads(PLAN)
    item = next(i for i in driver.sweep_items(plan) if i.args["optimizer"] == "lozo")
    item.folder.mkdir(parents=True)
    recorded = item.args | {"lr": item.args["lr"] * 3}
    (item.folder / "summary.json").write_text(json.dumps({"config": recorded}))
    assert item.state() == ("stale", item.steps) and item.mismatch() == ["lr"]
    assert driver.run(plan, hours=1, do_commit=False) == 2


def test_chunk_times_keep_only_the_chunks_run_on_the_given_cpu():
    here = {"cpu_model": "A", "cpu_flags": ["avx2"]}
    there = {"cpu_model": "A", "cpu_flags": ["avx2", "amx_bf16"]}
    t = Trajectory({}, times=[1.0, 1.1, 0.4, 0.5, 1.2])
    t.chunks = [{"start": 0, "end": 2, "machine": here}, {"start": 2, "end": 4, "machine": there},
                {"start": 4, "end": 5, "machine": here}]  # fmt: skip
    assert [times for _, times in t.chunk_times(here)] == [[1.0, 1.1], [1.2]]
    assert [times for _, times in t.chunk_times()] == [[1.0, 1.1], [0.4, 0.5], [1.2]]
    t.truncate(3)  # a crash between the trajectory's save and the checkpoint's: resume at step 3
    assert [(c["start"], c["end"]) for c in t.chunks] == [(0, 2), (2, 3)]
    assert [times for _, times in t.chunk_times()] == [[1.0, 1.1], [0.4]]


def test_a_first_order_run_starts_only_if_it_can_finish_within_the_hours(tmp_path, driver):
    args = {"optimizer": "fo-adam", "task": "sst2", "k_shot": 0, "eval_examples": 872}
    done, waiting = (
        driver.Item(name, tmp_path / name, args | {"eval_every": every}, steps, steps, {})
        for name, steps, every in (("short", 315, 21), ("long", 630, 42))
    )
    done.folder.mkdir()
    ran = {"machine": driver.cpu(), "wall_time_s": 0.5 * done.seconds_from(0)}
    (done.folder / "summary.json").write_text(json.dumps(ran))
    assert abs(driver.seconds_here(waiting, [done, waiting]) - 0.5 * waiting.seconds_left()) < 1e-6
    ran["machine"] = {"cpu_model": "elsewhere", "cpu_flags": []}
    (done.folder / "summary.json").write_text(json.dumps(ran))
    assert driver.seconds_here(waiting, [done, waiting]) == waiting.seconds_left()

    (tmp_path / "plan.toml").write_text(PLAN.replace("lozo = [1e-3, 1e-2], ", ""))
    stopped = campaign(tmp_path, "run", "--hours", "0.001")
    assert stopped.returncode == 0, stopped.stderr
    assert "sweep/sst2_fo-adam_lr0.001 runs in one chunk that cannot be resumed" in stopped.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("ties, chosen", [(0, 1e-3), (1, 1e-3), (2, 1e-2)])
def test_a_sweep_ties_accuracies_within_its_standard_errors_and_lets_the_loss_decide(
    tmp_path, monkeypatch, driver, ties, chosen
):
    monkeypatch.setenv("LOZO_CAMPAIGN_RESULTS", str(tmp_path))
    plan = tomllib.loads(PLAN.replace("[sweep]", f"[sweep]\nties_within_se = {ties}"))
    # lozo 1e-3 leads by 0.08 at a loss of 3.0; 2 standard errors at 0.60 and 100 examples: 0.098
    outcomes = [(0.60, 3.0), (0.52, 0.9), (0.70, 0.5)]
    for item, (accuracy, loss) in zip(driver.sweep_items(plan), outcomes, strict=True):
        item.folder.mkdir(parents=True)
        curve = [{"step": 0, "validation_loss": 1.0}, {"step": 6, "validation_loss": loss}]
        summary = {"best_validation_accuracy": accuracy, "best_validation_step": 6, "curve": curve,
                   "zero_shot_validation_accuracy": 0.5, "validation_examples": 100,
                   "config": item.args}  # fmt: skip
        (item.folder / "summary.json").write_text(json.dumps(summary))
    rates = driver.chosen_rates(plan)
    assert (rates["lozo"]["chosen_lr"], rates["fo-adam"]["chosen_lr"]) == (chosen, 1e-3)
