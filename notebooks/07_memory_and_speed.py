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
# and over the doubled batch (`forward-doubled`), every trainable optimizer of
# `lozo_core.optim.table` as training runs it (`lozo`, `lozo-m` and `lozo-adam` on the side path
# *paired*: $+\varepsilon$ and $-\varepsilon$ in one forward over the doubled batch, no weight
# written), and two variants of LOZO: `lozo-inplace` (the official code's way: write
# $\pm\varepsilon UV^\top$ into the weights) and `lozo-sequential` (side path, two single-batch
# forwards). `scripts/record_bench_cpu.sh` records every row read here (`data/results/bench/`),
# with the machine, its CPU flags and its load; this notebook runs nothing heavy itself.
#
# The questions, in order: where does a ZO step's time go (7.1)? How much memory does each method
# need over plain single-batch inference, and what does the paired side path's doubled batch
# cost (7.2)? Does bf16 pay on this CPU (7.3)? How do time and memory grow with the model (7.4)
# and the context (7.5), next to an analytic memory model? What does perturb-and-restore do to
# weights stored in bf16 or fp16 (7.6)? What crosses the wire in data-parallel training (7.7)?

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lozo_core.drift import cycle_drift
from lozo_core.memory_model import TERMS, Architecture, peak_bytes
from lozo_core.provenance import banner, cpu_line, pick
from lozo_core.results import SCALING_SIZES, bench_groups, bench_key, dtype_ratio_lines, load

torch.set_num_threads(1)
sns.set_theme(style="whitegrid")
records = load("bench")
groups = bench_groups(records)
profile = next((r for r in records if r.get("kind") == "profile"), None)
drift = next((r for r in records if r.get("kind") == "drift"), None)
distributed = {r["config"]["world_size"]: r for r in load("distributed")}
main, bf16 = groups["main"].get("float32"), groups["main"].get("bfloat16")
demo_shape, demo_cycles = pick(((512, 256), 100), ((128, 64), 10))
banner(notebook="07_memory_and_speed", live_demo=f"{demo_cycles} bf16 cycles on {demo_shape}")


def not_recorded(what, step):
    print(f"{what}: not recorded yet (bash scripts/record_bench_cpu.sh {step}).")


def load_averages(node):
    """Every 1-minute load average recorded anywhere in a record (per row, section or run)."""
    if isinstance(node, dict):
        here = [node[k][0] for k in ("loadavg_start", "loadavg_end") if k in node]
        return here + [x for v in node.values() for x in load_averages(v)]
    return []


def provenance(rec):
    m, loads = rec["machine"], load_averages(rec)
    load = f"load average {min(loads):.1f}-{max(loads):.1f}" if loads else "load not recorded"
    print(f"  {rec['command']}\n    {cpu_line(m)}, {m['date']}, commit {m['git_commit']}; {load}")


def measured(r):
    return r is not None and "error" not in r


def cell(r, fmt):
    """A table cell: the formatted measurement, or why there is none."""
    if r is None:
        return "—"
    return fmt(r) if measured(r) else "did not fit" if "did_not_fit" in r else r["error"]


def sweep(recs, label, fmt):
    """Methods as rows, one column per record."""
    methods = list(dict.fromkeys(m for rec in recs for m in rec["results"]))
    return pd.DataFrame({label(rec): [cell(rec["results"].get(m), fmt) for m in methods] for rec in recs}, index=methods)  # fmt: skip


# %% [markdown]
# ## 7.1 Where a ZO step's time goes
#
# `scripts/profile_zo_step.py` runs steps of MeZO and LOZO under `torch.profiler` and splits the
# fastest step's main thread into the forward passes, the in-place weight writes and the rest
# (update arithmetic, and waiting for directions). The library draws directions ahead on worker
# threads, which the profiler does not see; their drawing time is clocked separately (it
# overlaps the main thread). MeZO draws a full-size Gaussian four times per step (perturb, flip,
# restore, update: the seed trick trades memory for regenerating $z$); LOZO draws only $U$
# ($m\times r$) per matrix.

