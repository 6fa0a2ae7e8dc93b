r"""Convergence of two-point ZO-SGD: verdicts, descent constants, and problems with known constants.

Derivations in ``theory/03_convergence.md``. For a **quadratic** :math:`f` with Hessian
:math:`H` and an estimator with :math:`\mathbb E\hat g = \nabla f` and
:math:`\mathbb E[\hat g^\top H\hat g] \le C\,\|\nabla f\|^2` (``C`` the *descent constant*), one
step :math:`\theta\leftarrow\theta-\eta\hat g` gives exactly

.. math::
   \mathbb E f(\theta_{t+1}) \le f(\theta_t) - \eta\,(1 - \tfrac{\eta C}{2})\,\|\nabla f(\theta_t)\|^2 ,

so with :math:`\eta = 1/C`: :math:`\frac1T\sum_{t<T}\mathbb E\|\nabla f(\theta_t)\|^2 \le
2C\,(f(\theta_0)-f^*)/T`. For a non-quadratic L-smooth f the estimator is biased and the bound
weakens (:func:`smooth_bound`). Constants:

* RGE (MeZO), any quadratic: :math:`C = \operatorname{tr}H + 2\lambda_{max}`.
* LGE (LOZO, ν = 1), :math:`H\preceq LI`: :math:`C = L\,\frac{m(nr+2)+2(n+r+1)}{r}`.
* Either, diagonal :math:`H` (curvature :math:`h_{ab}` per entry): the exact
  :math:`C = \max(K\,\mathrm{vec}\,h)` with the entry kernels of :mod:`lozo_core.moments`; for LGE
  :math:`C = \max_{ab}[\operatorname{tr}H + 2h_{ab} + \frac2r(R_a + C_b + h_{ab})]`.

:math:`2/C` is the largest step the descent inequality certifies (:func:`safe_step`); where the
expected loss actually starts to grow is :func:`stability_threshold`, equal to :math:`2/C` only
for isotropic :math:`H`.

Every claim a notebook checks ends in a :class:`Verdict`: :func:`verdict` for bounds (fails when
the measurement exceeds the bound), :func:`agrees` for equalities checked by Monte Carlo
(fails when they differ by more than ``z`` standard errors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from lozo_core.moments import lge_second_moment


@dataclass(frozen=True)
class Verdict:
    """Whether a measured quantity is consistent with a claim, and why."""

    claim: str
    holds: bool
    measured: float
    predicted: float
    ratio: float
    reason: str

    def __str__(self) -> str:
        return f"VERDICT [{self.claim}]: {'holds' if self.holds else 'fails'} ({self.reason})"


def _as_array(name: str, value) -> np.ndarray:
    array = np.atleast_1d(np.asarray(value, dtype=float))
    if array.size == 0:
        raise ValueError(f"{name} must hold at least one number, got an empty array")
    return array


def verdict(
    claim: str, measured, bound, *, stderr=0.0, z: float = 3.0, rtol: float = 0.0
) -> Verdict:
    r"""A bound claim: holds iff :math:`\text{measured} - z\,\text{stderr} \le \text{bound}\,(1+\text{rtol})` everywhere.

    ``measured``, ``bound`` (>= 0) and ``stderr`` are numbers or arrays of one shape (e.g. one
    entry per T). A non-finite measurement (a diverged run) fails. ``ratio`` is the largest
    measured/bound; ``measured`` and ``predicted`` are reported where the margin is smallest.
    """
    m, b = _as_array("measured", measured), _as_array("bound", bound)
    se = np.broadcast_to(_as_array("stderr", stderr), m.shape)
    if m.shape != b.shape:
        raise ValueError(f"measured and bound must have one shape, got {m.shape} and {b.shape}")
    if np.any(b < 0) or not np.all(np.isfinite(b)):
        raise ValueError(f"bound must be finite and >= 0, got {b[(b < 0) | ~np.isfinite(b)][0]!r}")
    if z < 0 or rtol < 0 or np.any(se < 0):
        raise ValueError(f"z, rtol and stderr must be >= 0, got z={z}, rtol={rtol}")
    if not np.all(np.isfinite(m)):
        i = int(np.argmin(np.isfinite(m)))
        return Verdict(claim, False, float(m[i]), float(b[i]), math.inf, "the run diverged")
    excess = m - z * se - b * (1 + rtol)
    i = int(np.argmax(excess))
    holds = bool(excess[i] <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(b > 0, m / np.where(b > 0, b, 1), np.where(m > 0, np.inf, 0.0))
    ratio = float(np.max(ratios))
    where = f" at point {i + 1} of {m.size}" if m.size > 1 else ""
    margin = f" - {z:g} SE ({se[i]:.2g})" if np.any(se > 0) else ""
    limit = f"bound × {1 + rtol:.3g}" if rtol else "bound"
    reason = (
        f"measured{margin} = {m[i] - z * se[i]:.4g} {'<=' if holds else '>'} {limit} = "
        f"{b[i] * (1 + rtol):.4g}{where}; largest measured/bound {ratio:.3g}"
    )
    return Verdict(claim, holds, float(m[i]), float(b[i]), ratio, reason)


def agrees(claim: str, measured, predicted, stderr, *, z: float = 3.0) -> Verdict:
    r"""An equality claim: holds iff :math:`|\text{measured} - \text{predicted}| \le z\,\text{stderr}` everywhere.

    For Monte Carlo checks of exact expectations; ``stderr`` is the measurement's standard error.
    Arrays are compared entry by entry and the worst entry is reported.
    """
    m, p = _as_array("measured", measured), _as_array("predicted", predicted)
    se = np.broadcast_to(_as_array("stderr", stderr), m.shape)
    if m.shape != p.shape:
        raise ValueError(f"measured and predicted must have one shape, got {m.shape} and {p.shape}")
    if np.any(se <= 0) or not np.all(np.isfinite(se)):
        raise ValueError(f"stderr must be finite and > 0, got {se.min()!r}")
    if z <= 0:
        raise ValueError(f"z must be > 0, got {z!r}")
    if not np.all(np.isfinite(m)):
        i = int(np.argmin(np.isfinite(m)))
        return Verdict(claim, False, float(m[i]), float(p[i]), math.inf, "the measurement diverged")
    deviation = np.abs(m - p) / se
    i = int(np.argmax(deviation))
    holds = bool(deviation[i] <= z)
    ratio = float(m[i] / p[i]) if p[i] != 0 else math.nan
    where = f"; worst of {m.size}" if m.size > 1 else ""
    reason = (
        f"measured {m[i]:.4g} ± {se[i]:.2g} vs predicted {p[i]:.4g}: "
        f"{deviation[i]:.1f} SE {'<=' if holds else '>'} {z:g}{where}"
    )
    return Verdict(claim, holds, float(m[i]), float(p[i]), ratio, reason)


def mean_and_stderr(samples, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and its standard error along ``axis``."""
    x = np.asarray(samples, dtype=float)
    if x.shape[axis] < 2:
        raise ValueError(f"need at least 2 samples for a standard error, got {x.shape[axis]}")
    return x.mean(axis), x.std(axis, ddof=1) / math.sqrt(x.shape[axis])


