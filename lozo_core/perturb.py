r"""Engines that evaluate :math:`f(\theta+\varepsilon Z)` and :math:`f(\theta-\varepsilon Z)` on a model.

A :class:`Directions` object describes one two-point query: a dense Gaussian :math:`z` for
every parameter without a ``V``, and :math:`Z = UV^\top` (``U`` drawn, ``V`` given) for every
matrix with one. Nothing is stored: each pass replays the draws from the query's seed, so the
perturbation and the update use the same numbers.

Two engines evaluate a query:

* :class:`InPlace` — MeZO's seed trick, the reference: write :math:`+\varepsilon Z` into the
  weights, evaluate, write :math:`-2\varepsilon Z`, evaluate, write :math:`+\varepsilon Z` back.
  Four passes over every weight per step, and in fp16/bf16 the restore is not exact.
* :class:`SidePath` — never writes a weight. While a query runs, every call
  ``F.linear(x, W, b)``, ``F.embedding(ids, W)``, ``F.layer_norm(x, ., w, b)`` and
  ``w * x`` (RMSNorm) that uses a registered parameter is rerouted (a ``TorchFunctionMode``):

  .. math::
     y = \alpha\, xW^\top + (xV)(B + s\varepsilon U)^\top + (b + \delta_b + s\varepsilon z_b),
     \qquad s = \pm 1,

  embeddings get rows :math:`\alpha W[\mathrm{ids}] + (B+s\varepsilon U)[\mathrm{ids}]V^\top`, and
  a tied LM head reuses the embedding's factors (the same parameter object). ``B`` (m×r, fp32)
  accumulates LOZO's updates, :math:`\alpha` its weight decay, :math:`\delta` the vector
  parameters' updates; they are merged into the weights only when ``V`` is refreshed.
  With a :class:`PairedClosure` both signs are evaluated in one forward over the doubled batch
  ``[batch; batch]``: rows of the first half see :math:`s=+1`, of the second :math:`s=-1`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from lozo_core.rng import stream


@dataclass
class Directions:
    r"""The direction of one two-point query, replayable from its seed keys.

    ``V[i]`` is ``None`` for a dense Gaussian direction of ``params[i]``, or the fixed right
    factor (n×r) of a low-rank direction :math:`UV^\top`. Draws are made in float32 on the
    parameters' device, in parameter order, from ``stream(*keys)``, and widened to float64
    for float64 parameters. With ``density < 1`` each
    entry of a dense direction is kept with that probability (a sparse perturbation); the mask
    is drawn from ``stream(*mask_keys)``, so queries sharing ``mask_keys`` share the mask.
    """

    params: list[Tensor]
    V: list[Tensor | None]
    keys: tuple[int, ...]
    density: float = 1.0
    mask_keys: tuple[int, ...] = ()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]]:
        """Yield ``(param, z, U, V)``: ``z`` for dense directions, ``U, V`` for low-rank ones."""
        if not self.params:
            return
        device = self.params[0].device
        g = stream(*self.keys, device=device)
        masks = stream(*self.mask_keys, device=device) if self.density < 1 else None
        for p, v in zip(self.params, self.V, strict=True):
            if v is None:
                z = torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32)
                if masks is not None:
                    z.mul_(torch.rand(p.shape, generator=masks, device=p.device) < self.density)
                yield p, z.to(torch.promote_types(p.dtype, torch.float32)), None, None
            else:
                u = torch.randn(
                    (p.shape[0], v.shape[1]), generator=g, device=p.device, dtype=torch.float32
                )
                yield p, None, u.to(v.dtype), v

    def add_to_params_(self, scale: float) -> None:
        r"""In place: :math:`\theta \leftarrow \theta + \text{scale}\cdot Z`."""
        for p, z, u, v in self:
            if z is not None:
                p.add_(z.to(p.dtype), alpha=scale)
            else:
                p.addmm_(u.to(p.dtype), v.T.to(p.dtype), alpha=scale)


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

    def two_point(
        self, closure: Callable[[], Tensor], directions: Directions, eps: float
    ) -> tuple[float, float]:
        directions.add_to_params_(eps)
        plus = float(closure())
        directions.add_to_params_(-2 * eps)
        minus = float(closure())
        directions.add_to_params_(eps)
        return plus, minus

    @contextmanager
    def effective_weights(self):
        yield


@dataclass
class _Route:
    """How one registered parameter is rerouted: per-sign coefficients and the right factor,
    stored transposed (r×n, contiguous) so that ``F.linear(x, Vt)`` computes :math:`xV` — several
    times faster than ``x @ V`` for r ≪ n on CPU."""

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


class SidePath:
    r"""Perturbs through the forward pass instead of the weights (see the module docstring).

    Reads the optimizer's current ``state`` (which ``load_state_dict`` replaces): a matrix
    routed here has ``state[p]["V"]`` (n×r), ``state[p]["B"]`` (m×r, fp32) and
    ``state[p]["scale"]``; a vector has ``state[p]["delta"]`` (fp32). ``optimizer.names`` label
    parameters in error messages.
    """

    name = "sidepath"

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def _routes(
        self, directions: Directions | None, eps: float, signs: tuple[int, ...]
    ) -> dict[int, _Route]:
        draws = {}
        if directions is not None:
            draws = {id(p): (z, u) for p, z, u, _ in directions}
        routes = {}
        names, state = self.optimizer.names, self.optimizer.state
        for p in self.optimizer.param_groups[0]["params"]:
            st = state[p]
            z, u = draws.get(id(p), (None, None))
            if "B" in st:
                base, delta = st["B"], u
            else:
                base, delta = st["delta"], z
            if delta is None:
                values = base.unsqueeze(0)
            else:
                values = torch.stack([base + (s * eps) * delta.to(base.dtype) for s in signs])
            Vt = st["V"].T.contiguous() if "V" in st else None
            routes[id(p)] = _Route(names[id(p)], values, Vt, float(st.get("scale", 1.0)))
        return routes

    @contextmanager
    def _active(self, routes: dict[int, _Route], check: bool):
        with _SidePathMode(routes):
            yield
        if check:
            missed = [r.name for r in routes.values() if not r.used]
            if missed:
                raise RuntimeError(
                    "engine='sidepath' could not route these parameters through the forward pass "
                    f"(they are used by operations other than linear, embedding, layer_norm or "
                    f"elementwise scaling): {', '.join(missed[:8])}. Use engine='inplace'."
                )

    def two_point(
        self, closure: Callable[[], Tensor], directions: Directions, eps: float
    ) -> tuple[float, float]:
        if isinstance(closure, PairedClosure):
            with self._active(self._routes(directions, eps, (1, -1)), check=True):
                plus, minus = closure.pair()
            return float(plus), float(minus)
        with self._active(self._routes(directions, eps, (1,)), check=True):
            plus = float(closure())
        with self._active(self._routes(directions, eps, (-1,)), check=True):
            minus = float(closure())
        return plus, minus

    @contextmanager
    def effective_weights(self):
        """Inside, the model computes with its current weights :math:`\\alpha W + BV^\\top`."""
        with self._active(self._routes(None, 0.0, (1,)), check=False):
            yield
