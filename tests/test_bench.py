"""The benchmark, its memory model, the precision-drift measurements and their README section."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, OPTConfig

from lozo_core import bench, results
from lozo_core.drift import cycle_drift, training_drift
from lozo_core.memory_model import Architecture, peak_bytes, saved_activation_bytes
from lozo_core.models import load_model, load_tokenizer
from lozo_core.optim.table import ROWS, TABLE
from lozo_core.provenance import cpu, cpu_line, cpu_slug, machine, parse_cpuinfo
from lozo_core.scoring import per_example_loss, scorer
from lozo_core.tasks import get_task
from lozo_core.train import TrainConfig, splits, step_batch


def test_cli_records_single_batch_inference_both_side_path_modes_and_the_cpu(tmp_path):
    out = tmp_path / "bench.json"
    methods = ["forward", "forward-doubled", "lozo", "lozo-sequential"]
    argv = ["--model", "tiny-opt", "--steps", "1", "--warmup", "0", "--threads", "1"]
    assert bench.main([*argv, "--methods", *methods, "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "bench" and list(record["results"]) == methods
    assert len(record["loadavg_start"]) == 3 and len(record["loadavg_end"]) == 3
    assert record["machine"]["cpu_model"] == machine()["cpu_model"]
    assert record["machine"]["cpu_flags"] == machine()["cpu_flags"]
    res = record["results"]
    assert res["lozo"]["paired"] and res["lozo"]["floor"] == {"forward-doubled": 1}
    assert not res["lozo-sequential"]["paired"]
    assert res["lozo-sequential"]["floor"] == {"forward": 2}
    assert res["lozo-sequential"]["label"] == "LOZO, side path sequential"
    for method in methods:
        assert res[method]["mem_vs_forward"] == pytest.approx(
            res[method]["peak_mem_bytes"] / res["forward"]["peak_mem_bytes"]
        )
    assert res["lozo"]["time_vs_floor"] == pytest.approx(
        res["lozo"]["step_s_median"] / res["forward-doubled"]["step_s_median"]
    )
    assert res["lozo-sequential"]["time_vs_floor"] == pytest.approx(
        res["lozo-sequential"]["step_s_median"] / (2 * res["forward"]["step_s_median"])
    )
    assert res["forward"]["rss_loaded_bytes"] <= res["forward"]["peak_mem_bytes"]


def test_task_mode_times_the_training_runs_batches_and_label_word_loss(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--model", "tiny-opt", "--task", "sst2", "--batch-size", "4", "--steps", "2",
            "--warmup", "1", "--threads", "1", "--methods", "lozo", "--json", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["config"]["task"] == "sst2" and record["config"]["seq_len"] is None
    assert record["results"]["lozo"]["steps"] == 2
    assert results.batch_shape(record["config"]) == "4 sst2 training prompts"

    args = {"model": "tiny-opt", "task": "sst2", "batch_size": 4, "warmup": 1, "steps": 2}
    model = bench.build_model("tiny-opt", False, torch.float32)
    batches, loss = bench.task_workload(args, model, "cpu")
    tokenizer = load_tokenizer("tiny-opt")
    train_set = splits(TrainConfig(task="sst2", k_shot=0, batch_size=4))[0]
    assert len(batches) == 3 and len({b.input_ids.shape[1] for b in batches}) > 1
    for step, batch in enumerate(batches):
        expected = step_batch(tokenizer, model, train_set, 0, step, 4)
        assert torch.equal(batch.input_ids, expected.input_ids)
        assert torch.equal(batch.labels, expected.labels)
    candidates = scorer(load_model("tiny-opt"), get_task("sst2"))[1]
    torch.testing.assert_close(
        loss(model, batches[0]), per_example_loss(model, batches[0], candidates)
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "nope"], "--task 'nope': expected one of sst2"),
        (["--task", "sst2", "--seq-len", "40"], "the task's prompts set the length"),
    ],
)
def test_task_mode_refuses_an_unknown_task_and_a_sequence_length(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse(["--model", "tiny-opt", *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_cpu_is_named_in_file_names_by_its_model_and_fastest_bf16_instruction():
    xeon = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_flags": ["avx512_bf16", "amx_bf16"]}
    assert cpu_slug(xeon) == "intel-r-xeon-r-processor-amxbf16"
    assert cpu_slug({"cpu_model": "AMD EPYC", "cpu_flags": ["avx2"]}) == "amd-epyc-nobf16"


def test_x86_and_arm_cpuinfo_give_a_model_and_the_flags_that_decide_bf16():
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16 sse\n"
    assert parse_cpuinfo(x86) == {
        "cpu_model": "AMD EPYC", "cpu_flags": ["avx2", "avx512f", "avx512_bf16"]
    }  # fmt: skip
    arm = ("processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"
           "CPU implementer\t: 0x41\nCPU part\t: 0xd40\n")  # fmt: skip
    graviton = parse_cpuinfo(arm)
    assert graviton == {
        "cpu_model": "ARM implementer 0x41 part 0xd40",
        "cpu_flags": ["asimd", "sve", "bf16"],
    }
    assert cpu_slug(graviton) == "arm-implementer-0x41-part-0xd40-bf16"
    line = cpu_line(graviton | {"cpu_count": 4, "torch": "2.x", "processor": "aarch64"})
    assert line == "ARM implementer 0x41 part 0xd40 x4 (SVE, bf16 in hardware: bf16), torch 2.x"


def test_methods_are_the_table_of_optimizers_plus_inference_and_named_variants():
    trainable = [row for row in ROWS if row.trains]
    rows = [m for m in bench.METHODS.values() if m.row is not None]
    assert [m.name for m in rows if m.name in TABLE] == [r.name for r in trainable]
    for m in rows:
        assert m.row in TABLE
        if m.name in TABLE:
            assert m.label == TABLE[m.name].label
    assert [m.name for m in bench.METHODS.values() if m.row is None] == [
        "forward",
        "forward-doubled",
    ]


def test_each_floor_is_the_forwards_of_its_row():
    assert bench.floor_forwards("mezo", False, 2, 50) == {"forward": 2}
    assert bench.floor_forwards("lozo", True, 2, 50) == {"forward-doubled": 1}
    assert bench.floor_forwards("zo-sgd-cons", False, 2, 50) == {"forward": 5}
    assert bench.floor_forwards("fo-adam", False, 2, 50) is None
    assert bench.floor_forwards("forward", False, 2, 50) is None


def test_resume_keeps_measured_rows_and_refuses_other_settings(tmp_path):
    out = tmp_path / "bench.json"
    config = {"model": "tiny-opt", "steps": 1, "methods": ["forward"], "memory_limit_bytes": 1}
    row = _row(1.0, 10)
    record = {
        "config": config,
        "machine": cpu(),
        "results": {"forward": row, "mezo": {"error": "x"}},
    }
    out.write_text(json.dumps(record))
    assert bench.resumed_results(out, {**config, "methods": ["mezo"]}) == {"forward": row}
    with pytest.raises(SystemExit, match="steps"):
        bench.resumed_results(out, {**config, "steps": 2})
    unfit = {"error": "did not fit", "did_not_fit": True}
    out.write_text(json.dumps(record | {"results": {"forward": row, "fo-adam": unfit}}))
    assert bench.resumed_results(out, config) == {"forward": row, "fo-adam": unfit}
    assert bench.resumed_results(out, {**config, "memory_limit_bytes": 2}) == {"forward": row}
    out.write_text(json.dumps(record | {"machine": {"cpu_model": "elsewhere", "cpu_flags": []}}))
    with pytest.raises(SystemExit, match="was measured on elsewhere"):
        bench.resumed_results(out, config)


def test_a_method_that_runs_out_of_memory_is_recorded_as_did_not_fit():
    args = dict(
        model="tiny-opt", random_init=False, dtype="float32", device="cpu", batch_size=32768,
        seq_len=128, steps=1, warmup=0, rank=2, interval=50, threads=1,
        memory_limit_bytes=2 * 2**30,
    )  # fmt: skip
    row = bench.run_method(args, "forward")
    assert row["error"] == "did not fit", row
    assert "allocate" in row["did_not_fit"] or "Memory" in row["did_not_fit"]


def _row(seconds: float, peak: int) -> dict:
    return {
        "step_s_median": seconds,
        "step_s_min": seconds,
        "step_s_max": seconds,
        "peak_mem_bytes": peak,
    }


def test_ratios_use_single_batch_inference_and_each_methods_floor():
    res = {
        "forward": _row(1.0, 100),
        "forward-doubled": _row(1.8, 150),
        "mezo": {**_row(5.0, 120), "floor": {"forward": 2}},
        "lozo": {**_row(2.0, 160), "floor": {"forward-doubled": 1}},
        "lozo-sequential": {**_row(2.4, 104), "floor": {"forward": 2}},
        "fo-adam": {"error": "did not fit", "did_not_fit": "MemoryError"},
    }
    bench.add_ratios(res)
    assert res["mezo"]["time_vs_floor"] == pytest.approx(2.5)
    assert res["lozo"]["time_vs_floor"] == pytest.approx(2.0 / 1.8)
    assert res["lozo-sequential"]["time_vs_floor"] == pytest.approx(1.2)
    assert res["lozo-sequential"]["mem_vs_forward"] == pytest.approx(1.04)
    assert "time_vs_floor" not in res["forward"]
    lines = "\n".join(bench.goals(res, "cpu"))
    assert "(sequential) peak memory / single-batch inference = 1.04 (target <= 1.05): met" in lines
    assert "(paired) peak memory / single-batch inference = 1.60 (target <= 1.05): not met" in lines
    assert "did not fit: MemoryError" in bench.table(res)


def _record(model: str, dtype: str, batch: int, seq_len: int, results: dict) -> dict:
    config = {"model": model, "random_init": True, "dtype": dtype, "batch_size": batch,
              "seq_len": seq_len, "interval": 50, "steps": 3, "warmup": 1, "threads": 1,
              "memory_limit_bytes": 20 * 2**30}  # fmt: skip
    bench.add_ratios(results)
    return {"kind": "bench", "config": config, "machine": {**machine(), "gpu": None},
            "command": "python -m lozo_core.bench", "results": results}  # fmt: skip


def test_bench_markdown_shows_every_bench_record_and_what_is_not_recorded():
    rows = {
        "forward": {**_row(1.0, 2**30), "loadavg_start": [0.5] * 3, "loadavg_end": [0.7] * 3},
        "lozo-sequential": {**_row(2.2, 2**30), "floor": {"forward": 2}},
        "fo-adam": {"error": "did not fit", "did_not_fit": "MemoryError"},
    }
    fp32 = _record("opt-125m", "float32", 4, 64, rows)
    bf16 = _record("opt-125m", "bfloat16", 4, 64, {"forward": _row(3.0, 2**29)})
    text = results.bench_markdown([fp32, bf16, {"kind": "drift"}, {"kind": "profile"}])
    assert "| lozo-sequential | 2.200 | 1.10 | — | 1024 | 1.000 | — | — | — |" in text
    assert "| forward | 1.000 | — | — | 1024 | 1.000 | — | 3.000 | 3.0 |" in text
    assert "| fo-adam | did not fit |" in text
    assert "Step times: fp32 3 timed steps (after 1 warm-up), 1 thread" in text
    assert "a step takes 3.0–3.0× its fp32 time" in text
    assert "Not recorded yet: opt-350m, opt-1.3b, opt-2.7b" in text
    assert "load average during the runs 0.5–0.7" in text
    flags = set(machine()["cpu_flags"])
    assert ("bf16 in hardware" in text) == bool(flags & {"amx_bf16", "avx512_bf16"})


def _counted_saved_bytes(model, ids) -> int:
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        bench.per_example_lm_loss(model, ids)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in weights)


@pytest.mark.parametrize("layer_norm_before", [True, False])
def test_memory_model_counts_the_activations_autograd_saves(layer_norm_before):
    counted = {}
    for layers in (1, 3):
        config = OPTConfig(
            vocab_size=500, hidden_size=64, ffn_dim=256, num_hidden_layers=layers,
            num_attention_heads=4, max_position_embeddings=128, word_embed_proj_dim=64,
            do_layer_norm_before=layer_norm_before, dropout=0.0,
        )  # fmt: skip
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        ids = torch.randint(0, 500, (2, 48), generator=torch.Generator().manual_seed(0))
        arch = Architecture.of_model(model)
        counted[layers] = (_counted_saved_bytes(model, ids), saved_activation_bytes(arch, 2, 48, 4))
    per_layer = (counted[3][0] - counted[1][0]) / 2
    assert per_layer == (counted[3][1] - counted[1][1]) / 2
    assert counted[3][1] == pytest.approx(counted[3][0], rel=0.05)


def test_memory_model_orders_the_methods_as_their_state_demands():
    arch = Architecture.of_opt("opt-125m")
    total = {
        m: sum(peak_bytes(m, arch, batch=4, seq_len=64, bytes_per=4).values())
        for m in ("forward", "lozo-sequential", "lozo", "mezo", "fo-sgd", "fo-adam")
    }
    assert arch.parameters == 125_239_296
    assert total["forward"] < total["lozo-sequential"] < total["lozo"]
    assert total["forward"] < total["mezo"] < total["fo-sgd"] < total["fo-adam"]
    kept = sum(peak_bytes("mezo-kept", arch, batch=4, seq_len=64, bytes_per=4).values())
    assert total["mezo"] < kept < total["fo-sgd"]
    with pytest.raises(ValueError, match="method must be one of"):
        peak_bytes("sgd", arch, batch=4, seq_len=64, bytes_per=4)


WEIGHT = torch.randn(96, 64, generator=torch.Generator().manual_seed(3)) * 0.02


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_side_path_leaves_the_weights_bit_identical_while_in_place_drifts(dtype):
    side = cycle_drift(WEIGHT, method="lozo-sidepath", dtype=dtype, cycles=20, checkpoints=(20,))
    assert side["drift"] == [0.0] and side["changed_entries"] == 0
    inplace = cycle_drift(WEIGHT, method="lozo-inplace", dtype=dtype, cycles=20, checkpoints=(20,))
    fp32 = cycle_drift(
        WEIGHT, method="lozo-inplace", dtype=torch.float32, cycles=20, checkpoints=(20,)
    )
    assert inplace["drift"][0] > 100 * fp32["drift"][0] > 0


def test_in_training_the_side_path_stays_near_the_storage_floor_and_in_place_leaves_it():
    """The side path rounds each step's update into the bf16 weight once; in place, the
    perturb/restore writes add their rounding every step."""
    kwargs = dict(dtype=torch.bfloat16, steps=20, checkpoints=(20,), lr=1e-3)
    side = training_drift(WEIGHT, method="lozo-sidepath", **kwargs)
    inplace = training_drift(WEIGHT, method="lozo-inplace", **kwargs)
    assert side["storage_floor"][0] <= side["drift"][0] < 1.5 * side["storage_floor"][0]
    assert inplace["drift"][0] > 10 * side["drift"][0]


def test_drift_rejects_a_non_matrix_and_unknown_method():
    with pytest.raises(ValueError, match="matrix"):
        cycle_drift(torch.ones(3), method="mezo", dtype=torch.float32, cycles=1, checkpoints=(1,))
    with pytest.raises(ValueError, match="method must be one of"):
        cycle_drift(WEIGHT, method="sgd", dtype=torch.float32, cycles=1, checkpoints=(1,))
