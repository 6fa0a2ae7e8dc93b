"""Reading the schemes grid: planned runs match the driver's, gains pair with the right
zero-shot run, costs per scheme."""

import importlib.util
import json
import sys

import pytest

from lozo_core.provenance import REPO_ROOT
from lozo_core.schemes_grid import (
    alignment_verdict,
    costs,
    gains,
    grid_markdown,
    load_plan,
    lozo_mezo_verdicts,
    planned_runs,
    runs,
    verdicts,
    zero_shot_format_verdict,
)


def test_planned_runs_are_the_drivers_campaign_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LOZO_CAMPAIGN_RESULTS", str(tmp_path))
    spec = importlib.util.spec_from_file_location("campaign", REPO_ROOT / "scripts" / "campaign.py")
    campaign = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "campaign", campaign)
    spec.loader.exec_module(campaign)
    plan = load_plan()
    items, _ = campaign.campaign_items(plan)
    planned = planned_runs(plan, tmp_path)
    assert [r["run"] for r in planned] == [i.name for i in items]
    assert {r["state"] for r in planned} == {"not run"}
    schemes = {i.name: i.args.get("scheme", "full") for i in items}
    assert all(schemes[r["run"]] == r["scheme"] for r in planned)


def record(root, run, optimizer, scheme, seed, accuracy, **extra):
    folder = root / run
    folder.mkdir(parents=True)
    summary = {"task": run.split("/")[0], "optimizer": optimizer, "seed": seed, "eval_examples": 100,
               "config": {"scheme": scheme}, "final_eval_accuracy": accuracy,
               "eval_accuracy_at_best_validation": accuracy, **extra}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))


def test_gains_take_lora_over_the_full_zero_shot_and_prefix_over_its_own(tmp_path):
    record(tmp_path, "copa/zero-shot-full_s0", "zero-shot", "full", 0, 0.50, steps=0,
           trainable_parameters=9, peak_mem_bytes=2**20, train_time_s=0.0)  # fmt: skip
    record(tmp_path, "copa/zero-shot-prefix_s0", "zero-shot", "prefix", 0, 0.40)
    cost = {"trainable_parameters": 7, "peak_mem_bytes": 2**30, "train_time_s": 10.0, "steps": 5}
    record(tmp_path, "copa/lozo-lora_s0", "lozo", "lora", 0, 0.60, **cost)
    record(tmp_path, "copa/lozo-prefix_s0", "lozo", "prefix", 0, 0.45, **cost)
    record(tmp_path, "copa/lozo-prefix_s1", "lozo", "prefix", 1, 0.70, **cost)
    recorded = runs(tmp_path)
    assert {r["run"]: r["block"] for r in recorded}["copa/lozo-lora_s0"] == "lora"
    by_run = {(g["scheme"], g["seed"]): g["gain"] for g in gains(recorded)}
    assert by_run == {("lora", 0): pytest.approx(0.10), ("prefix", 0): pytest.approx(0.05)}
    record(tmp_path, "sst2/lozo-prefix_s0", "lozo", "prefix", 0, 0.45, **cost | {"steps": 10})
    (zero, lora, prefix, sst2) = costs(runs(tmp_path))
    assert (zero["optimizer"], zero["seconds_per_step"], zero["peak_memory_MiB"]) == (
        "zero-shot",
        None,
        1.0,
    )
    assert (lora["scheme"], prefix["runs"], prefix["peak_memory_MiB"], prefix["seconds_per_step"]) == (
        "lora", 2, 1024.0, 2.0,
    )  # fmt: skip
    assert (sst2["task"], sst2["runs"], sst2["seconds_per_step"]) == ("sst2", 1, 1.0)
    other = {"cpu_model": "Other CPU", "cpu_flags": ["avx2"]}
    record(tmp_path, "sst2/lozo-prefix_s1", "lozo", "prefix", 1, 0.45, **cost, machine=other)
    by_cpu = [
        (c["cpu"], c["seconds_per_step"]) for c in costs(runs(tmp_path)) if c["task"] == "sst2"
    ]
    assert by_cpu == [("other-cpu-nobf16", 2.0), ("unrecorded", 1.0)], "seconds stay per CPU"