# %%
if profile is None:
    not_recorded("the profile", "profile")
else:
    print(
        f"OPT-125M (random init), fp32, batch {profile['batch']}, {profile['config']['threads']} threads:"
    )
    provenance(profile)
    parts = ["forward", "random draws", "weight writes", "other", "unaccounted (python)"]
    breakdown = pd.DataFrame(profile["breakdown"]["rows"]).T
    print(
        breakdown[["wall_s", *parts, "draw threads (overlapping)"]]
        .astype(float)
        .round(3)
        .to_string()
    )
    ax = breakdown[parts].astype(float).plot.barh(stacked=True, figsize=(9, 3))
    ax.set(
        xlabel="seconds (the fastest profiled step)", title="Where a step's time goes (main thread)"
    )
    plt.tight_layout()
    plt.show()
    shares = {
        m: {p: r[p] / r["wall_s"] for p in parts} for m, r in profile["breakdown"]["rows"].items()
    }
    print("MeZO: " + ", ".join(f"{p} {v:.0%}" for p, v in shares["mezo"].items()) + " of the step; its draw threads "
          f"drew for {profile['breakdown']['rows']['mezo']['draw threads (overlapping)']:.2f} s.")  # fmt: skip

# %% [markdown]
# Can the draws be made cheaper? Every generator candidate draws float32 Gaussians for all 125M
# parameters once (a MeZO step does this four times). The MeZO variants then time MeZO's passes
# over the weights alone (draw, write, update; no forward): the library's order of passes
# (perturb, perturb, restore, update — the trajectory of every recorded MeZO run depends on it)
# against standalone proposals, each replaying the library's draws, with the largest weight
# difference to the library after two real steps. The fused variant is a *proposal measured
# here*, not what `MeZO` runs.

# %%
if profile is not None:
    generators = pd.DataFrame(profile["generators"]["rows"]).T
    print(
        generators[["s_per_draw_of_all_parameters", "ns_per_sample"]]
        .astype(float)
        .round(3)
        .to_string()
    )
    variants = pd.DataFrame(profile["mezo_variants"]["rows"]).T
    cols = ["passes_s_min", "time_vs_library", "max_abs_weight_difference_vs_library"]
    print()
    print(variants[cols].to_string())

# %% [markdown]
# ## 7.2 Memory against single-batch inference, and the side path's two modes
#
# MeZO's promise is "memory equal to inference". The honest baseline is inference over the
# *same* batch. Peak memory is the resident set size of the method's process from the moment the
# model is loaded (weights and interpreter included). The time column divides each step by its
# own *floor*: the forwards its row of the optimizer table says it cannot avoid (two
# single-batch forwards, five for ZO-SGD-Cons, one doubled forward for the paired side path).

# %%
columns = {"step_s_median": "step (s)", "time_vs_floor": "× own floor", "time_vs_mezo": "× MeZO",
           "mem_vs_forward": "memory × inference", "mem_vs_forward-doubled": "× doubled inference"}  # fmt: skip
if main is None:
    not_recorded("OPT-125M fp32", "125m-fp32")
