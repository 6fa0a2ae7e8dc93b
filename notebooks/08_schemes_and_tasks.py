# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 8. Fine-tuning schemes and tasks
#
# ZO-Bench crosses optimizers with fine-tuning schemes and tasks of different kinds; MeZO pairs
# zeroth-order training with parameter-efficient adapters. This notebook reads the scaled-down
# version of that grid recorded on CPU — SmolLM2-135M-Instruct (Q4_1 GGUF de-quantized to fp32);
# schemes **full**, **LoRA** (rank 8 on the query and value projections) and **prefix** (10
# virtual tokens); **MeZO**, **LOZO** (rank 2, ν = 50) and **FO-Adam**; **SST-2** (label words),
# **COPA** (two continuations, each scored by its mean log-probability) and **WiC** (Yes / No:
# does a word mean the same in two sentences); three seeds. It runs nothing: the plan is
# `scripts/schemes_grid.toml`, the runs are in `data/results/schemes_grid/`, and
# `python scripts/campaign.py --plan scripts/schemes_grid.toml run --commit` records what is
# missing (the plan's header says what was scaled down from MeZO's protocol and why).
#
# It asks two questions: does LOZO's low-rank perturbation still help when the trainable weights
# are already a low-rank adapter, and does the prompt format that the objective is computed on
# matter (ZO-Bench's *task alignment*)?

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lozo_core.models import load_model, random_init_like
from lozo_core.moments import lge_second_moment, rge_second_moment, subspace_energy_fraction
from lozo_core.paired import detected, mean_std
from lozo_core.provenance import banner, is_smoke
from lozo_core.schemes import Scheme
from lozo_core.schemes_grid import (
    alignment_verdict,
    costs,
    gains,
    load_plan,
    lozo_mezo_verdicts,
    planned_runs,
    runs,
    sweep_choices,
    verdicts,
    zero_shot_format_verdict,
)
from lozo_core.subspace import captured_energy

sns.set_theme(style="whitegrid")
banner(notebook="08_schemes_and_tasks", model="smollm2-135m (Q4_1 GGUF → fp32)")
plan = load_plan()
planned = pd.DataFrame(planned_runs(plan))
recorded = runs()
print(
    f"planned campaign runs: {len(planned)}; finished: {(planned.state == 'done').sum()}; "
    f"in progress: {(planned.state == 'partial').sum()}; failed: {(planned.state == 'failed').sum()}"
)

# %% [markdown]
# ## 8.1 What is recorded
#
# One row per (task, plan block, scheme, optimizer): how many of its planned seeds have finished
# (block `whole-dev` is the task-alignment zero-shot on the whole SST-2 dev split). A cell
# with fewer than three seeds is shown below with the seeds it has; a cell with none is shown
# empty — never as a number. The learning rates come from the sweep on SST-2 (one seed, three
# rates spanning 10× per scheme and optimizer to start with, more beyond a choice that lay on an
# edge until it was interior; on 100 validation examples, accuracies within 2 standard errors of
# the best count as tied and the lowest final validation loss decides); LOZO's rates carry its
# $1/r$ (the paper's rate is ours divided by $r=2$). A 20-step sweep favours large rates: these
# are the rates for the grid's 40 steps.

# %%
coverage = (
    planned.assign(done=planned.state == "done")
    .groupby(["task", "block", "scheme", "optimizer"], sort=False)
    .agg(planned=("seed", "size"), finished=("done", "sum"))
    .reset_index()
)
coverage["recorded"] = np.where(
    coverage.finished == coverage.planned, "yes",
    np.where(coverage.finished > 0, "partly", "not yet"),
)  # fmt: skip
print(coverage.to_string(index=False))
choices = sweep_choices()
sweep = pd.DataFrame(
    [{"scheme/optimizer": key, "chosen": r["lr"] == c["chosen_lr"]} | r
     for key, c in choices.items() for r in c["results"]]
)  # fmt: skip
print(sweep.to_string(index=False) if len(sweep) else "The learning-rate sweep has not run yet.")


