# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 6. Full-protocol fine-tuning (GPU) next to the papers' numbers
#
# The full protocol (MeZO's: 1000 training examples, evaluation on the dev set, thousands of
# steps) does not fit a laptop CPU. `scripts/gpu_runs.sh finetune` runs it on a GPU for
# SmolLM2-135M on SST-2 and RTE with MeZO, LOZO, LOZO-M and FO-Adam, one JSON per run in
# `data/results/finetune_gpu/`. This notebook plots what has been recorded and sets it next to the
# numbers the LOZO paper reports — which are for other models (RoBERTa-large, OPT-13B and larger)
# and are labelled as the paper's.

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lozo_core.provenance import banner
from lozo_core.results import finetune_markdown, load

sns.set_theme(style="whitegrid")
banner(notebook="06_full_finetuning_results")

# %% [markdown]
# ## 6.1 Recorded GPU runs

# %%
gpu_runs = load("finetune_gpu")
if gpu_runs:
    print(finetune_markdown(gpu_runs))
    for run in gpu_runs:
        print(
            f"{run['task']} {run['optimizer']}: {run['command']}  [{run['machine']['gpu']}, torch {run['machine']['torch']}, CUDA {run['machine']['cuda']}]"
        )
else:
    print("PENDING: no GPU runs are recorded yet (no GPU was lent to the sessions so far).")
    print("Reproduce with one command on a CUDA machine:  bash scripts/gpu_runs.sh finetune")

# %%
if gpu_runs:
    curves = pd.DataFrame(
        [
            {"task": r["task"], "optimizer": r["optimizer"], **p}
            for r in gpu_runs
            for p in r["curve"]
            if "eval_accuracy" in p
        ]
    )
    grid = sns.relplot(
        data=curves,
        x="step",
        y="eval_accuracy",
        hue="optimizer",
        col="task",
        kind="line",
        marker="o",
        height=3.5,
    )
    grid.figure.suptitle("dev accuracy along training (recorded GPU runs)", y=1.04)
    plt.show()

# %% [markdown]
# ## 6.2 What the LOZO paper reports (not measured here)
#
# Source: the LOZO README's bar chart and the paper's Table 1, as summarised in the project's
# PAPERS.md. Values read off a bar chart are **approximate (±0.5)**. RoBERTa-large, k = 16.

# %%
paper = pd.DataFrame(
    [
        ("SNLI", "MeZO", 68.5), ("SNLI", "LOZO", 73.4), ("SNLI", "LOZO-M", 74.0), ("SNLI", "FT", 72.7),
        ("MNLI", "MeZO", 56.7), ("MNLI", "LOZO", 61.6), ("MNLI", "LOZO-M", 62.7), ("MNLI", "FT", 63.4),
        ("RTE", "MeZO", 58.6), ("RTE", "LOZO", 61.1), ("RTE", "LOZO-M", 60.2), ("RTE", "FT", 61.3),
    ],
    columns=["task", "method", "accuracy"],
)  # fmt: skip
memory = pd.DataFrame(
    [("LOZO", 2.84), ("LOZO-M", 2.85), ("MeZO", 3.0), ("MeZO-M", 5.2), ("MeZO-Adam", 7.42)],
    columns=["method", "GB"],
)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
sns.barplot(data=paper, x="task", y="accuracy", hue="method", ax=axes[0])
axes[0].set(ylim=(50, 80), title="PAPER FIGURE (LOZO README, approx.): RoBERTa-large k=16")
sns.barplot(data=memory, x="method", y="GB", ax=axes[1], color="#999999")
axes[1].set(title="PAPER FIGURE (LOZO Table 1 / README): memory, RoBERTa-large")
plt.tight_layout()
plt.show()
print(paper.pivot(index="task", columns="method", values="accuracy").to_string())

# %% [markdown]
# ## 6.3 How to compare
#
# The paper's numbers are for different models, 100k (RoBERTa) or 20k (OPT) steps, and its
# learning rates omit LOZO's $1/r$ (ours = rank × paper). What can be compared is the ordering
# (LOZO ≥ MeZO at equal steps; LOZO-M close to LOZO; FT ahead or close) and the memory ratio
# (LOZO ≈ MeZO ≈ inference, ZO-Adam ≈ 2.6×), which notebook 07 measures on our code.
