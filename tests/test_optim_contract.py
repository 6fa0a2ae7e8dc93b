"""The torch.optim contract, checked for every optimizer of the table × every engine it takes."""

import copy

import pytest
import torch
from torch import nn

from lozo_core.optim import LOZO, MeZO, PairedClosure
from lozo_core.optim.directions import LazyLowRank
from lozo_core.optim.engines import ENGINES
from lozo_core.optim.optimizer import ZeroOrderOptimizer
from lozo_core.optim.rules import Conservative
from lozo_core.optim.table import ROWS, Hyper
from lozo_core.trajectory import Trajectory, replay

LOWRANK = {"lozo", "lozo-m", "lozo-adam"}
CASES = [
    (row.name, engine)
    for row in ROWS
    if row.zeroth_order
    for engine in (ENGINES if row.name in LOWRANK else ["inplace"])
]


def mlp(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)
    return model


def problem(model):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(10, 6, generator=g, dtype=torch.float32).to(model[0].weight.dtype)
    y = torch.randn(10, 3, generator=g, dtype=torch.float32).to(x.dtype)
    per_example = lambda batch: (model(batch[0]) - batch[1]).pow(2).mean(1)
    return PairedClosure(
        per_example, (x, y), lambda b: (torch.cat([b[0], b[0]]), torch.cat([b[1], b[1]]))
    )


