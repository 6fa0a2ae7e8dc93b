# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 3. The lazy subspace view, LOZO-M, and the random stream
#
# Within a lazy interval LOZO is ZO-SGD on the coordinates $B$ of $h(B)=f(W_0+BV^\top)$
# (`theory/02_subspace.md`; the test suite checks it step for step). This notebook measures
# what that view predicts: the conditional mean $\mathbb E[\hat g\mid V]=GVV^\top/r$, the
# share of the gradient a random $V$ sees, the effect of the interval $\nu$, how much of LOZO-M's
# momentum survives a refresh, and what the official code's random-stream mismatch costs.

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from torch import nn

from lozo_core.estimators import lge, sample_V
from lozo_core.moments import subspace_energy_fraction
from lozo_core.optim import LOZO, LOZOOfficialStream
from lozo_core.provenance import banner, pick
from lozo_core.rng import stream
from lozo_core.subspace import captured_energy, project_coordinates

sns.set_theme(style="whitegrid")
banner(notebook="03_subspace_view", dtype="float64", seeds=pick(8, 2))

# %% [markdown]
# ## 3.1 The conditional mean given V

# %%
m, n, r = 12, 10, 2
G = torch.randn(m, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
W = torch.zeros_like(G)
V = sample_V([W], r, torch.Generator().manual_seed(1))
g = torch.Generator().manual_seed(2)
N = pick(20_000, 2_000)
mean = (
    sum(
        lge(lambda ps: (G * ps[0]).sum(), [W], eps=1e-3, rank=r, generator=g, V=V)[0]
        for _ in range(N)
    )
    / N
)
target = G @ V[0] @ V[0].T / r
print(
    f"N={N}: ||mean - G V Vᵀ/r|| / ||G V Vᵀ/r|| = {((mean - target).norm() / target.norm()):.3f};  ||mean - G|| / ||G|| = {((mean - G).norm() / G.norm()):.3f}"
)

# %% [markdown]
# ## 3.2 How much of the gradient a random rank-r subspace sees
#
# For a low-rank gradient the top-r singular subspace captures almost everything; a random
# $V$ captures $r/n$ regardless. (Notebook 02 measures both on real layers.)

# %%
n_big, rank_true = 256, 4
gen = torch.Generator().manual_seed(3)
G_low = torch.randn(128, rank_true, generator=gen, dtype=torch.float64) @ torch.randn(
    rank_true, n_big, generator=gen, dtype=torch.float64
)
ranks = [1, 2, 4, 8, 16, 32]
random_share = [
    np.mean(
        [
            captured_energy(G_low, torch.randn(n_big, k, generator=gen, dtype=torch.float64))
            for _ in range(20)
        ]
    )
    for k in ranks
]
s2 = torch.linalg.svdvals(G_low).pow(2)
top_share = [float(s2[:k].sum() / s2.sum()) for k in ranks]
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(ranks, top_share, "o-", label=f"top-r singular subspace (true rank {rank_true})")
ax.plot(ranks, random_share, "s-", label="random V (mean of 20)")
ax.plot(ranks, [subspace_energy_fraction(n_big, k) for k in ranks], "k:", label="r/n")
ax.set(
    xscale="log",
    yscale="log",
    xlabel="r",
    ylabel="share of ||G||²",
    title=f"energy captured, 128x{n_big} gradient",
)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3.3 The interval ν on a low-rank least-squares problem
#
# $\min_W \frac1N\|XW^\top-Y\|^2$ with a rank-2 target; LOZO (rank 2, in-place engine, float64)
# for several ν, same learning rate, mean ± std over seeds. A long interval lets ZO-SGD on the
# $mr$ coordinates make progress in one subspace, but that subspace is random: it sees about
# $r/n$ of the gradient and goes stale. Which effect wins is a property of the problem.


# %%
class Linear(nn.Module):
    def __init__(self, m, n, seed):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(m, n, dtype=torch.float64))


def least_squares(seed):
    g = torch.Generator().manual_seed(100 + seed)
    X = torch.randn(256, 32, generator=g, dtype=torch.float64)
    W_true = (
        torch.randn(24, 2, generator=g, dtype=torch.float64)
        @ torch.randn(2, 32, generator=g, dtype=torch.float64)
        / 4
    )
    return X, X @ W_true.T


def run(cls, seed, steps, **kw):
    X, Y = least_squares(seed)
    model = Linear(24, 32, seed)
    opt = cls(model, seed=seed, engine="inplace", **kw)
    closure = lambda: ((X @ model.weight.T - Y) ** 2).mean()
    return np.array([float(opt.step(closure)) for _ in range(steps)])


steps, seeds, lr = pick(1500, 60), pick(8, 2), 1e-2
intervals = [1, 5, 25, 100]
fig, ax = plt.subplots(figsize=(7, 4.2))
final = {}
for nu in intervals:
    curves = np.stack([run(LOZO, s, steps, lr=lr, rank=2, interval=nu) for s in range(seeds)])
    final[nu] = curves[:, -20:].mean(1)
    mu, sd = curves.mean(0), curves.std(0)
    ax.plot(mu, label=f"ν={nu}")
    ax.fill_between(np.arange(steps), mu - sd, mu + sd, alpha=0.2)