else:
    provenance(main)
    rows = {m: r for m, r in main["results"].items() if measured(r)}
    table = pd.DataFrame({m: {c: r.get(k) for k, c in columns.items()} | {"peak MiB": r["peak_mem_bytes"] / 2**20}
                          for m, r in rows.items()}).T  # fmt: skip
    print(table.astype(float).round(3).to_string())
    frame = pd.DataFrame([{"method": m, "× single-batch inference": r["mem_vs_forward"],
                           "× own floor": r.get("time_vs_floor")} for m, r in rows.items()])  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    sns.barplot(data=frame, x="method", y="× single-batch inference", ax=axes[0], color="tab:blue")
    axes[0].axhline(1.05, color="r", ls="--", label="1.05 × inference")
    axes[0].set(title="peak memory over single-batch inference (OPT-125M, fp32, 4 × 64)", xlabel="")
    axes[0].legend()
    sns.barplot(data=frame.dropna(), x="method", y="× own floor", ax=axes[1], color="tab:green")
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set(title="step time over the forwards it cannot avoid", xlabel="")
    for ax in axes:
        ax.tick_params(axis="x", rotation=60)
    plt.tight_layout()
    plt.show()
    paired, seq = rows["lozo"], rows["lozo-sequential"]
    print(
        f"side path, sequential vs paired: step time x{seq['step_s_median'] / paired['step_s_median']:.2f}, "
        f"peak memory x{seq['peak_mem_bytes'] / paired['peak_mem_bytes']:.2f}; over single-batch inference: "
        f"paired {paired['mem_vs_forward']:.3f}, sequential {seq['mem_vs_forward']:.3f}, MeZO {rows['mezo']['mem_vs_forward']:.3f}."
    )  # fmt: skip
    for line in main["goals"]:
        print("  ", line)

# %% [markdown]
# **Which side-path mode to use.** The paired mode runs $\pm\varepsilon$ as one forward over
# the doubled batch: one pass over the weights instead of two, but the activations (dominated by
# the vocabulary logits) are doubled. The sequential mode holds only single-batch activations.
# The line above says what each costs on this machine; choose paired when time matters and the
# doubled activations fit, sequential when memory is the limit (long contexts, large batches:
# see 7.5). In code: pass a `PairedClosure` to a side-path `LOZO` for the paired mode, a plain
# closure (or `closure.__call__`) for the sequential one.

# %% [markdown]
# ## 7.3 bf16 on this CPU
#
# bf16 halves the weights' memory, but whether it is faster depends on the CPU: with AMX
# (`amx_bf16`, Intel Sapphire Rapids and later) or AVX-512 BF16 (`avx512_bf16`: Intel Cooper
# Lake and later; AMD Zen 4 and later) oneDNN runs bf16 matrix products natively; an AVX2-only
# CPU has no bf16 arithmetic and converts around every product. The plot is the AMD EPYC's (AVX2
# only); the lines after it pair fp32 and bf16 runs of one machine wherever both were recorded,
# among them two Intel Xeons at the full-protocol campaign's SmolLM2 batch shape: one with
# AVX-512 BF16 but no AMX, one with AMX. A bf16/fp32 ratio is only ever taken within one machine.

# %%
if main is None or bf16 is None:
    not_recorded("OPT-125M bf16", "125m-bf16")
else:
    provenance(bf16)
    both = [
        m for m, r in main["results"].items() if measured(r) and measured(bf16["results"].get(m))
    ]
    dtype_rows = [{"method": m, "dtype": d, "step (s)": rec["results"][m]["step_s_median"]}
                  for d, rec in (("fp32", main), ("bf16", bf16)) for m in both]  # fmt: skip
    ax = sns.barplot(data=pd.DataFrame(dtype_rows), x="method", y="step (s)", hue="dtype")
    ax.set(
        title=f"fp32 against bf16, OPT-125M, 4 × 64, {bf16['machine']['cpu_model']}",
        xlabel="",
        yscale="log",
    )
    ax.tick_params(axis="x", rotation=60)
    plt.tight_layout()
    plt.show()
    slower = {
        m: bf16["results"][m]["step_s_median"] / main["results"][m]["step_s_median"] for m in both
    }
    memory = {
        m: bf16["results"][m]["peak_mem_bytes"] / main["results"][m]["peak_mem_bytes"] for m in both
    }
    print(f"bf16 step / fp32 step: {min(slower.values()):.1f}x to {max(slower.values()):.1f}x; "
          f"bf16 peak memory / fp32: {min(memory.values()):.2f} to {max(memory.values()):.2f}")  # fmt: skip
    print(
        pd.DataFrame({"bf16 / fp32 time": slower, "bf16 / fp32 memory": memory})
        .round(2)
        .to_string()
    )
