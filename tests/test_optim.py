"""The optimizer zoo: one table of problems for every optimizer, engines, state and validation."""

import copy
import math

import pytest
import torch
from torch import nn

from lozo_core.models import tiny_opt
from lozo_core.moments import lge_second_moment, rge_second_moment
from lozo_core.optim import (
    LOZO,
    ForwardGrad,
    LOZOAdam,
    MeZO,
    PairedClosure,
    ZOAdam,
    ZOSGDCons,
    ZOSGDMomentum,
    ZOSGDSign,
)
from lozo_core.optim.directions import Query
from lozo_core.optim.table import TABLE as OPTIMIZERS
from lozo_core.rng import stream
from lozo_core.subspace import project_coordinates


class Weights(nn.Module):
    def __init__(self, *shapes, seed=0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.ws = nn.ParameterList(
            [nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]
        )


def quadratic():
    model = Weights((8, 6), (6,))
    g = torch.Generator().manual_seed(1)
    targets = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in model.ws]
    scales = torch.linspace(0.5, 2.0, 48, dtype=torch.float64).view(8, 6)
    return (
        model,
        lambda: (
            ((model.ws[0] - targets[0]) ** 2 * scales).sum()
            + ((model.ws[1] - targets[1]) ** 2).sum()
        ),
    )


def lowrank_least_squares():
    model = Weights((10, 8))
    g = torch.Generator().manual_seed(2)
    X = torch.randn(64, 8, generator=g, dtype=torch.float64)
    W_true = torch.randn(10, 2, generator=g, dtype=torch.float64) @ torch.randn(
        2, 8, generator=g, dtype=torch.float64
    )
    Y = X @ W_true.T
    return model, lambda: ((X @ model.ws[0].T - Y) ** 2).mean()


def tiny_opt_batch():
    model = tiny_opt(seed=0, vocab_size=64)
    ids = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(3))

    def closure():
        logits = model(input_ids=ids).logits[:, :-1]
        return nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1))

    return model, closure


# Synthetic problems use the weights directly (no linear/embedding call to route): in-place engine.
SYNTHETIC = dict(rank=2, interval=5, engine="inplace")
# (class, kwargs per problem: quadratic, least squares, tiny OPT). Learning rates differ because
# sign, Adam and dense-Gaussian steps have different scales; each is a plain working setting.
TABLE = {
    "mezo": (MeZO, dict(lr=6e-3), dict(lr=5e-3), dict(lr=6e-3)),
    "zo-sgd-sign": (ZOSGDSign, dict(lr=5e-2), dict(lr=5e-2), dict(lr=5e-3)),
    "zo-sgd-mmt": (ZOSGDMomentum, dict(lr=5e-4), dict(lr=1e-3), dict(lr=5e-4)),
    "zo-sgd-cons": (ZOSGDCons, dict(lr=6e-3), dict(lr=5e-3), dict(lr=6e-3)),
    "zo-adam": (ZOAdam, dict(lr=0.2), dict(lr=0.2), dict(lr=6e-3)),
    "lozo": (
        LOZO,
        dict(lr=6e-3, **SYNTHETIC),
        dict(lr=5e-3, **SYNTHETIC),
        dict(lr=6e-3, rank=2, interval=5),
    ),
    "lozo-m": (
        LOZO,
        dict(lr=6e-3, momentum=0.9, **SYNTHETIC),
        dict(lr=1.5e-2, momentum=0.9, **SYNTHETIC),
        dict(lr=1.8e-2, rank=2, interval=5, momentum=0.9),
    ),
    "lozo-adam": (
        LOZOAdam,
        dict(lr=0.2, **SYNTHETIC),
        dict(lr=0.2, **SYNTHETIC),
        dict(lr=6e-3, rank=2, interval=5),
    ),
    "forward-grad": (ForwardGrad, dict(lr=6e-3), dict(lr=5e-3), dict(lr=6e-3)),
    "block-wise mezo": (MeZO, dict(lr=6e-3, blocks=2), dict(lr=5e-3), dict(lr=6e-3, blocks=4)),
    "sparse mezo": (
        MeZO,
        dict(lr=6e-3, sparsity=0.5, mask_interval=3),
        dict(lr=1.5e-2, sparsity=0.5),
        dict(lr=1.8e-2, sparsity=0.5),
    ),
}
PROBLEMS = [quadratic, lowrank_least_squares, tiny_opt_batch]


