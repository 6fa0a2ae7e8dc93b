# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 7. Memory and speed
#
# A zeroth-order method exists to save memory and time; this section measures both, on CPU,
# against the honest baselines. `python -m lozo_core.bench` runs each method in its own process
# on the same random-init OPT, batch and sequence length: inference over the batch (`forward`)
# and over the doubled batch (`forward-doubled`), MeZO (in-place seed trick), LOZO in place
# (the official code's way), LOZO side path *paired* (never writes a weight; $+\varepsilon$ and
# $-\varepsilon$ in one forward over the doubled batch), LOZO side path *sequential* (two
# single-batch forwards), LOZO-M, ZO-Adam, FO-SGD and FO-Adam. `scripts/record_bench_cpu.sh`
# records every row read here (`data/results/bench/`), with the machine and its load.
#
# The questions, in order: where does a ZO step's time go (7.1)? How much memory does each method
# need over plain single-batch inference, and what does the paired side path's doubled batch
# cost (7.2)? Does bf16 pay on this CPU (7.3)? How do time and memory grow with the model (7.4)
# and the context (7.5), next to an analytic memory model? What does perturb-and-restore do to
# weights stored in bf16 or fp16 (7.6)?

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lozo_core.drift import cycle_drift
from lozo_core.memory_model import TERMS, Architecture, peak_bytes
from lozo_core.provenance import banner, pick
from lozo_core.results import load

sns.set_theme(style="whitegrid")
records = load("bench")
bench = [r for r in records if r.get("kind") == "bench"]
(profile,) = [r for r in records if r.get("kind") == "profile"]
(drift,) = [r for r in records if r.get("kind") == "drift"]
demo_shape, demo_cycles = pick(((512, 256), 100), ((128, 64), 10))
banner(notebook="07_memory_and_speed", live_demo=f"{demo_cycles} bf16 cycles on {demo_shape}")


def key(rec):
    c = rec["config"]
    return c["model"], c["dtype"], c["batch_size"], c["seq_len"], c["interval"]


def load_averages(node):
    """Every 1-minute load average recorded anywhere in a record (per row, section or run)."""
    if isinstance(node, dict):
        here = [node[k][0] for k in ("loadavg_start", "loadavg_end") if k in node]
        return here + [x for v in node.values() for x in load_averages(v)]
    return []


def provenance(rec):
    m, loads = rec["machine"], load_averages(rec)
    flags = ", ".join(f for f, on in (m.get("cpu_flags") or {}).items() if on)
    print(f"  {rec['command']}\n    machine: {m['cpu_model']} x{m['cpu_count']} [{flags}], torch {m['torch']}, "
          f"{m['date']}, commit {m['git_commit']}; load average {min(loads):.1f}-{max(loads):.1f}")  # fmt: skip


def cell(r, fmt):
    """A table cell: the formatted measurement, or why there is none."""
    if r is None:
        return "—"
    return fmt(r) if "error" not in r else "did not fit" if "did_not_fit" in r else r["error"]


def sweep(recs, label, fmt):
    """Methods as rows, one column per record."""
    methods = list(dict.fromkeys(m for rec in recs for m in rec["results"]))
    return pd.DataFrame({label(rec): [cell(rec["results"].get(m), fmt) for m in methods] for rec in recs}, index=methods)  # fmt: skip


by_key = {key(r): r for r in bench}
main = by_key[("opt-125m", "float32", 4, 64, 50)]
bf16 = by_key[("opt-125m", "bfloat16", 4, 64, 50)]

# %% [markdown]
# ## 7.1 Where a ZO step's time goes
#
# `scripts/profile_zo_step.py` runs one step of each method under `torch.profiler` and splits
# it into the forward passes, the Gaussian draws (`aten::randn`), the in-place weight writes and
# the rest of the update. MeZO draws a full-size Gaussian four times per step (perturb, flip,
# restore, update: the seed trick trades memory for regenerating $z$); LOZO draws only
# $U$ ($m\times r$) per matrix.

