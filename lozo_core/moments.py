r"""Closed-form moments of the two-point estimators for a linear objective.

For :math:`f(W) = \langle G, W\rangle` the two-point difference is exact, so the estimators
reduce to :math:`\hat g_{RGE} = \langle G, z\rangle z` and
:math:`\hat g_{LGE} = \langle G, UV^\top\rangle\, UV^\top / r`. Derivations (Isserlis'
theorem and the Wishart moment :math:`\mathbb E[(VV^\top)^2] = r(n+r+1)I`) are in
``theory/01_estimator.md``; ``theory/estimator_moments.py`` checks every formula here
symbolically, and the tests check them by Monte Carlo.

The functions are plain arithmetic, so they accept numbers or sympy symbols alike.
"""

from __future__ import annotations


def rge_second_moment(d, sq_norm=1):
    r""":math:`\mathbb E\|\hat g_{RGE}\|^2 = (d+2)\|G\|^2` for ``d`` coordinates."""
    return (d + 2) * sq_norm


def lge_second_moment(m, n, r, sq_norm=1):
    r""":math:`\mathbb E\|\hat g_{LGE}\|^2 = \frac{m(nr+2) + 2(n+r+1)}{r}\|G\|_F^2`.

    At :math:`r=1` this is :math:`(m+2)(n+2)\|G\|_F^2`. It exceeds the RGE value
    :math:`(mn+2)\|G\|_F^2` by :math:`2(m+n+1)/r \cdot \|G\|_F^2` for every ``r``.
    """
    return (m * (n * r + 2) + 2 * (n + r + 1)) / r * sq_norm


def averaged_second_moment(single, q, sq_norm=1):
    r"""Second moment of the mean of ``q`` i.i.d. unbiased estimates.

    :math:`\mathbb E\|\bar g_q\|^2 = \|G\|^2 + (\mathbb E\|\hat g\|^2 - \|G\|^2)/q`.
    """
    return sq_norm + (single - sq_norm) / q


def subspace_energy_fraction(n, r):
    r"""Expected share of :math:`\|G\|_F^2` kept by projecting onto a random r-dim subspace.

    With :math:`P_V` the orthogonal projector onto :math:`\operatorname{span}(V)`, V Gaussian
    (so the span is uniformly distributed), :math:`\mathbb E\|G P_V\|_F^2 = (r/n)\|G\|_F^2`.
    """
    return r / n
