r"""The schemes grid as recorded (issue 19): fine-tuning scheme × optimizer × task.

``python scripts/campaign.py --plan scripts/schemes_grid.toml run --commit`` writes one folder per
run under ``data/results/schemes_grid/<task>/<optimizer>-<block>_s<seed>/``; this module reads
the plan and those folders and nothing else. A run's *gain* is its test accuracy minus the
zero-shot test accuracy of the same task, seed (so the same test sample) and starting model:

.. math:: \Delta = \mathrm{acc}_{\text{test}}(\theta_T) - \mathrm{acc}_{\text{test}}(\theta_0).

The starting model is the scheme's: prefix tuning starts from random virtual tokens, so it has
its own zero-shot run; a LoRA adapter starts at :math:`B_{lora}=0`, i.e. from the full model, so
LoRA's gains are taken over the full scheme's zero-shot run.

:func:`verdicts` states what the gains show with :func:`lozo_core.paired.difference_verdict`: a
direction only where a paired test over seeds gives :math:`p < 0.05` (a t-test, with 3 seeds
:math:`|t| > 4.30`; the sign test where every seed gives the same difference), otherwise "no
difference detected" with the numbers.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import tomllib

from lozo_core.optim.table import row
from lozo_core.paired import ALPHA, detected, difference_verdict, format_mean_std
from lozo_core.provenance import REPO_ROOT, RESULTS_DIR, cpu_line, cpu_slug

GRID = "schemes_grid"
PLAN = REPO_ROOT / "scripts" / "schemes_grid.toml"
ZERO_SHOT_OF = {"full": "full", "lora": "full", "prefix": "prefix", "prompt": "prompt"}


def load_plan(path: Path = PLAN) -> dict:
    return tomllib.loads(path.read_text())


def planned_runs(plan: dict, root: Path = RESULTS_DIR / GRID) -> list[dict]:
    """Every campaign run of the plan (sweeps excluded) with its state: ``done``, ``partial``
    (some steps recorded), ``failed`` or ``not run``. Names follow the driver's
    ``<task>/<optimizer>-<block>_s<seed>``."""
    sweeps = plan.get("sweep", [])
    sweeps = {s.get("name"): s for s in ([sweeps] if isinstance(sweeps, dict) else sweeps)}
    rows = []
    for block in plan["campaign"]:
        args = sweeps.get(block.get("sweep"), {}).get("args", {}) | block.get("args", {})
        for seed, _ in block["seeds"]:
            for optimizer in block["optimizers"]:
                label = optimizer + (f"-{block['name']}" if "name" in block else "")
                run = f"{block['task']}/{label}_s{seed}"
                folder = root / run
                state = (
                    "failed" if (folder / "failed.json").exists()
                    else "done" if (folder / "summary.json").exists()
                    else "partial" if (folder / "trajectory.json").exists()
                    else "not run"
                )  # fmt: skip
                rows.append({
                    "run": run, "task": block["task"], "scheme": args.get("scheme", "full"),
                    "block": block.get("name", ""), "optimizer": optimizer, "seed": seed, "state": state,
                })  # fmt: skip
    return rows


def runs(root: Path = RESULTS_DIR / GRID) -> list[dict]:
    """The finished campaign runs' summaries (sweep excluded), each with its ``run`` name,
    ``scheme`` and ``block`` (the plan block's name: ``full``, ``lora``, ``whole-dev`` …)."""
    out = []
    for path in sorted(root.glob("*/*/summary.json")):
        if path.parent.parent.name == "sweep":
            continue
        summary = json.loads(path.read_text())
        label = path.parent.name.rsplit("_s", 1)[0]
        summary |= {
            "run": f"{path.parent.parent.name}/{path.parent.name}",
            "scheme": summary["config"].get("scheme", "full"),
            "block": label.removeprefix(summary["optimizer"]).removeprefix("-"),
        }
        out.append(summary)
    return out


def sweep_choices(root: Path = RESULTS_DIR / GRID) -> dict:
    """``chosen.json`` of the grid's sweeps (keys ``scheme/optimizer``), or {} before any."""
    path = root / "sweep" / "chosen.json"
    return json.loads(path.read_text()) if path.exists() else {}


def gains(recorded: list[dict], key: str = "eval_accuracy_at_best_validation") -> list[dict]:
    """One row per trained run whose zero-shot reference is recorded: task, scheme, optimizer,
    seed, test accuracy ``key`` and its gain over the zero-shot run of the same task, seed and
    starting model (see the module docstring)."""
    zero = {
        (r["task"], r["scheme"], r["seed"], r["eval_examples"]): r["final_eval_accuracy"]
        for r in recorded
        if r["optimizer"] == "zero-shot"
    }
    rows = []
    for r in recorded:
        reference = (r["task"], ZERO_SHOT_OF[r["scheme"]], r["seed"], r["eval_examples"])
        if r["optimizer"] == "zero-shot" or reference not in zero:
            continue
        rows.append({
            "task": r["task"], "scheme": r["scheme"], "optimizer": r["optimizer"], "seed": r["seed"],
            "accuracy": r[key], "zero_shot": zero[reference], "gain": r[key] - zero[reference],
        })  # fmt: skip
    return rows


def costs(recorded: list[dict]) -> list[dict]:
    """Per (task, scheme, optimizer, CPU) over recorded runs: trainable parameters, the largest
    peak memory of a run's last process, and the median seconds per training step (None for
    zero-shot). Tasks stay apart (a step's seconds grow with its prompts' length and
    candidates), and so do CPUs (seconds compare only within one machine)."""
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for r in recorded:
        if "peak_mem_bytes" in r:
            where = cpu_slug(r["machine"]) if "machine" in r else "unrecorded"
            groups.setdefault((r["task"], r["scheme"], r["optimizer"], where), []).append(r)
    return [
        {
            "task": task,
            "scheme": scheme,
            "optimizer": optimizer,
            "cpu": where,
            "runs": len(group),
            "trainable_parameters": group[0]["trainable_parameters"],
            "peak_memory_MiB": max(r["peak_mem_bytes"] for r in group) / 2**20,
            "seconds_per_step": statistics.median(r["train_time_s"] / r["steps"] for r in group)
            if group[0]["steps"]
            else None,
        }  # fmt: skip
        for (task, scheme, optimizer, where), group in sorted(groups.items())
    ]


def _paired(a: dict, b: dict) -> list[float]:
    """``a[k] - b[k]`` for every key both hold, in key order."""
    return [a[k] - b[k] for k in sorted(a.keys() & b.keys())]


def _cells(gain_rows: list[dict]) -> dict[tuple[str, str, str], dict[int, float]]:
    """Gains by (task, scheme, optimizer), then by seed."""
    cells: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in gain_rows:
        cells.setdefault((r["task"], r["scheme"], r["optimizer"]), {})[r["seed"]] = r["gain"]
    return cells


def gain_verdicts(gain_rows: list[dict]) -> list[str]:
    """Each (task, scheme, optimizer) cell of :func:`gains`: its gain over zero-shot, over seeds."""
    lines = []
    for (task, scheme, optimizer), by_seed in sorted(_cells(gain_rows).items()):
        values = [by_seed[seed] for seed in sorted(by_seed)]
        label = f"{row(optimizer).label} fine-tuned"
        lines.append(f"{task}, {scheme}: " + difference_verdict(label, "zero-shot", values))
    return lines


def lozo_mezo_verdicts(gain_rows: list[dict], scheme: str | None = None) -> list[str]:
    """LOZO against MeZO per (task, scheme), paired by seed, then per scheme pooled over the tasks
    both ran (paired by task and seed), for every scheme or only ``scheme``: does LOZO's low-rank
    direction help, hurt or change nothing on full weights, on a LoRA adapter, on a prefix?"""
    cells = _cells(gain_rows)
    pooled: dict[tuple[str, str], dict[tuple[str, int], float]] = {}
    for (task, each, optimizer), by_seed in cells.items():
        for seed, gain in by_seed.items():
            pooled.setdefault((each, optimizer), {})[(task, seed)] = gain
    lines = []
    for each in sorted({s for _, s, _ in cells} if scheme is None else {scheme}):
        lozo, mezo = pooled.get((each, "lozo"), {}), pooled.get((each, "mezo"), {})
        tasks = sorted({task for task, _ in lozo.keys() & mezo.keys()})
        for task in tasks:
            diffs = _paired(cells[(task, each, "lozo")], cells[(task, each, "mezo")])
            lines.append(f"{task}, {each}: " + difference_verdict("LOZO", "MeZO", diffs))
        if len(tasks) > 1:
            verdict = difference_verdict(
                "LOZO", "MeZO", _paired(lozo, mezo), unit="task-seed pairs"
            )
            lines.append(f"all tasks, {each}: " + verdict)
    return lines


def alignment_verdict(gain_rows: list[dict]) -> str | None:
    """Task alignment after training: LOZO's gain on SST-2 in MeZO's format (``sst2``) against its
    gain in the review format (``sst2-review``), full scheme, paired by seed; None before a pair."""
    cells = _cells(gain_rows)
    diffs = _paired(*(cells.get((task, "full", "lozo"), {}) for task in ("sst2", "sst2-review")))
    if not diffs:
        return None
    return "task alignment, LOZO on full: " + difference_verdict(
        "the gain in MeZO's format", "the gain in the review format", diffs
    )


def verdicts(gain_rows: list[dict]) -> list[str]:
    """What the grid's :func:`gains` show, one sentence per question: :func:`gain_verdicts`,
    :func:`lozo_mezo_verdicts` for every scheme, then :func:`alignment_verdict`."""
    alignment = alignment_verdict(gain_rows)
    return (
        gain_verdicts(gain_rows)
        + lozo_mezo_verdicts(gain_rows)
        + ([alignment] if alignment else [])
    )


def zero_shot_format_verdict(recorded: list[dict], alpha: float = ALPHA) -> str | None:
    """Task alignment before training: the zero-shot test accuracy of SST-2 in MeZO's format
    (``sst2``) against the review format (``sst2-review``), both on the whole dev split (plan
    block ``whole-dev``). A direction only where Fisher's exact test on the two (correct, wrong)
    counts gives ``p < alpha``; the test treats the evaluations as independent although they
    share their examples, which makes it conservative when the two formats tend to get the same
    examples right (per-example predictions, which McNemar's test would need, are not recorded).
    None until both are recorded."""
    from scipy.stats import fisher_exact

    whole = {r["task"]: r for r in recorded if r["block"] == "whole-dev"}
    if not {"sst2", "sst2-review"} <= whole.keys():
        return None
    counts = []
    for task in ("sst2", "sst2-review"):
        n, accuracy = whole[task]["eval_examples"], whole[task]["final_eval_accuracy"]
        correct = round(accuracy * n)
        counts.append([correct, n - correct])
    (a, n_a), (b, n_b) = ((c, c + w) for c, w in counts)
    p = float(fisher_exact(counts).pvalue)
    numbers = (
        f"{a}/{n_a} = {a / n_a:.3f} against {b}/{n_b} = {b / n_b:.3f}, Fisher's exact p = {p:.2g}"
    )
    if p < alpha:
        direction = "higher" if a / n_a > b / n_b else "lower"
        return f"zero-shot accuracy in MeZO's format is {direction} than in the review format ({numbers})"
    return f"no difference between the two formats' zero-shot accuracy detected ({numbers})"


def grid_markdown(recorded: list[dict]) -> str:
    """The README's table of the grid: per task and scheme, the zero-shot test accuracy and each
    optimizer's gain over it (mean ± std over seeds, the seeds counted), then LOZO against MeZO
    per scheme pooled over tasks, with the runs' model, steps, examples and machines."""
    if not recorded:
        return "_No grid runs recorded yet: `python scripts/campaign.py --plan scripts/schemes_grid.toml run`._"
    gain_rows = gains(recorded)
    cells = _cells(gain_rows)
    optimizers = [o for o in ("mezo", "lozo", "fo-adam") if any(k[2] == o for k in cells)]
    zero: dict[tuple[str, str], list[float]] = {}
    for r in recorded:
        if r["optimizer"] == "zero-shot" and r["block"] != "whole-dev":
            zero.setdefault((r["task"], r["scheme"]), []).append(r["final_eval_accuracy"])
    header = " | ".join(f"{row(o).label} gain" for o in optimizers)
    lines = [f"| task | scheme | zero-shot test accuracy | {header} |",
             "|---|---|---|" + "---|" * len(optimizers)]  # fmt: skip
    for task, scheme in sorted({(t, s) for t, s, _ in cells}):
        base = zero.get((task, ZERO_SHOT_OF[scheme]), [])
        reference = format_mean_std(base) + ("" if scheme == ZERO_SHOT_OF[scheme] else " (full's)")
        gain_cells = []
        for optimizer in optimizers:
            by_seed = cells.get((task, scheme, optimizer), {})
            values = [by_seed[seed] for seed in sorted(by_seed)]
            text = f"{format_mean_std(values, signed=True)} (n={len(values)})" if values else "—"
            gain_cells.append(f"**{text}**" if detected(values) else text)
        lines.append(
            f"| {task} | {scheme} | {reference if base else '—'} | {' | '.join(gain_cells)} |"
        )
    findings = [line for line in lozo_mezo_verdicts(gain_rows) if line.startswith("all tasks")]
    formats, alignment = zero_shot_format_verdict(recorded), alignment_verdict(gain_rows)
    findings += (
        [f"task alignment, zero-shot on the whole SST-2 dev split: {formats}"] if formats else []
    )
    findings += [alignment] if alignment else []
    trained = [r for r in recorded if r["optimizer"] != "zero-shot"]
    steps = ", ".join(
        f"{row(o).label} {n}" for o, n in sorted({(r["optimizer"], r["steps"]) for r in trained})
    )
    tested = ", ".join(
        f"{task} {n}" for task, n in sorted({(r["task"], r["eval_examples"]) for r in trained})
    )
    machines = "; ".join(sorted({cpu_line(r["machine"]) for r in recorded}))
    lines += ["", *(f"- {line}" for line in findings), ""]
    sst2 = [c for c in costs(recorded) if c["task"] == "sst2" and c["seconds_per_step"]]
    if sst2:
        lines += ["| SST-2 | CPU | trainable parameters | peak memory (GiB) | seconds per step (median) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {c['scheme']} {row(c['optimizer']).label} | {c['cpu']} | "
            f"{c['trainable_parameters']:,} | {c['peak_memory_MiB'] / 1024:.1f} | "
            f"{c['seconds_per_step']:.2f} |"
            for c in sst2
        ]
        lines.append("")
    models = ", ".join(sorted({f"{r['model']}: {r['model_source']}" for r in recorded}))
    lines.append(
        f"{models}; {len(recorded)} recorded runs of "
        f"`scripts/schemes_grid.toml`; steps: {steps}; test examples: {tested}. Gain: test "
        "accuracy at the best validation step minus the zero-shot run's on the same seed and test "
        "sample (LoRA's over the full model's zero-shot run), mean ± std over seeds, **bold** where "
        f"a paired test over seeds gives p < {ALPHA} (notebook 08 states every cell's verdict). "
        "Peak memory: the resident set of a run's process, the 135M frozen weights and the "
        "evaluations included; seconds per step: training only, median over the task's seeds, "
        "comparable within one machine. "
        f"Machines: {machines}. Commands: the `command` field of each run's `summary.json` under "
        "`data/results/schemes_grid/`."
    )
    return "\n".join(lines)
