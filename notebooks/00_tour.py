# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 0. A tour of LOZO Lab
#
# LOZO Lab checks, by derivation and by experiment, the claims of
# **LOZO** (Chen et al., *Enhancing Zeroth-order Fine-tuning for Language Models with Low-rank
# Structures*, ICLR 2025, arXiv 2410.07698) and puts LOZO next to the optimizers benchmarked by
# **ZO-Bench** (Zhang et al., ICML 2024, arXiv 2402.11592) and MeZO (Malladi et al., 2023).
#
# Three layers, one direction of dependency:
#
# * `theory/` — derivations in Markdown, with sympy scripts that the tests execute;
# * `lozo_core/` — the library every notebook imports (no algorithm is defined in a notebook);
# * `notebooks/` — these pages, jupytext `.py` files executed in the test suite at smoke size
#   (`LOZO_SMOKE=1`) and by `make demo` at laptop size.
#
# Long runs are recorded as small JSON files under `data/results/`, each with the command that
# produced it and the machine it ran on; notebooks plot them and rerun a few steps live.
#
# The cells below list what is actually in this checkout, so this page cannot go stale.

# %%
import importlib
import json
import pkgutil
from pathlib import Path

import lozo_core
from lozo_core.provenance import REPO_ROOT, banner

banner(notebook="00_tour")

# %% [markdown]
# ## The library: one concept per module

# %%
for info in sorted(pkgutil.iter_modules(lozo_core.__path__), key=lambda i: i.name):
    module = importlib.import_module(f"lozo_core.{info.name}")
    summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else "(no docstring)"
    print(f"lozo_core.{info.name:12s} {summary}")

# %% [markdown]
# ## The notebooks, in reading order

# %%
for path in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
    title = next(
        (line[4:].strip() for line in path.read_text().splitlines() if line.startswith("# # ")), ""
    )
    print(f"{path.name:40s} {title}")

# %% [markdown]
# ## The derivations

# %%
for path in sorted((REPO_ROOT / "theory").glob("*")):
    if path.suffix in {".md", ".py"}:
        first = next(
            (line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.strip()),
            "",
        )
        print(f"{path.name:28s} {first.strip(chr(34))}")

# %% [markdown]
# ## Recorded runs
#
# Each JSON under `data/results/` is one run. Its `command` field reproduces it.

# %%
results = sorted(Path(REPO_ROOT / "data" / "results").rglob("*.json"))
by_folder: dict[str, int] = {}
for path in results:
    by_folder[path.parent.name] = by_folder.get(path.parent.name, 0) + 1
print(f"{len(results)} recorded runs")
for folder, count in sorted(by_folder.items()):
    example = json.loads(next(p for p in results if p.parent.name == folder).read_text())
    print(f"  {folder:16s} {count:4d} runs   e.g. command: {example.get('command', '(none)')}")

# %% [markdown]
# ## How to rerun anything
#
# * `make demo` — every notebook, laptop size, into `build/notebooks/` (executed `.ipynb` + HTML).
# * `make test` — lint, unit tests, the sympy derivations, and every notebook at smoke size.
# * `make lab` — JupyterLab on `notebooks/`, with the `.py` files opening as notebooks.
# * `python -m lozo_core.notebooks 01` — one notebook; add `--smoke` for the small size.

# %% [markdown]
# ## Exercises
#
# Each solution is hidden below its exercise (in the book, click to show it) and checks itself.
#
# **Exercise 1 (the one table).** Every optimizer the notebooks, the CLI and the benchmark use is
# a row of `lozo_core.optim.table.TABLE`. Which rows are zeroth-order (they never call
# `backward`)?

# %% tags=["hide-cell"]
from lozo_core.optim.table import TABLE  # noqa: E402

zeroth_order = sorted(name for name, entry in TABLE.items() if entry.zeroth_order)
print("zeroth-order:", ", ".join(zeroth_order))
assert {"mezo", "lozo", "lozo-m"} <= set(zeroth_order) and "fo-adam" not in zeroth_order

# %% [markdown]
# **Exercise 2 (a LOZO step, as torch.optim promises).** Build `LOZO` (rank 2) on a
# `torch.nn.Linear(8, 4)`, take one `step` with a closure that returns a scalar loss, and check
# that the layer's weight — and its `state_dict()` — changed.

# %% tags=["hide-cell"]
import torch  # noqa: E402

from lozo_core.optim import LOZO  # noqa: E402

torch.manual_seed(0)
layer = torch.nn.Linear(8, 4)
inputs, before = torch.randn(16, 8), layer.weight.detach().clone()
LOZO(layer.parameters(), lr=1e-2, rank=2).step(lambda: layer(inputs).pow(2).mean())
change = (layer.state_dict()["weight"] - before).norm().item()
print(f"‖ΔW‖ = {change:.2e} after one step")
assert change > 0