def test_the_readme_table_pairs_each_gain_with_its_zero_shot_and_bolds_only_agreeing_seeds(
    tmp_path,
):
    machine = {"cpu_model": "Test CPU", "cpu_flags": ["avx2"], "cpu_count": 2, "torch": "2.x"}
    for seed, (zero, mezo, lozo) in enumerate(
        [(0.50, 0.60, 0.52), (0.55, 0.66, 0.50), (0.45, 0.54, 0.47)]
    ):
        common = {"steps": 40, "machine": machine, "model": "m", "model_source": "a GGUF"}
        record(tmp_path, f"sst2/zero-shot-full_s{seed}", "zero-shot", "full", seed, zero, **common)
        record(tmp_path, f"sst2/mezo-full_s{seed}", "mezo", "full", seed, mezo, **common)
        record(tmp_path, f"sst2/lozo-lora_s{seed}", "lozo", "lora", seed, lozo, **common)
    table = grid_markdown(runs(tmp_path)).splitlines()
    assert table[2] == "| sst2 | full | 0.500 ± 0.050 | **+0.100 ± 0.010 (n=3)** | — |"
    assert table[3] == "| sst2 | lora | 0.500 ± 0.050 (full's) | — | -0.003 ± 0.040 (n=3) |"
    assert table[-1].startswith("m: a GGUF; 9 recorded runs") and "Test CPU x2 (AVX2" in table[-1]


def test_verdicts_give_a_direction_only_where_the_seeds_agree():
    def cell(task, scheme, optimizer, values):
        return [{"task": task, "scheme": scheme, "optimizer": optimizer, "seed": seed, "gain": g}
                for seed, g in enumerate(values)]  # fmt: skip

    rows = (
        cell("copa", "lora", "lozo", [0.10, 0.11, 0.12])
        + cell("copa", "lora", "mezo", [0.00, 0.01, -0.01])
        + cell("wic", "lora", "lozo", [0.02, -0.03, 0.01])
        + cell("wic", "lora", "mezo", [0.01, 0.02, -0.02])
        + cell("wic", "prefix", "fo-adam", [0.05])
        + cell("sst2", "full", "lozo", [0.05, 0.06, 0.04])
        + cell("sst2-review", "full", "lozo", [0.02, 0.07, 0.00])
    )
    lines = verdicts(rows)
    said = {line.split(": ", 1)[0] + ": " + line.split(": ", 1)[1].split(" (")[0] for line in lines}
    assert "copa, lora: LOZO fine-tuned is higher than zero-shot" in said
    assert "copa, lora: LOZO is higher than MeZO" in said
    assert "wic, lora: no difference between LOZO and MeZO detected" in said
    assert (
        "wic, prefix: FO-Adam fine-tuned − zero-shot = +0.050 on one pair: too few seeds for a verdict"
        in said
    )
    pooled = next(line for line in lines if line.startswith("all tasks, lora"))
    assert "over 6 task-seed pairs" in pooled
    assert not any(line.startswith("all tasks, full") for line in lines)
    alignment = next(line for line in lines if line.startswith("task alignment"))
    assert "no difference" in alignment and "over 3 seeds" in alignment
    lora = lozo_mezo_verdicts(rows, "lora")
    assert [line.split(":")[0] for line in lora] == ["copa, lora", "wic, lora", "all tasks, lora"]
    assert all("fine-tuned" not in line for line in lora)
    assert alignment_verdict(rows) == alignment and alignment_verdict(rows[:3]) is None


@pytest.mark.parametrize(
    "review, verdict",
    [(0.79, "zero-shot accuracy in MeZO's format is lower than in the review format (52/100"),
     (0.55, "no difference between the two formats' zero-shot accuracy detected (52/100")],
)  # fmt: skip
def test_the_two_formats_zero_shot_differ_only_beyond_sampling_noise(tmp_path, review, verdict):
    record(tmp_path, "sst2/zero-shot-whole-dev_s0", "zero-shot", "full", 0, 0.52)
    assert zero_shot_format_verdict(runs(tmp_path)) is None
    record(tmp_path, "sst2-review/zero-shot-whole-dev_s0", "zero-shot", "full", 0, review)
    assert zero_shot_format_verdict(runs(tmp_path)).startswith(verdict)
