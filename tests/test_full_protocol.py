"""The full-protocol campaign's verdicts: accuracy paired by seed, seconds to MeZO's best
validation loss, accuracy at equal seconds, late-training fluctuation, the sweep's table."""

import pytest

from lozo_core import full_protocol, paired
from lozo_core.full_protocol import grid_edge, sweep_markdown


def test_a_choice_on_the_grids_edge_is_flagged():
    entry = {"grid": [2e-5, 6e-5, 2e-4], "results": [{"lr": 2e-5, "state": "done"}]}
    assert grid_edge(entry | {"chosen_lr": 2e-5}) == "lower"
    assert grid_edge(entry | {"chosen_lr": 2e-4}) == "upper"
    assert grid_edge(entry | {"chosen_lr": 6e-5}) is None
    assert grid_edge(entry | {"chosen_lr": None}) is None
    assert "✓ (the grid's lower edge)" in sweep_markdown({"lozo": entry | {"chosen_lr": 2e-5}})


def test_second_half_change_separates_a_rising_run_from_a_levelled_one():
    def run(accuracies):
        curve = [{"step": 100 * i, "validation_accuracy": a} for i, a in enumerate(accuracies)]
        return {"steps": 100 * (len(accuracies) - 1), "curve": curve}

    rising = run([0.5, 0.55, 0.6, 0.62, 0.64, 0.66, 0.68])
    levelled = run([0.5, 0.7, 0.8, 0.81, 0.79, 0.81, 0.80])
    assert full_protocol.second_half_validation_change(rising) == pytest.approx(0.06)
    assert abs(full_protocol.second_half_validation_change(levelled)) < 0.01
    assert full_protocol.second_half_validation_change(run([0.5, 0.6])) is None


def _accuracy_run(variant, seed, acc, steps=1000):
    return {
        "task": "sst2",
        "variant": variant,
        "seed": seed,
        "steps": steps,
        "config": {"optimizer": variant.split("-steps")[0], "steps": steps},
        "eval_accuracy_at_best_validation": acc,
    }


def test_a_difference_gets_a_direction_only_when_the_seeds_agree_beyond_noise():
    run = _accuracy_run

    runs = [run("mezo", s, 0.80) for s in range(3)] + [
        run("lozo", 0, 0.70),
        run("lozo", 1, 0.71),
        run("lozo", 2, 0.69),
    ]
    diffs = full_protocol.paired_differences(runs, "lozo", "mezo")
    assert diffs["sst2"] == pytest.approx([-0.10, -0.09, -0.11])
    assert paired.difference_verdict("LOZO", "MeZO", diffs["sst2"]).startswith("LOZO is lower")
    runs += [run("lozo-m", s, acc) for s, acc in enumerate((0.72, 0.69, 0.70))]
    lozo, lozo_m = full_protocol.accuracy_verdicts(runs, "sst2")
    assert lozo.startswith("LOZO is lower than MeZO")
    assert lozo_m.startswith("no difference between LOZO-M and LOZO detected (Δ = +0.003")
    assert full_protocol.accuracy_verdicts(runs, "rte") == []
    noisy = [-0.10, 0.08, 0.01]
    assert paired.difference_verdict("LOZO", "MeZO", noisy).startswith("no difference")
    assert "too few seeds" in paired.difference_verdict("LOZO", "MeZO", [0.2])
    same = paired.difference_verdict("LOZO", "MeZO", [0.005, 0.005, 0.005])
    assert same.startswith("no difference") and "sign test p = 0.250" in same
    assert paired.difference_verdict("LOZO", "MeZO", [0.005] * 6).startswith("LOZO is higher")


