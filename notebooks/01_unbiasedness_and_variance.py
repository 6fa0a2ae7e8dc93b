# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 1. The LOZO estimator: unbiased, its variance, and its bias
#
# LOZO replaces MeZO's full Gaussian perturbation $z$ of a weight matrix $W\in\mathbb R^{m\times n}$
# by a low-rank one, $Z = UV^\top$ with $U\in\mathbb R^{m\times r}$, $V\in\mathbb R^{n\times r}$, and
# estimates the gradient by
#
# $$\hat g_{\mathrm{LGE}} = \frac{f(W+\varepsilon Z)-f(W-\varepsilon Z)}{2\varepsilon}\,\frac{Z}{r}.$$
#
# `theory/01_estimator.md` proves four facts; this notebook measures each and ends it with a
# verdict that can fail (`lozo_core.convergence.verdict` / `agrees`):
#
# 1. $\mathbb E\,\hat g = G$ for quadratic $f$ (the $1/r$ is what makes it so), so the Monte Carlo
#    mean converges to $G$ at the rate the second moment sets;
# 2. $\mathbb E\|\hat g_{\mathrm{LGE}}\|^2 = \frac{m(nr+2)+2(n+r+1)}{r}\|G\|^2$, against
#    $(mn+2)\|G\|^2$ for MeZO's estimator;
# 3. for smooth non-quadratic $f$ the bias is $\frac{\varepsilon^2}{2}\nabla\Delta f$ (RGE) and
#    $\frac{\varepsilon^2}{2}(r\nabla\Delta f+2K)$ (LGE), $K$ a mixed third-derivative contraction;
# 4. variance times forward passes does not depend on the number of queries $q$; the rank moves it
#    through the excess $2(m+n+1)/r$ over MeZO's, large on small matrices and small on large ones.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from lozo_core.convergence import agrees, mean_and_stderr, query_averaged_constant
from lozo_core.estimators import lge, rge
from lozo_core.moments import (
    lge_bias,
    lge_second_moment,
    query_averaged_variance,
    rge_bias,
    rge_second_moment,
    third_derivative_contractions,
)
from lozo_core.provenance import banner, pick

sns.set_theme(style="whitegrid", context="notebook")
torch.set_num_threads(1)  # tensors here are tiny: a second thread only adds contention
SEED = 0
banner(notebook="01_unbiasedness_and_variance", seed=SEED, dtype="float64")

# %% [markdown]
# ## 1.1 The Monte Carlo mean converges to the gradient
#
# A linear objective $f(W)=\langle G,W\rangle$ has gradient $G$ everywhere and an exact central
# difference, so every deviation of the running mean from $G$ is Monte Carlo noise. Two
# consequences of unbiasedness are checked: the mean of $\langle\hat g, G\rangle/\|G\|^2$ is 1
# (the official code, without $1/r$, would give $r$), and $N\|\bar g_N-G\|^2/\|G\|^2$ has
# expectation $\mathbb E\|\hat g\|^2/\|G\|^2-1$ — the dashed $1/\sqrt N$ lines, computed from the
# closed form, not fitted. Its standard error comes from splitting the draws into 20 batches.

# %%
m, n = 12, 8
gen = torch.Generator().manual_seed(SEED)
G = torch.randn(m, n, generator=gen, dtype=torch.float64)
W = torch.zeros(m, n, dtype=torch.float64)
sq_norm = G.pow(2).sum().item()


def linear(params):
    return (G * params[0]).sum()