@pytest.fixture
def no_backward(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a zeroth-order optimizer called backpropagation")

    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", TABLE)
def test_every_optimizer_decreases_every_problem_without_backprop(name, problem, no_backward):
    cls, *settings = TABLE[name]
    model, closure = problem()
    kwargs = settings[PROBLEMS.index(problem)]
    opt = cls(model, seed=0, **kwargs)
    steps = 30 if problem is tiny_opt_batch else 150
    with torch.no_grad():
        start = float(closure())
    for _ in range(steps):
        opt.step(closure)
    with torch.no_grad():
        end = float(closure())
    assert end < start * (0.995 if problem is tiny_opt_batch else 0.8), (start, end)


def test_registry_names_every_optimizer():
    assert set(OPTIMIZERS) >= {
        "mezo",
        "lozo",
        "lozo-m",
        "lozo-adam",
        "zo-sgd-sign",
        "zo-sgd-mmt",
        "zo-sgd-cons",
        "zo-adam",
        "forward-grad",
    }


def _lozo_run(engine, dtype, steps=20, paired=False, **kw):
    model = tiny_opt(seed=0, vocab_size=64, dtype=dtype)
    ids = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(3))

    def per_example(batch):
        logits = model(input_ids=batch).logits[:, :-1].float()
        losses = nn.functional.cross_entropy(
            logits.reshape(-1, 64), batch[:, 1:].reshape(-1), reduction="none"
        )
        return losses.view(batch.shape[0], -1).mean(1)

    closure = (
        PairedClosure(per_example, ids, lambda b: torch.cat([b, b]))
        if paired
        else (lambda: per_example(ids).mean())
    )
    opt = LOZO(model, engine=engine, seed=1, **kw)
    start = [p.detach().clone() for p in model.parameters()]
    losses = [float(opt.step(closure)) for _ in range(steps)]
    return torch.tensor(losses), start, [p.detach().clone() for p in model.parameters()]


LOZO_SETTINGS = dict(lr=1e-3, eps=1e-3, rank=2, interval=5, momentum=0.9, weight_decay=0.1)