for line in dtype_ratio_lines(records):
    print(line)

# %% [markdown]
# ## 7.4 Scaling with the model
#
# Random-init OPT architectures in fp32, batch 4 × 64, one torch thread per method. The lines are
# the analytic model of `lozo_core.memory_model` (weights + optimizer state + gradients + dense
# directions + activations, plus the process itself, measured before the model was loaded),
# drawn for every size; points are measurements, at the sizes recorded so far. A method that ran
# out of memory under its child's limit is recorded as *did not fit* (×). fp32 at every size:
# the issue asked for bf16 where fp32 does not fit, but on this CPU (AVX2, no bf16 instructions) a
# bf16 step is several times slower (7.3 above), and on the Xeon with AVX-512 BF16 it was slower
# too. The limit is an address-space limit (RLIMIT_DATA) of the free memory less 3 GiB at the
# run's start (about 19.5 GiB here, the README table gives it), not the machine's 24 GiB: under it
# the first-order methods are the ones that stopped fitting — FO-Adam first (modelled at 1.3B
# below), then FO-SGD — while the zeroth-order methods stayed near inference memory up to 2.7B;
# the table says which ran. Whether FO-Adam at 1.3B (modelled at about 21 GiB) fits in the full
# 24 GiB was not tested.

# %%
scaling = groups["scaling"]
recorded = [r["config"]["model"] for r in scaling]
for rec in scaling:
    provenance(rec)
for name in SCALING_SIZES:
    if name not in recorded:
        not_recorded(
            f"{name} (model only below)",
            "125m-fp32" if name == "opt-125m" else name.removeprefix("opt-"),
        )
arch = {name: Architecture.of_opt(name) for name in SCALING_SIZES}
starts = [r["rss_start_bytes"] for rec in groups["scaling"] + groups["context"] for r in rec["results"].values() if "rss_start_bytes" in r]  # fmt: skip
process = float(np.median(starts)) if starts else 0.0
methods = ["forward", "mezo", "lozo", "lozo-sequential", "fo-sgd", "fo-adam"]
colors = dict(zip(methods, sns.color_palette("tab10", len(methods)), strict=True))


def modelled(method, name, batch, seq_len):
    terms = peak_bytes(
        method, arch[name], batch=batch, seq_len=seq_len, bytes_per=4, process_bytes=process
    )
    return sum(terms.values())


sizes = [arch[n].parameters for n in SCALING_SIZES]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for m in methods:
    axes[0].plot(
        sizes,
        [modelled(m, n, 4, 64) / 2**30 for n in SCALING_SIZES],
        "-",
        color=colors[m],
        alpha=0.5,
    )
    points = [
        (arch[rec["config"]["model"]].parameters, rec["config"]["model"], rec["results"].get(m))
        for rec in scaling
    ]
    ok = [(p, r) for p, _, r in points if measured(r)]
    unfit = [(p, n) for p, n, r in points if r is not None and "did_not_fit" in r]
    axes[0].plot(
        [p for p, _ in ok],
        [r["peak_mem_bytes"] / 2**30 for _, r in ok],
        "o",
        color=colors[m],
        label=m,
    )
    axes[0].plot([p for p, _ in unfit], [modelled(m, n, 4, 64) / 2**30 for _, n in unfit], "x", color=colors[m], ms=10, mew=2)  # fmt: skip
    axes[1].plot(
        [p for p, _ in ok], [r["step_s_median"] for _, r in ok], "o-", color=colors[m], label=m
    )
for ax in axes:
    ax.set_xscale("log")
    ax.set_xticks(sizes, [n.removeprefix("opt-") for n in SCALING_SIZES])
    ax.minorticks_off()
