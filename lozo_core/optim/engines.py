r"""Engines: evaluate :math:`f(\theta+\varepsilon Z)` and :math:`f(\theta-\varepsilon Z)` on a model,
and write updates into it.

* :class:`InPlace` — MeZO's seed trick, the reference: write :math:`+\varepsilon Z` into the
  weights, evaluate, write :math:`-2\varepsilon Z`, evaluate, write :math:`+\varepsilon Z` back.
  Four passes over every weight per step, and the restore is not exact: :math:`(w+\varepsilon z)
  -2\varepsilon z+\varepsilon z` rounds differently from :math:`w` (measured: ~3e-8 per step in
  fp32, whole ulps of bf16), so even ``lr=0`` moves the weights.
* :class:`SidePath` — never writes a perturbation. While a query runs, every call
  ``F.linear(x, W, b)``, ``F.embedding(ids, W)``, ``F.layer_norm(x, ., w, b)`` and ``w * x``
  (RMSNorm) that uses a parameter of the query is rerouted (a ``TorchFunctionMode``):

  .. math::
     y = \alpha\, xW^\top + (xV)(B + s\varepsilon U)^\top + (b + \delta_b + s\varepsilon z_b),
     \qquad s = \pm 1,

  embeddings get rows :math:`\alpha W[\mathrm{ids}] + (B+s\varepsilon U)[\mathrm{ids}]V^\top`, and a
  tied LM head reuses the embedding's factors (the same parameter object). The restore is exact
  (nothing was written). With a :class:`PairedClosure` both signs run in one forward over the
  doubled batch ``[batch; batch]`` (rows of the first half see :math:`s=+1`); with a plain closure,
  two single-batch forwards (*sequential*: less activation memory, more time).

Updates. Both engines write every step's update into the parameters (for LOZO a rank-r
``addmm`` per matrix), so after ``step()`` the model computes with the trained weights, its
``state_dict()`` holds them, and evaluating or saving never changes the trajectory.
``SidePath(deferred=True)`` instead accumulates updates in fp32 coordinates :math:`B` (m×r),
a decay factor :math:`\alpha` and vector deltas :math:`\delta`, and writes
:math:`W \leftarrow \alpha W + BV^\top` only when ``V`` is refreshed or :meth:`merge` is called:
no per-step full-size write, and updates below a bf16/fp16 weight's rounding step are kept.
That is the one mode in which the parameters lag the trained weights: compute inside
:meth:`effective_weights` and export with :meth:`merge`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from lozo_core.optim.directions import Query, accumulator_dtype


class PairedClosure:
    """A closure that can also evaluate both signs in one forward over a doubled batch.

    ``loss_fn(batch) -> Tensor`` must return one loss per example (shape ``(N,)``) and
    ``double(batch)`` must stack the batch twice along dim 0. ``closure()`` gives the mean loss;
    ``closure.pair()`` runs ``[batch; batch]`` once and returns the two halves' mean losses.
    """

    def __init__(
        self, loss_fn: Callable[[object], Tensor], batch, double: Callable[[object], object]
    ):
        self.loss_fn, self.batch, self.double = loss_fn, batch, double

    def __call__(self) -> Tensor:
        return self.loss_fn(self.batch).mean()

    def pair(self) -> tuple[Tensor, Tensor]:
        losses = self.loss_fn(self.double(self.batch))
        plus, minus = losses.chunk(2)
        return plus.mean(), minus.mean()


class InPlace:
    """MeZO's in-place seed trick: perturb, evaluate, re-perturb, evaluate, restore."""

    name = "inplace"
    exact_restore = False

    def bind(self, params: list[Tensor], names: dict[int, str]) -> None:
        """In-place perturbation works for any parameter."""

    def two_point(self, closure: Callable[[], Tensor], query: Query) -> tuple[float, float]:
        query.add_to_params_(1.0)
        plus = float(closure())
        query.add_to_params_(-2.0)
        minus = float(closure())
        query.add_to_params_(1.0)
        return plus, minus

    def retrace(self, query: Query) -> None:
        """Repeat :meth:`two_point`'s writes without evaluating (replay): the perturb/restore
        round trip rounds, and a bit-identical replay must round the same way."""
        query.add_to_params_(1.0)
        query.add_to_params_(-2.0)
        query.add_to_params_(1.0)

    def write(self, p: Tensor, step: Tensor, V: Tensor | None, alpha: float) -> None:
        r""":math:`p \leftarrow p + \alpha\cdot\text{step}` (or :math:`+\alpha\,\text{step}\,V^\top`)."""
        if V is None:
            p.add_(step.to(p.dtype), alpha=alpha)
        else:
            p.addmm_(step.to(p.dtype), V.T.to(p.dtype), alpha=alpha)

    def decay(self, p: Tensor, factor: float, V: Tensor | None) -> None:
        r"""Decoupled weight decay: :math:`p \leftarrow \text{factor}\cdot p`."""
        p.mul_(factor)

    def merge(self) -> None:
        """Nothing is pending: the parameters are the trained weights."""

    @contextmanager
    def effective_weights(self):
        yield

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(
                f"engine {self.name!r} keeps no state, but the saved optimizer holds deferred "
                f"side-path updates ({len(state.get('pending', {}))} parameters); load it into "
                "engine 'sidepath-deferred', or call merge() before saving"
            )


