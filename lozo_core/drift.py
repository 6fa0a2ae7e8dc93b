r"""Precision drift: what perturb-and-restore does to weights stored in fp32, bf16 or fp16.

An in-place engine writes :math:`\theta+\varepsilon Z`, then :math:`\theta-\varepsilon Z`, then
:math:`\theta` back into the weights. In a low-precision dtype each write rounds, so after
:math:`N` cycles :math:`\theta_N \ne \theta_0` even when nothing is learned. The side-path engine
never writes a perturbation, only each step's update (rounded once into the dtype). The measure is the relative Frobenius drift

.. math:: \delta_N = \|\theta_N - \theta_0\|_F \,/\, \|\theta_0\|_F \quad (\text{in float64}).

:func:`cycle_drift` runs :math:`N` optimizer steps at ``lr = 0`` (perturb, evaluate, restore, an
update of zero) on one linear layer, so any change of the weight is the engine's.
:func:`training_drift` trains the same layer on a least-squares task with ``lr > 0`` and measures
the distance to the float64 run of the same method (same seed, same draws), against the floor of
merely storing that float64 trajectory in the dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lozo_core.optim import LOZO, MeZO, PairedClosure

METHODS = ("mezo", "lozo-inplace", "lozo-sidepath")


def relative_drift(W: Tensor, W0: Tensor) -> float:
    r""":math:`\|W - W_0\|_F / \|W_0\|_F`, computed in float64."""
    W, W0 = W.detach().double(), W0.detach().double()
    return float((W - W0).norm() / W0.norm())


def _layer(weight: Tensor, dtype: torch.dtype) -> nn.Linear:
    if weight.ndim != 2:
        raise ValueError(f"weight must be a matrix (m, n), got shape {tuple(weight.shape)}")
    m, n = weight.shape
    layer = nn.Linear(n, m, bias=False, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(weight.to(dtype))
    return layer


def _optimizer(method: str, layer: nn.Linear, *, lr: float, eps: float, rank: int, interval: int):
    if method == "mezo":
        return MeZO(layer, lr=lr, eps=eps)
    if method in ("lozo-inplace", "lozo-sidepath"):
        engine = method.removeprefix("lozo-")
        return LOZO(layer, lr=lr, eps=eps, rank=rank, interval=interval, engine=engine)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def _closure(method: str, layer: nn.Linear, x: Tensor, y: Tensor):
    """Mean squared error of ``layer(x)`` against ``y`` (paired over a doubled batch on the side path)."""

    def per_example(batch: tuple[Tensor, Tensor]) -> Tensor:
        inputs, targets = batch
        return (layer(inputs).float() - targets).pow(2).mean(1)

    double = lambda batch: (torch.cat([batch[0], batch[0]]), torch.cat([batch[1], batch[1]]))
    closure = PairedClosure(per_example, (x, y), double)
    return closure if method == "lozo-sidepath" else (lambda: closure())


def _problem(weight: Tensor, batch: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    m, n = weight.shape
    x = torch.randn(batch, n, generator=g)
    shift = torch.randn(m, 1, generator=g) @ torch.randn(1, n, generator=g)
    target = weight.double() + 0.1 * weight.double().norm() / shift.norm() * shift.double()
    return x, (x.double() @ target.T).float()


def cycle_drift(
    weight: Tensor,
    *,
    method: str,
    dtype: torch.dtype,
    cycles: int = 1000,
    checkpoints: tuple[int, ...] = (1, 10, 100, 1000),
    eps: float = 1e-3,
    rank: int = 2,
    interval: int = 50,
    batch: int = 4,
    seed: int = 0,
) -> dict:
    """Relative drift of ``weight`` (cast to ``dtype``) after ``cycles`` steps at ``lr = 0``.

    Returns ``checkpoints``, the ``drift`` at each, and ``changed_entries`` (how many entries of the
    stored weight differ from the start, bit for bit, at the end).
    """
    if cycles < 1 or any(c < 1 or c > cycles for c in checkpoints):
        raise ValueError(f"need cycles >= 1 and checkpoints in [1, {cycles}], got {checkpoints}")
    layer = _layer(weight, dtype)
    start = layer.weight.detach().clone()
    x, y = _problem(start.float(), batch, seed)
    opt = _optimizer(method, layer, lr=0.0, eps=eps, rank=rank, interval=interval)
    closure = _closure(method, layer, x.to(dtype), y)
    drift = []
    for k in range(1, cycles + 1):
        opt.step(closure)
        if k in checkpoints:
            drift.append(relative_drift(layer.weight, start))
    changed = int((layer.weight.detach() != start).sum())
    return {"checkpoints": sorted(checkpoints), "drift": drift, "changed_entries": changed}


def training_drift(
    weight: Tensor,
    *,
    method: str,
    dtype: torch.dtype,
    steps: int = 200,
    checkpoints: tuple[int, ...] = (1, 10, 50, 100, 200),
    lr: float = 1e-4,
    eps: float = 1e-3,
    rank: int = 2,
    interval: int = 50,
    batch: int = 16,
    seed: int = 0,
) -> dict:
    r"""Train ``weight`` in ``dtype`` and in float64 side by side (same method, seed and draws).

    At each checkpoint: ``drift`` :math:`\|W_{dtype} - W_{64}\|_F/\|W_0\|_F` of the weights (both
    engines write every update), and ``storage_floor`` :math:`\|\mathrm{round}_{dtype}(W_{64}) - W_{64}\|_F/\|W_0\|_F`,
    the error of merely storing the float64 trajectory in ``dtype``; ``loss`` of both runs.
    """
    if steps < 1 or any(c < 1 or c > steps for c in checkpoints):
        raise ValueError(f"need steps >= 1 and checkpoints in [1, {steps}], got {checkpoints}")
    start = weight.to(dtype).double()
    x, y = _problem(start, batch, seed)
    x = x.to(dtype)
    runs = {}
    for run_dtype in (dtype, torch.float64):
        layer = _layer(start, run_dtype)
        opt = _optimizer(method, layer, lr=lr, eps=eps, rank=rank, interval=interval)
        runs[run_dtype] = (layer, opt, _closure(method, layer, x.to(run_dtype), y))
    norm0 = float(start.norm())
    out = {"checkpoints": sorted(checkpoints), "drift": [], "storage_floor": [], "loss": []}
    for k in range(1, steps + 1):
        losses = [float(opt.step(closure)) for _, opt, closure in runs.values()]
        if k in checkpoints:
            low, ref = (layer.weight.detach().double() for layer, _, _ in runs.values())
            out["drift"].append(float((low - ref).norm()) / norm0)
            out["storage_floor"].append(float((ref.to(dtype).double() - ref).norm()) / norm0)
            out["loss"].append(losses)
    return out