# %% [markdown]
# ## 8.2 Gain over zero-shot: scheme × optimizer, one panel per task
#
# Test accuracy at the step with the best validation accuracy, minus the zero-shot test accuracy
# of the same seed and starting model (prefix tuning starts from random virtual tokens and has
# its own zero-shot runs; a LoRA adapter starts at $B_{lora}=0$, so its reference is the full
# model). Each cell: mean over seeds, with ± std and the number of seeds, and a `*` where a paired
# test over the seeds gives $p < 0.05$ (§8.6 states each verdict); empty cells are not recorded
# yet.

# %%
TASKS, SCHEMES, OPTIMIZERS = (
    ["sst2", "copa", "wic"],
    ["full", "lora", "prefix"],
    ["mezo", "lozo", "fo-adam"],
)
gain_rows = pd.DataFrame(
    gains(recorded),
    columns=["task", "scheme", "optimizer", "seed", "accuracy", "zero_shot", "gain"],
)
grid = gain_rows[gain_rows.task.isin(TASKS)]
fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.6), sharey=True)
limit = max(0.05, float(grid.gain.abs().max())) if len(grid) else 0.05
for ax, task in zip(axes, TASKS, strict=True):
    values = np.full((len(SCHEMES), len(OPTIMIZERS)), np.nan)
    labels = np.full(values.shape, "not\nrecorded", dtype=object)
    for (scheme, optimizer), cell in grid[grid.task == task].groupby(["scheme", "optimizer"]):
        i, j = SCHEMES.index(scheme), OPTIMIZERS.index(optimizer)
        mean, std = mean_std(list(cell.gain))
        values[i, j] = mean
        labels[i, j] = (
            f"{mean:+.3f}{' *' if detected(list(cell.gain)) else ''}"
            + (f"\n± {std:.3f}" if std is not None else "")
            + f"\n(n={len(cell)})"
        )
    sns.heatmap(values, ax=ax, cmap="RdBu", vmin=-limit, vmax=limit, cbar=ax is axes[-1],
                xticklabels=OPTIMIZERS, yticklabels=SCHEMES)  # fmt: skip
    for (i, j), label in np.ndenumerate(labels):
        dark = abs(values[i, j]) > 0.6 * limit
        ax.text(j + 0.5, i + 0.5, label, ha="center", va="center", fontsize=8,
                color="white" if dark else "black")  # fmt: skip
    ax.set_title(f"{task}: test gain over zero-shot")
    ax.grid(False)
axes[0].set_ylabel("scheme")
plt.tight_layout()
plt.show()

# %% [markdown]
# The same numbers as a table, with the test accuracies they are differences of (mean ± std over
# the seeds recorded):


# %%
def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    def fmt(values) -> str:
        mean, std = mean_std(list(values))
        return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")

    return frame.groupby(["task", "scheme", "optimizer"]).agg(
        seeds=("seed", "size"), accuracy=("accuracy", fmt), zero_shot=("zero_shot", fmt), gain=("gain", fmt)
    )  # fmt: skip


table = summarise(grid)
print(table.to_string() if len(table) else "No trained cell of the grid is recorded yet.")

# %% [markdown]
# ## 8.3 What each scheme trains, and what it costs
#
# Trainable parameters, the peak memory of each run's last process (resident set size, which
# includes the 135M frozen weights every scheme keeps, and the evaluation), and the median seconds
# per step on each task and CPU, from the recorded runs (zero-shot rows: evaluation only; a task's
# prompts and candidates set its step's length; seconds compare only within one CPU). A zeroth-order step costs about the same forward passes
# whatever trains; a first-order step's memory grows with what it must keep for the backward pass
# and Adam's two moments per trainable parameter.

# %%
cost = pd.DataFrame(costs(recorded))
print(
    cost.pivot_table(
        index=["cpu", "scheme", "optimizer", "trainable_parameters"],
        columns="task",
        values=["seconds_per_step", "peak_memory_MiB"],
    )
    .round(2)
    .to_string()
    if len(cost)
    else "No run is recorded yet: parameters and memory per scheme appear here once one is."
)