def rge_descent_constant(hessian_trace: float, L: float) -> float:
    """:math:`C = \\operatorname{tr}H + 2L` for RGE on a quadratic (``L`` = largest eigenvalue)."""
    return hessian_trace + 2 * L


def lge_descent_constant(m: int, n: int, r: int, L: float) -> float:
    """:math:`C = L\\,(m(nr+2)+2(n+r+1))/r` for LGE (ν = 1) on an m×n matrix with :math:`H\\preceq LI`."""
    return L * lge_second_moment(m, n, r)


def diagonal_descent_constant(h: Tensor, kernel: Tensor) -> float:
    r"""Exact :math:`C = \max_G \mathbb E[\hat g^\top H\hat g]/\|G\|^2` for a diagonal Hessian ``h`` (m×n).

    With :math:`\mathbb E[\hat g\odot\hat g] = K\,\mathrm{vec}(G\odot G)` (``kernel``, from
    :func:`~lozo_core.moments.rge_entry_kernel` or :func:`~lozo_core.moments.lge_entry_kernel`),
    :math:`\mathbb E[\hat g^\top H\hat g] = \sum_{ij}(K\,\mathrm{vec}\,h)_{ij}\,G_{ij}^2`, so the
    constant is the largest entry of :math:`K\,\mathrm{vec}\,h` (K is symmetric), attained by a
    gradient concentrated on that entry.
    """
    return float((kernel @ h.reshape(-1).to(kernel.dtype)).max())


