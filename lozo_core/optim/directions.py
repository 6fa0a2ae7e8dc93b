r"""Directions: what a zeroth-order optimizer perturbs along, and how it is replayed.

A direction policy turns (run seed, step, block, query) into a :class:`Query` — the draws of
one two-point evaluation, never stored: each pass replays them from the query's seed keys, so
the perturbation, the update and a later replay of the run all see the same numbers.

* :class:`Gaussian` — dense :math:`z\sim\mathcal N(0,I)` for every parameter (MeZO, ZO-SGD and
  the ZO-Bench family); with ``sparsity > 0`` each entry is zeroed with that probability, the
  mask redrawn every ``mask_interval`` steps (ZO-Bench's sparse perturbation; the estimate is
  then unbiased for :math:`M\odot\nabla f`, not :math:`\nabla f`).
* :class:`LazyLowRank` — LOZO: every matrix :math:`W\in\mathbb R^{m\times n}` gets
  :math:`Z = UV^\top` with :math:`U\in\mathbb R^{m\times r}` drawn every step and
  :math:`V\in\mathbb R^{n\times r}` every ``interval`` steps (kept in the optimizer state under
  ``"V"``); vectors get dense Gaussian directions. Between refreshes LOZO is ZO-SGD on the
  coordinates :math:`B` of :math:`f(W_0 + BV^\top)` (:mod:`lozo_core.subspace`).

Random streams, one generator per parameter (``i`` its index in the block or model): query
``j`` of block ``b`` at step ``k`` draws parameter ``i``'s direction from
``stream(seed, k, 0, b, j, i)``, LOZO's ``V`` from ``stream(seed, k, 1, i)``, sparse masks from
``stream(seed, k // mask_interval, 2, i)``. Independent streams let the draws of consecutive
parameters run on parallel threads (``torch.randn`` releases the GIL): a full Gaussian
direction — the bulk of a MeZO step's time on CPU — is drawn about 1.9× faster on two cores
(``scripts/profile_zo_step.py``) while every number stays a function of its key alone.
Draws are float32 on the parameter's device, widened to float64 for float64 parameters.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from lozo_core.estimators import check_count
from lozo_core.rng import stream
from lozo_core.subspace import refresh_due

DIRECTION_KEY, V_KEY, MASK_KEY = 0, 1, 2
PREFETCH_MIN_NUMEL = 1 << 16


@cache
def _draw_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="draw")


os.register_at_fork(after_in_child=_draw_pool.cache_clear)  # a forked child has no pool threads


def prefetched(draw: Callable[[int], object], count: int) -> Iterator:
    """``draw(0), draw(1), …`` in order, the next few computed on worker threads meanwhile
    (at most one per worker in flight, so memory stays a few parameters' worth); with torch at
    one thread, on this thread only, so that a one-thread timing uses one core."""
    workers = torch.get_num_threads()
    if workers <= 1:
        yield from map(draw, range(count))
        return
    pool, pending = _draw_pool(workers), deque()
    for i in range(count):
        pending.append(pool.submit(draw, i))
        if len(pending) > workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def accumulator_dtype(p: Tensor) -> torch.dtype:
    """float32, or the parameter's dtype if wider: the dtype of draws, factors and states."""
    return torch.promote_types(p.dtype, torch.float32)


@dataclass
class Query:
    r"""One two-point query :math:`f(\theta \pm \varepsilon Z)`, replayable from its seed keys.

    ``V[i]`` is ``None`` for a dense Gaussian direction of ``params[i]``, or the fixed right
    factor (n×r) of a low-rank direction :math:`UV^\top`; ``eps[i]`` is that parameter's
    perturbation scale. With ``density < 1`` each entry of a dense direction is kept with that
    probability; the mask comes from ``stream(*mask_keys)``.
    """

    params: list[Tensor]
    V: list[Tensor | None]
    eps: list[float]
    keys: tuple[int, ...]
    density: float = 1.0
    mask_keys: tuple[int, ...] = ()
    kept: list | None = None

    def keep(self) -> None:
        """Draw every parameter's direction now and hold the draws (one model's size of memory
        for dense directions), so that the perturb, restore and update passes reuse them instead
        of regenerating them from the keys: the same numbers, one draw per step instead of one
        per pass."""
        self.kept = list(self)

    def draw(self, i: int) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """``(param, z, U, V)`` of parameter ``i``: ``z`` if dense, ``U, V`` if low-rank."""
        p, v = self.params[i], self.V[i]
        g = stream(*self.keys, i, device=p.device)
        if v is not None:
            u = torch.randn(
                (p.shape[0], v.shape[1]), generator=g, device=p.device, dtype=torch.float32
            )
            return p, None, u.to(v.dtype), v
        z = torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32)
        if self.density < 1:
            masks = stream(*self.mask_keys, i, device=p.device)
            z.mul_(
                torch.rand(p.shape, generator=masks, device=p.device, dtype=torch.float32)
                < self.density
            )
        return p, z.to(accumulator_dtype(p)), None, None

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]]:
        """Every parameter's ``(param, z, U, V)``, in order: drawn ahead on worker threads, or
        in this thread when the parameters are too small to repay the hand-off (the numbers are
        the same either way: each comes from its own key); the kept draws after :meth:`keep`."""
        if self.kept is not None:
            return iter(self.kept)
        if sum(p.numel() for p in self.params) < PREFETCH_MIN_NUMEL:
            return map(self.draw, range(len(self.params)))
        return prefetched(self.draw, len(self.params))

    def add_to_params_(self, scale: float) -> None:
        r"""In place: :math:`\theta_i \leftarrow \theta_i + \text{scale}\cdot\varepsilon_i Z_i`."""
        for (p, z, u, v), eps in zip(self, self.eps, strict=True):
            if z is not None:
                p.add_(z.to(p.dtype), alpha=scale * eps)
            else:
                p.addmm_(u.to(p.dtype), v.T.to(p.dtype), alpha=scale * eps)