def test_longer_runs_of_both_methods_are_compared_at_equal_steps():
    runs = [_accuracy_run("mezo", s, 0.75) for s in range(3)]
    runs += [_accuracy_run("lozo", s, 0.72 + 0.001 * s) for s in range(3)]
    runs += [_accuracy_run("lozo-steps-2200", s, 0.77, 2200) for s in range(3)]
    assert [v.split(" (")[0] for v in full_protocol.accuracy_verdicts(runs, "sst2")] == [
        "LOZO is lower than MeZO"
    ]
    runs += [_accuracy_run("mezo-steps-2200", s, a, 2200) for s, a in enumerate((0.80, 0.79, 0.81))]
    _, longer = full_protocol.accuracy_verdicts(runs, "sst2")
    assert longer.startswith("LOZO (2200 steps) is lower than MeZO (2200 steps) (Δ = -0.030")


def _run(variant, seed, losses, every=100):
    curve = [{"step": every * i, "validation_loss": v} for i, v in enumerate(losses)]
    return {"task": "sst2", "variant": variant, "optimizer": variant, "seed": seed,
            "steps": every * (len(losses) - 1), "curve": curve}  # fmt: skip


def test_reaching_mezos_best_counts_steps_and_a_run_that_never_gets_there():
    runs = [_run("mezo", 0, [1.0, 0.6, 0.5]), _run("lozo", 0, [1.0, 0.5, 0.4]),
            _run("lozo", 1, [1.0, 0.5]), _run("zero-shot", 0, [1.0])]  # fmt: skip
    runs[-1]["steps"] = 0
    runs.append(_run("lozo-m", 0, [1.0, 0.7, 0.55]))
    reach = {(r["run"], r["seed"]): r["step"] for r in full_protocol.steps_to_reach(runs)}
    assert reach == {("mezo", 0): 200, ("lozo", 0): 100, ("lozo-m", 0): None}


@pytest.mark.parametrize(
    "lozo_losses, lozo_s, verdict",
    [
        ([1.0, 0.5], 1.5, "LOZO is faster on its one seed: too few"),  # 150 s < 200 s
        ([1.0, 0.5], 2.5, "LOZO is not faster on its one seed"),  # 250 s >= 200 s
        ([1.0, 0.7, 0.6], 1.0, "LOZO is not faster on its one seed"),  # never: 200 s >= 200 s
        ([1.0, 0.7, 0.6], 0.5, "undecided: on 1 of 1 seeds"),  # never, but it ran 100 s only
    ],
)
def test_speed_verdict_calls_a_run_that_ended_early_undecided(lozo_losses, lozo_s, verdict):
    runs = [_run("mezo", 0, [1.0, 0.6, 0.5]), _run("lozo", 0, lozo_losses)]
    text = full_protocol.speed_verdict(runs, "sst2", {"lozo": lozo_s, "mezo": 1.0})
    assert f"; to MeZO's best validation loss, {verdict}" in text
    assert full_protocol.speed_verdict([], "sst2", {"lozo": 1.0, "mezo": 1.0}) is None


def test_a_speed_direction_needs_a_test_over_the_seeds():
    def verdict(runs):
        text = full_protocol.speed_verdict(runs, "sst2", {"lozo": 1.0, "mezo": 1.0})
        return text.split("to MeZO's best validation loss, ")[1].split(" (seed 0")[0]

    mezo = [_run("mezo", s, [1.0, 0.8, 0.7, 0.6, 0.5]) for s in range(3)]  # best at step 400
    spread = [_run("lozo", s, [1.0, *[0.7] * s, 0.5]) for s in range(3)]  # steps 100, 200, 300
    assert verdict(mezo + spread) == (
        "no difference in time shown: LOZO is faster on 3 of 3 seeds (LOZO's seconds ×0.45 "
        "MeZO's (geometric mean), paired t-test on the log ratio p = 0.133)"
    )
    mezo[2] = _run("mezo", 2, [1.0, 0.8, 0.7, 0.6, 0.55, 0.5])  # best at step 500
    steady = [_run("lozo", s, [1.0, 0.7, 0.5]) for s in range(3)]  # step 200 on every seed
    assert verdict(mezo + steady).startswith("LOZO is faster (LOZO's seconds ×0.46 MeZO's")
    steady[1] = _run("lozo", 1, [1.0] * 6)  # never there, in 500 s >= MeZO's 400 s
    assert verdict(mezo + steady) == (
        "no difference in time shown: LOZO is faster on 2 of 3 seeds (sign test p = 1.000)"
    )