def query_averaged_constant(C: float, L: float, q: int) -> float:
    r"""Descent constant of the mean of ``q`` queries: :math:`L + (C - L)/q`.

    :math:`\mathbb E[\bar g_q^\top H\bar g_q] = G^\top HG + (\mathbb E[\hat g^\top H\hat g]-G^\top HG)/q
    \le (L + (C-L)/q)\,\|G\|^2`.
    """
    return L + (C - L) / q


def nonconvex_bound(gap: float, C: float, T: int) -> float:
    """Bound on :math:`\\frac1T\\sum_{t<T}\\mathbb E\\|\\nabla f\\|^2` at :math:`\\eta = 1/C` (quadratic f)."""
    return 2 * C * gap / T


def safe_step(C: float) -> float:
    """:math:`2/C`: the largest step for which the expected one-step change is <= 0 for every gradient."""
    return 2 / C


def smooth_bound(
    gap: float, L: float, second_moment: float, eps: float, Z4: float, Z6: float, r: int, T: int
):
    r"""Bound for an L-smooth (not necessarily quadratic) f at :math:`\eta = 1/(4LS)`.

    With :math:`S = \mathbb E[\langle G,Z\rangle^2\|Z\|^2]/(r^2\|G\|^2)` (``second_moment``) and
    ``Z4``, ``Z6`` upper bounds on :math:`\mathbb E\|Z\|^4`, :math:`\mathbb E\|Z\|^6`:

    .. math::
       \frac1T\sum_{t<T}\mathbb E\|\nabla f_t\|^2 \le \frac{16LS\,(f_0-f^*)}{T}
       + L^2\varepsilon^2\Big(\frac{\mathbb E\|Z\|^4}{2r} + \frac{\mathbb E\|Z\|^6}{4Sr^2}\Big).

    The second term is the :math:`\varepsilon`-bias and its variance (theory/03).
    """
    return 16 * L * second_moment * gap / T + L**2 * eps**2 * (
        Z4 / (2 * r) + Z6 / (4 * second_moment * r**2)
    )


def second_moment_map(h: Tensor, lr: float, kernel: Tensor) -> Tensor:
    r"""The matrix A with :math:`\mathbb E[e_{t+1}^{\odot2}] = A\,\mathbb E[e_t^{\odot2}]` on a diagonal quadratic.

    :math:`f = \frac12\sum h_{ab}e_{ab}^2`, :math:`e = W - W^*`, :math:`G = h\odot e`:
    :math:`\mathbb E[e'^2_{ab}] = (1-2\eta h_{ab})e_{ab}^2 + \eta^2 (K\,\mathrm{vec}(h^2\odot e^2))_{ab}`,
    so :math:`A = \mathrm{diag}(1-2\eta h) + \eta^2 K\,\mathrm{diag}(h^2)` (entries >= 0).
    """
    hv = h.reshape(-1).to(kernel.dtype)
    return torch.diag(1 - 2 * lr * hv) + lr**2 * kernel * hv.pow(2)


def expected_loss(h: Tensor, e0: Tensor, lr: float, kernel: Tensor, steps: int) -> np.ndarray:
    """Exact :math:`\\mathbb E f(\\theta_t)` for t = 0..steps on the diagonal quadratic (ν = 1)."""
    A = second_moment_map(h, lr, kernel)
    s = e0.reshape(-1).to(kernel.dtype).pow(2)
    hv = h.reshape(-1).to(kernel.dtype)
    out = [0.5 * float(hv @ s)]
    for _ in range(steps):
        s = A @ s
        out.append(0.5 * float(hv @ s))
    return np.array(out)


def _spectral_radius(A: Tensor) -> float:
    return float(torch.linalg.eigvals(A).abs().max())


