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
# A zeroth-order method exists to save memory and time. `python -m lozo_core.bench` measures, in
# one run and on the same model, batch and sequence length: an inference forward (batch B and the
# doubled batch 2B), MeZO (in-place seed trick), LOZO in-place (the official code's way: write
# $\pm\varepsilon UV^\top$ into the weights), LOZO side-path (never write the weights; one forward
# over the doubled batch), LOZO-M, ZO-Adam, FO-SGD and FO-Adam. Each method runs in its own
# process so its peak memory is its own.
#
# The floor for any two-point ZO step is one forward over the doubled batch. Targets for the
# side path: ≤ 1.15 × that floor; ≤ 0.4 × MeZO on CPU (OPT-125M, fp32, batch 4 × 64) and
# ≤ 0.6 × on GPU (OPT-1.3B, bf16, 16 × 64); peak memory ≤ 1.05 × doubled inference.

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lozo_core.bench import main as bench_main
from lozo_core.provenance import banner, pick
from lozo_core.results import bench_markdown, load

sns.set_theme(style="whitegrid")
model, steps, methods = pick(
    ("opt-125m", 3, []), ("tiny-opt", 1, ["forward-doubled", "mezo", "lozo-sidepath"])
)
banner(notebook="07_memory_and_speed", live_model=model, live_steps=steps)

# %% [markdown]
# ## 7.1 Live benchmark
#
# At the smoke size: a tiny random OPT and three methods (overheads dominate, the ratios mean
# little). At the demo size: every method on the OPT-125M architecture with random weights, fp32,
# batch 4 × 64, on this machine.

# %%
with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / "bench.json"
    argv = [
        "--model",
        model,
        "--random-init",
        "--device",
        "cpu",
        "--steps",
        str(steps),
        "--json",
        str(out),
    ]
    bench_main(argv + (["--methods", *methods] if methods else []))
    live = json.loads(out.read_text())

# %% [markdown]
# ## 7.2 Recorded benchmarks

# %%
records = load("bench")
print(bench_markdown(records))
if not any(r["machine"]["gpu"] for r in records):
    print(
        "\nGPU rows PENDING (no GPU lent so far). One command on a CUDA machine: bash scripts/gpu_runs.sh bench"
    )

# %%
rows = []
for rec in [*records, live]:
    label = f"{rec['config']['model']} {rec['config']['dtype']} {rec['config']['batch_size']}x{rec['config']['seq_len']} ({'GPU' if rec['machine']['gpu'] else 'CPU'}, interval {rec['config']['interval']})"
    for method, r in rec["results"].items():
        if "error" not in r:
            rows.append(
                {
                    "setting": label,
                    "method": method,
                    "step (s)": r["step_s_median"],
                    "× doubled forward": r.get("time_vs_forward-doubled"),
                    "peak MiB": r["peak_mem_bytes"] / 2**20,
                }
            )
frame = pd.DataFrame(rows)
fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
sns.barplot(data=frame, x="method", y="× doubled forward", hue="setting", ax=axes[0])
axes[0].axhline(1.15, color="r", ls="--", label="side-path target 1.15")
axes[0].set(title="step time relative to one doubled forward", xlabel="")
axes[0].tick_params(axis="x", rotation=40)
axes[0].legend(fontsize=7)
sns.barplot(data=frame, x="method", y="peak MiB", hue="setting", ax=axes[1], legend=False)
axes[1].set(title="peak memory (RSS on CPU, allocated on GPU)", xlabel="")
axes[1].tick_params(axis="x", rotation=40)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7.3 Where each target stands

# %%
for rec in [*records, live]:
    print(
        f"{rec['config']['model']} {rec['config']['dtype']} batch {rec['config']['batch_size']}x{rec['config']['seq_len']} interval {rec['config']['interval']} ({rec['machine']['gpu'] or 'CPU'}):"
    )
    for line in rec["goals"]:
        print("   ", line)

# %% [markdown]
# ## 7.4 Step time against the interval ν
#
# Between refreshes a side-path step touches only the $(m+n)r$ factors; the $O(mnr)$ merge
# $W\leftarrow W+BV^\top$ happens once per interval. The recorded `interval 1` row (a merge every
# step) against the default `interval 50` row shows the merge's cost and its amortisation.

# %%
by_interval = {
    rec["config"]["interval"]: rec["results"]["lozo-sidepath"]
    for rec in records
    if rec["config"]["model"] == "opt-125m" and "lozo-sidepath" in rec["results"]
}
for nu, r in sorted(by_interval.items()):
    print(
        f"interval {nu:3d}: side-path step {r['step_s_median']:.3f} s = {r.get('time_vs_forward-doubled', float('nan')):.2f} × doubled forward"
    )
