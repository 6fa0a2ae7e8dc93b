"""Recorded results: load the JSON under ``data/results/``, tabulate, and keep the README in sync.

``python -m lozo_core.results`` rewrites the README sections between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` from the recorded JSON; the tests fail
when the README and the JSON disagree.
"""

from __future__ import annotations

import json
import re
import statistics
import sys

from lozo_core.optim.table import TABLE
from lozo_core.provenance import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "data" / "results"
OPTIMIZER_ORDER = tuple(TABLE)
RUN_FIELDS = ("task", "model", "optimizer", "seed", "steps", "final_eval_accuracy", "command",
              "machine")  # fmt: skip


def check_run(run: dict) -> dict:
    """``run`` itself if it is a complete scaled-down training summary (every field in
    ``RUN_FIELDS``, made by ``python -m lozo_core.train``); ``ValueError`` naming what is wrong."""
    missing = [key for key in RUN_FIELDS if key not in run]
    if missing:
        raise ValueError(f"training summary lacks {missing}; expected every field of {RUN_FIELDS}")
    if not run["command"].startswith("python -m lozo_core.train"):
        raise ValueError(f"training summary command {run['command']!r} is not lozo_core.train")
    return run


def load(folder: str) -> list[dict]:
    """Every JSON record in ``data/results/<folder>``, sorted by file name."""
    return [json.loads(p.read_text()) for p in sorted((RESULTS_DIR / folder).glob("*.json"))]


def _mean_std(values: list[float], signed: bool = False) -> str:
    form = "+.3f" if signed else ".3f"
    if len(values) == 1:
        return f"{values[0]:{form}}"
    return f"{statistics.mean(values):{form}} ± {statistics.stdev(values):.3f}"


def finetune_rows(runs: list[dict]) -> list[dict]:
    """One row per (task, model, optimizer): seeds, steps, final dev accuracy mean ± std."""
    groups: dict[tuple, list[dict]] = {}
    for run in map(check_run, runs):
        groups.setdefault((run["task"], run["model"], run["optimizer"]), []).append(run)
    order = {name: i for i, name in enumerate(OPTIMIZER_ORDER)}
    rows = []
    for (task, model, optimizer), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 99))
    ):
        finals = [r["final_eval_accuracy"] for r in group]
        rows.append({
            "task": task, "model": model, "optimizer": optimizer, "seeds": len(group),
            "steps": group[0]["steps"], "lr": group[0]["config"]["lr"], "accuracy": _mean_std(finals),
            "mean": statistics.mean(finals), "eval_examples": group[0]["eval_examples"],
        })  # fmt: skip
    return rows


def _gain_cell(values: list[float] | None) -> str:
    if not values:
        return "—"
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    up = sum(g > 0 for g in values)
    return f"{statistics.mean(values):+.3f}{spread} (up on {up}/{len(values)})"