def test_campaign_seconds_come_from_the_bench_of_the_tasks_batches_when_there_is_one():
    def record(task, methods, date):
        return {"kind": "bench", "machine": {"date": date},
                "config": {"model": "smollm2-135m", "dtype": "float32", "task": task},
                "results": dict.fromkeys(methods, {})}  # fmt: skip

    tokens = record(None, ["mezo", "lozo", "fo-adam"], "2026-12-01")
    sst2 = record("sst2", ["mezo", "lozo"], "2026-12-02")
    newer = record("sst2", ["mezo", "lozo"], "2026-12-03")
    assert full_protocol.campaign_timing([tokens, sst2, newer], "sst2") is newer
    assert full_protocol.campaign_timing([tokens, sst2], "rte") is tokens
    assert full_protocol.campaign_timing([], "sst2") is None


def test_a_longer_run_of_the_same_config_extends_the_verdict_seed_by_seed():
    def run(variant, seed, losses, **config):
        r = _run(variant, seed, losses)
        optimizer = variant.split("-")[0]
        r["config"] = {"optimizer": optimizer, "interval": 50, "steps": r["steps"]} | config
        return r

    runs = [run("mezo", 0, [1.0, 0.6, 0.5]), run("mezo", 1, [1.0, 0.6, 0.5]),
            run("lozo", 0, [1.0, 0.7]), run("lozo", 1, [1.0, 0.7]),
            run("lozo-longer", 0, [1.0, 0.7, 0.6, 0.45]),
            run("lozo-interval-1", 0, [1.0, 0.7, 0.6, 0.4, 0.3], interval=1)]  # fmt: skip
    assert full_protocol.extensions(runs, "sst2", "lozo") == ("lozo", "lozo-longer")
    seconds = {"lozo": 0.5, "mezo": 1.0}
    text = full_protocol.speed_verdict(runs, "sst2", seconds, ("lozo", "lozo-longer"))
    assert "undecided: on 1 of 2 seeds" in text
    assert "seed 0: LOZO 150 s (step 300), MeZO 200 s" in text
    assert "seed 1: LOZO not within its 100 steps (50 s)" in text


