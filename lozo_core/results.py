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


def load(folder: str) -> list[dict]:
    """Every JSON record in ``data/results/<folder>``, sorted by file name."""
    return [json.loads(p.read_text()) for p in sorted((RESULTS_DIR / folder).glob("*.json"))]


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def finetune_rows(runs: list[dict]) -> list[dict]:
    """One row per (task, model, optimizer): seeds, steps, final dev accuracy mean ± std."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
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


def finetune_markdown(runs: list[dict]) -> str:
    if not runs:
        return "_No recorded runs yet: `python scripts/record_finetune_cpu.py`._"
    lines = [
        "| task | model | optimizer | seeds | steps | lr (ours) | dev accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in finetune_rows(runs):
        lr = "—" if r["optimizer"] == "zero-shot" else f"{r['lr']:g}"
        lines.append(
            f"| {r['task']} | {r['model']} | {r['optimizer']} | {r['seeds']} | {r['steps']} | {lr} | {r['accuracy']} |"
        )
    machines = sorted(
        {
            f"{r['machine']['processor']} x{r['machine']['cpu_count']}, torch {r['machine']['torch']}"
            for r in runs
        }
    )
    evaluated = ", ".join(
        f"{task}: {n} GLUE dev examples"
        for task, n in sorted({(r["task"], r["eval_examples"]) for r in runs})
    )
    lines.append("")
    lines.append(f"Dev accuracy ({evaluated}), k = 16 per class, batch 16; mean ± std over seeds "
                 f"(k-shot data seeds 13, 21, 42). Machine: {'; '.join(machines)}. Commands: the `command` field of each JSON in "
                 "`data/results/finetune_cpu/`.")  # fmt: skip
    return "\n".join(lines)


def bench_markdown(records: list[dict]) -> str:
    if not records:
        return "_No recorded benchmark yet: `make bench`._"
    lines = []
    for rec in records:
        cfg, res = rec["config"], rec["results"]
        where = (
            rec["machine"]["gpu"]
            or f"{rec['machine']['processor']} x{rec['machine']['cpu_count']} CPU"
        )
        lines.append(
            f"**{cfg['model']}** ({'random init' if cfg['random_init'] else 'pretrained'}), {cfg['dtype']}, batch {cfg['batch_size']} × {cfg['seq_len']} tokens, {where}, torch {rec['machine']['torch']}:"
        )
        lines.append("")
        lines.append(
            "| method | step (s, median) | × MeZO | × doubled forward | peak memory (MiB) | memory × doubled inference |"
        )
        lines.append("|---|---|---|---|---|---|")
        for name, r in res.items():
            if "error" in r:
                lines.append(f"| {name} | {r['error']} | | | | |")
                continue
            lines.append(
                f"| {name} | {r['step_s_median']:.3f} | {r.get('time_vs_mezo', float('nan')):.2f} | "
                f"{r.get('time_vs_forward-doubled', float('nan')):.2f} | {r['peak_mem_bytes'] / 2**20:.0f} | {r.get('mem_vs_forward-doubled', float('nan')):.3f} |"
            )
        lines.append("")
        lines.append(f"Command: `{rec['command']}`")
        lines.append("")
    return "\n".join(lines).rstrip()


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


def sweep_choices() -> dict:
    path = RESULTS_DIR / FULL_PROTOCOL / "sweep" / "chosen.json"
    return json.loads(path.read_text()) if path.exists() else {}


def paired_gains(runs: list[dict], key: str) -> dict[tuple[str, str], list[float]]:
    """Per (task, variant): ``key`` minus the zero-shot run's test accuracy of the same seed."""
    zero = {
        (r["task"], r["seed"]): r["final_eval_accuracy"]
        for r in runs
        if r["optimizer"] == "zero-shot"
    }
    gains: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        if r["optimizer"] != "zero-shot" and (r["task"], r["seed"]) in zero:
            gains.setdefault((r["task"], r["variant"]), []).append(
                r[key] - zero[(r["task"], r["seed"])]
            )
    return gains


def full_protocol_rows(runs: list[dict]) -> list[dict]:
    """One row per (task, variant): seeds, lr, steps, test accuracy at the best-validation and
    last steps (mean ± std), and the gain over zero-shot paired by seed."""
    order = {name: i for i, name in enumerate(OPTIMIZER_ORDER)}
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["task"], run["variant"]), []).append(run)
    gains = paired_gains(runs, "eval_accuracy_at_best_validation")
    rows = []
    for (task, variant), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order.get(kv[1][0]["optimizer"], 99), kv[0][1])
    ):
        best = [r["eval_accuracy_at_best_validation"] for r in group]
        last = [r["final_eval_accuracy"] for r in group]
        g = gains.get((task, variant), [])
        rows.append({
            "task": task, "variant": variant, "optimizer": group[0]["optimizer"], "seeds": len(group),
            "lr": group[0]["lr"], "steps": group[0]["steps"], "test_at_best_validation": _mean_std(best),
            "test_last": _mean_std(last), "mean_at_best": statistics.mean(best),
            "gain": _mean_std(g) if g else "—", "gain_positive": f"{sum(x > 0 for x in g)}/{len(g)}" if g else "—",
            "test_examples": group[0]["eval_examples"],
        })  # fmt: skip
    return rows


def full_protocol_markdown(runs: list[dict]) -> str:
    if not runs:
        return "_No full-protocol run has finished yet: `python scripts/campaign.py run --commit`._"
    lines = [
        "| task | run | seeds | lr (ours) | steps | test acc. at best validation | test acc. at last step | gain over zero-shot (paired by seed) | seeds with a gain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in full_protocol_rows(runs):
        lr = "—" if r["optimizer"] == "zero-shot" else f"{r['lr']:g}"
        lines.append(f"| {r['task']} | {r['variant']} | {r['seeds']} | {lr} | {r['steps']} | {r['test_at_best_validation']} | "
                     f"{r['test_last']} | {r['gain']} | {r['gain_positive']} |")  # fmt: skip
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
    return "\n".join(lines)


SECTIONS = {
    "finetune_cpu": lambda: finetune_markdown(load("finetune_cpu")),
    "full_protocol": lambda: full_protocol_markdown(full_protocol_runs()),
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
