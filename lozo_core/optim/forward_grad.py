r"""Forward gradient (ZO-Bench's Forward-Grad): :math:`\theta \leftarrow (1-\eta\lambda)\theta - \eta(\nabla f\cdot v)\,v`.

:math:`v \sim \mathcal N(0, I)` from ``stream(seed, step, 0, 0, 0, i)`` for parameter ``i``
(MeZO's draws); the
directional derivative :math:`\nabla f\cdot v` comes from one forward-mode pass
(``torch.autograd.forward_ad``), no backpropagation. The closure runs with every parameter
replaced by a dual tensor: a ``TorchFunctionMode`` substitutes them wherever an operation
receives one, so ``ForwardGrad`` takes parameters like every other optimizer. Attention runs
on the math SDPA kernel, the fused ones having no forward-mode derivative. One step costs one
forward pass carrying tangents (about 1.5–3 plain forwards of compute).

Data parallelism: with a ``process_group`` of :math:`N` processes, each on an equal shard
(:math:`f = \frac1N\sum_i f_i`), every process draws the same :math:`v` and measures
:math:`f_i` and :math:`\nabla f_i\cdot v`; one all-reduce replaces both by their means
:math:`f` and :math:`\nabla f\cdot v`, so every process applies the same update and
``last_record`` holds the global derivative.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from lozo_core.distributed import default_group, reduce_mean
from lozo_core.estimators import check_count
from lozo_core.optim.directions import DIRECTION_KEY, prefetched
from lozo_core.optim.optimizer import check_nonnegative, module_parameters
from lozo_core.rng import stream


class _Substitute(TorchFunctionMode):
    """Replace given tensors (by identity) in every operation's arguments."""

    def __init__(self, replacements: dict[int, Tensor]):
        super().__init__()
        self.replacements = replacements

    def __torch_function__(self, func, types, args=(), kwargs=None):
        swap = lambda t: self.replacements.get(id(t), t) if isinstance(t, Tensor) else t
        return func(*tree_map(swap, args), **tree_map(swap, kwargs or {}))


class ForwardGrad(torch.optim.Optimizer):
    """Forward-gradient descent (see the module docstring); ``last_record`` holds the step's
    directional derivative so :meth:`replay_step` can repeat it without a forward pass.
    ``process_group`` as :class:`~lozo_core.optim.optimizer.ZeroOrderOptimizer`'s."""

    def __init__(
        self, params, *, lr: float, weight_decay: float = 0.0, seed: int = 0, process_group=None
    ):
        check_nonnegative("lr", lr)
        check_nonnegative("weight_decay", weight_decay)
        check_count("seed", seed, minimum=0)
        self.seed, self.last_record = seed, None
        self.process_group = process_group if process_group is not None else default_group()
        super().__init__(module_parameters(params), dict(lr=lr, weight_decay=weight_decay, step=0))

    def add_param_group(self, param_group: dict) -> None:
        unknown = sorted(set(param_group) - {"params", "param_names", "lr", "weight_decay"})
        if unknown:
            raise ValueError(
                f"ForwardGrad: param group keys {unknown} are not per-group settings; "
                "a group may set lr, weight_decay"
            )
        super().add_param_group(param_group)
        self.param_groups[-1]["step"] = self.param_groups[0].get("step", 0)

    def _tangents(self, k: int) -> list[tuple[Tensor, Tensor, dict]]:
        params = [(p, group) for group in self.param_groups for p in group["params"]]

        def draw(i: int) -> Tensor:
            p = params[i][0]
            g = stream(self.seed, k, DIRECTION_KEY, 0, 0, i, device=p.device)
            z = torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32)
            return z.to(p.dtype)

        tangents = prefetched(draw, len(params))
        return [(p, v, group) for (p, group), v in zip(params, tangents, strict=True)]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError("ForwardGrad.step needs a closure that returns the loss")
        k = self.param_groups[0]["step"]
        tangents = self._tangents(k)
        with fwAD.dual_level(), sdpa_kernel(SDPBackend.MATH):
            duals = {id(p): fwAD.make_dual(p.detach(), v) for p, v, _ in tangents}
            with _Substitute(duals):
                loss, directional = fwAD.unpack_dual(closure())
        if directional is None:
            raise RuntimeError("ForwardGrad: the closure's loss does not depend on the parameters")
        loss, d = reduce_mean([float(loss), float(directional)], self.process_group)
        if not (math.isfinite(loss) and math.isfinite(d)):
            raise FloatingPointError(f"non-finite loss or derivative at step {k}: {loss}, {d}")
        self._apply(tangents, d)
        self.last_record = {"step": k, "directional": d}
        return torch.tensor(loss, dtype=torch.float64)

    @torch.no_grad()
    def replay_step(self, record: dict) -> None:
        k = self.param_groups[0]["step"]
        if record["step"] != k:
            raise ValueError(f"replay: record is for step {record['step']}, optimizer is at {k}")
        self._apply(self._tangents(k), record["directional"])
        self.last_record = record

    def merge(self) -> None:
        """Nothing is pending: the parameters are the trained weights."""

    def effective_weights(self):
        return contextlib.nullcontext()

    def _apply(self, tangents, d: float) -> None:
        for p, v, group in tangents:
            if group["weight_decay"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(v, alpha=-group["lr"] * d)
        for group in self.param_groups:
            group["step"] += 1
