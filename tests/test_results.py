"""The README's results tables are generated from the recorded JSON and must match it."""

import pytest

from lozo_core import paired, results
from lozo_core.provenance import REPO_ROOT


def test_readme_tables_match_recorded_json():
    text = (REPO_ROOT / "README.md").read_text()
    assert text == results.render_readme(text), (
        "README results are stale: run `python -m lozo_core.results`"
    )


def test_recorded_finetune_runs_have_the_required_fields():
    for run in results.load("finetune_cpu"):
        results.check_run(run)


def test_a_summary_missing_a_field_is_refused_by_name():
    run = results.load("finetune_cpu")[0]
    with pytest.raises(ValueError, match="machine"):
        results.check_run({k: v for k, v in run.items() if k != "machine"})


def test_finetune_rows_average_over_seeds():
    runs = [
        {
            "task": "sst2",
            "model": "m",
            "optimizer": "lozo",
            "steps": 5,
            "config": {"lr": 1e-4},
            "final_eval_accuracy": a,
            "eval_examples": 10,
            "seed": seed,
            "command": "python -m lozo_core.train",
            "machine": {},
        }
        for seed, a in enumerate((0.6, 0.7, 0.8))
    ]
    (row,) = results.finetune_rows(runs)
    assert row["seeds"] == 3 and row["accuracy"] == "0.700 ± 0.100"


def test_gains_pair_each_run_with_the_zero_shot_run_of_its_seed():
    def run(optimizer, seed, accuracy):
        return {"task": "sst2", "model": "m", "optimizer": optimizer, "seed": seed,
                "final_eval_accuracy": accuracy}  # fmt: skip

    runs = [run("zero-shot", 0, 0.5), run("zero-shot", 1, 0.7), run("lozo", 1, 0.8),
            run("lozo", 0, 0.5), run("lozo", 2, 0.9)]  # fmt: skip
    assert paired.paired_gains(runs) == {("sst2", "lozo"): [0.0, pytest.approx(0.1)]}


def test_bf16_is_compared_with_fp32_only_on_the_same_machine():
    def record(cpu, dtype, step):
        return {
            "kind": "bench",
            "machine": {"cpu_model": cpu, "cpu_flags": [], "cpu_count": 2, "torch": "2.13.0"},
            "config": {
                "model": "m",
                "dtype": dtype,
                "batch_size": 16,
                "seq_len": 40,
                "interval": 50,
            },
            "results": {"lozo": {"step_s_median": step}},
        }

    records = [
        record("A", "float32", 1.0),
        record("B", "bfloat16", 0.5),
        record("B", "float32", 2.0),
    ]
    pairs = results.dtype_pairs(records)
    assert [
        (fp32["machine"]["cpu_model"], bf16["machine"]["cpu_model"]) for fp32, bf16 in pairs
    ] == [("B", "B")]
    assert results.dtype_ratio_lines(records) == [
        "m, batch 16 × 40, on B x2 (no AVX2, no bf16 matrix instructions), torch 2.13.0: "
        "bf16 step / fp32 step = lozo 0.25×."
    ]


def test_a_p_value_near_alpha_is_never_printed_as_alpha():
    assert [paired.format_p(p) for p in (0.04998, 0.05003, 0.0504, 0.106, 0.05)] == [
        "0.04998", "0.05003", "0.0504", "0.106", "0.050"
    ]  # fmt: skip
