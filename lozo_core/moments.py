r"""Closed-form moments of the two-point estimators.

Notation: :math:`G=\nabla f(W)` for :math:`W\in\mathbb R^{m\times n}`, RGE
:math:`\hat g = c\,z` and LGE :math:`\hat g = c\,UV^\top/r` with
:math:`c = [f(W+\varepsilon Z)-f(W-\varepsilon Z)]/(2\varepsilon)`. For a quadratic the
difference is exact, :math:`c=\langle G, Z\rangle`, and every moment below is exact; for a
smooth :math:`f` the bias functions give the :math:`\varepsilon^2` term. Derivations (Isserlis'
theorem and the Wishart moment :math:`\mathbb E[(VV^\top)^2] = r(n+r+1)I`) are in
``theory/01_estimator.md`` and ``theory/02_subspace.md``; ``theory/estimator_moments.py`` checks
them symbolically, the tests by Monte Carlo.

The scalar functions are plain arithmetic, so they accept numbers or sympy symbols alike; the
kernels and the bias contractions are tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rge_second_moment(d, sq_norm=1):
    r""":math:`\mathbb E\|\hat g_{RGE}\|^2 = (d+2)\|G\|^2` for ``d`` coordinates."""
    return (d + 2) * sq_norm


def lge_second_moment(m, n, r, sq_norm=1):
    r""":math:`\mathbb E\|\hat g_{LGE}\|^2 = \frac{m(nr+2) + 2(n+r+1)}{r}\|G\|_F^2`.

    At :math:`r=1` this is :math:`(m+2)(n+2)\|G\|_F^2`. It exceeds the RGE value
    :math:`(mn+2)\|G\|_F^2` by :math:`2(m+n+1)/r \cdot \|G\|_F^2` for every ``r``.
    """
    return (m * (n * r + 2) + 2 * (n + r + 1)) / r * sq_norm


def lge_persistent_second_moment(n, r, sq_norm=1):
    r"""Second moment of the conditional mean :math:`\mathbb E[\hat g\mid V] = GVV^\top/r`.

    :math:`\mathbb E\|GVV^\top\|^2/r^2 = \frac{n+r+1}{r}\|G\|^2`: the part of LGE's second moment
    that stays fixed while ``V`` does (ν steps of lazy sampling).
    """
    return (n + r + 1) / r * sq_norm


def lge_fresh_second_moment(m, n, r, sq_norm=1):
    r""":math:`\mathbb E\|\hat g - \mathbb E[\hat g\mid V]\|^2 = \frac{mnr+2m+n+r+1}{r}\|G\|^2`.

    The part of LGE's second moment that a new ``U`` redraws every step; with
    :func:`lge_persistent_second_moment` it sums to :func:`lge_second_moment`.
    """
    return (m * n * r + 2 * m + n + r + 1) / r * sq_norm


def query_averaged_variance(second_moment, q, sq_norm=1):
    r"""Variance of the mean of ``q`` i.i.d. unbiased estimates: :math:`(\mathbb E\|\hat g\|^2-\|G\|^2)/q`.

    A step with ``q`` queries costs :math:`2q` forward passes, so the variance times the passes
    spent, :math:`2(\mathbb E\|\hat g\|^2-\|G\|^2)`, does not depend on ``q``.
    """
    return (second_moment - sq_norm) / q


def gaussian_norm_moment(d, k):
    r""":math:`\mathbb E\|z\|^{2k} = d(d+2)\cdots(d+2k-2)` for :math:`z\sim\mathcal N(0, I_d)`.

    Bounds the moments of a low-rank perturbation: :math:`\|UV^\top\|_F^2\le\|U\|_F^2\|V\|_F^2`,
    so :math:`\mathbb E\|UV^\top\|^{2k}\le` ``gaussian_norm_moment(m*r, k) * gaussian_norm_moment(n*r, k)``
    (equality at r = 1).
    """
    out = 1
    for i in range(k):
        out *= d + 2 * i
    return out


def subspace_energy_fraction(n, r):
    r"""Expected share of :math:`\|G\|_F^2` kept by projecting onto a random r-dim subspace.

    With :math:`P_V` the orthogonal projector onto :math:`\operatorname{span}(V)`, V Gaussian
    (so the span is uniformly distributed), :math:`\mathbb E\|G P_V\|_F^2 = (r/n)\|G\|_F^2`.
    """
    return r / n


def refresh_alignment(n, r):
    r"""LOZO-M's momentum after a refresh, along the momentum before it.

    With :math:`M = NV_{old}^\top` and :math:`M' = MV_{new}V_{new}^\top/n` (Gaussian
    :math:`V_{new}`): :math:`\mathbb E\langle M', M\rangle = \frac rn\|M\|^2`, and
    :math:`\mathbb E M' = \frac rn M`.
    """
    return r / n


def refresh_energy(n, r):
    r""":math:`\mathbb E\|M'\|^2/\|M\|^2 = r(n+r+1)/n^2` for LOZO-M's carry-over (see :func:`refresh_alignment`).

    Of it, :math:`(r/n)^2` is the mean :math:`\frac rn M`; the rest, :math:`r(n+1)/n^2`, points
    in a random direction of the new subspace.
    """
    return r * (n + r + 1) / n**2


def rge_entry_kernel(m: int, n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""The matrix :math:`K` with :math:`\mathbb E[\hat g\odot\hat g] = K\,\mathrm{vec}(G\odot G)` for RGE.

    :math:`\mathbb E[\hat g_a^2] = \|G\|^2 + 2G_a^2`, so :math:`K = \mathbf 1\mathbf 1^\top + 2I`
    (``vec`` is row-major, index :math:`a n + b` for entry :math:`(a, b)`).
    """
    d = m * n
    return torch.ones(d, d, dtype=dtype) + 2 * torch.eye(d, dtype=dtype)