axes[0].set(yscale="log", xlabel="OPT size", ylabel="peak memory (GiB)",
            title="peak memory: measured (o), did not fit (x), model (line)")  # fmt: skip
axes[1].set(yscale="log" if scaling else "linear", xlabel="OPT size", ylabel="step time (s)",
            title=f"step time, measured at {', '.join(n.removeprefix('opt-') for n in recorded) or 'no size yet'}")  # fmt: skip
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()
if scaling:
    print("step time (s) / peak memory (GiB):")
    print(sweep(scaling, lambda rec: rec["config"]["model"],
                lambda r: f"{r['step_s_median']:.2f} / {r['peak_mem_bytes'] / 2**30:.2f}").to_string())  # fmt: skip

# %%
fit = pd.DataFrame([
    {"model": rec["config"]["model"], "method": m, "measured GiB": r["peak_mem_bytes"] / 2**30,
     "model GiB": modelled(m, rec["config"]["model"], 4, 64) / 2**30}
    for rec in scaling for m, r in rec["results"].items() if measured(r) and m in methods
])  # fmt: skip
if len(fit):
    fit["model / measured"] = fit["model GiB"] / fit["measured GiB"]
    print(fit.round(2).to_string(index=False))
    spread = fit.groupby("method")["model / measured"].agg(["min", "max"])
    print("the model's error per method (model / measured over the sizes): "
          + ", ".join(f"{m} {lo:.2f}-{hi:.2f}" for m, (lo, hi) in spread.iterrows()))  # fmt: skip
terms = peak_bytes(
    "fo-adam", arch["opt-1.3b"], batch=4, seq_len=64, bytes_per=4, process_bytes=process
)
print("FO-Adam at 1.3B, modelled: " + ", ".join(f"{t} {terms[t] / 2**30:.1f} GiB" for t in TERMS))

# %% [markdown]
# The same 1.3B architecture in bf16, zeroth-order methods only (a first-order bf16 step is up to
# 27× its fp32 time on this CPU, section 7.3): what halving the weights buys in memory and costs
# in time here.

# %%
large = {
    rec["config"]["dtype"]: rec
    for rec in [*scaling, *groups["other"]]
    if bench_key(rec)[0] == "opt-1.3b" and bench_key(rec)[2:] == (4, 64, 50)
}
if "bfloat16" not in large:
    not_recorded("OPT-1.3B in bf16", "1.3b-bf16")
else:
    provenance(large["bfloat16"])
    print("OPT-1.3B, step time (s) / peak memory (GiB):")
    both = sweep(list(large.values()), lambda rec: rec["config"]["dtype"],
                 lambda r: f"{r['step_s_median']:.2f} / {r['peak_mem_bytes'] / 2**30:.2f}")  # fmt: skip
    print(both.loc[list(large["bfloat16"]["results"])].to_string())

# %% [markdown]
# ## 7.5 Context length
#
# The LOZO paper motivates zeroth-order fine-tuning by long contexts: backpropagation stores
# every layer's activations, which grow with the sequence, while a ZO step holds one layer's at
# a time (and the logits). OPT-125M, fp32, batch 1, at 64 to 2048 tokens. LOZO's default paired
# side path evaluates +ε and −ε in one forward over a doubled batch, so its activations and
# logits are twice a single forward's: at long contexts only the sequential side path keeps the
# ZO advantage (the table shows where paired LOZO passes FO-SGD).

# %%
context = groups["context"]
if not context:
    not_recorded("the context sweep", "context")