# %%
print(f"OPT-125M (random init), fp32, batch {profile['batch']}, {profile['config']['threads']} threads:")
provenance(profile)
parts = ["forward", "random draws", "weight writes", "other"]
breakdown = pd.DataFrame(profile["breakdown"]["rows"]).T[parts]
print(breakdown.round(3).to_string())
ax = breakdown.plot.barh(stacked=True, figsize=(9, 3))
ax.set(xlabel="seconds (one step, the fastest of the profiled repeats)", title="Where the step's time goes")
plt.tight_layout()
plt.show()
mezo_parts = profile["breakdown"]["rows"]["mezo"]
print(f"MeZO: random draws {mezo_parts['random draws'] / mezo_parts['wall_s']:.0%} of the step, "
      f"weight writes and update arithmetic {(mezo_parts['weight writes'] + mezo_parts['other']) / mezo_parts['wall_s']:.0%}, "
      f"forwards {mezo_parts['forward'] / mezo_parts['wall_s']:.0%}.")  # fmt: skip

# %% [markdown]
# Can the draws be made cheaper? Every candidate below draws float32 Gaussians for all 125M
# parameters once; a MeZO step does this four times.

# %%
generators = pd.DataFrame(profile["generators"]["rows"]).T[["s_per_draw_of_all_parameters", "ns_per_sample"]]
print(generators.astype(float).round(3).to_string())
variants = pd.DataFrame(profile["mezo_variants"]["rows"]).T
print()
print(variants[["passes_s_min", "time_vs_library", "max_abs_weight_difference_vs_library"]].to_string())

# %% [markdown]
# numpy's ziggurat (`Generator.standard_normal(dtype=float32)`) is *slower* than torch's
# vectorised Box–Muller on this CPU, and a flat buffer or bf16 output change little: torch's
# single-stream generator is already near its speed limit. What does pay is structural — fusing
# MeZO's restore with its update (three passes over the weights instead of four), applying the
# update as one `add_` instead of building $\sum_j c_j z_j / q$ in temporaries, and giving each
# parameter its own stream so that the draws run on both cores. The weight difference to the
# library's step (after two steps) shows the fused variants compute the same update, to
# float32 rounding. These are proposals for `lozo_core.optim`; the benchmark below runs the
# library as it is, so its MeZO row carries today's cost.

# %% [markdown]
# ## 7.2 Memory against single-batch inference, and the side path's two modes
#
# MeZO's promise is "memory equal to inference". The honest baseline is inference over the
# *same* batch. Peak memory is the resident set size of the method's process from the moment the
# model is loaded (weights and interpreter included).

# %%
provenance(main)
columns = {"step_s_median": "step (s)", "time_vs_floor": "× own floor", "time_vs_mezo": "× MeZO",
           "mem_vs_forward": "memory × inference", "mem_vs_forward-doubled": "× doubled inference"}  # fmt: skip
table = pd.DataFrame({m: {c: r.get(k) for k, c in columns.items()} | {"peak MiB": r["peak_mem_bytes"] / 2**20}
                      for m, r in main["results"].items() if "error" not in r}).T  # fmt: skip
print(table.astype(float).round(3).to_string())
frame = pd.DataFrame(
    [{"method": m, "× single-batch inference": r["mem_vs_forward"], "× own floor": r.get("time_vs_floor")}
     for m, r in main["results"].items() if "error" not in r]
)  # fmt: skip
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
sns.barplot(data=frame, x="method", y="× single-batch inference", ax=axes[0], color="tab:blue")
axes[0].axhline(1.05, color="r", ls="--", label="1.05 × inference")
axes[0].set(title="peak memory over single-batch inference (OPT-125M, fp32, 4 × 64)", xlabel="")
axes[0].legend()
sns.barplot(data=frame.dropna(), x="method", y="× own floor", ax=axes[1], color="tab:green")
axes[1].axhline(1.0, color="k", lw=0.8)
axes[1].set(title="step time over the forwards it cannot avoid", xlabel="")
for ax in axes:
    ax.tick_params(axis="x", rotation=40)
plt.tight_layout()
plt.show()

paired, seq = main["results"]["lozo-sidepath"], main["results"]["lozo-sidepath-seq"]
print(
    f"side path, sequential vs paired: step time x{seq['step_s_median'] / paired['step_s_median']:.2f}, "
    f"peak memory x{seq['peak_mem_bytes'] / paired['peak_mem_bytes']:.2f}; "
    f"memory over single-batch inference: paired {paired['mem_vs_forward']:.3f}, sequential {seq['mem_vs_forward']:.3f}."
)  # fmt: skip
for line in main["goals"]:
    print("  ", line)