def stability_threshold(h: Tensor, kernel: Tensor, tol: float = 1e-10) -> float:
    r"""The step :math:`\eta_{div}` beyond which the expected loss grows: :math:`\rho(A(\eta)) = 1`.

    :math:`A(\eta)` from :func:`second_moment_map` is non-negative, so the expected loss decays
    geometrically iff its spectral radius is < 1. Found by bisection from :math:`2/C` (where
    :math:`\rho \le 1`, by the descent inequality).
    """
    lo = safe_step(diagonal_descent_constant(h, kernel))
    hi = 2 * lo
    while _spectral_radius(second_moment_map(h, hi, kernel)) <= 1:
        lo, hi = hi, 2 * hi
    while hi - lo > tol * hi:
        mid = (lo + hi) / 2
        if _spectral_radius(second_moment_map(h, mid, kernel)) <= 1:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def subspace_curvature(V: Tensor, L: float, m: int) -> float:
    r""":math:`\kappa(V) = L\,(m\|V\|_F^2 + 2\|V\|_2^2)/r`: bounds :math:`\mathbb E[\hat g^\top H\hat g\mid V]` by :math:`\kappa\,\|GV\|^2/r`.

    For :math:`H\preceq LI`, :math:`\mathbb E_U\|\hat g\|^2 = (m\|GV\|^2\|V\|_F^2 + 2\operatorname{tr}(V^\top G^\top GVV^\top V))/r^2`
    (Isserlis over U), and the trace is at most :math:`\|V\|_2^2\|GV\|^2`.
    """
    r = V.shape[1]
    return L * (m * float(V.pow(2).sum()) + 2 * float(torch.linalg.matrix_norm(V, 2)) ** 2) / r