# %% [markdown]
# ## 8.4 LOZO on an adapter that is already low rank
#
# LOZO perturbs a matrix $W\in\mathbb R^{m\times n}$ by $\varepsilon UV^\top$ with
# $U\in\mathbb R^{m\times r}$, $V\in\mathbb R^{n\times r}$ (here $r = 2$); $U$ is fresh every step,
# $V$ every ν steps, so within an interval $W$ moves only in the row space of $V$, which keeps a
# share $r/n$ of the gradient's energy (`subspace_energy_fraction`). On a full SmolLM2
# projection ($n = 576$) that is $2/576 \approx 0.3\%$ per interval. A LoRA adapter trains
# $A_{lora}\in\mathbb R^{8\times 576}$ and $B_{lora}\in\mathbb R^{m\times 8}$ instead:
#
# * on $B_{lora}$ ($n = 8$) a rank-2 $V$ spans a quarter of the row space, so one interval sees
#   $r/n = 25\%$ of the gradient's energy — far more than on a full projection, but still a
#   restriction;
# * on $A_{lora}$ ($m = 8$, $n = 576$) $V$ spans 2 of 576 row dimensions, as on the full matrix —
#   the lazy restriction is as strict as ever — while $U$ ($8\times 2$) covers a quarter of the
#   column space.
#
# Per step, LOZO's $\mathbb E\|\hat g\|^2$ exceeds MeZO's by $2(m+n+1)/r\cdot\|G\|^2$: under
# 1% of MeZO's $(mn+2)\|G\|^2$ on a full projection (0.3% on $576\times 576$), 13% on a LoRA
# factor. What LOZO saves is memory and perturbation cost, and an adapter is already small, so the
# grid's LoRA row tests whether anything is left of LOZO's case there.
#
# One more thing happens at the start of LoRA training, for every zeroth-order method: the adapter
# adds $\tfrac{\alpha}{r_{lora}}B_{lora}A_{lora}$ to $W$, so $\partial f/\partial A_{lora} =
# \tfrac{\alpha}{r_{lora}}B_{lora}^\top\,\partial f/\partial W = 0$ while $B_{lora}=0$. The
# perturbation of $A_{lora}$ then only adds variance, and the loss moves through $B_{lora}$ alone
# — one reason the sweep found that no zeroth-order rate up to $2\cdot10^{-3}$ moved validation
# accuracy in 20 steps, and the grid's LoRA rates are larger than the full scheme's.
#
# Measured here on the adapter shapes of the model (`peft` on the architecture; at smoke size a
# tiny OPT): the Monte Carlo share of a random gradient's energy in span($V$), against $r/n$.

# %%
architecture = load_model("tiny-opt").model if is_smoke() else random_init_like("smollm2-135m")
adapter = Scheme("lora", lora_rank=8).apply(architecture)
shapes = {}
for name, p in adapter.named_parameters():
    if p.requires_grad and p.ndim == 2:
        projection, factor = name.split(".")[-4:-2]
        shapes.setdefault(f"{projection} {factor}", tuple(p.shape))
for name, p in architecture.named_parameters():
    if name.endswith("q_proj.base_layer.weight"):
        shapes["full q_proj"] = tuple(p.shape)
        break
draws = 50 if is_smoke() else 400
generator = torch.Generator().manual_seed(0)
rows = []
for kind, (m, n) in shapes.items():
    share = np.mean([
        captured_energy(torch.randn(m, n, generator=generator), torch.randn(n, 2, generator=generator))
        for _ in range(draws)
    ])  # fmt: skip
    rows.append({
        "matrix": kind, "m × n": f"{m} × {n}", "r/n": subspace_energy_fraction(n, 2),
        f"measured share ({draws} draws)": share,
        "E|g_LOZO|² / E|g_MeZO|²": lge_second_moment(m, n, 2) / rge_second_moment(m * n),
    })  # fmt: skip
energy = pd.DataFrame(rows)
print(energy.round(4).to_string(index=False))
assert all(abs(r["r/n"] - r[f"measured share ({draws} draws)"]) < 0.05 for r in rows)

