r"""Update rules: how an estimate :math:`\hat g` becomes a step.

A rule sees one parameter's estimate at a time — dense, or in LOZO's subspace coordinates
(m×r) — and its own slots in that parameter's optimizer state. The optimizer then applies
:math:`\theta \leftarrow (1-\eta\lambda)\,\theta - \eta\cdot\text{step}` (decoupled weight decay
:math:`\lambda`, the same meaning in every optimizer of the family).

* :class:`SGD` — step :math:`= \hat g`.
* :class:`Sign` — ZO-SGD-Sign: the two-point coefficient :math:`c` is replaced by
  :math:`\operatorname{sign}(c)` (a scalar sign, as in ZO-Bench's code, not element-wise).
* :class:`Momentum` — :math:`N \leftarrow \beta N + (1-\tau)\hat g`, step :math:`= N`. Heavy-ball
  (ZO-SGD-MMT) is :math:`\tau = 0`; LOZO-M's averaged momentum is :math:`\tau = \beta`, and with
  step :math:`\eta` it equals heavy-ball with step :math:`\eta(1-\beta)`: its steady-state step on a
  constant gradient is :math:`\eta\hat g`, heavy-ball's :math:`\eta\hat g/(1-\beta)`.
* :class:`Adam` — bias-corrected :math:`\hat m_t/(\sqrt{\hat v_t}+\delta)`.
* :class:`Conservative` — ZO-SGD-Cons: evaluate :math:`f` at :math:`\theta`,
  :math:`\theta-\eta\hat g` and :math:`\theta+\eta\hat g` and keep the lowest (3 more forwards;
  under data parallelism the three losses are the process group's means, one all-reduce).

When LOZO redraws ``V``, state kept in subspace coordinates is re-expressed in the new basis by
:meth:`rebase`: first moments by :math:`N \leftarrow N V_{old}^\top V_{new}/n`
(:func:`lozo_core.subspace.project_coordinates`); Adam's second moment, whose law
:math:`(cU)_{ik}^2` is the same in every basis, keeps each row's mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from lozo_core.estimators import check_positive
from lozo_core.subspace import project_coordinates


def check_unit_interval(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value < 1):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


class SGD:
    """Step along the estimate."""

    extra_forwards = 0

    def coefficient(self, c: float) -> float:
        return c

    def __call__(self, g: Tensor, state: dict, t: int) -> Tensor:
        return g

    def rebase(self, state: dict, V_old: Tensor, V_new: Tensor) -> None:
        """SGD keeps no state in subspace coordinates."""

    def apply(
        self,
        shift: Callable[[float], None],
        closure: Callable[[], Tensor],
        reduce: Callable[[list[float]], list[float]] = list,
    ) -> int | None:
        """Take the step: ``shift(s)`` moves every parameter by ``s·η·step``; return what
        :meth:`replay` needs to repeat it without the closure (a rule that shifts more than once
        must keep no state: each shift recomputes the step). ``reduce`` maps the losses this
        process measured to their means over the process group (the identity on one process)."""
        shift(-1.0)
        return None

    def replay(self, shift: Callable[[float], None], choice: int | None) -> None:
        """Repeat :meth:`apply`'s writes, in the same order, from its returned ``choice``."""
        shift(-1.0)

    def hyperparameters(self) -> dict:
        return {}


class Sign(SGD):
    """ZO-SGD-Sign: :math:`c \\to \\operatorname{sign}(c)`."""

    def coefficient(self, c: float) -> float:
        return float(math.copysign(1.0, c)) if c != 0 else 0.0


class Momentum(SGD):
    r""":math:`N \leftarrow \beta N + (1-\tau)\hat g` (``momentum`` β, ``dampening`` τ)."""

    def __init__(self, momentum: float, dampening: float = 0.0):
        check_unit_interval("momentum", momentum)
        if not (isinstance(dampening, int | float) and 0 <= dampening <= 1):
            raise ValueError(f"dampening must be in [0, 1], got {dampening!r}")
        self.momentum, self.dampening = momentum, dampening

    def __call__(self, g: Tensor, state: dict, t: int) -> Tensor:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.zeros_like(g)
        return buf.mul_(self.momentum).add_(g, alpha=1 - self.dampening)

    def rebase(self, state: dict, V_old: Tensor, V_new: Tensor) -> None:
        if "momentum_buffer" in state:
            state["momentum_buffer"] = project_coordinates(state["momentum_buffer"], V_old, V_new)

    def hyperparameters(self) -> dict:
        return {"momentum": self.momentum, "dampening": self.dampening}


class Adam(SGD):
    r"""Adam: :math:`m \leftarrow \beta_1 m + (1-\beta_1)\hat g`,
    :math:`v \leftarrow \beta_2 v + (1-\beta_2)\hat g^{\odot 2}`, step
    :math:`= \hat m_t/(\sqrt{\hat v_t}+\delta)` with :math:`\hat m_t = m/(1-\beta_1^t)`."""

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8):
        for i, beta in enumerate(betas):
            check_unit_interval(f"betas[{i}]", beta)
        check_positive("adam_eps", adam_eps)
        self.betas, self.adam_eps = tuple(betas), adam_eps

    def __call__(self, g: Tensor, state: dict, t: int) -> Tensor:
        beta1, beta2 = self.betas
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(g), torch.zeros_like(g)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        return (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + self.adam_eps)

    def rebase(self, state: dict, V_old: Tensor, V_new: Tensor) -> None:
        if "exp_avg" in state:
            state["exp_avg"] = project_coordinates(state["exp_avg"], V_old, V_new)
            v = state["exp_avg_sq"]
            state["exp_avg_sq"] = v.mean(dim=1, keepdim=True).expand_as(v).clone()

    def hyperparameters(self) -> dict:
        return {"betas": self.betas, "adam_eps": self.adam_eps}


class Conservative(SGD):
    """ZO-SGD-Cons: try the step and its opposite, keep the lowest of three losses."""

    extra_forwards = 3

    def apply(
        self,
        shift: Callable[[float], None],
        closure: Callable[[], Tensor],
        reduce: Callable[[list[float]], list[float]] = list,
    ) -> int:
        here = float(closure())
        shift(-1.0)
        descent = float(closure())
        shift(2.0)
        ascent = float(closure())
        here, descent, ascent = reduce([here, descent, ascent])
        best = min((here, 0), (descent, -1), (ascent, 1))[1]
        if best != 1:
            shift(-1.0 if best == 0 else -2.0)
        return best

    def replay(self, shift: Callable[[float], None], choice: int | None) -> None:
        shift(-1.0)
        shift(2.0)
        if choice != 1:
            shift(-1.0 if choice == 0 else -2.0)