def lge_entry_kernel(m: int, n: int, r: int, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""The matrix :math:`K` with :math:`\mathbb E[\hat g\odot\hat g] = K\,\mathrm{vec}(G\odot G)` for LGE.

    .. math::
       \mathbb E[\hat g_{ab}^2] = \|G\|^2 + \tfrac2r\Big(\sum_j G_{aj}^2 + \sum_i G_{ib}^2\Big)
       + \tfrac{2(r+1)}{r}\,G_{ab}^2 ,

    so :math:`K_{ab,ij} = 1 + \frac2r(\delta_{ai} + \delta_{bj}) + \frac{2(r+1)}r\delta_{ai}\delta_{bj}`:
    entries in the same row or column as :math:`(a,b)` count extra. The sum over all
    entries is :func:`lge_second_moment`.
    """
    ones_m, ones_n = torch.ones(m, m, dtype=dtype), torch.ones(n, n, dtype=dtype)
    eye_m, eye_n = torch.eye(m, dtype=dtype), torch.eye(n, dtype=dtype)
    same_row = torch.kron(eye_m, ones_n)
    same_column = torch.kron(ones_m, eye_n)
    return (
        torch.ones(m * n, m * n, dtype=dtype)
        + 2 / r * (same_row + same_column)
        + 2 * (r + 1) / r * torch.eye(m * n, dtype=dtype)
    )


def third_derivative_contractions(T: Tensor) -> tuple[Tensor, Tensor]:
    r"""The two contractions of :math:`T = D^3 f(W)` (shape ``(m, n, m, n, m, n)``) the biases need.

    Returns :math:`\nabla\Delta f`, :math:`(\nabla\Delta f)_{pq} = \sum_{ab}T_{ab,ab,pq}`, and the
    mixed contraction :math:`K_{pq} = \sum_{ab} T_{ab,aq,pb}` (both ``m x n``).
    """
    if T.ndim != 6 or T.shape[:2] != T.shape[2:4] or T.shape[:2] != T.shape[4:]:
        raise ValueError(f"T must have shape (m, n, m, n, m, n), got {tuple(T.shape)}")
    return torch.einsum("ababpq->pq", T), torch.einsum("abaqpb->pq", T)


def rge_bias(grad_laplacian, eps):
    r""":math:`\mathbb E\hat g_{RGE} - G = \frac{\varepsilon^2}{2}\nabla(\Delta f) + O(\varepsilon^4)`."""
    return eps**2 / 2 * grad_laplacian


def lge_bias(grad_laplacian, mixed, eps, r):
    r""":math:`\mathbb E\hat g_{LGE} - G = \frac{\varepsilon^2}{2}\big(r\,\nabla(\Delta f) + 2K\big) + O(\varepsilon^4)`.

    ``mixed`` is :math:`K` of :func:`third_derivative_contractions`. Each entry of :math:`UV^\top`
    has variance :math:`r`, hence the factor :math:`r` on the RGE-like term; :math:`2K` comes from
    the correlations between entries sharing a row or column of the low-rank perturbation.
    """
    return eps**2 / 2 * (r * grad_laplacian + 2 * mixed)