else:
    for rec in context:
        provenance(rec)
    lengths = [r["config"]["seq_len"] for r in context]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in methods:
        pts = [
            (r["config"]["seq_len"], r["results"][m])
            for r in context
            if measured(r["results"].get(m))
        ]
        ax.plot(
            [t for t, _ in pts],
            [r["peak_mem_bytes"] / 2**30 for _, r in pts],
            "o",
            color=colors[m],
            label=m,
        )
        ax.plot(
            lengths,
            [modelled(m, "opt-125m", 1, t) / 2**30 for t in lengths],
            "-",
            color=colors[m],
            alpha=0.5,
        )
    ax.set(xscale="log", xlabel="sequence length (tokens)", ylabel="peak memory (GiB)",
           title="OPT-125M, batch 1: measured (o) and modelled (line)")  # fmt: skip
    ax.set_xticks(lengths, [str(t) for t in lengths])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()
    print("peak memory (MiB) and its ratio to single-batch inference at the same length:")
    print(sweep(context, lambda rec: f"{rec['config']['seq_len']} tokens",
                lambda r: f"{r['peak_mem_bytes'] / 2**20:.0f} (x{r.get('mem_vs_forward', float('nan')):.2f})").to_string())  # fmt: skip

# %% [markdown]
# ## 7.6 Precision drift of perturb-and-restore
#
# `scripts/record_drift.py` takes a real weight (SmolLM2-135M's first MLP up-projection) and,
# in fp32, bf16 and fp16, runs (a) 1000 optimizer steps at `lr = 0` — perturb, evaluate,
# restore, an update of zero — and (b) 200 training steps on a least-squares task with the same
# method in float64 alongside. Drift is $\|W-W_0\|_F/\|W_0\|_F$ in (a), the distance to the
# float64 run in (b), against the floor of merely storing the float64 trajectory in the dtype.

# %%
if drift is None:
    not_recorded("the drift measurements", "drift")
else:
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
            axes[0].plot(
                row["checkpoints"], row["drift"], styles[method], color=dcolors[dtype], label=name
            )
        else:
            zero_rows.append(
                f"{name}: drift {max(row['drift'])}, entries changed {row['changed_entries']}"
            )
    axes[0].set(xscale="log", yscale="log", xlabel="perturb/restore cycles (steps at lr = 0)",
                ylabel=r"$\|W-W_0\|_F/\|W_0\|_F$", title="in place drifts; side path: measured 0 (not drawable on a log axis)")  # fmt: skip
    for name, row in drift["training"].items():
        method, dtype = name.split()
        axes[1].plot(
            row["checkpoints"], row["drift"], styles[method], color=dcolors[dtype], label=name
        )
        if method == "lozo-sidepath":
            axes[1].plot(
                row["checkpoints"], row["storage_floor"], color=dcolors[dtype], alpha=0.3, lw=6
            )
    axes[1].set(xscale="log", yscale="log", xlabel="training step", ylabel="distance to the float64 run / ‖W0‖",
                title="training: thick pale line = storage floor of the dtype")  # fmt: skip
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7, ncol=3)
    plt.tight_layout()
    plt.show()
    print("Measured zeros:", *zero_rows, sep="\n  ")
    for name, row in drift["cycles"].items():
        print(f"  {name:24s} after {row['checkpoints'][-1]} cycles: {row['drift'][-1]:.2e}")
    for name, row in drift["training"].items():
        print(f"  {name:24s} after {row['checkpoints'][-1]} training steps: {row['drift'][-1]:.2e} "
              f"(storage floor {row['storage_floor'][-1]:.2e}, x{row['drift'][-1] / row['storage_floor'][-1]:.1f})")  # fmt: skip

# %% [markdown]
# Live, a few seconds: the same measurement at a small size (bf16, random weight of std 0.02).

# %%
weight = torch.randn(*demo_shape, generator=torch.Generator().manual_seed(0)) * 0.02
for method in ("mezo", "lozo-inplace", "lozo-sidepath"):
    r = cycle_drift(
        weight, method=method, dtype=torch.bfloat16, cycles=demo_cycles, checkpoints=(demo_cycles,)
    )
    print(
        f"{method:14s} bf16, {demo_cycles} cycles: drift {r['drift'][0]:.2e}, entries changed {r['changed_entries']} of {weight.numel()}"
    )