# %% [markdown]
# **Which side-path mode to use.** The paired mode runs $\pm\varepsilon$ as one forward over
# the doubled batch: one pass over the weights instead of two, but the activations (dominated by
# the vocabulary logits) are doubled. The sequential mode holds only single-batch activations.
# The numbers above say what each costs here: choose paired when time matters and the doubled
# activations fit; choose sequential when memory is the limit (long contexts, large batches —
# see 7.5) or when the forward is memory-bound rather than weight-bound. In code: pass a
# `PairedClosure` to a side-path `LOZO` for the paired mode, a plain closure for the sequential
# one.

# %% [markdown]
# ## 7.3 bf16 on this CPU
#
# bf16 halves the weights' memory, but whether it is faster depends on the CPU: with AMX
# (`amx_bf16`, Intel Sapphire Rapids and later) or AVX-512 BF16 (`avx512_bf16`: Intel Cooper
# Lake, Sapphire Rapids; AMD Zen 4 and later) oneDNN runs bf16 matrix products natively; an
# AVX2-only CPU has no bf16 arithmetic and converts to fp32 around every product. On an Intel
# CPU with AMX this project measured bf16 2.9× faster than fp32 for a forward over the doubled
# batch (MEASURED.md); the rows below are this machine.

# %%
flags = bf16["machine"]["cpu_flags"]
print(f"{bf16['machine']['cpu_model']}: " + ", ".join(f"{f}={'yes' if on else 'no'}" for f, on in flags.items()))
provenance(bf16)
dtype_rows = [
    {"method": m, "dtype": dtype, "step (s)": rec["results"][m]["step_s_median"]}
    for dtype, rec in (("fp32", main), ("bf16", bf16))
    for m in main["results"]
    if m in rec["results"] and "error" not in rec["results"][m]
]
ax = sns.barplot(data=pd.DataFrame(dtype_rows), x="method", y="step (s)", hue="dtype")
ax.set(title="fp32 against bf16, OPT-125M, 4 × 64, this CPU", xlabel="")
ax.tick_params(axis="x", rotation=40)
plt.tight_layout()
plt.show()
slower = {m: bf16["results"][m]["step_s_median"] / r["step_s_median"] for m, r in main["results"].items()
          if "error" not in r and m in bf16["results"] and "error" not in bf16["results"][m]}  # fmt: skip
print(f"bf16 step / fp32 step: {min(slower.values()):.1f}x to {max(slower.values()):.1f}x "
      f"({', '.join(f'{m} {v:.1f}x' for m, v in slower.items())})")  # fmt: skip

# %% [markdown]
# ## 7.4 Scaling with the model: OPT-125M to 2.7B
#
# Random-init OPT architectures in fp32, batch 4 × 64. A method that ran out of memory under the
# child's limit (available memory minus 3 GiB when the run started) is recorded as *did not
# fit*. The lines are the analytic model of `lozo_core.memory_model` (weights + optimizer state +
# gradients + dense directions + activations), plus the process itself measured before the model
# was loaded.

# %%
scaling = sorted(
    (r for r in bench if key(r)[1:] == ("float32", 4, 64, 50)),
    key=lambda r: Architecture.of_opt(r["config"]["model"]).parameters,
)
for rec in scaling:
    provenance(rec)
arch = {rec["config"]["model"]: Architecture.of_opt(rec["config"]["model"]) for rec in scaling}
process = float(np.median([r["rss_start_bytes"] for rec in bench for r in rec["results"].values() if "rss_start_bytes" in r]))  # fmt: skip
methods = ["forward", "mezo", "lozo-sidepath", "lozo-sidepath-seq", "fo-sgd", "fo-adam"]
colors = dict(zip(methods, sns.color_palette("tab10", len(methods)), strict=True))


def modelled(method, name, batch, seq_len):
    terms = peak_bytes(method, arch[name] if name in arch else Architecture.of_opt(name), batch=batch,
                       seq_len=seq_len, bytes_per=4, process_bytes=process)  # fmt: skip
    return sum(terms.values())


