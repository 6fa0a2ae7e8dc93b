r"""Zeroth-order gradient estimators as pure functions on tensors.

Every estimator takes ``f(list[Tensor]) -> scalar Tensor`` and the list of tensors to
differentiate, and returns a list of tensors shaped like ``params``. All randomness comes
from the explicit ``generator``: the same generator state gives the same estimate.

Notation: a matrix parameter :math:`W \in \mathbb{R}^{m\times n}`, its gradient
:math:`G = \nabla f(W)`; vector parameters (biases, norms) get dense Gaussian directions.

* RGE (MeZO, ZO-SGD), two-point Gaussian, averaged over ``q`` directions:

  .. math::
     \hat g = \frac1q \sum_{j=1}^q
        \frac{f(\theta + \varepsilon z_j) - f(\theta - \varepsilon z_j)}{2\varepsilon}\, z_j,
     \qquad z_j \sim \mathcal N(0, I).

* LGE (LOZO), low-rank two-point estimator with the :math:`1/r` factor:

  .. math::
     Z = U V^\top,\; U\in\mathbb R^{m\times r},\, V\in\mathbb R^{n\times r}
     \text{ i.i.d. } \mathcal N(0,1), \qquad
     \hat g = \frac{f(W + \varepsilon Z) - f(W - \varepsilon Z)}{2\varepsilon}\,\frac{Z}{r}.

  :math:`\mathbb E[\hat g] = G` exactly for quadratic :math:`f`, and up to
  :math:`O(\varepsilon^2)` for smooth :math:`f`; :math:`\mathbb E[\hat g\mid V] = G V V^\top / r`.
  The official LOZO code drops :math:`1/r`, so its learning rate equals ours divided by r.

* Forward gradient: :math:`\hat g = (\nabla f \cdot v)\, v`, :math:`v \sim \mathcal N(0, I)`,
  the directional derivative computed exactly by forward-mode AD (``torch.func.jvp``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Objective = Callable[[list[Tensor]], Tensor]


def check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0."""
    if not (
        isinstance(value, int | float) and value > 0 and value == value and value < float("inf")
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_count(name: str, value: int, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def gaussian_like(t: Tensor, generator: torch.Generator) -> Tensor:
    """A standard normal tensor with the shape, dtype and device of ``t``.

    Drawn in float32 on the generator's device, then cast and moved: every draw in LOZO Lab
    follows this convention, so the same stream gives the same numbers whatever the dtype.
    """
    return gaussian(tuple(t.shape), t, generator)


def gaussian(shape: tuple[int, ...], like: Tensor, generator: torch.Generator) -> Tensor:
    """A standard normal tensor of ``shape`` with the dtype and device of ``like``."""
    z = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return z.to(device=like.device, dtype=like.dtype)


def sample_V(
    params: Sequence[Tensor], rank: int, generator: torch.Generator
) -> list[Tensor | None]:
    """Draw the right factors :math:`V \\in \\mathbb R^{n\\times r}` for every matrix.

    Returns a list aligned with ``params``: an ``n x rank`` Gaussian for each 2-D tensor and
    ``None`` for every other tensor. Hold it fixed for ν steps to get LOZO's lazy sampling.
    """
    check_count("rank", rank)
    return [gaussian((p.shape[1], rank), p, generator) if p.ndim == 2 else None for p in params]


def _two_point(
    f: Objective, params: Sequence[Tensor], directions: list[Tensor], eps: float
) -> Tensor:
    plus = [p + eps * d for p, d in zip(params, directions, strict=True)]
    minus = [p - eps * d for p, d in zip(params, directions, strict=True)]
    return (f(plus) - f(minus)) / (2 * eps)


def rge(
    f: Objective, params: Sequence[Tensor], *, eps: float, generator: torch.Generator, q: int = 1
) -> list[Tensor]:
    r"""Two-point Gaussian estimator (MeZO / ZO-SGD), averaged over ``q`` directions.

    :math:`\hat g = \frac1q\sum_j \frac{f(\theta+\varepsilon z_j)-f(\theta-\varepsilon z_j)}
    {2\varepsilon} z_j`. Second moment for linear ``f``: :math:`\|G\|^2 + (d+1)\|G\|^2/q`
    (:math:`(d+2)\|G\|^2` at ``q = 1``), ``d`` the number of coordinates (see
    :mod:`lozo_core.moments`).
    """
    check_positive("eps", eps)
    check_count("q", q)
    estimate = [torch.zeros_like(p) for p in params]
    for _ in range(q):
        z = [gaussian_like(p, generator) for p in params]
        c = _two_point(f, params, z, eps)
        for g, zi in zip(estimate, z, strict=True):
            g.add_(zi, alpha=float(c) / q)
    return estimate


def lge(
    f: Objective,
    params: Sequence[Tensor],
    *,
    eps: float,
    rank: int,
    generator: torch.Generator,
    V: Sequence[Tensor | None] | None = None,
    q: int = 1,
) -> list[Tensor]:
    r"""LOZO's low-rank two-point estimator, with the :math:`1/r` factor.

    Each matrix gets :math:`Z = UV^\top`, each other tensor a dense Gaussian ``z``;
    one pair of evaluations serves all of them:
    :math:`c = [f(\theta+\varepsilon Z) - f(\theta-\varepsilon Z)]/(2\varepsilon)`, then
    :math:`\hat g_W = c\,UV^\top/r` and :math:`\hat g_b = c\,z`.

    ``V`` (from :func:`sample_V`) fixes the right factors, as lazy sampling does; otherwise
    fresh ones are drawn first, in parameter order, then ``U`` and ``z`` in parameter order.
    With ``q > 1`` the estimate averages ``q`` independent ``U`` (and ``V`` if not given).
    """
    check_positive("eps", eps)
    check_count("rank", rank)
    check_count("q", q)
    if V is not None:
        _check_V(params, V, rank)
    estimate = [torch.zeros_like(p) for p in params]
    for _ in range(q):
        factors = list(V) if V is not None else sample_V(params, rank, generator)
        directions = []
        for p, v in zip(params, factors, strict=True):
            if v is None:
                directions.append(gaussian_like(p, generator))
            else:
                u = gaussian((p.shape[0], rank), p, generator)
                directions.append(u @ v.T)
        c = float(_two_point(f, params, directions, eps))
        for g, d, v in zip(estimate, directions, factors, strict=True):
            g.add_(d, alpha=c / q / (rank if v is not None else 1))
    return estimate


def _check_V(params: Sequence[Tensor], V: Sequence[Tensor | None], rank: int) -> None:
    if len(V) != len(params):
        raise ValueError(f"V must have one entry per parameter ({len(params)}), got {len(V)}")
    for i, (p, v) in enumerate(zip(params, V, strict=True)):
        if v is None and p.ndim == 2:
            raise ValueError(
                f"V[{i}] is None but params[{i}] is a matrix of shape {tuple(p.shape)}"
            )
        if v is not None and p.ndim != 2:
            raise ValueError(
                f"V[{i}] given for params[{i}] of shape {tuple(p.shape)}: V applies to matrices only"
            )
        if v is not None and tuple(v.shape) != (p.shape[1], rank):
            raise ValueError(
                f"V[{i}] has shape {tuple(v.shape)}, expected (n, rank) = ({p.shape[1]}, {rank})"
            )


def forward_gradient(
    f: Objective, params: Sequence[Tensor], *, generator: torch.Generator
) -> list[Tensor]:
    r"""Forward gradient: :math:`\hat g = (\nabla f\cdot v)\,v` with :math:`v\sim\mathcal N(0,I)`.

    The directional derivative :math:`\nabla f\cdot v` is exact (one ``torch.func.jvp``), so the
    estimator is unbiased for every smooth ``f`` with second moment :math:`(d+2)\|G\|^2`.
    """
    v = [gaussian_like(p, generator) for p in params]
    _, directional = torch.func.jvp(lambda *ps: f(list(ps)), tuple(params), tuple(v))
    return [float(directional) * vi for vi in v]