def holds_pending(optimizer_state: dict) -> bool:
    """Whether a saved optimizer state (``ZeroOrderOptimizer.state_dict()``) holds deferred
    side-path updates, which the weights saved beside it lack."""
    return bool(optimizer_state.get("engine", {}).get("pending"))


class SidePath(InPlace):
    """Perturbs through the forward pass instead of the weights (see the module docstring)."""

    exact_restore = True

    def __init__(self, deferred: bool = False):
        self.deferred = deferred
        self.name = "sidepath-deferred" if deferred else "sidepath"
        self.params: list[Tensor] = []
        self.names: dict[int, str] = {}
        self.pending: dict[int, dict] = {}
        self.bases: dict[int, Tensor] = {}

    def bind(self, params: list[Tensor], names: dict[int, str]) -> None:
        self.params, self.names = list(params), names

    def _pending(self, p: Tensor, V: Tensor | None) -> dict:
        slot = self.pending.get(id(p))
        if slot is None:
            shape = p.shape if V is None else (p.shape[0], V.shape[1])
            zeros = torch.zeros(shape, device=p.device, dtype=accumulator_dtype(p))
            slot = self.pending[id(p)] = {"values": zeros, "scale": 1.0}
            self.bases[id(p)] = V
        return slot

    def write(self, p: Tensor, step: Tensor, V: Tensor | None, alpha: float) -> None:
        if not self.deferred:
            return super().write(p, step, V, alpha)
        self.bases[id(p)] = V
        self._pending(p, V)["values"].add_(step, alpha=alpha)

    def decay(self, p: Tensor, factor: float, V: Tensor | None) -> None:
        if not self.deferred:
            return super().decay(p, factor, V)
        slot = self._pending(p, V)
        slot["values"].mul_(factor)
        if V is None:
            p.mul_(factor)
        else:
            slot["scale"] *= factor

    @torch.no_grad()
    def merge(self) -> None:
        r""":math:`W \leftarrow \alpha W + BV^\top`, :math:`b \leftarrow b + \delta`; pending ← 0."""
        for p in self.params:
            slot = self.pending.pop(id(p), None)
            if slot is None:
                continue
            V = self.bases.pop(id(p), None)
            if slot["scale"] != 1.0:
                p.mul_(slot["scale"])
            InPlace.write(self, p, slot["values"], V, 1.0)

    def _routes(self, query: Query | None, signs: tuple[int, ...]) -> dict[int, _Route]:
        draws = {}
        if query is not None:
            draws = {
                id(p): (z, u, v, eps) for (p, z, u, v), eps in zip(query, query.eps, strict=True)
            }
        routes = {}
        for p in self.params:
            z, u, V, eps = draws.get(id(p), (None, None, None, 0.0))
            slot = self.pending.get(id(p))
            if V is None and slot is not None:
                V = self.bases.get(id(p))
            delta = z if u is None else u
            if delta is None and slot is None:
                continue
            if delta is not None and V is None and p.ndim >= 2 and z is not None:
                raise RuntimeError(
                    f"engine={self.name!r} routes low-rank directions of matrices; "
                    f"{self.names.get(id(p), 'a parameter')} has a dense one. Use engine='inplace'."
                )
            base = slot["values"] if slot is not None else None
            if delta is None:
                values = base.unsqueeze(0)
            else:
                delta = delta.to(accumulator_dtype(p))
                values = torch.stack(
                    [(s * eps) * delta + (base if base is not None else 0) for s in signs]
                )
            Vt = V.T.contiguous() if V is not None else None
            scale = slot["scale"] if slot is not None else 1.0
            routes[id(p)] = _Route(self.names.get(id(p), "?"), values, Vt, float(scale))
        return routes

    @contextmanager
    def _active(self, routes: dict[int, _Route], check: bool):
        with _SidePathMode(routes):
            yield
        if check:
            missed = [r.name for r in routes.values() if not r.used]
            if missed:
                raise RuntimeError(
                    f"engine={self.name!r} could not route these parameters through the forward "
                    "pass (they are used by operations other than linear, embedding, layer_norm "
                    f"or elementwise scaling): {', '.join(missed[:8])}. Use engine='inplace'."
                )

    def retrace(self, query: Query) -> None:
        """Nothing was written by the perturbation: nothing to repeat."""

    def two_point(self, closure: Callable[[], Tensor], query: Query) -> tuple[float, float]:
        if isinstance(closure, PairedClosure):
            with self._active(self._routes(query, (1, -1)), check=True):
                plus, minus = closure.pair()
            return float(plus), float(minus)
        with self._active(self._routes(query, (1,)), check=True):
            plus = float(closure())
        with self._active(self._routes(query, (-1,)), check=True):
            minus = float(closure())
        return plus, minus

    @contextmanager
    def effective_weights(self):
        """Inside, the model computes with :math:`\\alpha W + BV^\\top` (deferred mode)."""
        if not self.pending:
            yield
            return
        with self._active(self._routes(None, (1,)), check=False):
            yield

    def state_dict(self) -> dict:
        if not self.pending:
            return {}
        index = {id(p): i for i, p in enumerate(self.params)}
        return {
            "pending": {
                index[key]: {**slot, "V": self.bases.get(key)} for key, slot in self.pending.items()
            }
        }

    def load_state_dict(self, state: dict) -> None:
        self.pending, self.bases = {}, {}
        if not state:
            return
        if not self.deferred:
            super().load_state_dict(state)
        for i, slot in state["pending"].items():
            p = self.params[int(i)]
            self.pending[id(p)] = {
                "values": slot["values"].detach().clone().to(p.device),
                "scale": float(slot["scale"]),
            }
            self.bases[id(p)] = None if slot["V"] is None else slot["V"].clone().to(p.device)


