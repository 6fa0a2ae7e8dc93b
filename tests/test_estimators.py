"""The estimators against their closed forms, by Monte Carlo."""

import math

import pytest
import torch

from lozo_core.convergence import agrees, mean_and_stderr
from lozo_core.estimators import forward_gradient, lge, rge, sample_V
from lozo_core.moments import (
    lge_bias,
    lge_second_moment,
    refresh_alignment,
    refresh_energy,
    rge_bias,
    rge_second_moment,
    third_derivative_contractions,
)
from lozo_core.subspace import project_coordinates

DT = torch.float64


def linear_problem(m, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(m, n, generator=g, dtype=DT)
    return G, torch.zeros(m, n, dtype=DT), (lambda ps: (G * ps[0]).sum())


@pytest.mark.parametrize("rank", [1, 3])
def test_lge_mean_converges_at_monte_carlo_rate(rank):
    m, n, N = 5, 4, 4000
    G, W, f = linear_problem(m, n)
    gen = torch.Generator().manual_seed(1)
    mean = sum(lge(f, [W], eps=1e-3, rank=rank, generator=gen)[0] for _ in range(N)) / N
    rel_err = ((mean - G).norm() / G.norm()).item()
    expected = math.sqrt((lge_second_moment(m, n, rank) - 1) / N)
    assert rel_err < 2.0 * expected, (rel_err, expected)
    assert rel_err > 0.3 * expected, "error far below 1/sqrt(N): samples are not independent"


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_lge_second_moment_matches_closed_form(rank):
    m, n, N = 4, 3, 12000
    G, W, f = linear_problem(m, n, seed=rank)
    gen = torch.Generator().manual_seed(10 + rank)
    values = torch.tensor(
        [lge(f, [W], eps=1e-3, rank=rank, generator=gen)[0].pow(2).sum() for _ in range(N)]
    )
    values /= G.pow(2).sum()
    se = values.std() / math.sqrt(N)
    closed = lge_second_moment(m, n, rank)
    assert abs(values.mean() - closed) < 4 * se, (values.mean().item(), closed, se.item())


def test_rge_second_moment_and_q_averaging():
    m, n, N = 3, 3, 8000
    G, W, f = linear_problem(m, n)
    sq = G.pow(2).sum()
    for q in (1, 4):
        gen = torch.Generator().manual_seed(q)
        values = torch.tensor(
            [rge(f, [W], eps=1e-3, generator=gen, q=q)[0].pow(2).sum() / sq for _ in range(N)]
        )
        expected = 1 + (rge_second_moment(m * n) - 1) / q
        assert abs(values.mean() - expected) < 4 * values.std() / math.sqrt(N)


def test_lge_with_fixed_V_has_conditional_mean_G_V_Vt_over_r():
    m, n, r, N = 4, 5, 2, 6000
    G, W, f = linear_problem(m, n)
    V = sample_V([W], r, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(4)
    mean = sum(lge(f, [W], eps=1e-3, rank=r, generator=gen, V=V)[0] for _ in range(N)) / N
    target = G @ V[0] @ V[0].T / r
    assert ((mean - target).norm() / target.norm()).item() < 0.1
    assert ((mean - G).norm() / G.norm()).item() > 0.3, "conditional mean should not be G"


def smooth_problem(m=4, n=3):
    W0 = 0.7 * torch.randn(m, n, generator=torch.Generator().manual_seed(0), dtype=DT)
    f = lambda w: torch.log(torch.cosh(w)).sum() + 0.25 * w.pow(2).sum() ** 2
    T = torch.func.jacfwd(torch.func.jacrev(torch.func.grad(f)))(W0)
    return W0, f, torch.func.grad(f)(W0), T


def test_third_derivative_contractions_match_explicit_sums():
    W0, _, _, T = smooth_problem()
    m, n = W0.shape
    lap, mixed = third_derivative_contractions(T)
    for p in range(m):
        for q in range(n):
            assert lap[p, q] == pytest.approx(
                sum(float(T[a, b, a, b, p, q]) for a in range(m) for b in range(n)), rel=1e-12
            )
            assert mixed[p, q] == pytest.approx(
                sum(float(T[a, b, a, q, p, b]) for a in range(m) for b in range(n)), rel=1e-12
            )
    with pytest.raises(ValueError, match=r"T must have shape \(m, n, m, n, m, n\)"):
        third_derivative_contractions(T[0])


@pytest.mark.parametrize("rank", [None, 2])
def test_eps_bias_matches_its_prediction(rank):
    """The component of E ĝ - G along the predicted ε² bias, by Monte Carlo against the exactly
    linearised estimate from the same draw (mean exactly G); LGE's mixed term is needed."""
    W0, f, G, T = smooth_problem()
    lap, mixed = third_derivative_contractions(T)
    eps = 0.1
    predicted = rge_bias(lap, eps) if rank is None else lge_bias(lap, mixed, eps, rank)
    u = predicted / predicted.norm()
    smooth, linear = (lambda ps: f(ps[0])), (lambda ps: (G * ps[0]).sum())

    def draw(fn, seed):
        g = torch.Generator().manual_seed(seed)
        if rank is None:
            return rge(fn, [W0], eps=eps, generator=g)[0]
        return lge(fn, [W0], eps=eps, rank=rank, generator=g)[0]

    along = [float(((draw(smooth, s) - draw(linear, s)) * u).sum()) for s in range(3000)]
    mean, se = mean_and_stderr(along)
    assert agrees("bias", mean, predicted.norm().item(), se).holds
    if rank is not None:
        without_mixed = eps**2 / 2 * rank * lap
        assert not agrees("bias without K", mean, float((without_mixed * u).sum()), se).holds


def test_momentum_after_a_refresh_keeps_r_over_n():
    n, r = 20, 3
    g = torch.Generator().manual_seed(0)
    N = torch.randn(7, r, generator=g, dtype=DT)
    V_old = torch.randn(n, r, generator=g, dtype=DT)
    before = N @ V_old.T
    alignment, energy = [], []
    for _ in range(6000):
        V_new = torch.randn(n, r, generator=g, dtype=DT)
        after = project_coordinates(N, V_old, V_new) @ V_new.T
        alignment.append(float((after * before).sum() / before.pow(2).sum()))
        energy.append(float(after.pow(2).sum() / before.pow(2).sum()))
    mean, se = mean_and_stderr(alignment)
    assert agrees("alignment", mean, refresh_alignment(n, r), se).holds
    mean, se = mean_and_stderr(energy)
    assert agrees("energy", mean, refresh_energy(n, r), se).holds
    assert not agrees("energy is the orthogonal projector's r/n", mean, r / n, se).holds


def test_vectors_get_dense_unbiased_estimates():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 2, generator=g, dtype=DT), torch.randn(4, generator=g, dtype=DT)
    f = lambda ps: (a * ps[0]).sum() + (b * ps[1]).sum()
    params = [torch.zeros(3, 2, dtype=DT), torch.zeros(4, dtype=DT)]
    gen = torch.Generator().manual_seed(1)
    N = 4000
    est = [torch.zeros_like(p) for p in params]
    for _ in range(N):
        for acc, e in zip(est, lge(f, params, eps=1e-3, rank=2, generator=gen), strict=True):
            acc += e / N
    assert ((est[1] - b).norm() / b.norm()).item() < 0.2
    assert ((est[0] - a).norm() / a.norm()).item() < 0.25


def test_same_generator_state_same_estimate():
    _, W, f = linear_problem(4, 4)
    for est in (
        lambda g: lge(f, [W], eps=1e-2, rank=2, generator=g),
        lambda g: rge(f, [W], eps=1e-2, generator=g, q=2),
        lambda g: forward_gradient(f, [W], generator=g),
    ):
        a = est(torch.Generator().manual_seed(7))
        b = est(torch.Generator().manual_seed(7))
        c = est(torch.Generator().manual_seed(8))
        assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_forward_gradient_is_exact_directional_derivative():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 4, generator=g, dtype=DT)
    f = lambda ps: torch.sin(ps[0]).sum() + ps[0].pow(3).sum()
    G = torch.cos(W) + 3 * W**2
    gen1, gen2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    est = forward_gradient(f, [W], generator=gen1)[0]
    v = torch.randn(W.shape, generator=gen2, dtype=torch.float32).to(DT)
    torch.testing.assert_close(est, (G * v).sum() * v)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(eps=0.0, rank=1), "eps must be"),
        (dict(eps=-1e-3, rank=1), "got -0.001"),
        (dict(eps=float("nan"), rank=1), "eps must be"),
        (dict(eps=1e-3, rank=0), "rank must be an integer >= 1, got 0"),
        (dict(eps=1e-3, rank=1.5), "rank must be"),
        (dict(eps=1e-3, rank=1, q=0), "q must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    _, W, f = linear_problem(2, 2)
    with pytest.raises(ValueError, match=message):
        lge(f, [W], generator=torch.Generator(), **kwargs)


def test_bad_V_is_rejected():
    W, b = torch.zeros(3, 2), torch.zeros(3)
    f = lambda ps: ps[0].sum() + ps[1].sum()
    with pytest.raises(ValueError, match=r"V\[1\] given .* matrices only"):
        lge(
            f,
            [W, b],
            eps=1e-3,
            rank=1,
            generator=torch.Generator(),
            V=[torch.zeros(2, 1), torch.zeros(3, 1)],
        )
    with pytest.raises(ValueError, match=r"expected \(n, rank\) = \(2, 1\)"):
        lge(f, [W, b], eps=1e-3, rank=1, generator=torch.Generator(), V=[torch.zeros(3, 1), None])
    with pytest.raises(ValueError, match=r"V\[0\] is None but params\[0\] is a matrix"):
        lge(f, [W, b], eps=1e-3, rank=1, generator=torch.Generator(), V=[None, None])
    with pytest.raises(ValueError, match="eps must be"):
        rge(f, [W, b], eps=0, generator=torch.Generator())
