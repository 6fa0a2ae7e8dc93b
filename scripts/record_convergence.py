"""Record the long convergence runs of notebook 04 into data/results/convergence/.

Claim 4 (lazy LOZO against the ν = 1 bound) needs thousands of steps before the running sum of
‖∇f‖² settles; claim 6 (a smooth, non-quadratic problem on real features) needs a sentence
encoder. Both are recorded here and read by the notebook. One JSON per setting, written as soon
as it is done (existing ones are skipped unless ``--force``), with the per-seed running sums of
‖∇f‖² (and, for LOZO, of the certified subspace term) at log-spaced T, the constants, the
command and the machine.
Usage: ``python scripts/record_convergence.py [--only NAME ...] [--seeds N] [--steps T] [--force]``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lozo_core.convergence import (
    DiagonalQuadratic,
    LeastSquares,
    LogisticRegression,
    lge_descent_constant,
    rge_descent_constant,
    run,
)
from lozo_core.moments import gaussian_norm_moment, lge_second_moment, rge_second_moment
from lozo_core.optim import LOZO, MeZO
from lozo_core.provenance import REPO_ROOT, machine

OUT = REPO_ROOT / "data" / "results" / "convergence"
SHAPE, RANK, EPS = (24, 32), 2, 1e-3
LOGISTIC_SAMPLES, LOGISTIC_DATA_SEED = 256, 13


@dataclass(frozen=True)
class Setting:
    """One recorded configuration: problem × optimizer × interval × step-size rule."""

    problem: str
    optimizer: str
    interval: int
    step_rule: str
    rank: int = RANK
    steps: int = 8000
    seeds: int = 24

    @property
    def name(self) -> str:
        return f"{self.problem}_{self.optimizer}_nu{self.interval}_{self.step_rule}"


# The isotropic runs are compared with an exact prediction and a bound that is tight there, so
# they need the most seeds (one seed's sum has a spread of about 3%).
SETTINGS = (
    [Setting("least_squares", "lozo", nu, "quadratic") for nu in (1, 5, 25, 100, 500)]
    + [
        Setting("logistic", optimizer, 1, rule, rank=1, steps=2000)
        for optimizer in ("mezo", "lozo")
        for rule in ("smooth", "quadratic")
    ]
    + [Setting("isotropic", "lozo", nu, "quadratic", seeds=96) for nu in (1, 5, 25, 100, 500)]
)


def logistic_data() -> tuple[torch.Tensor, torch.Tensor, str]:
    from lozo_core import data as D
    from lozo_core.models import load_model, sentence_embeddings

    encoder = load_model("minilm-l6")
    sample = D.k_shot(D.glue_split("sst2", "train"), LOGISTIC_SAMPLES // 2, LOGISTIC_DATA_SEED)
    features = sentence_embeddings(encoder, [ex.text.removesuffix(" It was") for ex in sample])
    labels = torch.tensor([ex.label for ex in sample])
    return features, labels, encoder.source


def make_problem(setting: Setting, shape: tuple[int, int], logistic):
    if setting.problem == "isotropic":
        return lambda: DiagonalQuadratic(*shape, spectrum="flat", seed=0)
    if setting.problem == "least_squares":
        return lambda: LeastSquares(*shape, rank=2, seed=0)
    if setting.problem == "logistic":
        features, labels, _ = logistic
        problem = LogisticRegression(features, labels)
        state = {k: v.clone() for k, v in problem.state_dict().items()}

        def fresh():
            problem.load_state_dict(state)
            return problem

        return fresh
    raise ValueError(f"unknown problem {setting.problem!r}")


def step_size(setting: Setting, problem) -> dict:
    """The step and the constants its bound uses: 1/C (quadratic) or 1/(4LS) (L-smooth)."""
    m, n = problem.weight.shape
    r = setting.rank
    if setting.optimizer == "mezo":
        C = rge_descent_constant(problem.hessian_trace, problem.L)
        S = rge_second_moment(m * n)
        Z4, Z6 = gaussian_norm_moment(m * n, 2), gaussian_norm_moment(m * n, 3)
    else:
        C = lge_descent_constant(m, n, r, problem.L)
        S = lge_second_moment(m, n, r)
        Z4 = gaussian_norm_moment(m * r, 2) * gaussian_norm_moment(n * r, 2)
        Z6 = gaussian_norm_moment(m * r, 3) * gaussian_norm_moment(n * r, 3)
    lr = 1 / C if setting.step_rule == "quadratic" else 1 / (4 * problem.L * S)
    return {"lr": lr, "C": C, "second_moment": S, "Z4": Z4, "Z6": Z6}


def make_optimizer(setting: Setting, problem, lr: float, seed: int):
    if setting.optimizer == "mezo":
        return MeZO(problem, lr=lr, eps=EPS, seed=seed)
    return LOZO(
        problem,
        lr=lr,
        eps=EPS,
        rank=setting.rank,
        interval=setting.interval,
        engine="inplace",
        seed=seed,
    )


def record(setting: Setting, seeds: int, steps: int, shape: tuple[int, int], logistic) -> dict:
    make = make_problem(setting, shape, logistic)
    problem = make()
    constants = step_size(setting, problem)
    with torch.no_grad():
        gap = float(problem.loss()) - problem.f_star
    checkpoints = np.unique(np.geomspace(1, steps, 60).astype(int)).tolist()
    index = np.array(checkpoints) - 1
    grad_sq_sum, certified_sum, final_loss = [], [], []
    watch = setting.optimizer == "lozo"
    start = time.perf_counter()
    for seed in range(seeds):
        problem = make()
        traj = run(
            problem,
            make_optimizer(setting, problem, constants["lr"], seed),
            steps,
            watch_subspace=watch,
        )
        if len(traj.grad_sq) < steps:
            raise FloatingPointError(
                f"{setting.name} seed {seed} diverged at step {len(traj.grad_sq)}"
            )
        grad_sq_sum.append(np.cumsum(traj.grad_sq)[index].tolist())
        if watch:
            certified_sum.append(traj.certified_sum(constants["lr"])[index].tolist())
        final_loss.append(traj.loss[-1])
    m, n = problem.weight.shape
    return {
        "setting": asdict(setting),
        "name": setting.name,
        "problem": {
            "kind": setting.problem,
            "m": m,
            "n": n,
            "L": problem.L,
            "hessian_trace": problem.hessian_trace,
            "f_star": problem.f_star,
            "gap": gap,
            "features": logistic[2] if setting.problem == "logistic" else None,
        },
        "optimizer": {
            "name": setting.optimizer,
            "rank": setting.rank,
            "eps": EPS,
            "engine": "inplace",
        },
        "constants": constants,
        "steps": steps,
        "seeds": seeds,
        "checkpoints": checkpoints,
        "grad_sq_sum": grad_sq_sum,
        "certified_sum": certified_sum,
        "final_loss": final_loss,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "command": "python " + shlex.join(sys.argv),
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s.name for s in SETTINGS]
    parser.add_argument("--only", nargs="*", default=names, choices=names, metavar="NAME")
    parser.add_argument("--seeds", type=int, help="override every setting's seed count")
    parser.add_argument("--steps", type=int, help="override every setting's step count")
    parser.add_argument("--shape", type=int, nargs=2, default=SHAPE, metavar=("M", "N"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--force", action="store_true", help="re-record existing settings")
    args = parser.parse_args(argv)
    if (args.seeds is not None and args.seeds < 2) or (args.steps is not None and args.steps < 1):
        parser.error(f"need --seeds >= 2 and --steps >= 1, got {args.seeds} and {args.steps}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SETTINGS if s.name in args.only]
    logistic = logistic_data() if any(s.problem == "logistic" for s in chosen) else None
    for setting in chosen:
        target = args.out / f"{setting.name}.json"
        if target.exists() and not args.force:
            continue
        print(f"recording {setting.name} ...", flush=True)
        steps = args.steps or setting.steps
        result = record(setting, args.seeds or setting.seeds, steps, tuple(args.shape), logistic)
        target.write_text(json.dumps(result, indent=1) + "\n")
        print(f"  {result['wall_seconds']:.0f} s -> {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
