"""The convergence bound is never violated on a quadratic; the step-size threshold is right."""

import math

import numpy as np
import pytest

from lozo_core.convergence import (
    DiagonalQuadratic,
    divergence_threshold,
    lge_descent_constant,
    nonconvex_bound,
    rge_descent_constant,
    run,
)
from lozo_core.optim import LOZO, MeZO


@pytest.mark.parametrize("spectrum", ["flat", "linear", "power"])
def test_rge_bound_holds_at_every_T(spectrum):
    """Mean over 12 seeds of the running average of ||∇f||², minus 3 standard errors (the
    stated confidence margin), stays below 2C(f0 - f*)/T at every T <= 200."""
    problem = lambda: DiagonalQuadratic(6, 5, spectrum=spectrum, seed=1)
    p = problem()
    C, T = rge_descent_constant(p.hessian_trace, p.L), 200
    gap = float(p.loss().detach()) - p.f_star
    runs = np.array(
        [
            run(q, MeZO(q, lr=1 / C, seed=s), T).running_mean_grad_sq
            for s in range(12)
            for q in [problem()]
        ]
    )
    mean, se = runs.mean(0), runs.std(0, ddof=1) / math.sqrt(len(runs))
    bound = np.array([nonconvex_bound(gap, C, t) for t in range(1, T + 1)])
    assert np.all(mean - 3 * se <= bound)


def test_lge_bound_holds_for_interval_one():
    problem = lambda: DiagonalQuadratic(6, 5, seed=2)
    p = problem()
    C, T = lge_descent_constant(6, 5, 2, p.L), 200
    gap = float(p.loss().detach())
    runs = np.array(
        [
            run(
                q, LOZO(q, lr=1 / C, rank=2, interval=1, engine="inplace", seed=s), T
            ).running_mean_grad_sq
            for s in range(12)
            for q in [problem()]
        ]
    )
    mean, se = runs.mean(0), runs.std(0, ddof=1) / math.sqrt(len(runs))
    assert np.all(mean - 3 * se <= np.array([nonconvex_bound(gap, C, t) for t in range(1, T + 1)]))


@pytest.mark.parametrize("spectrum", ["flat", "power"])
def test_divergence_begins_within_a_factor_two_of_the_threshold(spectrum):
    p = DiagonalQuadratic(6, 5, spectrum=spectrum, seed=3)
    eta_star = divergence_threshold(rge_descent_constant(p.hessian_trace, p.L))

    def diverges(mult):
        votes = 0
        for s in range(5):
            q = DiagonalQuadratic(6, 5, spectrum=spectrum, seed=3)
            traj = run(q, MeZO(q, lr=mult * eta_star, seed=s), 400)
            votes += traj.loss[-1] > 10 * traj.loss[0]
        return votes >= 3

    grid = [0.5, 0.7, 1.0, 1.4, 2.0, 2.8]
    onset = next((m for m in grid if diverges(m)), None)
    assert onset is not None and 0.5 < onset <= 2.0, onset