@pytest.mark.parametrize("paired", [False, True])
def test_sidepath_and_inplace_agree_fp64_to_rounding(paired):
    la, _, pa = _lozo_run("inplace", torch.float64, **LOZO_SETTINGS)
    lb, _, pb = _lozo_run("sidepath", torch.float64, paired=paired, **LOZO_SETTINGS)
    torch.testing.assert_close(lb, la, rtol=0, atol=1e-12)
    for a, b in zip(pa, pb, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


def test_sidepath_and_inplace_agree_fp32_within_stated_tolerance():
    """fp32: c = Δf/(2ε) amplifies loss rounding (~1e-7·f) by 1/ε, so trajectories agree to
    ~1e-3 of the total update, not to rounding. Tolerances: losses 1e-5 relative, parameter
    change 2% relative, over 20 steps."""
    la, start, pa = _lozo_run("inplace", torch.float32, **LOZO_SETTINGS)
    lb, _, pb = _lozo_run("sidepath", torch.float32, paired=True, **LOZO_SETTINGS)
    torch.testing.assert_close(lb, la, rtol=1e-5, atol=0)
    moved = torch.cat([(a - s).flatten() for a, s in zip(pa, start, strict=True)])
    gap = torch.cat([(b - a).flatten() for a, b in zip(pa, pb, strict=True)])
    assert moved.norm() > 1e-3
    assert gap.norm() / moved.norm() < 2e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sidepath_restores_exactly_while_inplace_drifts(dtype):
    _, start_a, pa = _lozo_run(
        "inplace",
        dtype,
        steps=10,
        **{**LOZO_SETTINGS, "lr": 0.0, "weight_decay": 0.0, "interval": 100},
    )
    _, start_b, pb = _lozo_run(
        "sidepath",
        dtype,
        steps=10,
        **{**LOZO_SETTINGS, "lr": 0.0, "weight_decay": 0.0, "interval": 100},
    )
    drift = max(
        (a.float() - s.float()).abs().max().item() for a, s in zip(pa, start_a, strict=True)
    )
    assert drift > 0, "in-place perturb/restore in low precision should not be exact"
    for b, s in zip(pb, start_b, strict=True):
        assert torch.equal(b, s)


def test_update_direction_equals_measured_direction_on_refresh_steps():
    model, closure = quadratic()
    opt = LOZO(model, lr=1e-2, rank=2, interval=3, seed=3, engine="inplace")
    for k in range(7):
        before = [p.detach().clone() for p in model.ws]
        measured = {}
        original = opt.engine.two_point

        def spy(closure, query, original=original, measured=measured):
            measured["Z"] = [z if z is not None else u @ v.T for _, z, u, v in query]
            return original(closure, query)

        opt.engine.two_point = spy
        opt.step(closure)
        applied = [(p.detach() - b) for p, b in zip(model.ws, before, strict=True)]
        for a, z in zip(applied, measured["Z"], strict=True):
            cos = (a * z).sum() / (a.norm() * z.norm())
            assert abs(abs(cos.item()) - 1) < 1e-9, f"step {k}: cosine {cos.item()}"


def test_lozo_within_an_interval_is_zo_sgd_on_subspace_coordinates():
    """LOZO with interval ν equals ZO-SGD (RGE on B) for h(B) = f(W0 + B Vᵀ) with step lr/r."""
    from lozo_core.estimators import rge

    model = Weights((7, 5))
    target = torch.randn(7, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    f = lambda W: ((W - target) ** 4).sum()
    lr, rank, nu, seed = 1e-3, 3, 6, 4
    W0 = model.ws[0].detach().clone()
    opt = LOZO(model, lr=lr, rank=rank, interval=nu, seed=seed, engine="inplace")
    B = torch.zeros(7, rank, dtype=torch.float64)
    V = torch.randn(5, rank, generator=stream(seed, 0, 1, 0), dtype=torch.float32).double()
    for k in range(nu):
        opt.step(lambda: f(model.ws[0]))
        W_lozo = model.ws[0].detach()
        h = lambda Bs: f(W0 + Bs[0] @ V.T)
        g = rge(h, [B], eps=1e-3, generator=stream(seed, k, 0, 0, 0, 0))[0]
        B = B - lr / rank * g
        torch.testing.assert_close(W_lozo, W0 + B @ V.T, rtol=0, atol=1e-10)


def test_momentum_is_projected_at_refresh():
    model, closure = quadratic()
    opt = LOZO(model, lr=1e-3, rank=2, interval=4, momentum=0.9, seed=0, engine="inplace")
    for _ in range(4):
        opt.step(closure)
    W = model.ws[0]
    N_old, V_old = opt.state[W]["momentum_buffer"].clone(), opt.state[W]["V"].clone()
    opt.step(closure)  # step 4 refreshes V, then adds (1-β) ĝ_B to the projected buffer
    V_new = opt.state[W]["V"]
    assert not torch.equal(V_new, V_old)
    projected = project_coordinates(N_old, V_old, V_new)
    g_B = (opt.state[W]["momentum_buffer"] - 0.9 * projected) / 0.1
    assert g_B.norm() < 50 * projected.norm() + 1e3  # finite, consistent shapes
    torch.testing.assert_close(opt.state[W]["momentum_buffer"] - 0.1 * g_B, 0.9 * projected)


@pytest.mark.parametrize("name", ["mezo", "lozo", "lozo-m", "lozo-adam", "zo-adam", "zo-sgd-mmt"])
@pytest.mark.parametrize("engine", ["inplace", "sidepath", "sidepath-deferred"])
def test_state_dict_round_trip_resumes_identically(name, engine):
    cls = TABLE[name][0]
    kwargs = dict(TABLE[name][3])
    if engine != "inplace" and cls not in (LOZO, LOZOAdam):
        pytest.skip("side path is for low-rank directions")
    if cls in (LOZO, LOZOAdam):
        kwargs["engine"] = engine
    model, closure = tiny_opt_batch()
    opt = cls(model, seed=3, **kwargs)
    for _ in range(7):
        opt.step(closure)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for _ in range(6):
        opt.step(closure)
    opt.merge()
    expected = [p.detach().clone() for p in model.parameters()]

    model2, closure2 = tiny_opt_batch()
    model2.load_state_dict(saved_model)
    opt2 = cls(model2, seed=3, **kwargs)
    opt2.load_state_dict(saved_opt)
    for _ in range(6):
        opt2.step(closure2)
    opt2.merge()
    for a, b in zip(expected, model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_size_per_matrix():
    """LOZO's extra state is O((m+n)·r): V, plus m×r per first/second moment (and the deferred
    engine's m×r accumulator); ZO-Adam's is 2mn."""
    m, n, r = 40, 30, 3
    model = Weights((m, n))
    x = torch.ones(2, n, dtype=torch.float64)
    closure = lambda: nn.functional.linear(x, model.ws[0]).pow(2).sum()
    sizes = {}
    for name, opt in {
        "lozo": LOZO(model, lr=1e-3, rank=r, interval=5, engine="inplace"),
        "lozo-sidepath": LOZO(model, lr=1e-3, rank=r, interval=5),
        "lozo-deferred": LOZO(model, lr=1e-3, rank=r, interval=5, engine="sidepath-deferred"),
        "lozo-m": LOZO(model, lr=1e-3, rank=r, interval=5, momentum=0.9),
        "lozo-adam": LOZOAdam(model, lr=1e-3, rank=r, interval=5),
        "zo-adam": ZOAdam(model, lr=1e-3),
    }.items():
        opt.step(closure)
        tensors = list(opt.state[model.ws[0]].values())
        tensors += [
            slot["values"] for slot in opt.state_dict()["engine"].get("pending", {}).values()
        ]
        sizes[name] = sum(v.numel() for v in tensors if isinstance(v, torch.Tensor))
    assert sizes["lozo"] == sizes["lozo-sidepath"] == n * r
    assert sizes["lozo-deferred"] == (m + n) * r
    assert sizes["lozo-m"] == (m + n) * r
    assert sizes["lozo-adam"] == (2 * m + n) * r
    assert sizes["zo-adam"] == 2 * m * n


def test_sparse_directions_follow_the_mask_schedule():
    p = torch.zeros(50, 40)
    q = lambda keys, mask: list(Query([p], [None], [1e-3], keys, 0.2, mask))[0][1]
    a = q((0, 0, 0, 0, 0), (0, 0, 2))
    b = q((0, 1, 0, 0, 0), (0, 0, 2))
    c = q((0, 2, 0, 0, 0), (0, 1, 2))
    assert 0.15 < (a != 0).float().mean() < 0.25
    assert torch.equal(a != 0, b != 0) and not torch.equal(a != 0, c != 0)


def test_hybrid_trains_a_backprop_group_by_sgd():
    model, closure = quadratic()
    opt = MeZO(
        [{"params": [model.ws[0]]}, {"params": [model.ws[1]], "backprop": True, "lr": 0.1}], lr=0.0
    )
    before = [p.detach().clone() for p in model.ws]
    opt.step(closure)
    torch.testing.assert_close(
        model.ws[0], before[0], rtol=0, atol=1e-12
    )  # perturb/restore rounding
    assert (model.ws[1] - before[1]).abs().max() > 1e-3


def test_non_finite_loss_stops_with_parameters_unchanged():
    model, _ = quadratic()
    opt = MeZO(model, lr=1e-3)
    before = [p.detach().clone() for p in model.ws]
    with pytest.raises(FloatingPointError, match="non-finite loss at step 0"):
        opt.step(lambda: torch.tensor(float("nan")))
    for a, b in zip(before, model.ws, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)  # restored up to rounding, not updated


def test_sidepath_refuses_parameters_it_cannot_route():
    model = Weights((4, 3))
    opt = LOZO(model, lr=1e-3)
    with pytest.raises(RuntimeError, match="could not route these parameters"):
        opt.step(lambda: (model.ws[0] @ torch.ones(3, dtype=torch.float64)).sum())


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (MeZO, dict(lr=-1.0), "lr must be a finite number >= 0, got -1.0"),
        (MeZO, dict(lr=1e-3, eps=0.0), "eps must be a finite number > 0, got 0.0"),
        (MeZO, dict(lr=1e-3, q=0), "q must be an integer >= 1, got 0"),
        (MeZO, dict(lr=1e-3, engine="sidepath"), r"engine must be one of \('inplace',\)"),
        (MeZO, dict(lr=1e-3, sparsity=1.0), r"sparsity must be in \[0, 1\), got 1.0"),
        (MeZO, dict(lr=1e-3, blocks=0), "blocks must be an integer >= 1, got 0"),
        (MeZO, dict(lr=1e-3, weight_decay=-0.1), "weight_decay must be"),
        (LOZO, dict(lr=1e-3, rank=0), "rank must be an integer >= 1, got 0"),
        (LOZO, dict(lr=1e-3, interval=0), "interval must be an integer >= 1, got 0"),
        (LOZO, dict(lr=1e-3, momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (LOZO, dict(lr=1e-3, engine="magic"), "engine must be one of"),
        (ZOAdam, dict(lr=1e-3, betas=(0.9, 1.5)), r"betas\[1\] must be in"),
        (ZOSGDMomentum, dict(lr=1e-3, momentum=-0.5), "momentum must be"),
    ],
)
def test_bad_hyperparameters_raise_value_error(cls, kwargs, message):
    model, _ = quadratic()
    with pytest.raises(ValueError, match=message):
        cls(model, **kwargs)


def test_forward_grad_takes_parameters_and_matches_autograd():
    model, closure = quadratic()
    with torch.enable_grad():
        grads = torch.autograd.grad(closure(), list(model.ws))
    opt = ForwardGrad(model.parameters(), lr=0.0)
    opt.step(closure)
    v = [
        torch.randn(p.shape, generator=stream(0, 0, 0, 0, 0, i)).double()
        for i, p in enumerate(model.ws)
    ]
    expected = sum(float((a * b).sum()) for a, b in zip(grads, v, strict=True))
    assert opt.last_record["directional"] == pytest.approx(expected, rel=1e-10)


def _multi_parameter_second_moment(shapes, sq_norms, rank):
    r""":math:`\mathbb E\|\hat g\|^2` summed over parameters that share one scalar
    :math:`c=\sum_j\langle G_j,Z_j\rangle`: each parameter's own LGE (matrix) or RGE (vector) term,
    plus :math:`\mathbb E\|Z_i\|^2/r_i^2\sum_{j\ne i}\mathbb E\langle G_j,Z_j\rangle^2` from the others
    (:math:`\mathbb E\|UV^\top\|^2 = mnr`, :math:`\mathbb E\langle G,UV^\top\rangle^2 = r\|G\|^2`)."""
    total = 0.0
    inner = [(rank if len(s) == 2 else 1) * q for s, q in zip(shapes, sq_norms, strict=True)]
    for i, (shape, q) in enumerate(zip(shapes, sq_norms, strict=True)):
        others = sum(inner) - inner[i]
        if len(shape) == 2:
            m, n = shape
            total += lge_second_moment(m, n, rank, q) + m * n * others / rank
        else:
            total += rge_second_moment(shape[0], q) + shape[0] * others
    return total


@pytest.mark.parametrize("name", ["lozo", "mezo"])
def test_updates_drawn_from_the_optimizers_streams_have_the_estimators_moments(name):
    """Step after step on a linear objective, the applied update is one estimate -ĝ_k (lr = 1).

    Its mean must approach ∇f at the Monte Carlo rate (neither slower: biased or mis-scaled;
    nor much faster: draws repeating across steps or parameters) and its second moment must match
    the closed form. This checks the per-parameter streams the optimizers actually use, which the
    estimator tests (one generator, one tensor) do not."""
    shapes, rank, N = [(6, 5), (4, 7), (5,)], 2, 4000
    model = Weights(*shapes, seed=7)
    g = torch.Generator().manual_seed(8)
    grads = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    closure = lambda: sum((G * p).sum() for G, p in zip(grads, model.ws, strict=True))
    if name == "lozo":
        opt = LOZO(model, lr=1.0, rank=rank, interval=1, seed=3, engine="inplace")
    else:
        opt = MeZO(model, lr=1.0, seed=3)
    estimates = []
    for _ in range(N):
        before = torch.cat([p.detach().flatten().clone() for p in model.ws])
        opt.step(closure)
        estimates.append(before - torch.cat([p.detach().flatten() for p in model.ws]))
    estimates = torch.stack(estimates)
    G = torch.cat([G.flatten() for G in grads])
    sq_norms = [float(G.pow(2).sum()) for G in grads]
    if name == "lozo":
        closed = _multi_parameter_second_moment(shapes, sq_norms, rank)
    else:
        closed = rge_second_moment(G.numel(), sum(sq_norms))
    rel_err = ((estimates.mean(0) - G).norm() / G.norm()).item()
    expected = math.sqrt((closed / G.pow(2).sum().item() - 1) / N)
    assert 0.5 * expected < rel_err < 1.6 * expected, (rel_err, expected)
    second = estimates.pow(2).sum(1)
    se = (second.std() / math.sqrt(N)).item()
    assert abs(second.mean().item() - closed) < 4 * se, (second.mean().item(), closed, se)