def finetune_markdown(runs: list[dict]) -> str:
    if not runs:
        return "_No recorded runs yet: `python scripts/record_finetune_cpu.py`._"
    lines = [
        "| task | model | optimizer | seeds | steps | lr (ours) | dev accuracy | gain over zero-shot, paired by seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = finetune_rows(runs)
    gains = paired_gains(runs)
    for r in rows:
        zero_shot = r["optimizer"] == "zero-shot"
        lr = "—" if zero_shot else f"{r['lr']:g}"
        gain = "—" if zero_shot else _gain_cell(gains.get((r["task"], r["optimizer"])))
        lines.append(
            f"| {r['task']} | {r['model']} | {r['optimizer']} | {r['seeds']} | {r['steps']} | {lr} | {r['accuracy']} | {gain} |"
        )
    machines = sorted({cpu_line(r["machine"]) for r in runs})
    evaluated = ", ".join(
        f"{task}: {n} GLUE dev examples"
        for task, n in sorted({(r["task"], r["eval_examples"]) for r in runs})
    )
    lines.append("")
    lines.append(f"Dev accuracy ({evaluated}), k = 16 per class, batch 16; mean ± std over seeds "
                 f"(k-shot data seeds 13, 21, 42); gain: mean ± std over seeds of the run's accuracy minus the zero-shot run's on the same seed. Machines: {'; '.join(machines)}. Commands: the `command` field of each JSON in "
                 "`data/results/finetune_cpu/`.")  # fmt: skip
    return "\n".join(lines)


def cpu_line(machine: dict) -> str:
    """The machine in one phrase, with what decides bf16's speed: its SIMD and bf16 instructions."""
    if machine.get("gpu"):
        return f"{machine['gpu']}, torch {machine['torch']}"
    cpu = machine.get("cpu_model") or machine["processor"]
    if "cpu_flags" not in machine:
        return f"{cpu} x{machine['cpu_count']} (CPU flags not recorded), torch {machine['torch']}"
    flags = set(machine["cpu_flags"])
    bf16 = sorted(flags & {"amx_bf16", "avx512_bf16"})
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    hardware = f"bf16 in hardware: {', '.join(bf16)}" if bf16 else "no bf16 matrix instructions"
    return f"{cpu} x{machine['cpu_count']} ({simd}, {hardware}), torch {machine['torch']}"


def _measured(r: dict | None) -> bool:
    return r is not None and "error" not in r


def _status(r: dict | None) -> str:
    """What stands in a cell for a row without a measurement."""
    if r is None:
        return "—"
    return "did not fit" if "did_not_fit" in r else r["error"]


def _fmt(r: dict | None, key: str, spec: str = ".2f", scale: float = 1.0) -> str:
    if not _measured(r):
        return _status(r)
    return f"{r[key] / scale:{spec}}" if key in r else "—"


def _load_range(recs: list[dict]) -> str:
    rows = [row for rec in recs for row in rec["results"].values() if "loadavg_start" in row]
    values = [row[k][0] for row in rows for k in ("loadavg_start", "loadavg_end")]
    return f"{min(values):.1f}–{max(values):.1f}" if values else "not recorded"


def parameters(rec: dict) -> int:
    return max((r.get("parameters", 0) for r in rec["results"].values()), default=0)


def bench_key(rec: dict) -> tuple:
    c = rec["config"]
    return c["model"], c["dtype"], c["batch_size"], c["seq_len"], c["interval"], c.get("task")


def batch_shape(config: dict) -> str:
    """A bench record's batch: ``4 × 64`` random tokens, or ``16 sst2 training prompts``."""
    if config.get("task"):
        return f"{config['batch_size']} {config['task']} training prompts"
    return f"{config['batch_size']} × {config['seq_len']}"


def bench_groups(records: list[dict]) -> dict:
    """The ``kind: bench`` records by role: ``main`` (OPT-125M, 4 × 64, by dtype), ``scaling``
    (fp32, 4 × 64, by parameter count), ``context`` (OPT-125M, batch 1, by length), ``other``."""
    bench = [r for r in records if r.get("kind") == "bench"]
    main = {r["config"]["dtype"]: r for r in bench if bench_key(r) in
            {("opt-125m", d, 4, 64, 50, None) for d in ("float32", "bfloat16")}}  # fmt: skip
    scaling = sorted(
        (r for r in bench if bench_key(r)[1:] == ("float32", 4, 64, 50, None)), key=parameters
    )
    context = sorted((r for r in bench if bench_key(r)[0] == "opt-125m" and bench_key(r)[2] == 1
                      and bench_key(r)[5] is None),
                     key=lambda r: r["config"]["seq_len"])  # fmt: skip
    shown = {id(r) for r in (*main.values(), *scaling, *context)}
    return {"main": main, "scaling": scaling, "context": context,
            "other": [r for r in bench if id(r) not in shown]}  # fmt: skip


def dtype_pairs(records: list[dict]) -> list[tuple[dict, dict]]:
    """``(fp32, bf16)`` bench records of one machine (CPU model and flags) and one shape (model,
    batch, length, interval): the only pairs whose time ratio says what bf16 does on a CPU."""

    def machine_and_shape(rec: dict) -> tuple:
        m = rec["machine"]
        cpu = m.get("gpu") or m.get("cpu_model") or m["processor"]
        return cpu, tuple(m.get("cpu_flags", ())), bench_key(rec)[:1] + bench_key(rec)[2:]

    by_key: dict[tuple, dict] = {}
    for rec in records:
        if rec.get("kind") == "bench":
            by_key.setdefault(machine_and_shape(rec), {})[rec["config"]["dtype"]] = rec
    return [
        (d["float32"], d["bfloat16"]) for d in by_key.values() if {"float32", "bfloat16"} <= set(d)
    ]


def dtype_ratio_lines(records: list[dict]) -> list[str]:
    """One sentence per :func:`dtype_pairs` pair: bf16 step time / fp32 step time per method."""
    lines = []
    for fp32, bf16 in dtype_pairs(records):
        both = [
            m
            for m, r in fp32["results"].items()
            if _measured(r) and _measured(bf16["results"].get(m))
        ]
        if not both:
            continue
        c = fp32["config"]
        ratios = ", ".join(
            f"{m} {bf16['results'][m]['step_s_median'] / fp32['results'][m]['step_s_median']:.2f}×"
            for m in both
        )
        lines.append(
            f"{c['model']}, batch {batch_shape(c)}, on {cpu_line(fp32['machine'])}: "
            f"bf16 step / fp32 step = {ratios}."
        )
    return lines


SCALING_SIZES = ("opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b")


def _sweep_table(recs: list[dict], heading, cell) -> list[str]:
    """Methods as rows, one column per record."""
    methods = list(dict.fromkeys(m for rec in recs for m in rec["results"]))
    lines = [
        "| method | " + " | ".join(heading(rec) for rec in recs) + " |",
        "|---|" + "---|" * len(recs),
    ]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(cell(rec["results"].get(m)) for rec in recs) + " |")
    return lines