# %% [markdown]
# ## 7.7 Data parallelism: what crosses the wire
#
# With a shared seed every worker regenerates the same perturbation, so a zeroth-order step
# all-reduces only its measured losses; first-order DDP all-reduces every gradient.
# `scripts/record_distributed.py` measured both on OPT-125M (random init), global batch 4 × 64,
# gloo on this 2-core CPU (`data/results/distributed/`).

# %%
if not distributed:
    print("not recorded yet (python scripts/record_distributed.py --world-size 2)")
for n, rec in sorted(distributed.items()):
    print(f"N = {n}: {rec['command']}; {cpu_line(rec['machine'])}, {rec['machine']['date']}")
    frame = pd.DataFrame(rec["results"]).T.reindex(columns=["step_s_median", "allreduce_bytes_per_step",
                                                            "time_vs_fo_ddp", "load_average_1min"])  # fmt: skip
    print(frame.to_string(), "\n")
if 2 in distributed:
    res = distributed[2]["results"]
    zo = {m: r for m, r in res.items() if not m.startswith("fo-")}
    fo = next(r for m, r in res.items() if m.startswith("fo-"))
    for m, r in zo.items():
        print(f"{m}: {r['allreduce_bytes_per_step']} bytes per step against {fo['allreduce_bytes_per_step']:,} "
              f"for FO DDP (x{fo['allreduce_bytes_per_step'] / r['allreduce_bytes_per_step']:,.0f} fewer); "
              f"step time x{r['time_vs_fo_ddp']:.2f} of FO DDP's")  # fmt: skip

# %% [markdown]
# ## 7.8 What the measurements show
#
# Computed from the recorded rows above (nothing here is typed in by hand):

# %%
if main is not None:
    r = main["results"]
    print(f"* MeZO's step is {r['mezo']['time_vs_floor']:.1f}x its two forwards; LOZO's paired side path "
          f"{r['lozo']['time_vs_floor']:.2f}x its doubled forward and {r['lozo']['time_vs_mezo']:.2f}x MeZO's step.")  # fmt: skip
    print(f"* Peak memory over single-batch inference: MeZO {r['mezo']['mem_vs_forward']:.2f}, LOZO paired "
          f"{r['lozo']['mem_vs_forward']:.2f}, LOZO sequential {r['lozo-sequential']['mem_vs_forward']:.2f}, "
          f"FO-SGD {r['fo-sgd']['mem_vs_forward']:.2f}, FO-Adam {r['fo-adam']['mem_vs_forward']:.2f}.")  # fmt: skip
if main is not None and bf16 is not None:
    verdict = (
        "slower"
        if min(slower.values()) > 1
        else "faster"
        if max(slower.values()) < 1
        else "slower or faster"
    )
    print(f"* bf16 on this CPU ({cpu_line(bf16['machine'])}): a step takes {min(slower.values()):.1f}-"
          f"{max(slower.values()):.1f}x its fp32 time ({verdict}).")  # fmt: skip
if context:
    last = context[-1]
    fo_over_zo = (
        last["results"]["fo-sgd"]["peak_mem_bytes"]
        / last["results"]["lozo-sequential"]["peak_mem_bytes"]
    )
    paired_over_fo = (
        last["results"]["lozo"]["peak_mem_bytes"] / last["results"]["fo-sgd"]["peak_mem_bytes"]
    )
    print(
        f"* At {last['config']['seq_len']} tokens FO-SGD needs {fo_over_zo:.1f}x the memory of LOZO's "
        f"sequential side path, and LOZO's paired side path {paired_over_fo:.2f}x FO-SGD's."
    )