names = [r["config"]["model"] for r in scaling]
sizes = [arch[n].parameters for n in names]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for m in methods:
    points = [(arch[n].parameters, n, rec["results"][m]) for n, rec in zip(names, scaling, strict=True) if m in rec["results"]]  # fmt: skip
    ok = [(p, r) for p, _, r in points if "error" not in r]
    unfit = [(p, n) for p, n, r in points if "did_not_fit" in r]
    axes[0].plot([p for p, _ in ok], [r["peak_mem_bytes"] / 2**30 for _, r in ok], "o", color=colors[m], label=m)
    axes[0].plot(sizes, [modelled(m, n, 4, 64) / 2**30 for n in names], "-", color=colors[m], alpha=0.5)
    axes[0].plot([p for p, _ in unfit], [modelled(m, n, 4, 64) / 2**30 for _, n in unfit], "x", color=colors[m], ms=10, mew=2)  # fmt: skip
    axes[1].plot([p for p, _ in ok], [r["step_s_median"] for _, r in ok], "o-", color=colors[m], label=m)
limits = {r["config"]["memory_limit_bytes"] for r in scaling if r["config"].get("memory_limit_bytes")}
for limit in sorted(limits):
    axes[0].axhline(limit / 2**30, color="gray", ls=":", label="child memory limit" if limit == max(limits) else None)
for ax in axes:
    ax.set_xscale("log")
    ax.set_xticks(sizes, [n.removeprefix("opt-") for n in names])
    ax.minorticks_off()
axes[0].set(yscale="log", xlabel="OPT size (parameters)", ylabel="peak memory (GiB)",
            title="peak memory: measured (o), did not fit (x, at the model's value), model (line)")  # fmt: skip
axes[1].set(yscale="log", xlabel="OPT size (parameters)", ylabel="step time (s)", title="step time")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()
print("step time (s) / peak memory (GiB):")
print(sweep(scaling, lambda rec: rec["config"]["model"],
            lambda r: f"{r['step_s_median']:.1f} / {r['peak_mem_bytes'] / 2**30:.2f}").to_string())  # fmt: skip

# %%
rows = []
for rec in scaling:
    for m, r in rec["results"].items():
        if "error" not in r:
            model_bytes = modelled(m, rec["config"]["model"], 4, 64)
            rows.append({"model": rec["config"]["model"], "method": m, "measured GiB": r["peak_mem_bytes"] / 2**30,
                         "model GiB": model_bytes / 2**30, "model / measured": model_bytes / r["peak_mem_bytes"]})  # fmt: skip
fit = pd.DataFrame(rows)
print(fit.round(2).to_string(index=False))
print(f"model / measured: median {fit['model / measured'].median():.2f}, range {fit['model / measured'].min():.2f}-{fit['model / measured'].max():.2f}")
terms = peak_bytes("fo-adam", Architecture.of_opt("opt-1.3b"), batch=4, seq_len=64, bytes_per=4, process_bytes=process)
print("FO-Adam at 1.3B, modelled: " + ", ".join(f"{t} {terms[t] / 2**30:.1f} GiB" for t in TERMS))

# %% [markdown]
# ## 7.5 Context length
#
# The LOZO paper motivates zeroth-order fine-tuning by long contexts: backpropagation stores
# every layer's activations, which grow with the sequence, while a ZO step holds one layer's.
# OPT-125M, fp32, batch 1, at 64 to 2048 tokens.

# %%
context = sorted((r for r in bench if key(r)[0] == "opt-125m" and key(r)[2] == 1), key=lambda r: r["config"]["seq_len"])
for rec in context:
    provenance(rec)
lengths = [r["config"]["seq_len"] for r in context]
fig, ax = plt.subplots(figsize=(8, 4.5))
for m in methods:
    pts = [(r["config"]["seq_len"], r["results"][m]) for r in context if m in r["results"] and "error" not in r["results"][m]]
    ax.plot([t for t, _ in pts], [r["peak_mem_bytes"] / 2**30 for _, r in pts], "o", color=colors[m], label=m)
    ax.plot(lengths, [modelled(m, "opt-125m", 1, t) / 2**30 for t in lengths], "-", color=colors[m], alpha=0.5)
ax.set(xscale="log", xlabel="sequence length (tokens)", ylabel="peak memory (GiB)",
       title="OPT-125M, batch 1: measured (o) and modelled (line)")  # fmt: skip
ax.set_xticks(lengths, [str(t) for t in lengths])
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print("peak memory (MiB) and its ratio to single-batch inference at the same length:")
print(sweep(context, lambda rec: f"{rec['config']['seq_len']} tokens",
            lambda r: f"{r['peak_mem_bytes'] / 2**20:.0f} (x{r['mem_vs_forward']:.2f})").to_string())  # fmt: skip

