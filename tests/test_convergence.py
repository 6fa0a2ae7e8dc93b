"""Convergence claims against runs, the verdict type, and the exact diagonal-Hessian constants."""

import math

import numpy as np
import pytest
import torch

from lozo_core.convergence import (
    DiagonalQuadratic,
    LeastSquares,
    LogisticRegression,
    agrees,
    diagonal_descent_constant,
    expected_loss,
    lazy_gradient_sum,
    lge_descent_constant,
    mean_and_stderr,
    nonconvex_bound,
    rge_descent_constant,
    run,
    safe_step,
    smooth_bound,
    stability_threshold,
    verdict,
)
from lozo_core.estimators import lge, rge
from lozo_core.moments import (
    gaussian_norm_moment,
    lge_entry_kernel,
    lge_second_moment,
    rge_entry_kernel,
    rge_second_moment,
)
from lozo_core.optim import LOZO, MeZO

DT = torch.float64


def running_sums(problem, make_opt, steps, seeds):
    return np.array(
        [
            np.cumsum(run(p, make_opt(p, s), steps).grad_sq)
            for s in range(seeds)
            for p in [problem()]
        ]
    )


@pytest.mark.parametrize("spectrum", ["flat", "linear", "power"])
def test_rge_bound_holds_at_every_T(spectrum):
    """Mean over 12 seeds of Σ_{t<T} ||∇f||² stays below 2C(f0 - f*) at every T <= 200,
    up to 3 standard errors."""
    problem = lambda: DiagonalQuadratic(6, 5, spectrum=spectrum, seed=1)
    p = problem()
    C, T = rge_descent_constant(p.hessian_trace, p.L), 200
    gap = float(p.loss().detach()) - p.f_star
    sums = running_sums(problem, lambda q, s: MeZO(q, lr=1 / C, seed=s), T, 12)
    mean, se = mean_and_stderr(sums)
    steps = np.arange(1, T + 1)
    bound = np.array([nonconvex_bound(gap, C, t) for t in steps]) * steps
    assert verdict("rate", mean, bound, stderr=se).holds


@pytest.mark.parametrize("rank", [1, 3])
def test_lge_bound_holds_with_the_exact_diagonal_constant(rank):
    """At the larger step 1/C_exact (C_exact << the isotropic bound on a power spectrum) the
    ν = 1 bound with C_exact still holds."""
    problem = lambda: DiagonalQuadratic(6, 5, spectrum="power", seed=2)
    p = problem()
    C = diagonal_descent_constant(p.h, lge_entry_kernel(6, 5, rank))
    assert lge_descent_constant(6, 5, rank, p.L) > 2 * C
    gap, T = float(p.loss().detach()), 200
    sums = running_sums(
        problem,
        lambda q, s: LOZO(q, lr=1 / C, rank=rank, interval=1, engine="inplace", seed=s),
        T,
        12,
    )
    mean, se = mean_and_stderr(sums)
    assert verdict("rate", mean, np.full(T, 2 * C * gap), stderr=se).holds


