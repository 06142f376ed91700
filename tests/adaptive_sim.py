"""The `adaptive` planner's acceptance simulation, shared by its tests and its benchmark.

The mock's Chinchilla law with 1% log-normal noise, C = 6ND, budgets 1e18-1e21, the `robust`
fitter at 400 resamples. The reference is a fixed IsoFLOP grid (5 budgets x 7 sizes over
1/8x-8x) centred on the *true* optimum: its median 95% width on the N* exponent is the target.
The adaptive planner starts from a prior N* 4x too small. Each study runs through `run_study`,
the same pipeline `flops-fit run` uses, into its own run directory.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from flops_fit_core import resolve_study, run_study
from flops_fit_core.config import StudyConfig
from flops_fit_mock import MockConfig, optimal_laws

NOISE = 0.01
BOOTSTRAP = 400
MIN_FLOPS, MAX_FLOPS = 1e18, 1e21
LAW = MockConfig(noise=NOISE)
COEFFICIENT, TRUE_A = optimal_laws(LAW)["n_opt"]
CONVENTIONS = {"params": "total", "flops": "6n"}

FIXED_GRID = {
    "name": "isoflop",
    "min_flops": MIN_FLOPS,
    "max_flops": MAX_FLOPS,
    "n_budgets": 5,
    "sizes_per_budget": 7,
    "span": 8.0,
    "prior_coefficient": COEFFICIENT,
    "prior_exponent": TRUE_A,
    "conventions": CONVENTIONS,
}


def adaptive_planner(target_width: float) -> dict:
    return {
        "name": "adaptive",
        "min_flops": MIN_FLOPS,
        "max_flops": MAX_FLOPS,
        "target_width": target_width,
        "prior_coefficient": COEFFICIENT / 4.0,  # a prior N* 4x too small
        "prior_exponent": TRUE_A,
        "conventions": CONVENTIONS,
    }


@dataclass(frozen=True)
class Outcome:
    """One study's answer: its interval on the N* exponent, compute, and the bracket check."""

    seed: int
    exponent: float
    interval: tuple[float, float]
    compute: float  # sum over runs of 6ND (the plan's budgets, spent exactly)
    rounds: int
    reached: bool
    top_runs: int
    bracketed: bool

    @property
    def width(self) -> float:
        return self.interval[1] - self.interval[0]

    @property
    def covers(self) -> bool:
        return self.interval[0] <= TRUE_A <= self.interval[1]


def study(planner: dict, seed: int, run_dir: Path) -> Outcome:
    config = StudyConfig.model_validate(
        {
            "planner": planner,
            "trainer": {"name": "mock", "noise": NOISE, "seed": seed},
            "executor": {"name": "serial"},
            "fitter": {"name": "robust", "bootstrap": BOOTSTRAP},
            "plot": {"names": []},
        }
    )
    summary = run_study(resolve_study(config), run_dir)
    law = summary.fit.laws["n_opt"]
    top = [s for s in summary.plan.experiments if s.budget == MAX_FLOPS]
    n_star = float(law.predict(MAX_FLOPS))
    sizes = [s.params for s in top]
    return Outcome(
        seed=seed,
        exponent=law.exponent,
        interval=law.exponent_interval,
        compute=sum(s.tokens * s.flops_per_token for s in summary.plan.experiments),
        rounds=len(summary.plan.rounds),
        reached=summary.plan.stop is not None and summary.plan.stop.reached,
        top_runs=len(top),
        bracketed=bool(sizes) and min(sizes) < n_star < max(sizes),
    )


def fixed_grid(seeds, root: Path) -> list[Outcome]:
    return [study(FIXED_GRID, seed, root / f"fixed-{seed}") for seed in seeds]


def target_width(fixed: list[Outcome]) -> float:
    """The median 95% width on the N* exponent of the fixed grid: what adaptive must reach."""
    return statistics.median(o.width for o in fixed)


def adaptive(seeds, target: float, root: Path) -> list[Outcome]:
    return [study(adaptive_planner(target), seed, root / f"adaptive-{seed}") for seed in seeds]
