"""The training CLI, resume, bad input, every task and objective end to end."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lozo_core import results
from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.provenance import REPO_ROOT
from lozo_core.replay import main as replay_main
from lozo_core.train import (
    TrainConfig,
    load_checkpoint,
    main,
    rebuild,
    score,
    splits,
    train,
    weights_fingerprint,
)
from lozo_core.trajectory import Trajectory

SMALL = [
    "--model",
    "tiny-opt",
    "--task",
    "sst2",
    "--k-shot",
    "8",
    "--batch-size",
    "4",
    "--eval-examples",
    "16",
]


def test_cli_runs_and_writes_metrics_and_summary(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "lozo_core.train", *SMALL, "--optimizer", "lozo", "--steps", "30", "--eval-every", "10", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "eval_accuracy" in r] == [0, 10, 20, 30]
    assert sum("loss" in r for r in lines) == 30
    summary = json.loads((out / "summary.json").read_text())
    results.check_run(summary)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "cola"], "--task 'cola': expected one of sst2, sst2-review, rte, copa, cb"),
        (["--objective", "f1"], "--objective 'f1': expected one of loss, accuracy"),
        (
            ["--objective", "accuracy", "--optimizer", "fo-adam"],
            "--objective 'accuracy' has no gradient, and --optimizer fo-adam follows one",
        ),
        (
            ["--objective", "accuracy", "--optimizer", "forward-grad"],
            "--optimizer forward-grad follows one; use --objective loss",
        ),
        (["--model", "gpt-5"], "--model 'gpt-5': expected one of"),
        (["--optimizer", "sgd-magic"], "--optimizer 'sgd-magic'"),
        (["--rank", "0"], "--rank 0: expected an integer >= 1"),
        (["--eps", "0"], "--eps 0.0: expected a number > 0"),
        (["--forwards", "both"], "--forwards 'both': expected one of paired, sequential"),
        (
            ["--optimizer", "lozo", "--momentum", "0.9"],
            "--momentum 0.9: --optimizer lozo has no momentum; expected one of lozo-m, zo-sgd-mmt",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, tmp_path, capsys):
    assert main(["--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_data_file_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lozo_core.tasks.task.DATA_DIR", tmp_path)
    assert main(["--out", str(tmp_path / "run")]) == 2
    assert "data file not found" in capsys.readouterr().err


TINY_RUN = ["--model", "tiny-opt", "--k-shot", "2", "--batch-size", "4", "--eval-examples", "8"]


@pytest.mark.parametrize(
    ("task", "extra"),
    [
        ("copa", []),
        ("winogrande", []),
        ("multirc", []),
        ("cb", []),
        ("wic", []),
        ("copa", ["--objective", "accuracy"]),
        ("multirc", ["--objective", "accuracy", "--engine", "inplace"]),
    ],
)
def test_every_task_and_objective_trains(task, extra, tmp_path, capsys):
    argv = [*TINY_RUN, "--task", task, "--optimizer", "lozo", "--steps", "3", "--eval-every", "3"]
    assert main([*argv, *extra, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"] == task and summary["eval_examples"] == 8
    losses = [p["loss"] for p in summary["curve"] if "loss" in p]
    assert len(losses) == 3 and all(0 <= loss < 10 for loss in losses)
    if "accuracy" in extra and task == "copa":
        assert all(8 * loss in range(9) for loss in losses)  # mean of two errors of 4 examples
    if task == "multirc":
        assert all(0 <= p["eval_f1"] <= 1 for p in summary["curve"] if "eval_accuracy" in p)


@pytest.mark.parametrize("scheme", ["full", "prefix"])
def test_multirc_under_the_full_protocol_records_test_f1_within_the_positions(tmp_path, scheme):
    cfg = TrainConfig(model="tiny-opt", task="multirc", k_shot=0, batch_size=4, eval_examples=8,
                      validation_examples=8, optimizer="mezo", lr=1e-3, steps=2, eval_every=1,
                      scheme=scheme)  # fmt: skip
    summary = train(cfg, tmp_path)
    assert 0 <= summary["final_eval_f1"] <= 1 and 0 <= summary["eval_f1_at_best_validation"] <= 1


def test_evaluate_cli_scores_a_choice_task_like_training(tmp_path, capsys):
    from lozo_core.evaluate import main as evaluate_main

    argv = [*TINY_RUN, "--task", "copa", "--eval-examples", "100", "--steps", "2"]
    assert main([*argv, "--eval-every", "2", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    val = T.task.DATA_DIR / "superglue" / "copa" / "val.jsonl"
    assert evaluate_main(["--checkpoint", str(tmp_path), "--task", "copa", "--data", str(val)]) == 0
    result = json.loads(capsys.readouterr().out)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result["examples"] == 100 and result["accuracy"] == summary["final_eval_accuracy"]


@pytest.mark.parametrize("optimizer", ["lozo-m", "fo-adam"])
def test_resume_after_interruption_is_identical(optimizer, tmp_path):
    cfg = lambda: TrainConfig(
        model="tiny-opt",
        k_shot=8,
        batch_size=4,
        eval_examples=16,
        optimizer=optimizer,
        steps=12,
        eval_every=4,
        lr=1e-3,
        interval=3,
    )
    full = train(cfg(), tmp_path / "full")
    partial = cfg()
    partial.steps = 8
    train(partial, tmp_path / "cut")
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    ckpt["config"]["steps"] = 12
    torch.save(ckpt, tmp_path / "cut" / "checkpoint.pt")
    resumed = train(cfg(), tmp_path / "cut", resume=True)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    untimed = lambda curve: [{k: v for k, v in point.items() if k != "time_s"} for point in curve]
    assert untimed(resumed["curve"]) == untimed(full["curve"])


def test_non_finite_loss_exits_3_and_keeps_checkpoint(tmp_path, capsys):
    argv = [
        *SMALL,
        "--optimizer",
        "mezo",
        "--steps",
        "6",
        "--eval-every",
        "1",
        "--lr",
        "1e30",
        "--engine",
        "inplace",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 3
    assert "non-finite" in capsys.readouterr().err
    assert (tmp_path / "checkpoint.pt").exists()


def test_full_data_protocol_reports_eval_accuracy_at_best_validation(tmp_path):
    cfg = TrainConfig(
        model="tiny-opt",
        task="rte",
        k_shot=0,
        batch_size=64,
        eval_examples=32,
        optimizer="mezo",
        lr=1e-2,
        steps=3,
        eval_every=1,
    )
    summary = train(cfg, tmp_path)
    assert (summary["train_examples"], summary["validation_examples"]) == (1000, 500)
    evals = [p for p in summary["curve"] if "validation_accuracy" in p]
    assert len(evals) == 4
    best = max(evals, key=lambda p: p["validation_accuracy"])
    assert summary["best_validation_step"] == best["step"]
    assert not any("eval_accuracy" in p for p in summary["curve"]), "test split seen in training"
    model, candidates, loaded = rebuild(cfg, Trajectory.load(tmp_path), best["step"])
    _, _, test_set = splits(cfg)
    accuracy = score(model, loaded.tokenizer, T.get_task("rte"), test_set, candidates, 64, "cpu")[
        "accuracy"
    ]
    assert summary["eval_accuracy_at_best_validation"] == accuracy


def test_of_tied_validation_accuracies_a_first_order_run_reports_the_first(tmp_path, monkeypatch):
    from lozo_core import train as module

    scripted = iter([0.50, 0.75, 0.75, 0.70])

    def score_validation(model, tokenizer, task, split, *args):
        scores = score(model, tokenizer, task, split, *args)
        return scores | {"accuracy": next(scripted)} if len(split) == 16 else scores

    monkeypatch.setattr(module, "score", score_validation)
    cfg = TrainConfig(model="tiny-opt", task="sst2", k_shot=0, batch_size=8, eval_examples=32,
                      validation_examples=16, optimizer="fo-adam", lr=1e-3, steps=3, eval_every=1)  # fmt: skip
    summary = train(cfg, tmp_path)
    assert (summary["best_validation_step"], summary["best_validation_model"]) == (1, "best.pt")
    assert torch.load(tmp_path / "best.pt", weights_only=True)["step"] == 1


def test_a_rebuilt_deferred_run_holds_its_pending_updates(tmp_path):
    cfg = TrainConfig(model="tiny-opt", task="sst2", k_shot=4, batch_size=8, eval_examples=16,
                      optimizer="lozo", lr=1e-2, steps=4, interval=50, engine="sidepath-deferred")  # fmt: skip
    summary = train(cfg, tmp_path)
    trajectory = Trajectory.load(tmp_path)
    start, _, _ = rebuild(cfg, trajectory, 0)
    deferred, _, _ = rebuild(cfg, trajectory, 4)
    assert summary["weights"] == weights_fingerprint(deferred), "the run's weights hold them too"
    plain, _, _ = rebuild(dataclasses.replace(cfg, engine="sidepath"), trajectory, 4)
    pairs = list(zip(start.parameters(), deferred.parameters(), plain.parameters(), strict=True))
    assert max(float((d - s).detach().abs().max()) for s, d, _ in pairs) > 1e-4
    for _, d, p in pairs:
        torch.testing.assert_close(d, p, rtol=1e-5, atol=1e-6)
    from lozo_core.evaluate import evaluate

    train(cfg, tmp_path / "chunk", until=2)
    with pytest.raises(ValueError, match="pending in the deferred side path"):
        evaluate(tmp_path / "chunk", "sst2", T.task.DATA_DIR / "glue" / "sst2" / "dev.tsv")


def test_load_opt_offline_names_the_way_out():
    from lozo_core.models import load_model, load_opt

    with pytest.raises(FileNotFoundError, match="huggingface-cli download facebook/opt-125m"):
        load_opt("opt-125m", local_files_only=True)
    with pytest.raises(ValueError, match="unknown model 'gpt-5'"):
        load_model("gpt-5")


def test_evaluate_cli_scores_a_saved_run(tmp_path, capsys):
    from lozo_core.evaluate import main as evaluate_main

    assert (
        main(
            [
                *SMALL,
                "--optimizer",
                "lozo",
                "--steps",
                "4",
                "--eval-every",
                "2",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (
        evaluate_main(
            [
                "--checkpoint",
                str(tmp_path / "run"),
                "--task",
                "sst2",
                "--data",
                str(T.task.DATA_DIR / "glue" / "sst2" / "dev.tsv"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 872 and result["step"] == 4 and 0 <= result["accuracy"] <= 1
    assert summary["final_eval_accuracy"] >= 0
    assert (
        evaluate_main(["--checkpoint", str(tmp_path / "nope"), "--task", "sst2", "--data", "x.tsv"])
        == 2
    )
    assert "no checkpoint.pt" in capsys.readouterr().err


def test_encoder_gets_a_seeded_classification_head_and_its_runs_evaluate_alike(
    tmp_path, monkeypatch, capsys
):
    from lozo_core.evaluate import main as evaluate_main
    from lozo_core.models import EncoderClassifier, load_model

    loaded = load_model("minilm-l6")
    model, candidates = S.scorer(loaded, T.get_task("rte"), seed=3)
    assert isinstance(model, EncoderClassifier) and candidates == [0, 1]
    again, _ = S.scorer(load_model("minilm-l6"), T.get_task("rte"), seed=3)
    assert torch.equal(model.head.weight, again.head.weight)
    batch = S.encode(loaded.tokenizer, T.get_task("rte").split("dev")[:3])
    assert S.candidate_scores(model, batch, candidates).shape == (3, 2)

    glue, vendored = tmp_path / "glue", T.task.DATA_DIR / "glue"
    (glue / "sst2").mkdir(parents=True)
    (glue / "sst2" / "train.tsv").symlink_to(vendored / "sst2" / "train.tsv")
    dev_rows = (vendored / "sst2" / "dev.tsv").read_text().splitlines()[:49]
    (glue / "sst2" / "dev.tsv").write_text("\n".join(dev_rows) + "\n")
    monkeypatch.setattr("lozo_core.tasks.task.DATA_DIR", tmp_path)
    out = tmp_path / "run"
    argv = ["--model", "minilm-l6", "--optimizer", "lozo", "--lr", "1e-2", "--steps", "2"]
    argv += ["--eval-every", "2", "--k-shot", "8", "--batch-size", "48", "--eval-examples", "48"]
    assert main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    evaluate_argv = [
        "--checkpoint",
        str(out),
        "--task",
        "sst2",
        "--data",
        str(glue / "sst2" / "dev.tsv"),
    ]
    assert evaluate_main(evaluate_argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == summary["eval_examples"] == 48
    assert result["accuracy"] == summary["final_eval_accuracy"]


def test_evaluation_frequency_does_not_change_the_trained_weights(tmp_path):
    """Issue 14: --eval-every 5 and --eval-every 40 give bit-identical final checkpoints."""
    for every in (5, 40):
        args = ["--model", "tiny-opt", "--optimizer", "lozo", "--steps", "40", "--lr", "1e-3"]
        assert main([*args, "--eval-every", str(every), "--out", str(tmp_path / str(every))]) == 0
    a, b = (
        torch.load(tmp_path / e / "checkpoint.pt", weights_only=True)["model"] for e in ("5", "40")
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sequential_forwards_measure_what_paired_forwards_measure(tmp_path):
    """--forwards sequential runs the two signs as two single-batch forwards: the same losses
    and projected gradients as one forward over the doubled batch, to float tolerance."""
    args = ["--model", "tiny-opt", "--optimizer", "lozo", "--steps", "8", "--eval-every", "8"]
    for mode in ("paired", "sequential"):
        assert main([*args, "--forwards", mode, "--out", str(tmp_path / mode)]) == 0
    paired, sequential = (Trajectory.load(tmp_path / m) for m in ("paired", "sequential"))
    assert sequential.config["forwards"] == "sequential"
    for a, b in zip(paired.records, sequential.records, strict=True):
        assert np.allclose(a["losses"], b["losses"], rtol=1e-5, atol=1e-6)


def test_keeping_directions_is_a_run_time_choice_that_changes_no_number(tmp_path):
    """A run continued with --keep-directions ends bit-identical to one that regenerated every
    draw, and so does a replay that keeps them; each chunk records which it did."""
    args = ["--model", "tiny-opt", "--optimizer", "mezo", "--steps", "6", "--eval-every", "3"]
    assert main([*args, "--out", str(tmp_path / "regenerated")]) == 0
    mixed = ["--out", str(tmp_path / "mixed"), "--resume"]
    assert main([*args, *mixed, "--until", "3"]) == 0
    assert main([*args, *mixed, "--keep-directions"]) == 0
    a, b = (
        torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["model"]
        for run in ("regenerated", "mixed")
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    trajectory = Trajectory.load(tmp_path / "regenerated")
    replayed, _, _ = rebuild(TrainConfig(**trajectory.config), trajectory, 6, keep_directions=True)
    assert all(torch.equal(a[k], v) for k, v in replayed.state_dict().items())
    chunks = json.loads((tmp_path / "mixed" / "summary.json").read_text())["chunks"]
    assert [c["keep_directions"] for c in chunks] == [False, True]


@pytest.mark.parametrize("optimizer", ["mezo", "lozo-m"])
def test_resume_from_the_trajectory_alone_and_replay_cli(tmp_path, optimizer, capsys):
    args = ["--model", "tiny-opt", "--optimizer", optimizer, "--lr", "1e-3", "--interval", "3",
            "--eval-every", "4"]  # fmt: skip
    assert main([*args, "--steps", "10", "--out", str(tmp_path / "full")]) == 0
    assert main([*args, "--steps", "10", "--out", str(tmp_path / "cut")]) == 0
    trajectory = Trajectory.load(tmp_path / "cut")
    trajectory.truncate(4)
    trajectory.save(tmp_path / "cut")
    (tmp_path / "cut" / "checkpoint.pt").unlink()
    assert main([*args, "--steps", "10", "--out", str(tmp_path / "cut"), "--resume"]) == 0
    full, cut = (
        torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["model"]
        for r in ("full", "cut")
    )
    assert all(torch.equal(full[k], cut[k]) for k in full)
    assert replay_main([str(tmp_path / "full"), "--out", str(tmp_path / "rebuilt")]) == 0
    rebuilt = torch.load(tmp_path / "rebuilt" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], rebuilt[k]) for k in full)
    assert (tmp_path / "full" / "trajectory.json").stat().st_size < 4000


def test_a_run_records_its_optimizer_settings_and_refuses_a_replay_under_other_ones(
    tmp_path, capsys
):
    run = tmp_path / "run"
    args = ["--model", "tiny-opt", "--optimizer", "lozo-m", "--lr", "1e-3", "--interval", "3",
            "--eval-every", "2", "--out", str(run)]  # fmt: skip
    assert main([*args, "--steps", "4"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["momentum"] == 0.9
    settings = summary["optimizer_settings"]
    assert {k: settings[k] for k in ("momentum", "dampening", "rank", "interval", "q")} == {
        "momentum": 0.9, "dampening": 0.9, "rank": 2, "interval": 3, "q": 1
    }  # fmt: skip
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["optimizer_settings"] == settings
    torch.save(state | {"optimizer_settings": settings | {"dampening": 0.0}}, run / "checkpoint.pt")
    assert main([*args, "--steps", "6", "--resume"]) == 2
    assert "had dampening=0.0; this version builds dampening=0.9" in capsys.readouterr().err
    trajectory = Trajectory.load(run)
    assert trajectory.optimizer == settings
    trajectory.optimizer["dampening"] = 0.0
    trajectory.save(run)
    assert replay_main([str(run), "--out", str(tmp_path / "rebuilt")]) == 2
    assert "had dampening=0.0; this version builds dampening=0.9" in capsys.readouterr().err
    (run / "checkpoint.pt").unlink()
    assert main([*args, "--steps", "6", "--resume"]) == 2
    assert "a default changed since the run was written" in capsys.readouterr().err
    adam = tmp_path / "adam"
    assert main([*SMALL, "--optimizer", "fo-adam", "--steps", "1", "--out", str(adam)]) == 0
    settings = json.loads((adam / "summary.json").read_text())["optimizer_settings"]
    assert settings["betas"] == [0.9, 0.999] and settings["eps"] == 1e-8


@pytest.mark.parametrize("source", ["checkpoint", "trajectory"])
def test_a_run_written_before_settings_were_recorded_resumes(tmp_path, source):
    args = ["--model", "tiny-opt", "--optimizer", "lozo-m", "--lr", "1e-3", "--interval", "3",
            "--eval-every", "2"]  # fmt: skip
    assert main([*args, "--steps", "6", "--out", str(tmp_path / "long")]) == 0
    old = tmp_path / "old"
    assert main([*args, "--steps", "4", "--out", str(old)]) == 0
    trajectory = Trajectory.load(old)
    trajectory.config["momentum"], trajectory.optimizer = None, {}
    trajectory.save(old)
    if source == "checkpoint":
        state = torch.load(old / "checkpoint.pt", weights_only=True)
        del state["optimizer_settings"]
        torch.save(state | {"config": trajectory.config}, old / "checkpoint.pt")
    else:
        (old / "checkpoint.pt").unlink()
    assert main([*args, "--steps", "6", "--out", str(old), "--resume"]) == 0
    long, resumed = (
        torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["model"]
        for r in ("long", "old")
    )
    assert all(torch.equal(long[k], resumed[k]) for k in long)


@pytest.mark.parametrize("source", ["checkpoint", "trajectory"])
def test_resuming_with_more_steps_extends_a_run_as_if_it_had_been_that_long(
    tmp_path, source, capsys
):
    args = ["--model", "tiny-opt", "--optimizer", "lozo", "--lr", "1e-3", "--interval", "3",
            "--eval-every", "2"]  # fmt: skip
    assert main([*args, "--steps", "7", "--out", str(tmp_path / "long")]) == 0
    assert main([*args, "--steps", "4", "--out", str(tmp_path / "short")]) == 0
    if source == "trajectory":
        (tmp_path / "short" / "checkpoint.pt").unlink()
    assert main([*args, "--steps", "2", "--out", str(tmp_path / "short"), "--resume"]) == 2
    assert "was written with a different config" in capsys.readouterr().err
    assert main([*args, "--steps", "7", "--out", str(tmp_path / "short"), "--resume"]) == 0
    long, extended = (
        torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["model"]
        for r in ("long", "short")
    )
    assert all(torch.equal(long[k], extended[k]) for k in long)
    trajectory = Trajectory.load(tmp_path / "short")
    assert trajectory.steps == trajectory.config["steps"] == 7
    assert trajectory.records == Trajectory.load(tmp_path / "long").records


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_checkpoint_carrying_pickled_code_is_refused(tmp_path):
    torch.save(
        {"config": {}, "model": {}, "step": 0, "hook": _Payload()}, tmp_path / "checkpoint.pt"
    )
    with pytest.raises(ValueError, match="refused: loading it could run code"):
        load_checkpoint(tmp_path / "checkpoint.pt")