# %% [markdown]
# And the start of LoRA training on the same adapter: the loss's gradient with respect to each
# factor, on random tokens.

# %%
tokens = torch.randint(0, adapter.config.vocab_size, (2, 16), generator=generator)
adapter(input_ids=tokens, labels=tokens).loss.backward()
grad_norm = {
    factor: sum(float(p.grad.norm() ** 2) for name, p in adapter.named_parameters()
                if f"lora_{factor}" in name) ** 0.5
    for factor in "AB"
}  # fmt: skip
print(
    f"at B_lora = 0: |∂f/∂A_lora| = {grad_norm['A']:.3g}, |∂f/∂B_lora| = {grad_norm['B']:.3g} "
    f"({'tiny OPT' if is_smoke() else 'SmolLM2-135M architecture, random init'})"
)
assert grad_norm["A"] == 0.0 < grad_norm["B"]

# %% [markdown]
# Whether that shows in training is the LoRA row of the heat-map above: LOZO's and MeZO's gains
# on LoRA, paired by seed (same data order, same starting adapter), per task and pooled over the
# tasks. A direction is stated only where a paired t-test gives $p < 0.05$.

# %%
gain_records = gain_rows.to_dict("records")
lora_lines = lozo_mezo_verdicts(gain_records, "lora")
print("\n".join(lora_lines) or "No LoRA pair of LOZO and MeZO runs is recorded yet.")

# %% [markdown]
# ## 8.5 Task alignment: the same task in two prompt formats
#
# ZO-Bench finds that a zeroth-order method does well when the objective it optimizes matches how
# the task is scored: the model should already put the label words where the loss looks. SST-2
# in two formats, the same sentences and labels:
#
# * `sst2` (MeZO's): `{sentence} It was` + ` terrible` / ` great`;
# * `sst2-review`: `Review: {sentence}\nSentiment:` + ` negative` / ` positive`.
#
# Zero-shot on all 872 dev examples (compared by Fisher's exact test on the counts), then LOZO
# fine-tuning (full scheme, the full scheme's chosen rate, same seeds) on each, its gain over the
# same format's zero-shot, paired by seed.

# %%
whole = [r for r in recorded if r["block"] == "whole-dev"]
for r in whole:
    print(
        f"{r['task']:12} zero-shot on {r['eval_examples']} dev examples: {r['final_eval_accuracy']:.3f}"
    )
if not whole:
    print("The whole-dev zero-shot evaluations of the two formats are not recorded yet.")
formats = zero_shot_format_verdict(recorded)
print(formats or "One of the two formats' whole-dev zero-shot evaluations is still missing.")
aligned = gain_rows[(gain_rows.task.isin(["sst2", "sst2-review"])) & (gain_rows.scheme == "full")
                    & (gain_rows.optimizer == "lozo")]  # fmt: skip
print(
    summarise(aligned).to_string()
    if len(aligned)
    else "No LOZO run on either format is recorded yet."
)
print(alignment_verdict(gain_records) or "No LOZO pair on the two formats is recorded yet.")

# %% [markdown]
# ## 8.6 What the grid shows
#
# Every question the grid can answer, from the recorded runs only: task alignment before and
# after training, each cell's gain over zero-shot, and LOZO against MeZO per scheme. A direction
# ("higher", "lower") is stated only where a two-sided paired t-test over seeds gives $p < 0.05$ —
# with 3 seeds that needs $|t| > 4.30$, so only large, consistent effects reach it; where every
# seed gives the same difference the t statistic says nothing and the sign test speaks (it needs 6
# seeds). "No difference detected" is a statement about these 40-step runs at 3 seeds, not
# evidence that none exists.

# %%
done = int((planned.state == "done").sum())
print(f"{done} of {len(planned)} planned campaign runs recorded (SmolLM2-135M, Q4_1 → fp32).")
if done < len(planned):
    print(
        "The grid is incomplete: cells with fewer than 3 seeds, and verdicts on them, are provisional."
    )
