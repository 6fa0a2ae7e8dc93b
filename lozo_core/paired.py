r"""Runs paired by seed: the same data draw, batch order and evaluation examples, so that the
difference of two runs on a seed removes what the seed alone decides.

What several seeds let one say: mean and spread (:func:`mean_std`, :func:`format_mean_std`),
gains over the zero-shot run of the same seed (:func:`paired_gains`), a direction only where a
paired test allows it (:func:`paired_p`, :func:`difference_verdict`), and whether two paired series
spread alike (:func:`equal_spread_test`).
"""

from __future__ import annotations

import statistics


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(values: list[float], signed: bool = False) -> str:
    """``mean ± std`` to three decimals (the value alone for one seed); ``signed`` writes the sign."""
    form = "+.3f" if signed else ".3f"
    if len(values) == 1:
        return f"{values[0]:{form}}"
    return f"{statistics.mean(values):{form}} ± {statistics.stdev(values):.3f}"


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


def paired_p(diffs: list[float]) -> tuple[float, str]:
    r"""Two-sided p that paired differences (at least two) have mean 0, and the test that gave it:
    the one-sample t-test, or — where every difference is the same (accuracies move in whole
    examples, so this happens), which leaves the t statistic unbounded and saying nothing — the
    sign test, which needs 6 pairs for :math:`p < 0.05` (:math:`p = 2^{1-n}`)."""
    from scipy.stats import binomtest, ttest_1samp

    mean = statistics.mean(diffs)
    if statistics.stdev(diffs) <= 1e-12 * max(1.0, abs(mean)):
        up = sum(d > 0 for d in diffs)
        return (1.0 if abs(mean) <= 1e-12 else float(binomtest(up, len(diffs)).pvalue)), "sign test"
    return float(ttest_1samp(diffs, 0.0).pvalue), "paired t-test"


ALPHA = 0.05


def format_p(p: float) -> str:
    """``p`` to three decimals, or to as many more as keep it off :data:`ALPHA` (a verdict at
    ``p = 0.04998`` must not read as ``p = 0.050``)."""
    digits = next((d for d in range(3, 10) if round(p, d) != ALPHA), 3)
    return f"{p:.{digits}f}"


def detected(diffs: list[float], alpha: float = ALPHA) -> bool:
    """Whether paired differences (at least two) show a direction: :func:`paired_p` below
    ``alpha``, the rule :func:`difference_verdict` states in words."""
    return len(diffs) > 1 and paired_p(diffs)[0] < alpha


def difference_verdict(
    a: str, b: str, diffs: list[float], alpha: float = ALPHA, unit: str = "seeds"
) -> str:
    r"""One sentence on paired differences :math:`d_s = a_s - b_s`: a direction only when
    :func:`paired_p` gives :math:`p < \alpha` (a t-test: with 3 seeds, :math:`|t| > 4.30`);
    otherwise "no difference detected" with the numbers. ``unit`` names what the differences pair
    over (seeds, or e.g. task-seed pairs)."""
    n, mean = len(diffs), statistics.mean(diffs)
    if n < 2:
        return f"{a} − {b} = {mean:+.3f} on one pair: too few {unit} for a verdict"
    p, test = paired_p(diffs)
    spread = (f"on each of {n} {unit}" if test == "sign test"
              else f"± {statistics.stdev(diffs):.3f} over {n} {unit}")  # fmt: skip
    numbers = f"Δ = {mean:+.3f} {spread}, {test} p = {format_p(p)}"
    if p < alpha:
        return f"{a} is {'higher' if mean > 0 else 'lower'} than {b} ({numbers})"
    return f"no difference between {a} and {b} detected ({numbers})"


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