# %% [markdown]
# ## 7.6 Precision drift of perturb-and-restore
#
# `scripts/record_drift.py` takes a real weight (SmolLM2-135M's first MLP up-projection) and,
# in fp32, bf16 and fp16, runs (a) 1000 optimizer steps at `lr = 0` — perturb, evaluate,
# restore, an update of zero — and (b) 200 training steps on a least-squares task with the same
# method in float64 alongside. Drift is $\|W-W_0\|_F/\|W_0\|_F$ in (a), the distance to the
# float64 run in (b), against the floor of merely storing the float64 trajectory in the dtype.

# %%
print(f"{drift['model']} {drift['parameter']} {tuple(drift['shape'])}, std {drift['weight_std']:.4f}, "
      f"eps {drift['eps']}, lr {drift['lr']} (training), rank {drift['rank']}, interval {drift['interval']}")  # fmt: skip
provenance(drift)
styles = {"mezo": "-", "lozo-inplace": "--", "lozo-sidepath": ":"}
dcolors = {"float32": "tab:blue", "bfloat16": "tab:red", "float16": "tab:orange"}
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
zero_rows = []
for name, row in drift["cycles"].items():
    method, dtype = name.split()
    if any(d > 0 for d in row["drift"]):
        axes[0].plot(row["checkpoints"], row["drift"], styles[method], color=dcolors[dtype], label=name)
    else:
        zero_rows.append(f"{name}: drift {max(row['drift'])}, entries changed {row['changed_entries']}")
axes[0].set(xscale="log", yscale="log", xlabel="perturb/restore cycles (steps at lr = 0)",
            ylabel=r"$\|W-W_0\|_F/\|W_0\|_F$", title="in place drifts; side path: measured 0 (not drawable on a log axis)")  # fmt: skip
for name, row in drift["training"].items():
    method, dtype = name.split()
    axes[1].plot(row["checkpoints"], row["drift"], styles[method], color=dcolors[dtype], label=name)
    if method == "lozo-sidepath":
        axes[1].plot(row["checkpoints"], row["storage_floor"], color=dcolors[dtype], alpha=0.3, lw=6)
axes[1].set(xscale="log", yscale="log", xlabel="training step", ylabel="distance to the float64 run / ‖W0‖",
            title="training: thick pale line = storage floor of the dtype")  # fmt: skip
axes[0].legend(fontsize=7)
axes[1].legend(fontsize=7, ncol=3)
plt.tight_layout()
plt.show()
print("Measured zeros:", *zero_rows, sep="\n  ")
for name, row in drift["cycles"].items():
    print(f"  {name:24s} after {row['checkpoints'][-1]} cycles: {row['drift'][-1]:.2e}")

# %% [markdown]
# Live, a few seconds: the same measurement at a small size (bf16, random weight of std 0.02).

# %%
weight = torch.randn(*demo_shape, generator=torch.Generator().manual_seed(0)) * 0.02
for method in ("mezo", "lozo-inplace", "lozo-sidepath"):
    r = cycle_drift(weight, method=method, dtype=torch.bfloat16, cycles=demo_cycles, checkpoints=(demo_cycles,))
    print(f"{method:14s} bf16, {demo_cycles} cycles: drift {r['drift'][0]:.2e}, entries changed {r['changed_entries']} of {weight.numel()}")

# %% [markdown]
# ## 7.7 What the measurements show
#
# The printed numbers above are the evidence; in words:
#
# * **Time.** MeZO's step on CPU is dominated by regenerating Gaussians and writing the
#   weights, not by its forwards; LOZO's side path draws almost nothing and its step is close to
#   its floor. The ratio of the two therefore compares implementations of the draw as much as
#   algorithms, which is why 7.1 proposes the faster draw for both.
# * **Memory.** Against single-batch inference (the honest baseline) the sequential side path
#   is the one that stays at inference memory; the paired side path pays for its doubled
#   activations, and MeZO for the full-size temporaries its update builds.
# * **bf16** is a memory saving, and a speed-up only on CPUs with bf16 matrix instructions
#   (AMX or AVX-512 BF16); on this AVX2-only CPU it is several times slower.
# * **Precision.** In-place perturb-and-restore moves bf16 and fp16 weights although nothing is
#   learned; the side path leaves them bit-identical (a measured zero) and, in training, stays at
#   the dtype's storage floor.
