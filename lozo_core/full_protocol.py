"""The full-protocol campaign as recorded (MeZO's protocol on SmolLM2-135M, SST-2 and RTE).

``python scripts/campaign.py run --commit`` writes one folder per run under
``data/results/full_protocol/<task>/<variant>_s<seed>/`` and the learning-rate sweep under
``sweep/``; this module reads them and says what they show: test accuracy paired by seed
(:func:`accuracy_verdicts`), the seconds LOZO needs to reach MeZO's best validation loss
(:func:`speed_verdicts`), accuracy at about equal seconds (:func:`equal_time_verdict`) and whether
the lazy interval explains LOZO's late-training fluctuation (:func:`fluctuation_lines`).
:func:`full_protocol_markdown` is the README's section of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

from lozo_core.optim.table import TABLE
from lozo_core.paired import (
    difference_verdict,
    equal_spread_test,
    format_mean_std,
    format_p,
    paired_gains,
    paired_p,
)
from lozo_core.provenance import RESULTS_DIR, cpu_line
from lozo_core.train import TrainConfig

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
    more steps (a campaign block with ``extends = true``), compared with the defaults of this
    version filled in (an older record leaves LOZO-M's momentum unset)."""

    def but_steps(run: dict) -> dict:
        config = dataclasses.asdict(TrainConfig(**run["config"]))
        return {k: v for k, v in config.items() if k != "steps"}

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
    alpha: float = 0.05,
) -> str | None:
    """Whether LOZO reaches MeZO's best validation loss in fewer seconds than MeZO does, seed by
    seed (:func:`reaching`), at ``step_seconds[optimizer]`` seconds per step (one machine). On
    each seed the longest run among the variants ``lozo``, and among ``mezo``, counts
    (:func:`extensions`); that MeZO run sets the target too.

    On a seed where LOZO never reached it, LOZO is slower only if its whole run took at least
    MeZO's time to get there; a run that ended sooner leaves that seed undecided, and so the
    verdict. A direction needs ``p < alpha``: of a paired t-test on the log ratio of the seconds
    where both times are known on every seed (:func:`lozo_core.paired.paired_p`), else of the sign
    test on the seeds LOZO was faster on (with 3 seeds never). None before LOZO and MeZO share a
    seed."""
    from scipy.stats import binomtest

    reach = reaching(runs, task, mezo)
    ours_by_seed = longest_per_seed(reach, task, lozo, key="run")
    theirs_by_seed = longest_per_seed(reach, task, mezo, key="run")
    lozo_s, mezo_s = step_seconds["lozo"], step_seconds["mezo"]
    faster, undecided, log_ratios, notes = 0, 0, [], []
    for seed, ours in sorted(ours_by_seed.items()):
        theirs = theirs_by_seed.get(seed)
        if theirs is None:
            continue
        t_mezo = theirs["step"] * mezo_s
        if ours["step"] is not None:
            t_lozo = ours["step"] * lozo_s
            faster += t_lozo < t_mezo
            if t_lozo > 0 and t_mezo > 0:
                log_ratios.append(math.log(t_lozo / t_mezo))
            notes.append(f"seed {seed}: LOZO {t_lozo:.0f} s (step {ours['step']})")
        else:
            t_lozo = ours["steps"] * lozo_s
            undecided += t_lozo < t_mezo
            notes.append(f"seed {seed}: LOZO not within its {ours['steps']} steps ({t_lozo:.0f} s)")
        notes[-1] += f", MeZO {t_mezo:.0f} s (step {theirs['step']})"
    n = len(notes)
    if not n:
        return None
    if undecided:
        verdict = (
            f"undecided: on {undecided} of {n} seeds LOZO's run ended before MeZO reached the "
            "target, so a longer LOZO run must decide"
        )
    elif n < 2:
        verdict = f"LOZO is {'faster' if faster else 'not faster'} on its one seed: too few seeds for a verdict"
    else:
        if len(log_ratios) == n:
            p, test = paired_p(log_ratios)
            ratio = math.exp(statistics.mean(log_ratios))
            numbers = f"LOZO's seconds ×{ratio:.2f} MeZO's (geometric mean), {test} on the log ratio p = {format_p(p)}"
            quicker = ratio < 1
        else:
            p, quicker = float(binomtest(faster, n).pvalue), faster > n / 2
            numbers = f"sign test p = {format_p(p)}"
        if p < alpha:
            verdict = f"LOZO is {'faster' if quicker else 'slower'} ({numbers})"
        else:
            verdict = (
                f"no difference in time shown: LOZO is faster on {faster} of {n} seeds ({numbers})"
            )
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
    order = {name: i for i, name in enumerate(TABLE)}
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
            "lr": group[0]["lr"], "steps": group[0]["steps"], "test_at_best_validation": format_mean_std(best),
            "test_last": format_mean_std(last), "mean_at_best": statistics.mean(best),
            "gain": format_mean_std(g) if g else "—", "gain_positive": f"{sum(x > 0 for x in g)}/{len(g)}" if g else "—",
            "test_examples": group[0]["eval_examples"],
            "second_half_change": format_mean_std(changes, signed=True) if changes else "—",
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
    LOZO's runs ``lozo`` and MeZO's runs ``mezo`` (:func:`extensions`), the pairs whose lengths at
    ``step_seconds["lozo"]`` and ``step_seconds["mezo"]`` lie within ``tolerance`` (relative) of
    each other; of these the one sharing the most seeds, then the closest in ratio, then the
    longer, paired by seed (:func:`difference_verdict`). None when no such pair shares a seed."""
    steps: dict[str, int] = {}
    for r in runs:
        if r["task"] == task and r["variant"] in (*lozo, *mezo):
            steps[r["variant"]] = max(steps.get(r["variant"], 0), r["steps"])

    def seconds(variant: str, optimizer: str) -> float:
        return steps[variant] * step_seconds[optimizer]

    def mismatch(pair: tuple[str, str]) -> float:
        return round(abs(seconds(pair[0], "lozo") / seconds(pair[1], "mezo") - 1), 9)

    diffs_of = {
        (a, b): paired_differences(runs, a, b).get(task, [])
        for a in lozo
        for b in mezo
        if a in steps and b in steps
    }
    within = [pair for pair, diffs in diffs_of.items() if diffs and mismatch(pair) <= tolerance]
    if not within:
        return None
    ours, theirs = min(within, key=lambda p: (-len(diffs_of[p]), mismatch(p), -steps[p[0]]))
    diffs = diffs_of[(ours, theirs)]
    t_lozo, t_mezo = seconds(ours, "lozo"), seconds(theirs, "mezo")
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
    measured = {m: r for m, r in timing["results"].items() if "error" not in r}
    seconds = {m: r["step_s_median"] for m, r in measured.items()}
    shape = "the campaign's batches" if timing["config"].get("task") else "random tokens"
    c = timing["config"]
    spread = ", ".join(
        f"{m} {r['step_s_median']:.2f} ({r['step_s_min']:.2f}–{r['step_s_max']:.2f})"
        for m, r in measured.items()
        if m in ("lozo", "mezo", "mezo-kept") and "step_s_min" in r
    )
    source = (
        f"seconds per step from the bench of {shape} on {cpu_line(timing['machine'])}, the median "
        f"of {c['steps']} steps at {c['threads']} threads (min–max: {spread}); this noise is not "
        "carried into the verdict"
    )
    return [
        line
        for label, verdict in speed_verdicts(runs, task, seconds).items()
        for line in ("", f"**{task}, speed** ({label}; {source}): {verdict}.")
    ]