ENGINES = {
    "inplace": InPlace,
    "sidepath": SidePath,
    "sidepath-deferred": lambda: SidePath(deferred=True),
}


def make_engine(name: str, lowrank: bool) -> InPlace:
    """The engine called ``name``; side-path engines need low-rank directions for matrices."""
    choices = tuple(ENGINES) if lowrank else ("inplace",)
    if name not in choices:
        raise ValueError(f"engine must be one of {choices} for these directions, got {name!r}")
    return ENGINES[name]()


@dataclass
class _Route:
    """How one parameter is rerouted: per-sign coefficients and the right factor, stored
    transposed (r×n, contiguous) so that ``F.linear(x, Vt)`` computes :math:`xV` — several times
    faster than ``x @ V`` for r ≪ n on CPU."""

    name: str
    values: Tensor
    Vt: Tensor | None = None
    scale: float = 1.0
    used: bool = field(default=False)


class _SidePathMode(TorchFunctionMode):
    def __init__(self, routes: dict[int, _Route]):
        super().__init__()
        self.routes = routes

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            return self._linear(func, *args, **kwargs)
        if func is F.embedding:
            return self._embedding(func, *args, **kwargs)
        if func is F.layer_norm:
            return self._layer_norm(func, *args, **kwargs)
        if func in (torch.Tensor.__mul__, torch.Tensor.mul, torch.mul) and len(args) == 2:
            return self._scale(func, *args)
        return func(*args, **kwargs)

    def _route(self, t, *, mark: bool = True) -> _Route | None:
        route = self.routes.get(id(t)) if isinstance(t, Tensor) else None
        if route is not None and mark:
            route.used = True
        return route

    @staticmethod
    def _per_sign(out: Tensor, values: Tensor) -> Tensor:
        """View ``out`` as (signs, rows, features) to add a per-sign term."""
        return out.view(values.shape[0], -1, out.shape[-1])

    def _linear(self, func, input, weight, bias=None):
        rw, rb = self._route(weight), self._route(bias)
        if rw is None and rb is None:
            return func(input, weight, bias)
        out = func(input, weight, None if rw is not None or rb is not None else bias)
        if rw is not None:
            if rw.scale != 1.0:
                out.mul_(rw.scale)
            xv = F.linear(input, rw.Vt.to(input.dtype))
            coefs = rw.values.to(input.dtype)
            if coefs.shape[0] == 1:
                out.add_(xv @ coefs[0].T)
            else:
                h = xv.reshape(coefs.shape[0], -1, xv.shape[-1])
                self._per_sign(out, coefs).baddbmm_(h, coefs.transpose(1, 2))
        if rb is not None:
            self._per_sign(out, rb.values).add_((bias + rb.values).to(out.dtype)[:, None, :])
        elif bias is not None:
            out.add_(bias)
        return out

    def _embedding(self, func, input, weight, *args, **kwargs):
        route = self._route(weight)
        out = func(input, weight, *args, **kwargs)
        if route is None:
            return out
        if route.scale != 1.0:
            out.mul_(route.scale)
        signs = route.values.shape[0]
        rows = route.values[
            torch.arange(signs, device=input.device)[:, None], input.reshape(signs, -1)
        ]
        self._per_sign(out, route.values).add_(F.linear(rows, route.Vt.T).to(out.dtype))
        return out

    def _layer_norm(self, func, input, normalized_shape, weight=None, bias=None, eps=1e-5):
        rw, rb = self._route(weight), self._route(bias)
        if rw is None and rb is None:
            return func(input, normalized_shape, weight, bias, eps)
        xhat = func(input, normalized_shape, None, None, eps)
        signs = (rw or rb).values.shape[0]
        w = (weight + rw.values) if rw is not None else weight.expand(signs, -1)
        b = (
            (bias + rb.values)
            if rb is not None
            else (bias.expand(signs, -1) if bias is not None else None)
        )
        shaped = xhat.view(signs, -1, xhat.shape[-1])
        w = w.to(xhat.dtype)[:, None, :]
        out = shaped * w if b is None else torch.addcmul(b.to(xhat.dtype)[:, None, :], shaped, w)
        return out.view(xhat.shape)

    def _scale(self, func, a, b):
        route, other = self._route(a, mark=False), b
        if route is None:
            route, other = self._route(b, mark=False), a
        if route is None or route.Vt is not None or not isinstance(other, Tensor) or other.ndim < 2:
            return func(a, b)
        route.used = True
        out = func(a, b)
        self._per_sign(out, route.values).add_(
            route.values.to(out.dtype)[:, None, :] * self._per_sign(other, route.values)
        )
        return out