def bench_markdown(records: list[dict]) -> str:
    """The README's performance section from the ``kind: bench`` records (the profile and drift
    records are read by notebook 07): OPT-125M in fp32 and bf16, model size, context length."""
    groups = bench_groups(records)
    bench = [r for r in records if r.get("kind") == "bench"]
    if not bench:
        return "_No recorded benchmark yet: `make bench`._"
    main, lines = groups["main"], []
    if "float32" in main:
        fp32 = main["float32"]["results"]
        bf16 = main.get("bfloat16", {"results": {}})["results"]
        lines += [
            "**OPT-125M** (random init), batch 4 × 64 tokens. *Floor*: the forwards a method cannot "
            "avoid (its two single-batch forwards; one doubled forward for the paired side path). "
            "*Inference*: peak RSS of a single-batch forward; *doubled*: of a forward over 2 × 4 sequences.",
            "",
            "| method | fp32 step (s) | × own floor | × MeZO | peak memory (MiB) | × inference | × doubled inference | bf16 step (s) | bf16 / fp32 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for m, r in fp32.items():
            rb = bf16.get(m)
            slower = (
                f"{rb['step_s_median'] / r['step_s_median']:.1f}"
                if _measured(r) and _measured(rb)
                else "—"
            )
            lines.append(
                f"| {m} | {_fmt(r, 'step_s_median', '.3f')} | {_fmt(r, 'time_vs_floor')} | {_fmt(r, 'time_vs_mezo')} | "
                f"{_fmt(r, 'peak_mem_bytes', '.0f', 2**20)} | {_fmt(r, 'mem_vs_forward', '.3f')} | "
                f"{_fmt(r, 'mem_vs_forward-doubled', '.3f')} | {_fmt(rb, 'step_s_median', '.3f')} | {slower} |"
            )  # fmt: skip
        lines.append("")
        ratios = [
            bf16[m]["step_s_median"] / r["step_s_median"]
            for m, r in fp32.items()
            if _measured(r) and _measured(bf16.get(m))
        ]
        if ratios:
            lines += [
                f"**bf16 on this CPU** ({cpu_line(main['bfloat16']['machine'])}): a step takes "
                f"{min(ratios):.1f}–{max(ratios):.1f}× its fp32 time. Where bf16 pays depends on the "
                "CPU's matrix instructions, not on AVX-512 alone: the bf16/fp32 pairs below, each "
                "measured on one machine, show bf16 faster on an Intel Xeon with AMX (`amx_bf16`) "
                "and slower on one with AVX-512 BF16 (`avx512_bf16`) but no AMX. Check the flags "
                "and measure.",
                "",
            ]  # fmt: skip
    scaling = groups["scaling"]
    recorded = {r["config"]["model"] for r in scaling}
    missing = [m for m in SCALING_SIZES if m not in recorded]
    lines += ["**Model size** (OPT architectures, random init, fp32, batch 4 × 64): step time (s) / peak memory (GiB).", ""]  # fmt: skip
    if scaling:
        lines += _sweep_table(
            scaling,
            lambda rec: f"{rec['config']['model']} ({parameters(rec) / 1e9:.2f} B)",
            lambda r: f"{r['step_s_median']:.2f} / {r['peak_mem_bytes'] / 2**30:.2f}" if _measured(r) else _status(r),
        )  # fmt: skip
    if missing:
        steps = " ".join(m.removeprefix("opt-") for m in missing)
        lines += ["", f"Not recorded yet: {', '.join(missing)} (`bash scripts/record_bench_cpu.sh {steps}`)."]  # fmt: skip
    lines.append("")
    if groups["context"]:
        lines += ["**Context length** (OPT-125M, fp32, batch 1): peak memory (MiB) and × single-batch inference at that length.", ""]  # fmt: skip
        lines += _sweep_table(
            groups["context"],
            lambda rec: f"{rec['config']['seq_len']} tokens",
            lambda r: f"{r['peak_mem_bytes'] / 2**20:.0f} (× {r['mem_vs_forward']:.2f})" if _measured(r) and "mem_vs_forward" in r else _status(r),
        )  # fmt: skip
        lines.append("")
    for rec in groups["other"]:
        c = rec["config"]
        lines += [f"**{c['model']}**, {c['dtype']}, batch {batch_shape(c)}, interval {c['interval']}, on {cpu_line(rec['machine'])}:", ""]  # fmt: skip
        lines += [
            "| method | step (s) | × own floor | × MeZO | peak memory (MiB) | × inference | × doubled inference |",
            "|---|---|---|---|---|---|---|",
        ]
        for m, r in rec["results"].items():
            lines.append(
                f"| {m} | {_fmt(r, 'step_s_median', '.3f')} | {_fmt(r, 'time_vs_floor')} | {_fmt(r, 'time_vs_mezo')} | "
                f"{_fmt(r, 'peak_mem_bytes', '.0f', 2**20)} | {_fmt(r, 'mem_vs_forward', '.3f')} | {_fmt(r, 'mem_vs_forward-doubled', '.3f')} |"
            )  # fmt: skip
        lines.append("")
    pairs = dtype_ratio_lines(bench)
    if pairs:
        lines += ["**bf16 against fp32 on one machine** (both records from that CPU):", ""]
        lines += [f"- {line}" for line in pairs] + [""]
    machines = sorted({cpu_line(r["machine"]) for r in bench})
    lines.append(
        f"Machine: {'; '.join(machines)}; load average during the runs {_load_range(bench)}: "
        "times depend on the load of this shared machine. Each method ran in its own process, so "
        "its peak memory is its own. Commands: the `command` field of each JSON in "
        "`data/results/bench/` (`make bench` records them all)."
    )
    return "\n".join(lines)


def spectra_markdown(records: list[dict]) -> str:
    if not records:
        return "_No recorded spectra yet: `python scripts/record_spectra.py`._"
    lines = [
        "| model | init | matrices | stable rank (median) | effective rank (median) | Gaussian same shape | top-1 energy | top-4 | top-16 | random rank-4 subspace |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        layers = rec["layers"]
        med = lambda f, layers=layers: statistics.median(f(layer) for layer in layers)
        lines.append(
            f"| {rec['model']} | {rec['init']} | {len(layers)} | {med(lambda x: x['stable_rank']):.2f} | {med(lambda x: x['effective_rank']):.1f} | "
            f"{med(lambda x: x['gaussian_stable_rank']):.0f} | {med(lambda x: x['energy_top']['1']):.3f} | {med(lambda x: x['energy_top']['4']):.3f} | "
            f"{med(lambda x: x['energy_top']['16']):.3f} | {med(lambda x: x['energy_random']['4']):.4f} |"
        )
    lines.append("")
    per_model = {rec["model"]: rec for rec in records}
    lines.append(
        "Gradient of the SST-2 loss on a batch of training prompts, every weight matrix: "
        + "; ".join(
            f"{model}: {rec['batch_size']} prompts, scored by {rec.get('scoring', 'label words')}, `{rec['command'].strip()}`"
            for model, rec in per_model.items()
        )
        + "."
    )
    return "\n".join(lines)


FULL_PROTOCOL = "full_protocol"


def full_protocol_runs() -> list[dict]:
    """Summaries of the finished full-protocol campaign runs (sweep excluded)."""
    root = RESULTS_DIR / FULL_PROTOCOL
    paths = sorted(p for p in root.glob("*/*/summary.json") if p.parent.parent.name != "sweep")
    runs = []
    for path in paths:
        run = json.loads(path.read_text())
        run["run"] = f"{path.parent.parent.name}/{path.parent.name}"
        run["variant"] = path.parent.name.rsplit("_s", 1)[0]
        runs.append(run)
    return runs


def sweep_run(task: str, optimizer: str, lr: float, sweep: str | None = None) -> str:
    """A sweep run's folder under a campaign's results: ``sweep[/<sweep>]/<task>_<optimizer>_lr<lr>``."""
    folder = "sweep" if sweep is None else f"sweep/{sweep}"
    return f"{folder}/{task}_{optimizer}_lr{lr:g}"


def sweep_choices() -> dict:
    path = RESULTS_DIR / FULL_PROTOCOL / "sweep" / "chosen.json"
    return json.loads(path.read_text()) if path.exists() else {}


def paired_gains(
    runs: list[dict], key: str = "final_eval_accuracy", by: str = "optimizer"
) -> dict[tuple[str, str], list[float]]:
    """Per ``(task, run[by])``: each run's ``key`` minus the accuracy of the zero-shot run of the
    same task, model and seed (the same data and evaluation examples), in seed order. A gain of
    exactly 0 means no evaluated prediction changed. Runs without a zero-shot partner are left out."""
    zero = {(r["task"], r["model"], r["seed"]): r["final_eval_accuracy"]
            for r in runs if r["optimizer"] == "zero-shot"}  # fmt: skip
    gains: dict[tuple[str, str], list[float]] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        partner = zero.get((r["task"], r["model"], r["seed"]))
        if r["optimizer"] != "zero-shot" and partner is not None:
            gains.setdefault((r["task"], r[by]), []).append(r[key] - partner)
    return gains


def paired_differences(
    runs: list[dict], a: str, b: str, key: str = "eval_accuracy_at_best_validation"
) -> dict[str, list[float]]:
    """Per task: variant ``a``'s ``key`` minus variant ``b``'s, one entry per seed both finished
    (the same data draw, batch order and test examples), in seed order."""
    value = {(r["task"], r["variant"], r["seed"]): r[key] for r in runs}
    diffs: dict[str, list[float]] = {}
    for (task, variant, seed), v in sorted(value.items()):
        if variant == a and (task, b, seed) in value:
            diffs.setdefault(task, []).append(v - value[(task, b, seed)])
    return diffs


def difference_verdict(
    a: str, b: str, diffs: list[float], alpha: float = 0.05, unit: str = "seeds"
) -> str:
    r"""One sentence on paired differences :math:`d_s = a_s - b_s`: a direction only when a
    two-sided one-sample t-test of :math:`\bar d = 0` over the seeds gives :math:`p < \alpha`
    (with 3 seeds, :math:`|t| > 4.30`); otherwise "no difference detected" with the numbers.
    ``unit`` names what the differences pair over (seeds, or e.g. task-seed pairs)."""
    from scipy.stats import ttest_1samp

    n, mean = len(diffs), statistics.mean(diffs)
    if n < 2:
        return f"{a} − {b} = {mean:+.3f} on one pair: too few {unit} for a verdict"
    sd = statistics.stdev(diffs)
    p = float(ttest_1samp(diffs, 0.0).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    numbers = f"Δ = {mean:+.3f} ± {sd:.3f} over {n} {unit}, paired t-test p = {p:.3f}"
    if p < alpha:
        return f"{a} is {'higher' if mean > 0 else 'lower'} than {b} ({numbers})"
    return f"no difference between {a} and {b} detected ({numbers})"


COMPARISONS = {("lozo", "mezo"): ("LOZO", "MeZO"), ("lozo-m", "lozo"): ("LOZO-M", "LOZO")}
"""The accuracy claims the campaign tests, as (variant, against it): the LOZO paper's LOZO matching
or beating MeZO, and LOZO-M (momentum at no memory) improving on LOZO."""


def accuracy_verdicts(runs: list[dict], task: str) -> list[str]:
    """:func:`difference_verdict` on the test accuracy at the best validation step of each of
    :data:`COMPARISONS` that has finished on a common seed of ``task``, then on each pair of
    their longer runs (:func:`extensions`) of equal length, e.g. LOZO and MeZO for 2200 steps."""
    steps = {r["variant"]: r["steps"] for r in runs if r["task"] == task}
    verdicts = []
    for (a, b), (name_a, name_b) in COMPARISONS.items():
        if diffs := paired_differences(runs, a, b).get(task):
            verdicts.append(difference_verdict(name_a, name_b, diffs))
        for longer_a in extensions(runs, task, a)[1:]:
            for longer_b in extensions(runs, task, b)[1:]:
                diffs = paired_differences(runs, longer_a, longer_b).get(task)
                if steps[longer_a] == steps[longer_b] and diffs:
                    n = steps[longer_a]
                    verdicts.append(
                        difference_verdict(f"{name_a} ({n} steps)", f"{name_b} ({n} steps)", diffs)
                    )
    return verdicts


def campaign_timing(records: list[dict], task: str) -> dict | None:
    """The bench record that gives the campaign's seconds on ``task``: of the fp32 SmolLM2
    records, those timing ``task``'s own batches (``bench --task``), else those on random
    tokens; of these, the one that timed the most methods, the newest among those."""
    fp32 = [
        r
        for r in records
        if r.get("kind") == "bench"
        and r["config"]["model"] == "smollm2-135m"
        and r["config"]["dtype"] == "float32"
    ]
    of_task = [r for r in fp32 if r["config"].get("task") == task]
    pool = of_task or [r for r in fp32 if not r["config"].get("task")]
    return max(pool, key=lambda r: (len(r["results"]), r["machine"]["date"]), default=None)


def steps_to_reach(runs: list[dict], target: str = "mezo") -> list[dict]:
    """Per task and seed on which ``target`` finished: the best validation loss of its longest run
    (``target`` or a run extending it, :func:`extensions`) and, for every finished run of that
    seed, the first evaluated step at which the run's validation loss is at or below it
    (``None``: not reached within the run)."""
    tasks = sorted({r["task"] for r in runs})
    return [r for task in tasks for r in reaching(runs, task, extensions(runs, task, target))]


def reaching(runs: list[dict], task: str, targets: tuple[str, ...]) -> list[dict]:
    """:func:`steps_to_reach` on ``task``, the target of each seed being the best validation loss
    of its longest run among the variants ``targets``."""
    goals = longest_per_seed(runs, task, targets)
    out = []
    for r in sorted((r for r in runs if r["task"] == task), key=lambda r: r["seed"]):
        goal = goals.get(r["seed"])
        if goal and r["steps"]:
            best = min(c["validation_loss"] for c in goal["curve"] if "validation_loss" in c)
            hits = [c["step"] for c in r["curve"] if c.get("validation_loss", float("inf")) <= best]
            out.append({"task": task, "seed": r["seed"], "run": r["variant"],
                        "optimizer": r["optimizer"], "target": best, "steps": r["steps"],
                        "step": min(hits, default=None)})  # fmt: skip
    return out


def extensions(runs: list[dict], task: str, variant: str) -> tuple[str, ...]:
    """``variant`` and the variants of ``task`` that extend it: on a seed, the same config but for
    more steps (a campaign block with ``extends = true``)."""

    def but_steps(run: dict) -> dict:
        return {k: v for k, v in run["config"].items() if k != "steps"}

    base = {r["seed"]: r for r in runs if r["task"] == task and r["variant"] == variant}
    longer = {r["variant"] for r in runs if r["task"] == task and r["seed"] in base
              and r["variant"] != variant and r["steps"] > base[r["seed"]]["steps"]
              and but_steps(r) == but_steps(base[r["seed"]])}  # fmt: skip
    return (variant, *sorted(longer))


def longest_per_seed(
    rows: list[dict], task: str, variants: tuple[str, ...], key: str = "variant"
) -> dict[int, dict]:
    """Per seed, the row of ``task`` whose ``key`` is among ``variants`` with the most steps."""
    longest: dict[int, dict] = {}
    for r in rows:
        longer = r["steps"] > longest.get(r["seed"], {"steps": -1})["steps"]
        if r["task"] == task and r[key] in variants and longer:
            longest[r["seed"]] = r
    return longest


def speed_verdict(
    runs: list[dict],
    task: str,
    step_seconds: dict[str, float],
    lozo: tuple[str, ...] = ("lozo",),
    mezo: tuple[str, ...] = ("mezo",),
) -> str | None:
    """Whether LOZO reaches MeZO's best validation loss in fewer seconds than MeZO does, seed by
    seed (:func:`reaching`), at ``step_seconds[optimizer]`` seconds per step (one machine). On
    each seed the longest run among the variants ``lozo``, and among ``mezo``, counts
    (:func:`extensions`); that MeZO run sets the target too.

    On a seed where LOZO never reached it, LOZO is slower only if its whole run took at least
    MeZO's time to get there; a run that ended sooner leaves that seed undecided. None before
    LOZO and MeZO share a seed."""
    reach = reaching(runs, task, mezo)
    ours_by_seed = longest_per_seed(reach, task, lozo, key="run")
    theirs_by_seed = longest_per_seed(reach, task, mezo, key="run")
    lozo_s, mezo_s = step_seconds["lozo"], step_seconds["mezo"]
    faster, slower, undecided, notes = 0, 0, 0, []
    for seed, ours in sorted(ours_by_seed.items()):
        theirs = theirs_by_seed.get(seed)
        if theirs is None:
            continue
        t_mezo = theirs["step"] * mezo_s
        if ours["step"] is not None:
            t_lozo = ours["step"] * lozo_s
            faster, slower = faster + (t_lozo < t_mezo), slower + (t_lozo >= t_mezo)
            notes.append(f"seed {seed}: LOZO {t_lozo:.0f} s (step {ours['step']})")
        else:
            t_lozo = ours["steps"] * lozo_s
            slower, undecided = slower + (t_lozo >= t_mezo), undecided + (t_lozo < t_mezo)
            notes.append(f"seed {seed}: LOZO not within its {ours['steps']} steps ({t_lozo:.0f} s)")
        notes[-1] += f", MeZO {t_mezo:.0f} s (step {theirs['step']})"
    n = faster + slower + undecided
    if not n:
        return None
    if faster == n:
        verdict = "LOZO is faster"
    elif slower == n:
        verdict = "LOZO is not faster"
    elif undecided:
        verdict = (
            f"undecided: on {undecided} of {n} seeds LOZO's run ended before MeZO reached the "
            "target, so a longer LOZO run must decide"
        )
    else:
        verdict = f"no consistent speed-up: LOZO is faster on {faster} of {n} seeds"
    return (
        f"a LOZO step costs {lozo_s / mezo_s:.2f}x a MeZO step; to MeZO's best validation loss, "
        f"{verdict} ({'; '.join(notes)})"
    )


def second_half_validation_change(run: dict) -> float | None:
    r"""Change of validation accuracy across the run's second half, from a least-squares line
    through its evaluations at :math:`t \ge T/2` (slope × :math:`T/2`). Well above one
    evaluation's standard error, :math:`\sqrt{a(1-a)/n_{val}}` (about 0.02 at 500 examples), the
    run was still improving when it stopped; within it, the run had levelled off. None without
    three such evaluations."""
    late = [
        c
        for c in run.get("curve", [])
        if "validation_accuracy" in c and c["step"] >= run["steps"] / 2
    ]
    if len(late) < 3:
        return None
    steps, accuracy = [c["step"] for c in late], [c["validation_accuracy"] for c in late]
    return statistics.linear_regression(steps, accuracy).slope * run["steps"] / 2


def late_residuals(losses: list[float], tail: int = 300, window: int = 50) -> list[float]:
    """The last ``tail`` per-step training losses minus their trailing ``window``-step moving
    average: the step-to-step fluctuation late in training, with the slow trend removed."""
    import pandas as pd

    late = pd.Series(losses[-tail:], dtype=float)
    return (late - late.rolling(window, min_periods=1).mean()).tolist()


def equal_spread_test(x: list[float], y: list[float]) -> tuple[float, float]:
    r"""Pitman–Morgan test of :math:`\operatorname{Var} x = \operatorname{Var} y` for paired
    samples (here: two runs' residuals on the same batches): since
    :math:`\operatorname{Cov}(x+y,\,x-y) = \operatorname{Var} x - \operatorname{Var} y`, the
    variances are equal iff :math:`x+y` and :math:`x-y` are uncorrelated, tested by Pearson's
    :math:`r` with :math:`n-2` degrees of freedom. Pairing removes what the samples share (the
    batch-to-batch variation of the loss), so the test sees a small extra fluctuation in one run
    that a comparison of two unpaired spreads would not. Treats steps as independent.
    Returns (std x / std y, two-sided p)."""
    from scipy.stats import pearsonr

    total = [a + b for a, b in zip(x, y, strict=True)]
    diff = [a - b for a, b in zip(x, y, strict=True)]
    return statistics.stdev(x) / statistics.stdev(y), float(pearsonr(total, diff).pvalue)


def late_fluctuation(losses_a: list[float], losses_b: list[float]) -> dict[str, float]:
    """How two runs on the same batches fluctuate late in training: the spreads of their
    :func:`late_residuals`, the ratio and Pitman–Morgan p of :func:`equal_spread_test`, and how much
    the residuals correlate through the shared batches."""
    x, y = late_residuals(losses_a), late_residuals(losses_b)
    ratio, p = equal_spread_test(x, y)
    return {"spread_a": statistics.stdev(x), "spread_b": statistics.stdev(y), "ratio": ratio,
            "p": p, "shared": statistics.correlation(x, y)}  # fmt: skip


def fluctuation_verdict(test: dict[str, float], a: str, b: str, alpha: float = 0.05) -> str:
    """One sentence on whether run ``a`` fluctuates more late in training than run ``b``
    (``test`` from :func:`late_fluctuation`), a direction only when ``p < alpha``."""
    numbers = (f"spread {test['spread_a']:.4f} against {test['spread_b']:.4f}, ratio {test['ratio']:.3f}, "
               f"Pitman–Morgan p = {test['p']:.3g}; the residuals correlate {test['shared']:.2f} through the shared batches")  # fmt: skip
    if test["p"] < alpha:
        return f"{a} fluctuates {'more' if test['ratio'] > 1 else 'less'} than {b} ({numbers})"
    return f"no difference in fluctuation between {a} and {b} detected ({numbers})"


FLUCTUATION = (("lozo", "ν = 50"), ("lozo-interval-1", "ν = 1"))
"""The LOZO paper's suspicion that lazy sampling causes its late-training loss fluctuation, as
(variant, label) of the two runs compared: LOZO at its lazy interval ν = 50 and at ν = 1."""


def fluctuation_pairs(runs: list[dict], task: str) -> dict[int, dict[str, list[float]]]:
    """Per seed of ``task`` on which both runs of :data:`FLUCTUATION` finished: label → the run's
    per-step training losses (:meth:`Trajectory.training_losses`), ν = 50 first."""
    from lozo_core.trajectory import Trajectory

    folders = {(r["variant"], r["seed"]): r["run"] for r in runs if r["task"] == task}
    seeds = sorted(seed for variant, seed in folders if variant == FLUCTUATION[0][0])
    return {
        seed: {label: Trajectory.load(RESULTS_DIR / FULL_PROTOCOL / folders[(variant, seed)]).training_losses()
               for variant, label in FLUCTUATION}
        for seed in seeds
        if all((variant, seed) in folders for variant, _ in FLUCTUATION)
    }  # fmt: skip


def fluctuation_lines(runs: list[dict], task: str) -> list[str]:
    """The README's :func:`fluctuation_verdict` on each of :func:`fluctuation_pairs`."""
    lines = []
    for seed, pair in fluctuation_pairs(runs, task).items():
        test = late_fluctuation(*pair.values())
        verdict = fluctuation_verdict(test, *(f"LOZO at {label}" for label in pair))
        lines += ["", f"**{task}, late-training fluctuation** (seed {seed}, training loss over the last "
                      f"300 steps minus its 50-step moving average): {verdict}."]  # fmt: skip
    return lines


def full_protocol_rows(runs: list[dict]) -> list[dict]:
    """One row per (task, variant): seeds, lr, steps, test accuracy at the best-validation and
    last steps (mean ± std), the gain over zero-shot paired by seed, and how much validation
    accuracy still changed over the second half of the runs (:func:`second_half_validation_change`)."""
    order = {name: i for i, name in enumerate(OPTIMIZER_ORDER)}
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["task"], run["variant"]), []).append(run)
    gains = paired_gains(runs, "eval_accuracy_at_best_validation", by="variant")
    rows = []
    for (task, variant), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order.get(kv[1][0]["optimizer"], 99), kv[0][1])
    ):
        best = [r["eval_accuracy_at_best_validation"] for r in group]
        last = [r["final_eval_accuracy"] for r in group]
        g = gains.get((task, variant), [])
        changes = [c for c in map(second_half_validation_change, group) if c is not None]
        rows.append({
            "task": task, "variant": variant, "optimizer": group[0]["optimizer"], "seeds": len(group),
            "lr": group[0]["lr"], "steps": group[0]["steps"], "test_at_best_validation": _mean_std(best),
            "test_last": _mean_std(last), "mean_at_best": statistics.mean(best),
            "gain": _mean_std(g) if g else "—", "gain_positive": f"{sum(x > 0 for x in g)}/{len(g)}" if g else "—",
            "test_examples": group[0]["eval_examples"],
            "second_half_change": _mean_std(changes, signed=True) if changes else "—",
        })  # fmt: skip
    return rows


