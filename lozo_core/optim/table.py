"""The one table of optimizers, read by training, the benchmark, the results tables and the
notebooks: name, display label, composition, default learning rate, passes per step and, for
the rows that have one, default momentum.

Passes per step count model evaluations over one batch: ``forward`` (a doubled-batch forward
of the side-path engine counts as 2), ``jvp`` (a forward pass carrying tangents, about 1.5–3
forwards of compute) and ``backward``. Default learning rates are ours: LOZO's estimator
carries ``1/rank``, so the LOZO paper's rate ``eta`` is ``rank * eta`` here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lozo_core.optim.forward_grad import ForwardGrad
from lozo_core.optim.named import LOZO, LOZOAdam, MeZO, ZOAdam, ZOSGDCons, ZOSGDMomentum, ZOSGDSign


@dataclass(frozen=True)
class Hyper:
    """Hyperparameters a row may read; each row takes the ones its optimizer has."""

    lr: float
    eps: float = 1e-3
    q: int = 1
    weight_decay: float = 0.0
    seed: int = 0
    rank: int = 2
    interval: int = 50
    momentum: float | None = None
    engine: str = "sidepath"
    blocks: int = 1
    keep_directions: bool = False


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    composition: str
    default_lr: float
    make: Callable[[object, Hyper], torch.optim.Optimizer] | None
    passes: Callable[[Hyper], dict[str, int]]
    zeroth_order: bool = True
    momentum: float | None = None

    def build(self, params, h: Hyper) -> torch.optim.Optimizer:
        """This row's optimizer over ``params``, with the row's default ``momentum`` where ``h``
        leaves it unset."""
        if h.momentum is None:
            h = dataclasses.replace(h, momentum=self.momentum)
        return self.make(params, h)

    @property
    def trains(self) -> bool:
        return self.make is not None

    @property
    def needs_gradient(self) -> bool:
        """Backpropagation or forward-mode AD: the objective must be differentiable."""
        return bool({"backward", "jvp"} & set(self.passes(Hyper(lr=0.0))))


def _zo(h: Hyper) -> dict:
    return dict(
        lr=h.lr, eps=h.eps, q=h.q, weight_decay=h.weight_decay, seed=h.seed, blocks=h.blocks,
        keep_directions=h.keep_directions,
    )  # fmt: skip


def _lowrank(h: Hyper) -> dict:
    return _zo(h) | dict(rank=h.rank, interval=h.interval, engine=h.engine)


def _dense(h: Hyper) -> dict:
    return _zo(h) | dict(engine="inplace")


def _two_point(h: Hyper) -> dict[str, int]:
    return {"forward": 2 * h.q * h.blocks}


ROWS = (
    Row("zero-shot", "zero-shot", "no training", 0.0, None, lambda h: {}, zeroth_order=False),
    Row("mezo", "MeZO", "Gaussian × SGD × in-place", 1e-5, lambda p, h: MeZO(p, **_dense(h)), _two_point),
    Row("lozo", "LOZO", "lazy low-rank × SGD × side-path", 2e-5, lambda p, h: LOZO(p, **_lowrank(h)), _two_point),
    Row(
        "lozo-m", "LOZO-M", "lazy low-rank × averaged momentum × side-path", 2e-5,
        lambda p, h: LOZO(p, momentum=h.momentum, **_lowrank(h)), _two_point, momentum=0.9,
    ),
    Row("lozo-adam", "LOZOAdam", "lazy low-rank × Adam × side-path", 1e-5, lambda p, h: LOZOAdam(p, **_lowrank(h)), _two_point),
    Row("zo-sgd-sign", "ZO-SGD-Sign", "Gaussian × sign × in-place", 1e-6, lambda p, h: ZOSGDSign(p, **_dense(h)), _two_point),
    Row(
        "zo-sgd-mmt", "ZO-SGD-MMT", "Gaussian × heavy-ball momentum × in-place", 1e-6,
        lambda p, h: ZOSGDMomentum(p, momentum=h.momentum, **_dense(h)), _two_point, momentum=0.9,
    ),
    Row(
        "zo-sgd-cons", "ZO-SGD-Cons", "Gaussian × conservative × in-place", 1e-5,
        lambda p, h: ZOSGDCons(p, **_dense(h)), lambda h: {"forward": (2 * h.q + 3) * h.blocks},
    ),
    Row("zo-adam", "ZO-Adam", "Gaussian × Adam × in-place", 1e-5, lambda p, h: ZOAdam(p, **_dense(h)), _two_point),
    Row(
        "forward-grad", "Forward-Grad", "Gaussian × forward-mode derivative", 1e-5,
        lambda p, h: ForwardGrad(p, lr=h.lr, weight_decay=h.weight_decay, seed=h.seed), lambda h: {"jvp": 1},
    ),
    Row(
        "fo-sgd", "FO-SGD", "backpropagation × torch.optim.SGD", 1e-3,
        lambda p, h: torch.optim.SGD(p, lr=h.lr, weight_decay=h.weight_decay), lambda h: {"forward": 1, "backward": 1},
        zeroth_order=False,
    ),
    Row(
        "fo-adam", "FO-Adam", "backpropagation × torch.optim.AdamW", 1e-5,
        lambda p, h: torch.optim.AdamW(p, lr=h.lr, weight_decay=h.weight_decay), lambda h: {"forward": 1, "backward": 1},
        zeroth_order=False,
    ),
)  # fmt: skip
TABLE = {row.name: row for row in ROWS}


FORWARD_EQUIVALENTS = {"forward": 1, "jvp": 2, "backward": 2}


def forward_equivalents(passes: dict[str, int]) -> int:
    """Cost of one step in forward passes: a backward and a jvp pass each count as 2 forwards
    (the usual rule of thumb; measured seconds are in :mod:`lozo_core.bench`)."""
    return sum(FORWARD_EQUIVALENTS[kind] * n for kind, n in passes.items())


def row(name: str) -> Row:
    if name not in TABLE:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(TABLE)}")
    return TABLE[name]
