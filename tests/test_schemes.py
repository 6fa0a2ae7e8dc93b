"""Fine-tuning schemes through peft: only adapters train, for every optimizer, and runs replay."""

import json

import pytest
import torch

from lozo_core.models import load_model
from lozo_core.schemes import Scheme, trainable_parameters
from lozo_core.train import TrainConfig, main, rebuild, train
from lozo_core.trajectory import Trajectory

SMALL = dict(model="tiny-opt", k_shot=8, batch_size=4, eval_examples=16, steps=4, eval_every=2)


@pytest.mark.parametrize("scheme", ["lora", "prefix", "prompt"])
def test_only_the_adapter_trains(scheme):
    model = Scheme(scheme).apply(load_model("tiny-opt").model)
    total = sum(p.numel() for p in model.parameters())
    assert 0 < trainable_parameters(model) < total / 10


def test_prompt_tuning_is_refused_where_left_padding_would_shift_positions():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    llama = LlamaForCausalLM(config)
    with pytest.raises(ValueError, match="scheme 'prompt' on a 'llama' model"):
        Scheme("prompt").apply(llama)
    assert trainable_parameters(Scheme("prefix").apply(llama)) > 0


@pytest.mark.parametrize("optimizer", ["lozo", "mezo", "fo-adam"])
@pytest.mark.parametrize("scheme", ["lora", "prefix", "prompt"])
def test_every_optimizer_trains_each_scheme_and_resumes(tmp_path, scheme, optimizer):
    cfg = TrainConfig(**SMALL, scheme=scheme, optimizer=optimizer, lr=1e-2)
    full = train(cfg, tmp_path / "full")
    partial = TrainConfig(**SMALL | {"steps": 2}, scheme=scheme, optimizer=optimizer, lr=1e-2)
    train(partial, tmp_path / "cut")
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    ckpt["config"]["steps"] = 4
    torch.save(ckpt, tmp_path / "cut" / "checkpoint.pt")
    if optimizer != "fo-adam":
        trajectory = Trajectory.load(tmp_path / "cut")
        trajectory.config["steps"] = 4
        trajectory.save(tmp_path / "cut")
    resumed = train(cfg, tmp_path / "cut", resume=True)
    assert resumed["weights"]["sha256"] == full["weights"]["sha256"]
    assert full["trainable_parameters"] < 10**5
    if optimizer != "fo-adam":
        model, _, _ = rebuild(cfg, Trajectory.load(tmp_path / "full"), 4)
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                model.state_dict().values(),
                torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)[
                    "model"
                ].values(),
                strict=True,
            )
        )


def test_bad_scheme_exits_2_naming_the_choices(tmp_path, capsys):
    assert main(["--model", "tiny-opt", "--scheme", "adapter", "--out", str(tmp_path)]) == 2
    assert "full, lora, prefix, prompt" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [["--scheme", "lora"], ["--scheme", "prefix"], ["--scheme", "lora", "--objective", "accuracy"]],
    ids=["lora", "prefix", "lora-accuracy"],
)
def test_issue_19_cli_trains_an_adapter_on_copa(extra, tmp_path):
    argv = ["--model", "tiny-opt", "--task", "copa", "--optimizer", "lozo", "--steps", "5", *extra]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    adapter = Scheme(extra[1]).apply(load_model("tiny-opt").model)
    assert summary["trainable_parameters"] == trainable_parameters(adapter)
    assert summary["steps"] == 5 and summary["peak_mem_bytes"] > 0
    losses = [p["loss"] for p in summary["curve"] if "loss" in p]
    if "--objective" in extra:
        assert all(32 * loss in range(33) for loss in losses)  # mean of two errors of 16 examples
    else:
        assert all(0 < loss < 10 for loss in losses)