def grid_edge(entry: dict) -> str | None:
    """``"lower"`` or ``"upper"`` when a sweep chose the smallest or largest rate of its grid (the
    sweep then cannot say whether a rate beyond it would do better), else None."""
    chosen, grid = entry.get("chosen_lr"), entry.get("grid", [])
    if chosen is None or len(grid) < 2:
        return None
    return "lower" if chosen == min(grid) else "upper" if chosen == max(grid) else None


def sweep_markdown(choices: dict) -> str:
    """The learning-rate sweep so far: every rate's validation result and the choice, if made
    (flagged when it lies on the grid's edge)."""
    lines = [
        "| optimizer | lr (ours) | state | best validation acc. (step) | zero-shot validation acc. | final validation loss | chosen |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for optimizer, entry in choices.items():
        edge = grid_edge(entry)
        for r in entry["results"]:
            best = (
                f"{r['best_validation_accuracy']:.3f} ({r['best_validation_step']})"
                if "best_validation_accuracy" in r
                else r.get("error", "—")
            )
            zero = (
                f"{r['zero_shot_validation_accuracy']:.3f}"
                if "zero_shot_validation_accuracy" in r
                else "—"
            )
            loss = f"{r['final_validation_loss']:.4f}" if "final_validation_loss" in r else "—"
            chosen = "✓" if entry["chosen_lr"] == r["lr"] else ""
            chosen += f" (the grid's {edge} edge)" if chosen and edge else ""
            lines.append(f"| {optimizer} | {r['lr']:g} | {r['state']} | {best} | {zero} | {loss} | {chosen} |")  # fmt: skip
    return "\n".join(lines)


def full_protocol_markdown(
    runs: list[dict], choices: dict | None = None, bench: list[dict] | None = None
) -> str:
    sweep = []
    if choices and any(r["state"] != "missing" for e in choices.values() for r in e["results"]):
        sweep = [
            "Learning-rate sweep (SST-2, seed 0, validation split only; a rate is chosen once all "
            "of an optimizer's rates are done):",
            "",
            sweep_markdown(choices),
            "",
        ]
    if not runs:
        return "\n".join([*sweep, "_No campaign run (3 seeds at the chosen rates) has finished yet: "
                          "`python scripts/campaign.py run --commit`._"])  # fmt: skip
    lines = [
        *sweep,
        "| task | run | seeds | lr (ours) | steps | test acc. at best validation | test acc. at last step | gain over zero-shot (paired by seed) | seeds with a gain | validation acc. change over the second half (fitted line) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in full_protocol_rows(runs):
        lr = "—" if r["optimizer"] == "zero-shot" else f"{r['lr']:g}"
        lines.append(f"| {r['task']} | {r['variant']} | {r['seeds']} | {lr} | {r['steps']} | {r['test_at_best_validation']} | "
                     f"{r['test_last']} | {r['gain']} | {r['gain_positive']} | {r['second_half_change']} |")  # fmt: skip
    cpus = sorted({c["machine"].get("cpu_model", "?") for r in runs for c in r.get("chunks", [])} |
                  {r["machine"].get("cpu_model", r["machine"]["processor"]) for r in runs})  # fmt: skip
    tests = ", ".join(
        f"{t}: {n}" for t, n in sorted({(r["task"], r["eval_examples"]) for r in runs})
    )
    lines += ["", (
        f"SmolLM2-135M-Instruct (Q4_1 GGUF de-quantized to fp32), MeZO's protocol: 1000 training and 500 "
        f"validation examples from GLUE train, test = the whole GLUE dev split ({tests} examples), batch 16; "
        "learning rates chosen on the validation split (`data/results/full_protocol/sweep/chosen.json`); "
        "LOZO's rates carry its 1/rank (paper rate = ours / rank). mean ± std over seeds; zero-shot, every method "
        f"and seed share the data draw and batch order. CPUs: {'; '.join(cpus)}. Runs and trajectories: "
        "`data/results/full_protocol/`."
    )]  # fmt: skip
    for task in sorted({r["task"] for r in runs}):
        if verdicts := accuracy_verdicts(runs, task):
            verdict = "; ".join(verdicts)
            lines += ["", f"**{task}, test accuracy at the best validation step:** {verdict}."]
        lines += speed_lines(runs, bench or [], task)
        lines += fluctuation_lines(runs, task)
    return "\n".join(lines)


def equal_time_verdict(
    runs: list[dict],
    task: str,
    step_seconds: dict[str, float],
    lozo: tuple[str, ...] = ("lozo",),
    mezo: tuple[str, ...] = ("mezo",),
    tolerance: float = 0.25,
) -> str | None:
    """Test accuracy at the best validation step, LOZO against MeZO at about equal seconds: of
    LOZO's runs ``lozo`` and MeZO's runs ``mezo`` (:func:`extensions`), the pair whose lengths
    at ``step_seconds["lozo"]`` and ``step_seconds["mezo"]`` are closest in ratio (of equally close
    pairs, the longer), paired by seed (:func:`difference_verdict`). None before the two share a seed, or when no pair's seconds lie
    within ``tolerance`` (relative) of each other."""
    steps: dict[str, int] = {}
    for r in runs:
        if r["task"] == task and r["variant"] in (*lozo, *mezo):
            steps[r["variant"]] = max(steps.get(r["variant"], 0), r["steps"])
    pairs = [(a, b) for a in lozo for b in mezo if a in steps and b in steps]
    if not pairs:
        return None

    def seconds(variant: str, optimizer: str) -> float:
        return steps[variant] * step_seconds[optimizer]

    def mismatch(pair: tuple[str, str]) -> tuple[float, int]:
        ratio = seconds(pair[0], "lozo") / seconds(pair[1], "mezo")
        return round(abs(ratio - 1), 9), -steps[pair[0]]

    ours, theirs = min(pairs, key=mismatch)
    t_lozo, t_mezo = seconds(ours, "lozo"), seconds(theirs, "mezo")
    diffs = paired_differences(runs, ours, theirs).get(task)
    if not diffs or abs(t_lozo / t_mezo - 1) > tolerance:
        return None
    return (
        f"at about equal seconds (within {tolerance:.0%}), LOZO for {steps[ours]} steps ({t_lozo:.0f} s) against MeZO "
        f"for {steps[theirs]} ({t_mezo:.0f} s), test accuracy at the best validation step: "
        + difference_verdict(f"LOZO ({steps[ours]} steps)", f"MeZO ({steps[theirs]} steps)", diffs)
    )


MEZO_COSTS = {"mezo": "MeZO as published", "mezo-kept": "MeZO with kept directions"}


def speed_verdicts(runs: list[dict], task: str, step_seconds: dict[str, float]) -> dict[str, str]:
    """:func:`speed_verdict` on ``task`` once per MeZO cost in ``step_seconds`` (its keys are
    bench rows: ``mezo`` as published, ``mezo-kept`` with its directions kept, as the campaign
    runs it), LOZO's and MeZO's longest runs counting (:func:`extensions`), followed by the
    :func:`equal_time_verdict` at that cost; keyed by the cost's label."""
    out = {}
    lozo, mezo = extensions(runs, task, "lozo"), extensions(runs, task, "mezo")
    for row, label in MEZO_COSTS.items():
        if {"lozo", row} <= set(step_seconds):
            as_mezo = step_seconds | {"mezo": step_seconds[row]}
            verdict = speed_verdict(runs, task, as_mezo, lozo, mezo)
            accuracy = equal_time_verdict(runs, task, as_mezo, lozo, mezo)
            if verdict:
                out[label] = verdict + (f"; {accuracy}" if accuracy else "")
    return out


def speed_lines(runs: list[dict], bench: list[dict], task: str) -> list[str]:
    """The README's :func:`speed_verdicts` on ``task`` at the step costs of
    :func:`campaign_timing`."""
    timing = campaign_timing(bench, task)
    if timing is None:
        return []
    seconds = {m: r["step_s_median"] for m, r in timing["results"].items() if _measured(r)}
    shape = "the campaign's batches" if timing["config"].get("task") else "random tokens"
    source = f"seconds per step from the bench of {shape} on {cpu_line(timing['machine'])}"
    return [
        line
        for label, verdict in speed_verdicts(runs, task, seconds).items()
        for line in ("", f"**{task}, speed** ({label}; {source}): {verdict}.")
    ]


SECTIONS = {
    "finetune_cpu": lambda: finetune_markdown(load("finetune_cpu")),
    "full_protocol": lambda: full_protocol_markdown(
        full_protocol_runs(), sweep_choices(), load("bench")
    ),
    "bench": lambda: bench_markdown(load("bench")),
    "spectra": lambda: spectra_markdown(load("spectra")),
}


def render_readme(text: str) -> str:
    """``text`` with every results section regenerated from the recorded JSON."""
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(
                f"README lacks the markers <!-- results:{name} --> ... <!-- /results:{name} -->"
            )
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main() -> int:
    readme = REPO_ROOT / "README.md"
    readme.write_text(render_readme(readme.read_text()))
    print(f"updated {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