class Gaussian:
    """Dense Gaussian directions, optionally sparse (see the module docstring)."""

    lowrank = False

    def __init__(self, sparsity: float = 0.0, mask_interval: int = 1):
        if not (isinstance(sparsity, int | float) and 0 <= sparsity < 1):
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
        check_count("mask_interval", mask_interval)
        self.sparsity, self.mask_interval = sparsity, mask_interval

    def init_state(self, p: Tensor, state: dict) -> None:
        """Dense directions keep no state."""

    def refresh_due(self, k: int) -> bool:
        """Dense directions have no basis to redraw."""
        return False

    def refresh(
        self, k: int, params: list[Tensor], states: list[dict], seed: int, indices=None
    ) -> list:
        return []

    def query(self, params, states, eps, seed: int, k: int, block: int, j: int) -> Query:
        return Query(
            list(params),
            [None] * len(params),
            list(eps),
            (seed, k, DIRECTION_KEY, block, j),
            density=1.0 - self.sparsity,
            mask_keys=(seed, k // self.mask_interval, MASK_KEY),
        )

    def estimate(self, c: float, z: Tensor | None, u: Tensor | None, V: Tensor | None) -> Tensor:
        r"""Per query: :math:`c\,z` (``c`` the scalar difference already divided by ε)."""
        return c * z

    def hyperparameters(self) -> dict:
        return {"sparsity": self.sparsity, "mask_interval": self.mask_interval}


class LazyLowRank:
    r"""LOZO's low-rank directions :math:`UV^\top` with ``V`` redrawn every ``interval`` steps.

    The estimate is returned in subspace coordinates, :math:`\hat g_B = cU/r`, so that the
    full-size estimate is :math:`\hat g = \hat g_B V^\top` (unbiased with the :math:`1/r`).
    """

    lowrank = True

    def __init__(self, rank: int, interval: int):
        check_count("rank", rank)
        check_count("interval", interval)
        self.rank, self.interval = rank, interval

    def init_state(self, p: Tensor, state: dict) -> None:
        if p.ndim == 2:
            state["V"] = torch.zeros(
                p.shape[1], self.rank, device=p.device, dtype=accumulator_dtype(p)
            )

    def refresh_due(self, k: int) -> bool:
        return refresh_due(k, self.interval)

    def refresh(
        self, k: int, params: list[Tensor], states: list[dict], seed: int, indices=None
    ) -> list:
        """Draw every matrix's new ``V`` (``params[j]`` is parameter ``indices[j]`` of the
        optimizer, ``j`` by default); return the ``(state, V_old, V_new)`` changes."""
        changes = []
        indices = range(len(params)) if indices is None else indices
        for i, p, state in zip(indices, params, states, strict=True):
            if "V" not in state:
                continue
            g = stream(seed, k, V_KEY, i, device=p.device)
            V_new = torch.randn(
                (p.shape[1], self.rank), generator=g, device=p.device, dtype=torch.float32
            )
            V_new = V_new.to(accumulator_dtype(p))
            changes.append((state, state["V"], V_new))
            state["V"] = V_new
        return changes

    def query(self, params, states, eps, seed: int, k: int, block: int, j: int) -> Query:
        return Query(
            list(params),
            [state.get("V") for state in states],
            list(eps),
            (seed, k, DIRECTION_KEY, block, j),
        )

    def estimate(self, c: float, z: Tensor | None, u: Tensor | None, V: Tensor | None) -> Tensor:
        return c * z if V is None else c * u / V.shape[1]

    def hyperparameters(self) -> dict:
        return {"rank": self.rank, "interval": self.interval}