def test_verdict_fails_when_the_claim_is_violated():
    """A bound three times too small, and a second moment claimed to be MeZO's, both fail."""
    problem = lambda: DiagonalQuadratic(6, 5, spectrum="flat", seed=1)
    p = problem()
    C = rge_descent_constant(p.hessian_trace, p.L)
    gap = float(p.loss().detach())
    sums = running_sums(problem, lambda q, s: MeZO(q, lr=1 / C, seed=s), 200, 8)
    mean, se = mean_and_stderr(sums)
    assert verdict("true bound", mean, np.full(200, 2 * C * gap), stderr=se).holds
    wrong = verdict("bound with C/3", mean, np.full(200, 2 * C / 3 * gap), stderr=se)
    assert (
        not wrong.holds
        and wrong.ratio > 2
        and str(wrong).startswith("VERDICT [bound with C/3]: fails")
    )

    G = torch.randn(2, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    gen = torch.Generator().manual_seed(1)
    f = lambda ps: (G * ps[0]).sum()
    W = torch.zeros(2, 2, dtype=DT)
    x = [
        float(lge(f, [W], eps=1e-3, rank=1, generator=gen)[0].pow(2).sum() / G.pow(2).sum())
        for _ in range(4000)
    ]
    mean, se = mean_and_stderr(x)
    assert agrees("LGE second moment", mean, lge_second_moment(2, 2, 1), se).holds
    claimed = agrees("LGE second moment is MeZO's", mean, 2 * 2 + 2, se)
    assert not claimed.holds and "fails" in str(claimed)


def test_verdict_rejects_bad_input_and_diverged_runs():
    assert not verdict("diverged", [1.0, math.inf], [2.0, 2.0]).holds
    with pytest.raises(ValueError, match="one shape"):
        verdict("x", [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="bound must be finite and >= 0"):
        verdict("x", 1.0, -1.0)
    assert verdict("exact zero", 0.0, 0.0).holds and not verdict("exact zero", 1e-9, 0.0).holds
    with pytest.raises(ValueError, match="stderr must be finite and > 0"):
        agrees("x", 1.0, 1.0, 0.0)


def exact_constant_against_monte_carlo(h, rank, draws, seed):
    """E[ĝᵀHĝ] at the gradient that attains C (a unit matrix at the arg max), by Monte Carlo."""
    m, n = h.shape
    kernel = lge_entry_kernel(m, n, rank)
    a, b = divmod(int((kernel @ h.reshape(-1)).argmax()), n)
    G = torch.zeros(m, n, dtype=DT)
    G[a, b] = 1.0
    f = lambda ps: (G * ps[0]).sum()
    W = torch.zeros(m, n, dtype=DT)
    gen = torch.Generator().manual_seed(seed)
    x = [
        float((h * lge(f, [W], eps=1e-3, rank=rank, generator=gen)[0].pow(2)).sum())
        for _ in range(draws)
    ]
    return diagonal_descent_constant(h, kernel), *mean_and_stderr(x)


@pytest.mark.parametrize(
    "h",
    [
        torch.tensor(
            [[4.0, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1, 3.0], [0.2, 0.2, 0.2]], dtype=DT
        ),
        torch.tensor(
            [[0.1, 0.1, 2.0], [0.1, 0.1, 2.0], [0.1, 0.1, 2.0], [1.0, 1.0, 2.0]], dtype=DT
        ),
    ],
    ids=["two-heavy-entries", "heavy-column"],
)
def test_diagonal_descent_constant_matches_monte_carlo(h):
    """C = max_ab [tr H + 2h_ab + (2/r)(R_a + C_b + h_ab)] agrees with a Monte Carlo estimate,
    and differs from both the isotropic bound and MeZO's tr H + 2 h_max by many error bars."""
    rank = 2
    C, mean, se = exact_constant_against_monte_carlo(h, rank, 30_000, seed=0)
    R, Cc = h.sum(1), h.sum(0)
    formula = max(
        float(h.sum() + 2 * h[a, b] + 2 / rank * (R[a] + Cc[b] + h[a, b]))
        for a in range(4)
        for b in range(3)
    )
    assert formula == pytest.approx(C, rel=1e-12)
    assert agrees("diagonal constant", mean, C, se).holds
    for other in (
        lge_descent_constant(4, 3, rank, float(h.max())),
        rge_descent_constant(float(h.sum()), float(h.max())),
    ):
        assert abs(other - mean) > 10 * se


@pytest.mark.parametrize("name", ["rge", "lge"])
def test_second_moment_map_predicts_one_step_expected_loss(name):
    """E f after one step from a fixed point, by Monte Carlo with the library estimators."""
    m, n, r = 4, 3, 2
    p = DiagonalQuadratic(m, n, spectrum="power", seed=4)
    kernel = rge_entry_kernel(m, n) if name == "rge" else lge_entry_kernel(m, n, r)
    lr = 0.9 * stability_threshold(p.h, kernel)
    e0 = p.weight.detach() - p.target
    predicted = expected_loss(p.h, e0, lr, kernel, 1)[1]
    gen = torch.Generator().manual_seed(5)
    f = lambda ps: 0.5 * (p.h * (ps[0] - p.target) ** 2).sum()
    W = p.weight.detach()
    estimate = (
        (lambda: rge(f, [W], eps=1e-3, generator=gen)[0])
        if name == "rge"
        else (lambda: lge(f, [W], eps=1e-3, rank=r, generator=gen)[0])
    )
    mean, se = mean_and_stderr([float(f([W - lr * estimate()])) for _ in range(20_000)])
    assert agrees("one step", mean, predicted, se).holds


def test_stability_threshold_is_two_over_C_only_for_isotropic_hessians():
    for kernel in (rge_entry_kernel(4, 3), lge_entry_kernel(4, 3, 2)):
        flat = torch.ones(4, 3, dtype=DT)
        assert stability_threshold(flat, kernel) == pytest.approx(
            safe_step(diagonal_descent_constant(flat, kernel)), rel=1e-8
        )
        power = DiagonalQuadratic(4, 3, spectrum="power", seed=0).h
        assert stability_threshold(power, kernel) > 1.05 * safe_step(
            diagonal_descent_constant(power, kernel)
        )


def test_lazy_prediction_reduces_to_the_closed_form_at_interval_one():
    m, n, r = 6, 8, 2
    S = lge_second_moment(m, n, r)
    eta = 1 / S
    predicted = lazy_gradient_sum(m, n, r, 1, eta, 50, draws=20_000)
    rho = 1 - 2 * eta + eta**2 * S
    exact = 2 * np.cumsum(rho ** np.arange(50))
    np.testing.assert_allclose(predicted, exact, rtol=2e-3)


def test_lazy_prediction_matches_lozo_runs_on_an_isotropic_quadratic():
    """Σ_{t<T} ||∇f||² / (f0 - f*) for LOZO with ν = 5 against the interval recursion."""
    m, n, r, nu, T = 6, 8, 2, 5, 150
    C = lge_descent_constant(m, n, r, 1.0)
    problem = lambda: DiagonalQuadratic(m, n, spectrum="flat", seed=0)
    gap = float(problem().loss().detach())
    sums = (
        running_sums(
            problem,
            lambda q, s: LOZO(q, lr=1 / C, rank=r, interval=nu, engine="inplace", seed=s),
            T,
            40,
        )
        / gap
    )
    mean, se = mean_and_stderr(sums[:, [49, 99, 149]])
    predicted = lazy_gradient_sum(m, n, r, nu, 1 / C, T)[[49, 99, 149]]
    assert agrees("lazy sum", mean, predicted, se).holds


def test_certified_subspace_sum_holds_for_a_long_interval():
    """Σ ||∇f V||²/r (1 - ηκ(V)/2) <= (f0 - f*)/η for lazy LOZO (ν = 100 > the run)."""
    problem = lambda: LeastSquares(8, 12, rank=2, seed=0)
    p = problem()
    C = lge_descent_constant(8, 12, 2, p.L)
    gap = float(p.loss().detach())
    sums = []
    for s in range(8):
        q = problem()
        traj = run(
            q,
            LOZO(q, lr=1 / C, rank=2, interval=100, engine="inplace", seed=s),
            150,
            watch_subspace=True,
        )
        sums.append(traj.certified_sum(1 / C))
    mean, se = mean_and_stderr(sums)
    assert verdict("certified", mean, np.full(len(mean), gap * C), stderr=se).holds
    with pytest.raises(ValueError, match="keeps no right factor"):
        run(p, MeZO(p, lr=1e-3), 2, watch_subspace=True)


def test_smooth_bound_holds_on_logistic_regression():
    """Non-quadratic f: MeZO at η = 1/(4LS) stays below the L-smooth bound with its ε terms."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 8, generator=g, dtype=DT)
    y = (X[:, 0] + 0.5 * torch.randn(64, generator=g, dtype=DT) > 0).long()
    p = LogisticRegression(X, y)
    state = {k: v.clone() for k, v in p.state_dict().items()}
    d, eps, T = 16, 1e-2, 150
    S = rge_second_moment(d)
    gap = float(p.loss().detach()) - p.f_star
    sums = []
    for s in range(8):
        p.load_state_dict(state)
        sums.append(np.cumsum(run(p, MeZO(p, lr=1 / (4 * p.L * S), eps=eps, seed=s), T).grad_sq))
    mean, se = mean_and_stderr(np.array(sums) / np.arange(1, T + 1))
    bound = [
        smooth_bound(gap, p.L, S, eps, gaussian_norm_moment(d, 2), gaussian_norm_moment(d, 3), 1, t)
        for t in range(1, T + 1)
    ]
    assert verdict("L-smooth bound", mean, bound, stderr=se).holds