def test_at_equal_seconds_the_lozo_run_closest_to_mezos_length_is_paired_with_it():
    def run(variant, seed, steps, acc):
        r = _run(variant, seed, [1.0] * (steps // 100 + 1))
        return r | {"eval_accuracy_at_best_validation": acc}

    runs = [run("mezo", s, 1000, 0.75) for s in range(3)]
    runs += [run("lozo", s, 1000, a) for s, a in enumerate((0.72, 0.715, 0.725))]
    runs += [run("lozo-steps-2200", s, 2200, a) for s, a in enumerate((0.77, 0.771, 0.772))]
    seconds = {"lozo": 2.0, "mezo": 4.0}
    text = full_protocol.equal_time_verdict(runs, "sst2", seconds, ("lozo", "lozo-steps-2200"))
    assert "LOZO for 2200 steps (4400 s) against MeZO for 1000 (4000 s)" in text
    assert "LOZO (2200 steps) is higher than MeZO" in text
    kept = full_protocol.equal_time_verdict(
        runs, "sst2", seconds | {"mezo": 2.3}, ("lozo", "lozo-steps-2200")
    )
    assert "LOZO for 1000 steps (2000 s) against MeZO for 1000 (2300 s)" in kept
    assert "LOZO (1000 steps) is lower than MeZO" in kept
    assert full_protocol.equal_time_verdict(runs[3:], "sst2", seconds) is None
    only_1000_steps = runs[:6]  # 2000 s is not about 4000 s
    assert full_protocol.equal_time_verdict(only_1000_steps, "sst2", seconds) is None
    one_seed = runs + [run("mezo-steps-2200", 0, 2200, 0.78)]
    kept_seconds = seconds | {"mezo": 2.3}
    three_seeds = full_protocol.equal_time_verdict(
        one_seed, "sst2", kept_seconds, ("lozo", "lozo-steps-2200"), ("mezo", "mezo-steps-2200")
    )  # 2200 against 2200 steps is as close as 1000 against 1000, but on one seed only
    assert "LOZO for 1000 steps (2000 s) against MeZO for 1000 (2300 s)" in three_seeds
    runs += [run("mezo-steps-2200", s, 2200, 0.78) for s in range(3)]
    both_longer = full_protocol.equal_time_verdict(
        runs,
        "sst2",
        seconds | {"mezo": 2.3},
        ("lozo", "lozo-steps-2200"),
        ("mezo", "mezo-steps-2200"),
    )  # 1000 against 1000 steps and 2200 against 2200 are equally close: the longer pair counts
    assert "LOZO for 2200 steps (4400 s) against MeZO for 2200 (5060 s)" in both_longer


def test_a_longer_mezo_run_sets_the_target_and_the_time_to_beat():
    def run(variant, seed, losses, acc=0.7):
        r = _run(variant, seed, losses)
        config = {"optimizer": variant.split("-")[0], "steps": r["steps"]}
        return r | {"config": config, "eval_accuracy_at_best_validation": acc}

    runs = [run("mezo", 0, [1.0, 0.6, 0.5]), run("lozo", 0, [1.0, 0.5, 0.45]),
            run("mezo-longer", 0, [1.0, 0.6, 0.5, 0.4, 0.42], acc=0.8)]  # fmt: skip
    reach = {(r["run"], r["seed"]): r["step"] for r in full_protocol.steps_to_reach(runs)}
    assert reach == {("mezo", 0): None, ("mezo-longer", 0): 300, ("lozo", 0): None}
    seconds = {"lozo": 0.5, "mezo": 1.0}
    text = full_protocol.speed_verdicts(runs, "sst2", seconds)["MeZO as published"]
    assert "LOZO not within its 200 steps (100 s), MeZO 300 s (step 300)" in text
    assert "undecided" in text
    assert "at about equal seconds" not in text  # 100 s against 200 s or 400 s
    equal = full_protocol.equal_time_verdict(runs, "sst2", {"lozo": 2.0, "mezo": 1.0}, ("lozo",),
                                       ("mezo", "mezo-longer"))  # fmt: skip
    assert "LOZO for 200 steps (400 s) against MeZO for 400 (400 s)" in equal
    assert "LOZO (200 steps) − MeZO (400 steps) = -0.100 on one pair: too few seeds" in equal


def test_the_fluctuation_test_sees_a_small_extra_noise_that_the_shared_batches_would_hide():
    import numpy as np

    rng = np.random.default_rng(3)
    batches = 0.5 + rng.normal(0, 0.10, 1000)
    quiet = list(batches + rng.normal(0, 0.02, 1000))
    loud = list(batches + rng.normal(0, 0.06, 1000))
    x, y = full_protocol.late_residuals(loud), full_protocol.late_residuals(quiet)
    assert len(x) == 300
    ratio, p = paired.equal_spread_test(x, y)
    assert 1.0 < ratio < 1.2 and p < 0.01
    assert paired.equal_spread_test(y, x) == pytest.approx((1 / ratio, p))
    test = full_protocol.late_fluctuation(loud, quiet)
    assert (test["ratio"], test["p"]) == (ratio, p) and test["shared"] > 0.5
    assert full_protocol.fluctuation_verdict(test, "ν = 50", "ν = 1").startswith(
        "ν = 50 fluctuates more than ν = 1"
    )
    reverse = full_protocol.late_fluctuation(quiet, loud)
    assert full_protocol.fluctuation_verdict(reverse, "a", "b").startswith("a fluctuates less")
    other = full_protocol.late_fluctuation(quiet, list(batches + rng.normal(0, 0.02, 1000)))
    assert full_protocol.fluctuation_verdict(other, "a", "b").startswith("no difference")
