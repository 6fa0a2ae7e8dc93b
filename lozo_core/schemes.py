r"""Fine-tuning schemes (ZO-Bench's, MeZO's PEFT variants): which parameters train.

* ``full`` — every weight of the model;
* ``lora`` — LoRA adapters :math:`W + \frac{\alpha}{r_{lora}} B_{lora} A_{lora}` on the
  attention query and value projections, base weights frozen (``peft.LoraConfig``);
* ``prefix`` — prefix tuning: ``virtual_tokens`` trained key/value vectors per layer prepended
  to the attention (``peft.PrefixTuningConfig``, no reparametrization MLP);
* ``prompt`` — prompt tuning: ``virtual_tokens`` trained input embeddings prepended to the
  prompt (``peft.PromptTuningConfig``, random init).

Built with the real library, ``peft``; every optimizer then trains the parameters that require
grad, i.e. only the adapter's. LOZO on an adapter: its matrices are already low rank
(:math:`A_{lora}\in\mathbb R^{r_{lora}\times n}`, :math:`B_{lora}\in\mathbb R^{m\times r_{lora}}`),
and LOZO perturbs each by a rank-``rank`` :math:`UV^\top` — for ``rank >= r_lora`` that is no
restriction on :math:`A_{lora}`'s row space or :math:`B_{lora}`'s column space, so the
low-rank direction buys little beyond MeZO there; the prefix and prompt tables
(``virtual_tokens`` × width) are perturbed the same way.

Prompt tuning computes its virtual-token embeddings once per forward and repeats them over the
batch, so the side-path engine cannot give the two halves of a doubled batch different signs:
with ``scheme="prompt"`` training evaluates :math:`f(\theta\pm\varepsilon Z)` sequentially
(:attr:`Scheme.pairs` is False). peft ignores explicit position ids under prompt tuning, so a
left-padded row keeps correct positions only where the model derives them from the attention mask
(OPT); on a model that counts positions from 0 (Llama-type, SmolLM2) a row's score would depend
on the other rows of its batch (measured: up to 0.7 nats per example), and :meth:`Scheme.apply`
refuses the pair.

``prefix`` is peft's prefix tuning (``virtual_tokens`` = 10, random N(0, 1) initialisation), not
MeZO's prefix variant (5 tokens whose keys and values are initialised from real activations,
``--prefix_init_by_real_act``): it starts from a changed model and so has its own zero-shot run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

SCHEMES = ("full", "lora", "prefix", "prompt")
LORA_TARGETS = ("q_proj", "v_proj")


@dataclass(frozen=True)
class Scheme:
    name: str
    lora_rank: int = 8
    lora_alpha: float = 16.0
    virtual_tokens: int = 10

    def __post_init__(self):
        if self.name not in SCHEMES:
            raise ValueError(f"unknown scheme {self.name!r}; expected one of {', '.join(SCHEMES)}")
        for field in ("lora_rank", "virtual_tokens"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be an integer >= 1, got {getattr(self, field)!r}")

    @property
    def pairs(self) -> bool:
        """Whether +ε and −ε can share one forward over a doubled batch."""
        return self.name != "prompt"

    def apply(self, model: nn.Module, seed: int = 0) -> nn.Module:
        """``model`` with this scheme's trainable parameters (a ``peft`` model unless full);
        new adapter weights are drawn from ``seed`` (the caller's global RNG is left alone)."""
        if self.name == "full":
            return model
        if not hasattr(model, "generate"):
            raise ValueError(
                f"scheme {self.name!r} is for decoder language models; {type(model).__name__} "
                "trains with scheme 'full'"
            )
        kind = getattr(model.config, "model_type", "?")
        if self.name == "prompt" and kind != "opt":
            raise ValueError(
                f"scheme 'prompt' on a {kind!r} model: peft drops the position ids under prompt "
                "tuning, and this model counts positions from 0, so left-padded rows would score "
                "differently by batch; use scheme 'prefix' or 'lora', or an OPT model"
            )
        from peft import (
            LoraConfig,
            PrefixTuningConfig,
            PromptTuningConfig,
            TaskType,
            get_peft_model,
        )

        config = {
            "lora": lambda: LoraConfig(
                task_type=TaskType.CAUSAL_LM, r=self.lora_rank, lora_alpha=self.lora_alpha,
                lora_dropout=0.0, target_modules=list(LORA_TARGETS),
            ),
            "prefix": lambda: PrefixTuningConfig(
                task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.virtual_tokens
            ),
            "prompt": lambda: PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.virtual_tokens
            ),
        }[self.name]()  # fmt: skip
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
            torch.manual_seed(seed)
            return get_peft_model(model, config)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
