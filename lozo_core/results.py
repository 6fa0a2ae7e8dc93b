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

from lozo_core.full_protocol import full_protocol_markdown, full_protocol_runs, sweep_choices
from lozo_core.optim.table import TABLE
from lozo_core.paired import format_mean_std, paired_gains
from lozo_core.provenance import REPO_ROOT, RESULTS_DIR, cpu_line
from lozo_core.schemes_grid import grid_markdown
from lozo_core.schemes_grid import runs as grid_runs

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
            "steps": group[0]["steps"], "lr": group[0]["config"]["lr"], "accuracy": format_mean_std(finals),
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


def timing(rec: dict) -> str:
    """How a record's step times were taken: timed steps (the median of them), warm-up, threads."""
    c = rec["config"]
    warm = "no warm-up: the cold first step" if c["warmup"] == 0 else f"after {c['warmup']} warm-up"
    text = f"{c['steps']} timed step{'s' * (c['steps'] > 1)} ({warm}), {c['threads']} thread{'s' * (c['threads'] > 1)}"
    if any("did_not_fit" in r for r in rec["results"].values()) and c.get("memory_limit_bytes"):
        text += (f", 'did not fit' = beyond an address-space limit (RLIMIT_DATA) of "
                 f"{c['memory_limit_bytes'] / 2**30:.1f} GiB, the free memory less 3 GiB at the start")  # fmt: skip
    return text


def _timings(recs: list[dict], heading) -> str:
    return "Step times: " + "; ".join(f"{heading(rec)}: {timing(rec)}" for rec in recs) + "."


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
            "*Inference*: peak RSS of a single-batch forward; *doubled*: of a forward over 2 × 4 sequences. "
            f"Step times: fp32 {timing(main['float32'])}"
            + (f"; bf16 {timing(main['bfloat16'])}" if "bfloat16" in main else "")
            + ". Each peak is measured once: differences of a few percent are within the allocator's noise.",
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
        lines += ["", _timings(scaling, lambda rec: rec["config"]["model"])]
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
        lines += [
            "",
            _timings(groups["context"], lambda rec: f"{rec['config']['seq_len']} tokens"),
            "",
        ]
    for rec in groups["other"]:
        c = rec["config"]
        lines += [f"**{c['model']}**, {c['dtype']}, batch {batch_shape(c)}, interval {c['interval']}, on {cpu_line(rec['machine'])}, {timing(rec)}:", ""]  # fmt: skip
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
        "`data/results/bench/` (`make bench` records the OPT-architecture ones)."
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
        "Effective rank: the exponentiated entropy of the energy distribution σᵢ²/Σσ² "
        "(`lozo_core.spectra`; Roy & Vetterli's weights by σᵢ and is larger). "
        "Gradient of the SST-2 loss on a batch of training prompts, every weight matrix: "
        + "; ".join(
            f"{model}: {rec['batch_size']} prompts, scored by {rec.get('scoring', 'label words')}, `{rec['command'].strip()}`"
            for model, rec in per_model.items()
        )
        + "."
    )
    return "\n".join(lines)


def sweep_run(task: str, optimizer: str, lr: float, sweep: str | None = None) -> str:
    """A sweep run's folder under a campaign's results: ``sweep[/<sweep>]/<task>_<optimizer>_lr<lr>``."""
    folder = "sweep" if sweep is None else f"sweep/{sweep}"
    return f"{folder}/{task}_{optimizer}_lr{lr:g}"


SECTIONS = {
    "finetune_cpu": lambda: finetune_markdown(load("finetune_cpu")),
    "full_protocol": lambda: full_protocol_markdown(
        full_protocol_runs(), sweep_choices(), load("bench")
    ),
    "bench": lambda: bench_markdown(load("bench")),
    "spectra": lambda: spectra_markdown(load("spectra")),
    "schemes_grid": lambda: grid_markdown(grid_runs()),
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