print(
    "\n".join(
        ([f"task alignment, zero-shot: {formats}"] if formats else []) + verdicts(gain_records)
    )
    or "No trained run with its zero-shot reference is recorded yet."
)

# %% [markdown]
# How to read these verdicts, for the grid as recorded on 2026-12-07 (all 107 runs): in 40
# zeroth-order steps only full-parameter MeZO moved SST-2's test accuracy detectably; FO-Adam
# (20 steps) did so on full weights and on LoRA; on COPA, WiC and every prefix cell no method
# gained detectably. LOZO against MeZO shows no difference on any scheme — so this grid neither
# supports nor rules out that LOZO's low-rank direction helps or hurts on an adapter: at this
# length and 3 seeds the test cannot see effects of the size the cells show. The one large effect
# is the prompt format before training (the review format's zero-shot accuracy is far above
# MeZO's); whether LOZO's gain depends on the format after training is not detected. The
# question needs MeZO's length (thousands of steps), which the full-protocol campaign
# (notebook 06) runs for full weights only.

# %% [markdown]
# ## Exercises
#
# 1. For a LoRA rank $r_{lora}$ and LOZO rank $r$, the share of $B_{lora}$'s row space one LOZO
#    interval explores is $r/r_{lora}$. At which LOZO rank does LOZO's direction on $B_{lora}$
#    span its whole row space for the grid's adapter, and what is its share then on a full
#    576-wide projection?

# %% tags=["hide-cell"]
lora_rank = 8
answer_rank = lora_rank
generator = torch.Generator().manual_seed(1)
on_b = captured_energy(torch.randn(576, lora_rank, generator=generator),
                       torch.randn(lora_rank, answer_rank, generator=generator))  # fmt: skip
on_full = [
    captured_energy(torch.randn(576, 576, generator=generator), torch.randn(576, answer_rank, generator=generator))
    for _ in range(draws)
]  # fmt: skip
mean, se = np.mean(on_full), np.std(on_full, ddof=1) / np.sqrt(draws)
assert abs(on_b - 1) < 1e-5, on_b
assert abs(mean - subspace_energy_fraction(576, answer_rank)) < 4 * se, (mean, se)
print(f"rank {answer_rank}: share {on_b:.6f} on B_lora, {mean:.5f} ± {se:.1e} measured on a full "
      f"projection (r/n = {subspace_energy_fraction(576, answer_rank):.4f})")  # fmt: skip

# %% [markdown]
# 2. Check LOZO's second-moment excess on a LoRA $A_{lora}$ ($8\times 576$) at $r = 2$: compute
#    $\mathbb E\|\hat g_{LOZO}\|^2 - \mathbb E\|\hat g_{MeZO}\|^2$ for $\|G\|=1$ and compare it
#    with $2(m+n+1)/r$.

# %% tags=["hide-cell"]
m, n, r = 8, 576, 2
excess = lge_second_moment(m, n, r) - rge_second_moment(m * n)
assert abs(excess - 2 * (m + n + 1) / r) < 1e-9
print(
    f"excess {excess:.1f} against MeZO's {rge_second_moment(m * n)}: {excess / rge_second_moment(m * n):.1%}"
)

# %% [markdown]
# 3. Count by hand the parameters the grid trains: LoRA of rank 8 on the query ($576\to576$) and
#    value ($576\to192$: 3 key-value heads of 64) projections of SmolLM2's 30 layers, and a prefix
#    of 10 virtual tokens (a key and a value of $3\times64$ per layer). Check your counts against
#    what `peft` reported in the recorded runs.

# %% tags=["hide-cell"]
layers, hidden, kv = 30, 576, 3 * 64
by_hand = {
    "lora": layers * (lora_rank * (hidden + hidden) + lora_rank * (hidden + kv)),
    "prefix": 10 * layers * 2 * kv,
}
reported = {r["scheme"]: r["trainable_parameters"] for r in recorded if r["scheme"] in by_hand}
for scheme, count in by_hand.items():
    assert reported.get(scheme, count) == count, (scheme, reported[scheme], count)
print(f"by hand {by_hand}; recorded {reported or 'nothing yet'}")