N, batches = pick(10_000, 1_000), 20
checkpoints = np.unique(np.logspace(1, math.log10(N), 25).astype(int))
estimators = {
    "RGE (MeZO)": (lambda g: rge(linear, [W], eps=1e-3, generator=g)[0], rge_second_moment(m * n)),
    "LGE r=1": (
        lambda g: lge(linear, [W], eps=1e-3, rank=1, generator=g)[0],
        lge_second_moment(m, n, 1),
    ),
    "LGE r=4": (
        lambda g: lge(linear, [W], eps=1e-3, rank=4, generator=g)[0],
        lge_second_moment(m, n, 4),
    ),
}
curves, projection, batch_error = {}, {}, {}
for label, (draw, _) in estimators.items():
    g = torch.Generator().manual_seed(SEED + 1)
    samples = torch.stack([draw(g) for _ in range(N)])
    running = samples.cumsum(0)[checkpoints - 1] / torch.as_tensor(checkpoints)[:, None, None]
    curves[label] = ((running - G).flatten(1).norm(dim=1) / G.norm()).numpy()
    projection[label] = ((samples * G).sum((1, 2)) / sq_norm).numpy()
    per_batch = samples.view(batches, N // batches, m, n)
    batch_error[label] = (
        (per_batch.mean(1) - G).pow(2).sum((1, 2)) * (N // batches) / sq_norm
    ).numpy()

fig, ax = plt.subplots(figsize=(7, 4.5))
for (label, errors), color in zip(curves.items(), sns.color_palette(), strict=False):
    ax.loglog(checkpoints, errors, "o-", ms=3, color=color, label=f"{label}: measured")
    predicted = np.sqrt((estimators[label][1] - 1) / checkpoints)
    ax.loglog(checkpoints, predicted, "--", color=color, alpha=0.7)
ax.set(
    xlabel="samples N",
    ylabel=r"$\|\bar g_N - G\| / \|G\|$",
    title=f"Monte Carlo mean vs true gradient ({m}x{n}, linear f)",
)
ax.legend(title="dashed: closed-form 1/√N prediction", fontsize=8)
plt.show()

means = {label: mean_and_stderr(x) for label, x in projection.items()}
errs = {label: mean_and_stderr(x) for label, x in batch_error.items()}
print(f"{'':12s} {'<ĝ,G>/|G|²':>16s} {'N|ḡ-G|²/|G|²':>20s} {'predicted':>10s}")
for label in estimators:
    print(
        f"{label:12s} {means[label][0]:9.4f} ± {means[label][1]:.4f} {errs[label][0]:12.1f} ± {errs[label][1]:5.1f} {estimators[label][1] - 1:10.1f}"
    )
print(
    agrees(
        "E ĝ = G for RGE and LGE (projection on G, N draws each)",
        [means[k][0] for k in estimators],
        np.ones(len(estimators)),
        [means[k][1] for k in estimators],
    )
)
print(
    agrees(
        "the mean's error follows the closed-form 1/√N rate",
        [errs[k][0] for k in estimators],
        [estimators[k][1] - 1 for k in estimators],
        [errs[k][1] for k in estimators],
    )
)

# %% [markdown]
# ## 1.2 Second moment against the closed forms, by rank and shape
#
# For each shape and rank we draw fresh $(U,V)$ and record $\|\hat g\|^2/\|G\|^2$. The samples are
# heavy-tailed ($\|\hat g\|^2$ is an eighth-moment quantity), and twelve comparisons are made at
# once, so the verdict allows 4 standard errors.

# %%
shapes = [(4, 4), (16, 8), (32, 32)]
ranks = [1, 2, 4, 8]
samples_per_cell = pick(4_000, 400)
rows = []
for m_, n_ in shapes:
    G_ = torch.randn(m_, n_, generator=gen, dtype=torch.float64)
    W_ = torch.zeros_like(G_)
    f_ = lambda ps, G_=G_: (G_ * ps[0]).sum()
    sq = G_.pow(2).sum().item()
    for r in ranks:
        g = torch.Generator().manual_seed(SEED + 7 * r + m_)
        values = [
            lge(f_, [W_], eps=1e-3, rank=r, generator=g)[0].pow(2).sum().item() / sq
            for _ in range(samples_per_cell)
        ]
        mean, se = mean_and_stderr(values)
        rows.append(
            dict(m=m_, n=n_, r=r, measured=mean, se=se, closed=lge_second_moment(m_, n_, r))
        )

fig, axes = plt.subplots(1, len(shapes), figsize=(13, 4), sharey=False)
for ax, (m_, n_) in zip(axes, shapes, strict=True):
    sel = [row for row in rows if (row["m"], row["n"]) == (m_, n_)]
    ax.errorbar(
        [row["r"] for row in sel],
        [row["measured"] for row in sel],
        yerr=[2 * row["se"] for row in sel],
        fmt="o",
        capsize=3,
        label="LGE measured (±2 SE)",
    )
    rr = np.linspace(1, max(ranks), 100)
    ax.plot(rr, lge_second_moment(m_, n_, rr), "-", label="LGE closed form")
    ax.axhline(rge_second_moment(m_ * n_), color="k", ls=":", label="RGE (mn+2)")
    ax.set(title=f"{m_}x{n_}", xlabel="rank r", xscale="log", xticks=ranks, xticklabels=ranks)
    ax.minorticks_off()
axes[0].set_ylabel(r"$\mathbb{E}\|\hat g\|^2 / \|G\|^2$")
axes[0].legend(fontsize=8)
plt.suptitle(f"Second moment of LGE vs rank ({samples_per_cell} samples each)")
plt.tight_layout()
plt.show()
print(f"{'m':>3} {'n':>3} {'r':>2} {'measured':>10} {'± SE':>7} {'closed':>9} {'RGE':>7}")
for row in rows:
    print(
        f"{row['m']:3d} {row['n']:3d} {row['r']:2d} {row['measured']:10.2f} {row['se']:7.2f} {row['closed']:9.2f} {rge_second_moment(row['m'] * row['n']):7.0f}"
    )
print(
    agrees(
        "LGE second moment = (m(nr+2)+2(n+r+1))/r ||G||², 12 shapes and ranks",
        [row["measured"] for row in rows],
        [row["closed"] for row in rows],
        [row["se"] for row in rows],
        z=4,
    )
)

# %% [markdown]
# ## 1.3 The $\varepsilon^2$ bias on a non-quadratic function, against its prediction
#
# $f(W) = \sum_{ij}\log\cosh(W_{ij}) + \tfrac14\|W\|_F^4$ at a random point, $6\times5$. The
# prediction needs the third derivative $T=D^3f$ (by automatic differentiation) and two of its
# contractions, $\nabla\Delta f$ and $K_{pq}=\sum_{ab}T_{ab,aq,pb}$.
#
# The bias is small next to the estimator's spread, so each draw's estimate is compared with the
# exactly linearised estimate $\langle G,Z\rangle Z/r$ built from the *same* $Z$, whose mean is
# exactly $G$: the difference has the bias as its mean and a spread of order $\varepsilon^2$. Each
# $\varepsilon$ gets its own fresh draws. Measured: the component of the mean difference along the
# predicted bias, against the predicted bias's norm.

# %%
m_b, n_b = 6, 5
W0 = 0.7 * torch.randn(m_b, n_b, generator=gen, dtype=torch.float64)


def smooth_of(w):
    return torch.log(torch.cosh(w)).sum() + 0.25 * w.pow(2).sum() ** 2


smooth = lambda params: smooth_of(params[0])
G_b = torch.func.grad(smooth_of)(W0)
grad_laplacian, mixed = third_derivative_contractions(
    torch.func.jacfwd(torch.func.jacrev(torch.func.grad(smooth_of)))(W0)
)
linearised = lambda params: (G_b * params[0]).sum()


def estimate(f, label, eps, seed):
    g = torch.Generator().manual_seed(seed)
    if label == "RGE":
        return rge(f, [W0], eps=eps, generator=g)[0]
    return lge(f, [W0], eps=eps, rank=int(label[-1]), generator=g)[0]


bias_draws = pick(3_000, 300)
bias_rows = []
for k, eps in enumerate((0.05, 0.1)):
    for j, label in enumerate(("RGE", "LGE r=1", "LGE r=2")):
        r = 1 if label == "RGE" else int(label[-1])
        predicted = (
            rge_bias(grad_laplacian, eps)
            if label == "RGE"
            else lge_bias(grad_laplacian, mixed, eps, r)
        )
        direction = predicted / predicted.norm()
        first_seed = 10_000 * (1 + 3 * k + j)
        along = [
            float(
                (
                    (estimate(smooth, label, eps, s) - estimate(linearised, label, eps, s))
                    * direction
                ).sum()
            )
            for s in range(first_seed, first_seed + bias_draws)
        ]
        mean, se = mean_and_stderr(along)
        bias_rows.append(
            dict(label=label, eps=eps, measured=mean, se=se, predicted=predicted.norm().item())
        )

fig, ax = plt.subplots(figsize=(6.5, 4.2))
for label, color in zip(("RGE", "LGE r=1", "LGE r=2"), sns.color_palette(), strict=False):
    sel = [row for row in bias_rows if row["label"] == label]
    ax.errorbar(
        [row["eps"] for row in sel],
        [row["measured"] for row in sel],
        yerr=[2 * row["se"] for row in sel],
        fmt="o",
        color=color,
        capsize=3,
        label=f"{label}: measured (±2 SE)",
    )
    ax.plot([row["eps"] for row in sel], [row["predicted"] for row in sel], "x--", color=color)
ax.set(
    xscale="log",
    yscale="log",
    xlabel=r"$\varepsilon$",
    ylabel="bias along its predicted direction",
    title=f"ε² bias on a smooth non-quadratic f ({m_b}x{n_b}); x: prediction",
)
ax.legend(fontsize=8)
plt.show()
print(f"{'':8s} {'eps':>5s} {'measured':>10s} {'± SE':>8s} {'predicted':>10s}")
for row in bias_rows:
    print(
        f"{row['label']:8s} {row['eps']:5.2f} {row['measured']:10.4f} {row['se']:8.4f} {row['predicted']:10.4f}"
    )
ratio = lge_bias(grad_laplacian, mixed, 1.0, 2).norm() / rge_bias(grad_laplacian, 1.0).norm()
print(f"predicted |bias LGE r=2| / |bias RGE| = {ratio:.2f} at equal eps")
print(
    agrees(
        "ε² bias: RGE (ε²/2)∇Δf, LGE (ε²/2)(r∇Δf + 2K), two ε with fresh draws",
        [row["measured"] for row in bias_rows],
        [row["predicted"] for row in bias_rows],
        [row["se"] for row in bias_rows],
    )
)

# %% [markdown]
# ## 1.4 Queries, ranks and forward passes
#
# A step with $q$ queries costs $2q$ forward passes and has variance
# $(\mathbb E\|\hat g\|^2-\|G\|^2)/q$, so variance × passes should be $2(\mathbb E\|\hat g\|^2-\|G\|^2)$
# whatever $q$. Measured on the linear objective of 1.1 for $q\in\{1,4\}$.

# %%
pass_rows = []
draws_per_cell = pick(2_000, 300)
for q in (1, 4):
    for label, single in estimators.items():
        r = None if label.startswith("RGE") else int(label[-1])
        g = torch.Generator().manual_seed(SEED + 100 * q + (r or 0))
        if r is None:
            draw = lambda g=g, q=q: rge(linear, [W], eps=1e-3, generator=g, q=q)[0]
        else:
            draw = lambda g=g, q=q, r=r: lge(linear, [W], eps=1e-3, rank=r, generator=g, q=q)[0]
        values = [2 * q * float((draw() - G).pow(2).sum()) / sq_norm for _ in range(draws_per_cell)]
        mean, se = mean_and_stderr(values)
        predicted = 2 * q * query_averaged_variance(single[1], q)
        pass_rows.append(dict(label=label, q=q, measured=mean, se=se, predicted=predicted))
print(f"{'':12s} {'q':>2s} {'variance x passes / |G|²':>26s} {'predicted':>10s}")
for row in pass_rows:
    print(
        f"{row['label']:12s} {row['q']:2d} {row['measured']:17.1f} ± {row['se']:5.1f} {row['predicted']:10.1f}"
    )
print(
    agrees(
        "variance × forward passes = 2(E|ĝ|² - |G|²), independent of q",
        [row["measured"] for row in pass_rows],
        [row["predicted"] for row in pass_rows],
        [row["se"] for row in pass_rows],
        z=4,
    )
)

# %% [markdown]
# What a query buys in progress, from the descent constant of the $q$-query mean,
# $C_q = L + (C-L)/q$: at the best step $1/C_q$, the expected decrease per forward pass is
# $\|G\|^2/(4(qL + C - L))$. Since $C \ge L$ for every unbiased estimator
# ($\mathbb E\|\hat g\|^2 \ge \|G\|^2$), one query per step is best per forward pass — a
# consequence of the formula, not a measurement; what the measurement above checks is the formula
# (variance × passes independent of $q$). For the $12\times8$ matrix above with an isotropic
# Hessian ($L=1$):

# %%
L = 1.0
print(f"{'':10s} {'q':>2s} {'C_q':>8s} {'decrease per pass / |G|²':>26s}")
for label, C in [
    ("RGE", rge_second_moment(m * n) * L),
    ("LGE r=1", lge_second_moment(m, n, 1) * L),
    ("LGE r=4", lge_second_moment(m, n, 4) * L),
]:
    for q in (1, 4, 16):
        per_pass = 1 / (4 * q * query_averaged_constant(C, L, q))
        print(f"{label:10s} {q:2d} {query_averaged_constant(C, L, q):8.2f} {per_pass:26.5f}")

# %% [markdown]
# ## 1.5 What these numbers mean
#
# * **Unbiased, yes.** The Monte Carlo mean of LGE converges to $G$ at the rate its second moment
#   predicts; the $1/r$ factor matters (without it the mean is $rG$ and the learning rate must
#   shrink like $1/r$ to keep the same step).
# * **Lower variance, no.** The measured second moments sit on
#   $\frac{m(nr+2)+2(n+r+1)}{r}\|G\|^2$, which exceeds MeZO's $(mn+2)\|G\|^2$ by $2(m+n+1)/r$ at
#   every rank — a relative $\approx\frac2r(\frac1m+\frac1n)$: 43% on the $12\times 8$ matrix
#   here at $r=1$ (140 against 98), 4% at $m=n=100$. One low-rank query is never less noisy than
#   one full-rank query; a higher rank narrows the gap (the table above) without closing it, and
#   more queries do not buy progress per forward pass.
# * **Bias: larger for LOZO.** Both biases are second order in $\varepsilon$ and match their
#   predictions; at equal $\varepsilon$ LGE's is $r\nabla\Delta f+2K$ against $\nabla\Delta f$ (the
#   printed ratio for $r=2$). At MeZO's $\varepsilon=10^{-3}$ both are negligible next to the
#   variance.
# * **What LOZO gains** is in cost, not statistics: a perturbation needs $(m+n)r$ random numbers
#   rather than $mn$ and can be applied without writing the weights (notebook 07 measures the step
#   time and memory), and momentum and Adam states fit in $m\times r$ coordinates. Nothing here
#   shows an advantage from the subspace structure itself: a random $V$ sees $r/n$ of the gradient
#   whatever its rank (notebook 03), and on notebook 04's synthetic problems the ν sweep favours
#   ν = 1.

# %% [markdown]
# ## Exercises
#
# 1. The official LOZO code omits the $1/r$ of $\hat g_{\mathrm{LGE}}$. On the linear objective of
#    1.1, estimate $\mathbb E\langle r\hat g,G\rangle/\|G\|^2$ for $r=3$ by Monte Carlo and check
#    that it is $r$, not 1: by how much must the learning rate shrink to keep the same mean step?
# 2. From the closed forms, show that LGE's second moment exceeds MeZO's by exactly $2(m+n+1)/r$
#    (in units of $\|G\|^2$) at every shape and rank, and compute the relative excess at
#    $m=n=100$, $r=1$.
# 3. The bias of 1.3 grows like $\varepsilon^2$. For the smooth $f$ of 1.3 and LGE with $r=2$, find
#    the $\varepsilon$ at which the predicted bias is 1% of $\|\nabla f\|$, and check that
#    `lge_bias` follows the $\varepsilon^2$ law you used (halving $\varepsilon$ quarters it).

# %% tags=["hide-cell"]
r_ex = 3
g = torch.Generator().manual_seed(SEED + 55)
scaled = [
    float((r_ex * lge(linear, [W], eps=1e-3, rank=r_ex, generator=g)[0] * G).sum() / sq_norm)
    for _ in range(pick(2_000, 400))
]
mean, se = mean_and_stderr(scaled)
print(f"E<r ĝ, G>/|G|² = {mean:.3f} ± {se:.3f}: the step is r = {r_ex} times too long, so lr / r")
assert abs(mean - r_ex) < 4 * se and abs(mean - 1) > 4 * se

# %% tags=["hide-cell"]
for m_, n_, r_ in [(4, 4, 1), (12, 8, 3), (100, 100, 1), (768, 768, 2)]:
    excess = lge_second_moment(m_, n_, r_) - rge_second_moment(m_ * n_)
    assert math.isclose(excess, 2 * (m_ + n_ + 1) / r_), (m_, n_, r_, excess)
relative = (lge_second_moment(100, 100, 1) - rge_second_moment(100 * 100)) / rge_second_moment(
    100 * 100
)
print(f"relative excess at m = n = 100, r = 1: {relative:.2%}")
assert 0.039 < relative < 0.041

# %% tags=["hide-cell"]
unit_bias = lge_bias(grad_laplacian, mixed, 1.0, 2).norm()
eps_1pct = math.sqrt(0.01 * float(G_b.norm()) / float(unit_bias))
print(f"ε = {eps_1pct:.3f} gives a predicted LGE (r=2) bias of 1% of |∇f|")
at, at_half = (
    float(lge_bias(grad_laplacian, mixed, e, 2).norm()) for e in (eps_1pct, eps_1pct / 2)
)
assert math.isclose(at_half, at / 4, rel_tol=1e-9), (at, at_half)