def lazy_gradient_sum(
    m: int,
    n: int,
    r: int,
    interval: int,
    lr_L: float,
    steps: int,
    *,
    draws: int = 50_000,
    seed: int = 0,
) -> np.ndarray:
    r"""Predicted :math:`\sum_{t<T}\mathbb E\|\nabla f_t\|^2/(L\,(f_0-f^*))` for T = 1..steps, lazy LOZO on an isotropic quadratic.

    :math:`f = \frac L2\|W-W^*\|^2`, step ``lr_L`` :math:`=\eta L`. Within an interval, with
    :math:`M = V^\top V` (eigenvalues :math:`\mu_k`), the error splits into a frozen part outside
    span(V), expected :math:`(1-r/n)S`, and coordinates :math:`Y = EV` whose second moments
    :math:`\sigma_k` along M's eigenvectors (summed over rows, starting at :math:`S\mu_k/n`) obey
    :math:`\sigma_k' = \sigma_k(1-2a\mu_k+2a^2\mu_k^2) + ma^2\mu_k^2\sum_l\sigma_l`, :math:`a=\eta L/r`;
    the in-span error is :math:`\sum_k\sigma_k/\mu_k`. Averaging over M (``draws`` Monte Carlo
    samples of the Wishart matrix) gives the mean error per step of one interval and the factor
    ρ by which an interval shrinks it; intervals chain geometrically (theory/02).
    """
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(draws, n, r, generator=g, dtype=torch.float64)
    mu = torch.linalg.eigvalsh(V.transpose(1, 2) @ V)
    a = lr_L / r
    sigma = mu / n
    within = []
    for _ in range(interval + 1):
        within.append(float((1 - r / n + (sigma / mu).sum(1)).mean()))
        total = sigma.sum(1, keepdim=True)
        sigma = sigma * (1 - 2 * a * mu + 2 * (a * mu) ** 2) + m * (a * mu) ** 2 * total
    rho = within[interval]
    per_step = np.array(
        [within[t % interval] * rho ** (t // interval) for t in range(steps)], dtype=float
    )
    return 2 * np.cumsum(per_step)


class MatrixProblem(nn.Module):
    """A problem over one weight matrix ``weight`` (m×n) with known smoothness and optimum."""

    L: float
    hessian_trace: float
    f_star: float

    def loss(self) -> Tensor:
        raise NotImplementedError

    def gradient(self) -> Tensor:
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.loss(), self.weight)
        return g


class DiagonalQuadratic(MatrixProblem):
    r""":math:`f(W) = \tfrac12\sum_{ij} h_{ij}(W_{ij}-W^*_{ij})^2`, Hessian eigenvalues ``h``.

    ``spectrum`` picks h: ``"flat"`` (all = L, isotropic), ``"linear"`` (from L/κ to L),
    ``"power"`` (:math:`L\,k^{-1}`, a heavy head like real Hessians), in a random arrangement.
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

    def gradient(self) -> Tensor:
        return (self.h * (self.weight - self.target)).detach()


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

    def gradient(self) -> Tensor:
        return ((self.X @ self.weight.T - self.Y).T @ self.X / self.X.shape[0]).detach()


class LogisticRegression(MatrixProblem):
    r"""Multinomial logistic regression on fixed features: :math:`W\in\mathbb R^{c\times n}`.

    :math:`f(W) = \frac1N\sum_i \mathrm{CE}(Wx_i, y_i) + \frac\lambda2\|W\|^2`: smooth, not
    quadratic. The softmax Hessian is :math:`\preceq \tfrac12 I`, so
    :math:`L \le \lambda_{max}(X^\top X)/(2N) + \lambda` (an upper bound: constants built from it
    are conservative). :math:`f^*` comes from L-BFGS.
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
            return float(closure().detach())


@dataclass
class Trajectory:
    """Per-step loss and squared gradient norm of one run; for LOZO also the subspace terms.

    ``subspace_sq[t]`` is :math:`\\|\\nabla f_t V_t\\|^2/r` (the expected first-order descent of step
    t given its V) and ``curvature[t]`` is :func:`subspace_curvature` of :math:`V_t`.
    """

    loss: list[float]
    grad_sq: list[float]
    subspace_sq: list[float] = field(default_factory=list)
    curvature: list[float] = field(default_factory=list)

    def certified_sum(self, lr: float) -> np.ndarray:
        r""":math:`\sum_{s\le t} \|\nabla f_sV_s\|^2/r\,(1-\eta\kappa_s/2)`, which lazy LOZO keeps below :math:`(f_0-f^*)/\eta`."""
        d, k = np.array(self.subspace_sq), np.array(self.curvature)
        return np.cumsum(d * (1 - lr * k / 2))


def _right_factor(optimizer: torch.optim.Optimizer, p: Tensor) -> Tensor:
    V = optimizer.state[p].get("V") if p in optimizer.state else None
    if V is None:
        raise ValueError(
            f"{type(optimizer).__name__} keeps no right factor 'V' in its state; "
            "watch_subspace needs a low-rank (LOZO) optimizer"
        )
    return V


def run(
    problem: MatrixProblem,
    optimizer: torch.optim.Optimizer,
    steps: int,
    diverged: float = 1e6,
    *,
    watch_subspace: bool = False,
) -> Trajectory:
    """Run ``steps`` ZO steps, recording f and ‖∇f‖² before each; stop early once f > diverged·f(θ₀).

    With ``watch_subspace`` (LOZO only) also record ‖∇f V‖²/r and κ(V) of the V each step used.
    """
    traj = Trajectory([], [])
    previous_V, kappa = None, math.nan
    with torch.no_grad():
        start = float(problem.loss())
    for _ in range(steps):
        with torch.no_grad():
            value = float(problem.loss())
        if not math.isfinite(value) or value > diverged * max(start, 1e-12):
            traj.loss.append(float("inf"))
            traj.grad_sq.append(float("inf"))
            break
        G = problem.gradient()
        traj.loss.append(value)
        traj.grad_sq.append(float(G.pow(2).sum()))
        try:
            optimizer.step(problem.loss)
        except FloatingPointError:
            traj.loss.append(float("inf"))
            traj.grad_sq.append(float("inf"))
            break
        if watch_subspace:
            V = _right_factor(optimizer, problem.weight).to(G.dtype)
            if previous_V is None or not torch.equal(V, previous_V):
                previous_V, kappa = V.clone(), subspace_curvature(V, problem.L, G.shape[0])
            traj.subspace_sq.append(float((G @ V).pow(2).sum()) / V.shape[1])
            traj.curvature.append(kappa)
    return traj