def build(name, engine, model, seed=3, **changes):
    hyper = Hyper(
        **{**dict(lr=1e-2, eps=1e-3, rank=2, interval=3, engine=engine, seed=seed), **changes}
    )
    return next(r for r in ROWS if r.name == name).build(model.parameters(), hyper)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def run(name, engine, steps=7, dtype=torch.float64, between=None):
    model = mlp(dtype=dtype)
    opt, closure = build(name, engine, model), problem(model)
    records = []
    for _ in range(steps):
        opt.step(closure)
        records.append(opt.last_record)
        if between:
            between(model, opt)
    opt.merge()
    return model, opt, records


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_step_writes_the_trained_weights(name, engine):
    model = mlp()
    start = params(model)
    opt = build(name, engine, model)
    opt.step(problem(model))
    weights = params(model) if engine != "sidepath-deferred" else None
    if engine == "sidepath-deferred":
        assert all(torch.equal(a, b) for a, b in zip(start, params(model), strict=True))
        opt.merge()
        weights = params(model)
    assert any(not torch.equal(a, b) for a, b in zip(start, weights, strict=True))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in zip(state, weights, strict=True))


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_evaluating_and_saving_never_change_the_trajectory(name, engine):
    def look(model, opt):
        with torch.no_grad(), opt.effective_weights():
            model(torch.ones(2, 6, dtype=torch.float64))
        model.state_dict()
        opt.state_dict()

    a, _, _ = run(name, engine)
    b, _, _ = run(name, engine, between=look)
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b), strict=True))


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_deterministic_under_a_seed_and_no_grad_created(name, engine):
    a, _, _ = run(name, engine)
    b, _, _ = run(name, engine)
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b), strict=True))
    assert all(p.grad is None for p in b.parameters())
    model = mlp()
    opt = build(name, engine, model, seed=4)
    for _ in range(7):
        opt.step(problem(model))
    opt.merge()
    assert any(not torch.equal(x, y) for x, y in zip(params(a), params(model), strict=True))


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_kept_directions_give_the_same_numbers_as_regenerated_ones(name, engine):
    model = mlp(dtype=torch.float32)
    kept = build(name, engine, model, keep_directions=True)
    closure = problem(model)
    for _ in range(7):
        kept.step(closure)
    kept.merge()
    live, _, _ = run(name, engine, dtype=torch.float32)
    assert all(torch.equal(x, y) for x, y in zip(params(live), params(model), strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("name", "engine"), CASES)
def test_replay_rebuilds_the_run_bit_for_bit(name, engine, dtype):
    live, _, records = run(name, engine, dtype=dtype)
    saved = Trajectory({}, times=[])
    for r in records:
        saved.append(r, 0.0)
    folder = pytest.importorskip("tempfile").mkdtemp()
    saved.save(folder)
    model = mlp(dtype=dtype)
    opt = build(name, engine, model)
    replay(opt, Trajectory.load(folder).records)
    opt.merge()
    assert all(torch.equal(x, y) for x, y in zip(params(live), params(model), strict=True))


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_closure_calls_match_the_tables_passes_per_step(name, engine):
    row = next(r for r in ROWS if r.name == name)
    model = mlp()
    closure = problem(model)
    calls = []
    counting = PairedClosure(
        lambda b: calls.append(b[0].shape[0] // 10) or closure.loss_fn(b),
        closure.batch,
        closure.double,
    )
    opt = build(name, engine, model)
    opt.step(counting)
    if name == "forward-grad":
        assert sum(calls) == row.passes(Hyper(lr=0.0))["jvp"]
    else:
        assert sum(calls) == row.passes(Hyper(lr=0.0))["forward"]


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_unknown_keyword_raises_type_error(name, engine):
    cls = type(build(name, engine, mlp()))
    with pytest.raises(TypeError, match="rnak"):
        cls(mlp().parameters(), lr=1e-3, rnak=2)


@pytest.mark.parametrize(("name", "engine"), CASES)
@pytest.mark.parametrize(
    ("change", "message"),
    [(dict(lr=-1.0), "lr must be a finite number >= 0, got -1.0"),
     (dict(weight_decay=float("nan")), "weight_decay must be a finite number >= 0, got nan")],
)  # fmt: skip
def test_bad_hyperparameters_are_named(name, engine, change, message):
    with pytest.raises(ValueError, match=message):
        build(name, engine, mlp(), **change)


@pytest.mark.parametrize("engine", ["inplace", "sidepath"])
def test_every_param_group_keeps_its_own_lr_and_eps(engine):
    model = mlp()
    start = params(model)
    groups = [{"params": list(model[0].parameters())},
              {"params": list(model[1].parameters()) + list(model[2].parameters()), "lr": 0.0, "eps": 1e-2}]  # fmt: skip
    opt = LOZO(groups, lr=1e-2, rank=2, engine=engine)
    opt.step(problem(model))
    moved = [float((a - b).abs().max()) for a, b in zip(start, params(model), strict=True)]
    assert min(moved[:2]) > 1e-4
    assert max(moved[2:]) < (1e-12 if engine == "sidepath" else 1e-9)


def test_add_param_group_is_honoured_and_rejects_unknown_keys():
    model = mlp()
    opt = MeZO(list(model[0].parameters()), lr=1e-2)
    opt.add_param_group({"params": list(model[2].parameters()), "lr": 5e-2})
    start = params(model)
    opt.step(problem(model))
    after = params(model)
    assert float((after[-1] - start[-1]).abs().max()) > 1e-4
    with pytest.raises(ValueError, match=r"param group keys \['rank'\]"):
        opt.add_param_group({"params": list(model[1].parameters()), "rank": 4})


@pytest.mark.parametrize("name, engine", CASES)
def test_a_loaded_state_brings_its_hyperparameters_and_later_changes_to_them_count(name, engine):
    source_model, model = mlp(), mlp()
    source = build(name, engine, source_model)
    source.step(problem(source_model))
    model.load_state_dict(source_model.state_dict())
    loaded = build(name, engine, model, lr=123.0)
    loaded.load_state_dict(copy.deepcopy(source.state_dict()))
    source.step(problem(source_model))
    loaded.step(problem(model))
    for merged in (source, loaded):
        merged.merge()
    for x, y in zip(params(source_model), params(model), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)
    for group in loaded.param_groups:
        group["lr"] = 0.0
    before = params(model)
    loaded.step(problem(model))
    loaded.merge()
    moved = max(float((a - b).abs().max()) for a, b in zip(before, params(model), strict=True))
    assert moved < 1e-9, f"{name}/{engine}: lr = 0 after load_state_dict moved a weight by {moved}"


@pytest.mark.parametrize("name", ["mezo", "lozo", "forward-grad"])
def test_the_draws_do_not_depend_on_torchs_default_dtype(name):
    first, _, _ = run(name, "inplace", dtype=torch.float32)
    torch.set_default_dtype(torch.float64)
    try:
        second, _, _ = run(name, "inplace", dtype=torch.float32)
    finally:
        torch.set_default_dtype(torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(params(first), params(second), strict=True))


def test_a_matrix_added_mid_interval_trains_at_once_in_the_intervals_subspace():
    model, whole_model = mlp(), mlp()
    first, last = list(model[0].parameters()), list(model[2].parameters())
    opt = LOZO(first, lr=1e-2, rank=2, interval=5)
    opt.step(problem(model))
    opt.add_param_group({"params": last})
    whole = LOZO(list(whole_model[0].parameters()) + list(whole_model[2].parameters()),
                 lr=1e-2, rank=2, interval=5)  # fmt: skip
    whole.step(problem(whole_model))
    assert torch.equal(opt.state[last[0]]["V"], whole.state[whole_model[2].weight]["V"])
    start = last[0].detach().clone()
    opt.step(problem(model))
    assert float((last[0].detach() - start).abs().max()) > 1e-4


def test_the_conservative_rule_sees_its_trial_steps_on_every_engine():
    choices = {}
    for engine in ("sidepath", "sidepath-deferred"):
        model = mlp()
        opt = ZeroOrderOptimizer(model.parameters(), direction=LazyLowRank(2, 3),
                                 rule=Conservative(), engine=engine, lr=0.1)  # fmt: skip
        choices[engine] = []
        for _ in range(6):
            opt.step(problem(model))
            choices[engine].append(opt.last_record["choices"])
    assert choices["sidepath-deferred"] == choices["sidepath"]
    assert len({c[0] for c in choices["sidepath"]}) > 1, "a test whose choices never vary"


def test_the_draws_do_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone, _, _ = run("mezo", "inplace", dtype=torch.float32)
        torch.set_num_threads(2)
        pooled, _, _ = run("mezo", "inplace", dtype=torch.float32)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(params(alone), params(pooled), strict=True))


def test_exactness_of_the_engines_is_measured_not_assumed():
    """lr = 0: the side path leaves every bit of every weight; in-place MeZO does not (fp32)."""
    for engine, exact in (("sidepath", True), ("inplace", False)):
        model = mlp(dtype=torch.float32)
        start = params(model)
        opt = (LOZO if engine == "sidepath" else MeZO)(model.parameters(), lr=0.0, engine=engine)
        assert opt.engine.exact_restore is exact
        for _ in range(20):
            opt.step(problem(model))
        same = all(torch.equal(a, b) for a, b in zip(start, params(model), strict=True))
        assert same is exact


def test_state_dict_loads_across_engines_or_says_why():
    a_model, b_model = mlp(), mlp()
    a = LOZO(a_model.parameters(), lr=1e-2, interval=3, engine="inplace")
    for _ in range(4):
        a.step(problem(a_model))
    b_model.load_state_dict(a_model.state_dict())
    b = LOZO(b_model.parameters(), lr=1e-2, interval=3, engine="sidepath")
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for _ in range(3):
        a.step(problem(a_model))
        b.step(problem(b_model))
    for x, y in zip(params(a_model), params(b_model), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)
    c_model = mlp()
    deferred = LOZO(c_model.parameters(), lr=1e-2, engine="sidepath-deferred")
    deferred.step(problem(c_model))
    with pytest.raises(ValueError, match="deferred side-path updates"):
        LOZO(mlp().parameters(), lr=1e-2, engine="inplace").load_state_dict(deferred.state_dict())
