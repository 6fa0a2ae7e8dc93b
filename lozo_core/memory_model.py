r"""Analytic peak memory of one step: weights + optimizer state + activations (+ the process).

For a decoder of :math:`L` layers, width :math:`d`, FFN width :math:`f`, :math:`h` heads,
vocabulary :math:`V`, :math:`P` parameters (the largest holding :math:`P_{max}`), a batch of
:math:`b` sequences of :math:`T` tokens and :math:`w` bytes per weight:

* weights :math:`Pw`;
* inference activations are dominated by the vocabulary logits, alive together at the loss:
  the logits, their float32 copy for the loss and the log-softmax,
  :math:`bTV(w + 8)`; the side path adds its low-rank term of the tied head, :math:`+4bTV`;
* backpropagation stores, per layer and token, the layer input, the first LayerNorm's output,
  q, k, v, the attention output and its projection's input, the second LayerNorm's input and
  output (:math:`8d`), the ReLU output (:math:`f`), the LayerNorm statistics and the attention
  log-sum-exp (:math:`4 + h`): :math:`bTL(8d + f + h + 4)w` (SDPA attention, no :math:`T^2`
  term; counted with ``torch.autograd.graph.saved_tensors_hooks`` in the tests), then gradients
  :math:`Pw`;
* optimizer state: Adam's two moments (:math:`2Pw` for ``torch.optim.Adam``, :math:`2P\cdot 4`
  for ZO-Adam's float32 moments), LOZO's factors :math:`\sum (m+n)r\cdot 4` and vector
  accumulators (LOZO-M adds its momentum, :math:`\sum mr\cdot 4` and the vectors'); none for
  MeZO and SGD;
* dense directions: MeZO holds :math:`z` and, in its update, two float32 temporaries of one
  parameter (:math:`3P_{max}\cdot 4`); ZO-Adam four more for its moments (:math:`7P_{max}\cdot 4`);
  MeZO with its directions kept (``mezo-kept``) holds every :math:`z` of the step, :math:`P\cdot 4`.

The process itself (interpreter, torch, transformers) is measured, not modelled: pass the RSS of
the benchmark's child before it loads the model. The model is an estimate to compare with
measurements, not a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM

from lozo_core.opt_configs import opt_config

METHODS = (
    "forward",
    "forward-doubled",
    "mezo",
    "mezo-kept",
    "lozo-inplace",
    "lozo",
    "lozo-sequential",
    "lozo-m",
    "zo-adam",
    "fo-sgd",
    "fo-adam",
)
TERMS = ("process", "weights", "optimizer state", "gradients", "directions", "activations")


@dataclass(frozen=True)
class Architecture:
    """The sizes the memory model needs, counted from the model itself."""

    parameters: int
    largest_parameter: int
    matrix_rows: int
    matrix_sides: int
    vector_parameters: int
    layers: int
    hidden: int
    ffn: int
    heads: int
    vocab: int

    @classmethod
    def of_model(cls, model: torch.nn.Module) -> Architecture:
        params = list(model.parameters())
        c = model.config
        return cls(
            parameters=sum(p.numel() for p in params),
            largest_parameter=max(p.numel() for p in params),
            matrix_rows=sum(p.shape[0] for p in params if p.ndim == 2),
            matrix_sides=sum(sum(p.shape) for p in params if p.ndim == 2),
            vector_parameters=sum(p.numel() for p in params if p.ndim != 2),
            layers=c.num_hidden_layers,
            hidden=c.hidden_size,
            ffn=c.ffn_dim,
            heads=c.num_attention_heads,
            vocab=c.vocab_size,
        )

    @classmethod
    def of_opt(cls, name: str) -> Architecture:
        """A published OPT size, counted on the meta device (no memory, no weights)."""
        with torch.device("meta"):
            return cls.of_model(AutoModelForCausalLM.from_config(opt_config(name)))


def layer_activation_bytes(arch: Architecture, batch: int, seq_len: int, bytes_per: int) -> int:
    r"""Bytes backpropagation keeps for the decoder layers: :math:`bTL(8d+f+h+4)w`."""
    return batch * seq_len * arch.layers * (8 * arch.hidden + arch.ffn + arch.heads + 4) * bytes_per


def saved_activation_bytes(arch: Architecture, batch: int, seq_len: int, bytes_per: int) -> int:
    r"""Bytes backpropagation keeps: the layers' and the log-softmax's, :math:`b(T-1)V\cdot 4`."""
    log_softmax = batch * (seq_len - 1) * arch.vocab * 4
    return layer_activation_bytes(arch, batch, seq_len, bytes_per) + log_softmax


def logits_bytes(arch: Architecture, batch: int, seq_len: int, bytes_per: int) -> int:
    r"""Logits, their float32 copy and the log-softmax: :math:`bTV(w+8)`."""
    return batch * seq_len * arch.vocab * (bytes_per + 8)


def peak_bytes(
    method: str,
    arch: Architecture,
    *,
    batch: int,
    seq_len: int,
    bytes_per: int,
    process_bytes: int = 0,
    rank: int = 2,
) -> dict[str, int]:
    """Each term of ``method``'s modelled peak (see the module docstring); their sum is the peak."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if min(batch, seq_len, bytes_per) < 1:
        raise ValueError(
            f"batch, seq_len and bytes_per must be >= 1, got {batch}, {seq_len}, {bytes_per}"
        )
    P, w = arch.parameters, bytes_per
    doubled = method in ("forward-doubled", "lozo", "lozo-m")
    b = 2 * batch if doubled else batch
    terms = dict.fromkeys(TERMS, 0)
    terms["process"], terms["weights"] = process_bytes, P * w
    terms["activations"] = logits_bytes(arch, b, seq_len, w)
    if method in ("lozo", "lozo-sequential", "lozo-m"):
        terms["activations"] += 4 * b * seq_len * arch.vocab
    if method.startswith("lozo"):
        terms["optimizer state"] = (arch.matrix_sides * rank + arch.vector_parameters) * 4
        if method == "lozo-m":
            terms["optimizer state"] += (arch.matrix_rows * rank + arch.vector_parameters) * 4
    if method == "mezo":
        terms["directions"] = 3 * arch.largest_parameter * 4
    if method == "mezo-kept":
        terms["directions"] = P * 4
    if method == "zo-adam":
        terms["optimizer state"] = 2 * P * 4
        terms["directions"] = 7 * arch.largest_parameter * 4
    if method.startswith("fo-"):
        terms["activations"] = layer_activation_bytes(arch, batch, seq_len, w) + logits_bytes(
            arch, batch, seq_len, w
        )
        terms["gradients"] = P * w
        if method == "fo-adam":
            terms["optimizer state"] = 2 * P * w
    return terms