if drift is not None:
    side = [
        row["changed_entries"]
        for name, row in drift["cycles"].items()
        if name.startswith("lozo-sidepath")
    ]
    inplace = drift["cycles"]["mezo bfloat16"]["drift"][-1]
    print(f"* Side path after {drift['cycles']['mezo bfloat16']['checkpoints'][-1]} cycles at lr 0: "
          f"{sum(side)} weight entries changed in any dtype; MeZO in bf16 drifted {inplace:.1e}.")  # fmt: skip
    over_floor = {
        name: row["drift"][-1] / row["storage_floor"][-1] for name, row in drift["training"].items()
    }
    for dtype in ("bfloat16", "float16"):
        rows = {n.split()[0]: v for n, v in over_floor.items() if n.endswith(dtype)}
        print(f"* Training in {dtype}, drift from the float64 run over what storing it in {dtype} "
              "costs anyway: " + ", ".join(f"{m} x{v:.1f}" for m, v in rows.items()) + ".")  # fmt: skip

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (when activations outgrow the weights).** With `lozo_core.memory_model`, find the
# shortest sequence length (a power of two) at which FO-SGD's modelled *activations* for OPT-125M
# at batch 1 in fp32 exceed the weights themselves. Is the same true of MeZO's activations?

# %% tags=["hide-cell"]
arch125 = Architecture.of_opt("opt-125m")
length = next(
    t for t in (2**k for k in range(4, 16))
    if peak_bytes("fo-sgd", arch125, batch=1, seq_len=t, bytes_per=4)["activations"] > 4 * arch125.parameters
)  # fmt: skip
mezo_act = peak_bytes("mezo", arch125, batch=1, seq_len=length, bytes_per=4)["activations"]
print(
    f"FO-SGD's activations pass the weights at {length} tokens; MeZO's are then {mezo_act / (4 * arch125.parameters):.2f}x the weights"
)
assert (
    peak_bytes("fo-sgd", arch125, batch=1, seq_len=length // 2, bytes_per=4)["activations"]
    <= 4 * arch125.parameters
)
assert mezo_act < peak_bytes("fo-sgd", arch125, batch=1, seq_len=length, bytes_per=4)["activations"]

# %% [markdown]
# **Exercise 2 (one FO step's traffic in ZO steps).** From the recorded distributed rows, how
# many LOZO steps of all-reduce traffic fit into the traffic of one FO DDP step? And how many
# bytes would a ZO step with `q = 4` queries all-reduce, if each query contributes its two
# losses as float64?

# %% tags=["hide-cell"]
if 2 in distributed:
    res = distributed[2]["results"]
    fo_bytes = next(r for m, r in res.items() if m.startswith("fo-"))["allreduce_bytes_per_step"]
    ratio = fo_bytes / res["lozo"]["allreduce_bytes_per_step"]
    print(f"one FO DDP step = {ratio:,.0f} LOZO steps of traffic; q = 4: {4 * 2 * 8} bytes")
    assert res["lozo"]["allreduce_bytes_per_step"] == 2 * 8  # one query: f+ and f- as float64
    assert ratio > 1e6
else:
    print("no distributed record yet")

# %% [markdown]
# **Exercise 3 (one cycle is enough).** Show that a single perturb/restore cycle in bf16 already
# changes entries of a weight in place, and none on the side path. What fraction of entries
# changes in place, and why is it not all of them?

# %% tags=["hide-cell"]
w = torch.randn(64, 32, generator=torch.Generator().manual_seed(1)) * 0.02
one = {
    m: cycle_drift(w, method=m, dtype=torch.bfloat16, cycles=1, checkpoints=(1,))
    for m in ("mezo", "lozo-sidepath")
}
fraction = one["mezo"]["changed_entries"] / w.numel()
print(
    f"in place: {fraction:.0%} of entries changed after one cycle; side path: {one['lozo-sidepath']['changed_entries']}"
)
assert 0 < fraction < 1 and one["lozo-sidepath"]["changed_entries"] == 0
# An entry survives when w + εz and then its mirror round back onto w's bf16 grid point: the
# rounding errors of the three writes cancel whenever εz is small against w's spacing.