ax.set(
    yscale="log",
    xlabel="step",
    ylabel="loss",
    title="LOZO (r=2) on rank-2 least squares: effect of ν",
)
ax.legend()
plt.show()
for nu, values in final.items():
    print(
        f"ν={nu:4d}: final loss {values.mean():.4f} ± {values.std():.4f} over {seeds} seeds ({steps} steps, lr {lr:g})"
    )
best = min(final, key=lambda nu: final[nu].mean())
print(f"on this problem the lowest final loss is at ν = {best}")

# %% [markdown]
# ## 3.4 LOZO-M: how much momentum survives a refresh
#
# $N\leftarrow NV_{old}^\top V_{new}/n$ keeps about $r/n$ of the full-size momentum's energy
# (plus a term from the non-orthogonality of $V_{new}$).

# %%
rows = []
for n_ in [16, 64, 256, 1024]:
    for r_ in [1, 4]:
        shares = []
        for t in range(pick(30, 5)):
            g = stream(7, n_, r_, t)
            N_ = torch.randn(64, r_, generator=g, dtype=torch.float64)
            V_old, V_new = (
                torch.randn(n_, r_, generator=g, dtype=torch.float64),
                torch.randn(n_, r_, generator=g, dtype=torch.float64),
            )
            before = N_ @ V_old.T
            after = project_coordinates(N_, V_old, V_new) @ V_new.T
            shares.append(float((after * before).sum() / before.pow(2).sum()))
        rows.append((n_, r_, np.mean(shares), r_ / n_))
print(f"{'n':>5} {'r':>2} {'<after, before>/||before||²':>28} {'r/n':>7}")
for n_, r_, share, pred in rows:
    print(f"{n_:5d} {r_:2d} {share:28.4f} {pred:7.4f}")

# %% [markdown]
# ## 3.5 The random stream: measured direction vs applied direction
#
# `LOZO` replays the perturbation's draws for its update. `LOZOOfficialStream` reproduces the
# official code's behaviour: on refresh steps the applied direction comes from a different draw
# than the measured one. With ν = 3 a third of the steps are refresh steps.

# %%
steps_rng = pick(1500, 60)
curves = {
    cls.__name__: np.stack(
        [run(cls, s, steps_rng, lr=lr, rank=2, interval=3) for s in range(seeds)]
    )
    for cls in (LOZO, LOZOOfficialStream)
}
fig, ax = plt.subplots(figsize=(7, 4))
for name, c in curves.items():
    ax.plot(c.mean(0), label=name)
ax.set(
    yscale="log", xlabel="step", ylabel="loss", title="matched vs mismatched random stream (ν=3)"
)
ax.legend()
plt.show()
for name, c in curves.items():
    print(
        f"{name:20s} final loss {c[:, -20:].mean():.4f} ± {c[:, -20:].mean(1).std():.4f} ({seeds} seeds)"
    )

# %% [markdown]
# The mismatch turns a third of the steps into random-walk steps: the measured difference $c$ is
# applied along an unrelated direction, adding noise without descent. How much it costs depends
# on ν (a refresh every ν steps) — at the paper's ν = 50–100 it is 1–2% of the steps.

# %% [markdown]
# ## 3.6 Exactness in low precision: in-place drift vs the side path
#
# With `lr = 0` nothing should change. The in-place engine writes $+\varepsilon Z$, $-2\varepsilon Z$,
# $+\varepsilon Z$ into the weights every step; in bf16/fp16 the restore rounds, and the weights
# drift. The side-path engine never writes them. Tiny random OPT, LOZO rank 2, ε = 1e-3.

# %%
from lozo_core.models import tiny_opt  # noqa: E402

drift_steps = pick(200, 10)
ids = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))
print(
    f"{'dtype':9s} {'engine':9s} {'max |ΔW|':>10s} {'rel. Frobenius drift':>21s} {'entries changed':>16s}"
)
for dtype in (torch.bfloat16, torch.float16, torch.float32):
    for engine in ("inplace", "sidepath"):
        model = tiny_opt(seed=0, dtype=dtype)
        start = [p.detach().clone() for p in model.parameters()]
        opt = LOZO(model, lr=0.0, rank=2, interval=1000, engine=engine)
        closure = lambda model=model: model(input_ids=ids, labels=ids).loss
        for _ in range(drift_steps):
            opt.step(closure)
        delta = torch.cat(
            [
                (p.detach().float() - s.float()).flatten()
                for p, s in zip(model.parameters(), start, strict=True)
            ]
        )
        base = torch.cat([s.float().flatten() for s in start])
        print(
            f"{str(dtype).removeprefix('torch.'):9s} {engine:9s} {delta.abs().max().item():10.2e} {(delta.norm() / base.norm()).item():21.2e} {(delta != 0).float().mean().item():16.1%}"
        )
print(f"({drift_steps} steps at lr = 0)")
