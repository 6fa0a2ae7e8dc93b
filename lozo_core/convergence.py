r"""Convergence constants of two-point ZO-SGD, and problems on which every constant is known.

Derivation in ``theory/03_convergence.md``. For an L-smooth :math:`f` and an unbiased estimator
with :math:`\mathbb E[\hat g^\top H\hat g] \le C\,\|\nabla f\|^2` (``C`` the *descent
constant*), one step :math:`\theta\leftarrow\theta-\eta\hat g` gives, for quadratics exactly
and otherwise up to :math:`O(\varepsilon^2)`,

.. math::
   \mathbb E f(\theta_{t+1}) \le f(\theta_t) - \eta\,(1 - \tfrac{\eta C}{2})\,\|\nabla f(\theta_t)\|^2 ,

so with :math:`\eta = 1/C`: :math:`\frac1T\sum_{t<T}\mathbb E\|\nabla f(\theta_t)\|^2 \le
2C\,(f(\theta_0)-f^*)/T`. Constants:

* RGE (MeZO) on a quadratic with Hessian H: :math:`C = \operatorname{tr}H + 2\lambda_{max}`
  (exact: :math:`\mathbb E[(g^\top z)^2 z^\top Hz] = \|g\|^2\operatorname{tr}H + 2g^\top Hg`);
  for an L-smooth f in d dimensions, :math:`C = L(d+2)`.
* LGE (LOZO, ν = 1) on an m×n matrix: :math:`C = L\,\frac{m(nr+2)+2(n+r+1)}{r}`
  (from :math:`H \preceq LI` and the second moment of :mod:`lozo_core.moments`).

The expected loss diverges for :math:`\eta > 2/C` when the Hessian is isotropic; the threshold
:math:`2/C` is where the expected one-step change turns positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lozo_core.moments import lge_second_moment


def rge_descent_constant(hessian_trace: float, L: float) -> float:
    """:math:`C = \\operatorname{tr}H + 2L` for RGE on a quadratic (``L`` = largest eigenvalue)."""
    return hessian_trace + 2 * L


def lge_descent_constant(m: int, n: int, r: int, L: float) -> float:
    """:math:`C = L\\,(m(nr+2)+2(n+r+1))/r` for LGE (LOZO with ν = 1) on an m×n matrix."""
    return L * lge_second_moment(m, n, r)


def nonconvex_bound(gap: float, C: float, T: int) -> float:
    """Bound on :math:`\\frac1T\\sum_{t<T}\\mathbb E\\|\\nabla f\\|^2` at :math:`\\eta = 1/C`."""
    return 2 * C * gap / T


def divergence_threshold(C: float) -> float:
    """Step size beyond which the expected one-step change of f is positive: :math:`2/C`."""
    return 2 / C


class MatrixProblem(nn.Module):
    """A problem over one weight matrix ``weight`` (m×n) with known smoothness and optimum."""

    L: float
    hessian_trace: float
    f_star: float

    def loss(self) -> Tensor:
        raise NotImplementedError

    def grad_sq_norm(self) -> float:
        with torch.enable_grad():
            w = self.weight
            (g,) = torch.autograd.grad(self.loss(), w)
        return float(g.pow(2).sum())


class DiagonalQuadratic(MatrixProblem):
    r""":math:`f(W) = \tfrac12\sum_{ij} h_{ij}(W_{ij}-W^*_{ij})^2`, Hessian eigenvalues ``h``.

    ``spectrum`` picks h: ``"flat"`` (all = L), ``"linear"`` (from L/κ to L), ``"power"``
    (:math:`L\,k^{-1}`, a heavy head like real Hessians).
    """

    def __init__(
        self,
        m: int,
        n: int,
        *,
        L: float = 1.0,
        spectrum: str = "flat",
        kappa: float = 100.0,
        seed: int = 0,
    ):
        super().__init__()
        d = m * n
        if spectrum == "flat":
            h = torch.full((d,), L)
        elif spectrum == "linear":
            h = torch.linspace(L / kappa, L, d)
        elif spectrum == "power":
            h = L / torch.arange(1, d + 1, dtype=torch.float64)
        else:
            raise ValueError(f"spectrum must be flat, linear or power, got {spectrum!r}")
        g = torch.Generator().manual_seed(seed)
        h = h[torch.randperm(d, generator=g)].view(m, n).double()
        self.register_buffer("h", h)
        self.register_buffer("target", torch.randn(m, n, generator=g, dtype=torch.float64))
        self.weight = nn.Parameter(torch.zeros(m, n, dtype=torch.float64))
        self.L, self.hessian_trace, self.f_star = float(h.max()), float(h.sum()), 0.0

    def loss(self) -> Tensor:
        return 0.5 * (self.h * (self.weight - self.target) ** 2).sum()


class LeastSquares(MatrixProblem):
    r""":math:`f(W) = \frac{1}{2N}\|XW^\top - Y\|_F^2`; :math:`L = \lambda_{max}(X^\top X)/N`.

    With ``rank`` given, :math:`Y = XW_*^\top` for a rank-``rank`` :math:`W_*` (so :math:`f^*=0`).
    The Hessian acts on each row of W as :math:`X^\top X/N`: trace :math:`m\,\operatorname{tr}(X^\top X)/N`.
    """

    def __init__(self, m: int, n: int, *, samples: int = 256, rank: int = 2, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(samples, n, generator=g, dtype=torch.float64)
        W_star = (
            torch.randn(m, rank, generator=g, dtype=torch.float64)
            @ torch.randn(rank, n, generator=g, dtype=torch.float64)
            / math.sqrt(rank * n)
        )
        self.register_buffer("X", X)
        self.register_buffer("Y", X @ W_star.T)
        self.weight = nn.Parameter(torch.zeros(m, n, dtype=torch.float64))
        gram = X.T @ X / samples
        self.L = float(torch.linalg.eigvalsh(gram).max())
        self.hessian_trace = float(m * torch.trace(gram))
        self.f_star = 0.0

    def loss(self) -> Tensor:
        return 0.5 * ((self.X @ self.weight.T - self.Y) ** 2).sum() / self.X.shape[0]


class LogisticRegression(MatrixProblem):
    r"""Multinomial logistic regression on fixed features: :math:`W\in\mathbb R^{c\times n}`.

    :math:`f(W) = \frac1N\sum_i \mathrm{CE}(Wx_i, y_i) + \frac\lambda2\|W\|^2`. The softmax
    Hessian is :math:`\preceq \tfrac12 I`, so :math:`L \le \lambda_{max}(X^\top X)/(2N) + \lambda` and
    :math:`\operatorname{tr}H \le c\,\operatorname{tr}(X^\top X)/(2N) + \lambda cn` (upper bounds: the
    constants built from them are conservative). :math:`f^*` comes from L-BFGS.
    """

    def __init__(self, features: Tensor, labels: Tensor, *, classes: int = 2, l2: float = 1e-3):
        super().__init__()
        X = features.double()
        self.register_buffer("X", X)
        self.register_buffer("y", labels.long())
        self.l2 = l2
        self.weight = nn.Parameter(torch.zeros(classes, X.shape[1], dtype=torch.float64))
        gram = X.T @ X / X.shape[0]
        self.L = float(torch.linalg.eigvalsh(gram).max()) / 2 + l2
        self.hessian_trace = classes * float(torch.trace(gram)) / 2 + l2 * classes * X.shape[1]
        self.f_star = self._minimum()

    def loss(self) -> Tensor:
        return (
            nn.functional.cross_entropy(self.X @ self.weight.T, self.y)
            + 0.5 * self.l2 * self.weight.pow(2).sum()
        )

    def _minimum(self) -> float:
        w = torch.zeros_like(self.weight, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w],
            lr=1,
            max_iter=500,
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            value = (
                nn.functional.cross_entropy(self.X @ w.T, self.y) + 0.5 * self.l2 * w.pow(2).sum()
            )
            value.backward()
            return value

        with torch.enable_grad():
            opt.step(closure)
            return float(closure())


@dataclass
class Trajectory:
    """Per-step loss and squared gradient norm of one run."""

    loss: list[float]
    grad_sq: list[float]

    @property
    def running_mean_grad_sq(self) -> list[float]:
        total, out = 0.0, []
        for t, value in enumerate(self.grad_sq, start=1):
            total += value
            out.append(total / t)
        return out


def run(
    problem: MatrixProblem, optimizer: torch.optim.Optimizer, steps: int, diverged: float = 1e6
) -> Trajectory:
    """Run ``steps`` ZO steps, recording f and ‖∇f‖² before each; stop early once f > diverged·f(θ₀)."""
    traj = Trajectory([], [])
    with torch.no_grad():
        start = float(problem.loss())
    for _ in range(steps):
        with torch.no_grad():
            value = float(problem.loss())
        if not math.isfinite(value) or value > diverged * max(start, 1e-12):
            traj.loss.append(float("inf"))
            traj.grad_sq.append(float("inf"))
            break
        traj.loss.append(value)
        traj.grad_sq.append(problem.grad_sq_norm())
        try:
            optimizer.step(problem.loss)
        except FloatingPointError:
            traj.loss.append(float("inf"))
            traj.grad_sq.append(float("inf"))
            break
    return traj
