"""The `empirical` fitter: each budget's best observed run is its optimum (Chinchilla Approach 1).

It makes no assumption about the shape of an IsoFLOP curve, which makes it the fitter to trust
when the others disagree, and the baseline they are checked against. Its price is resolution:
an optimum can only be a grid point, so N*(C) moves in steps of the grid's spacing. That error
is not random scatter the residuals would reveal: when the grid's centre drifts slowly against
the true optimum, the optima climb a staircase whose slope is off by up to a grid step over the
range of budgets, with small residuals (or, on the same grid index at every budget, none at all
and an OLS interval of zero width). So the laws of N*, D* and D*/N* get each optimum's half grid
step as a `resolution` term (`fit_power_law`), added in quadrature to the OLS interval. On
Chinchilla-law grids of 9 sizes over ±8x with 0.1-0.2% loss noise, plain OLS intervals on the N*
exponent missed the truth for 13-44% of seeds; with the term, at most 1% (intervals 1.3-1.5x as
wide). Where loss noise dominates, the term adds little and both miss about 5%. A finer grid (or
the `quadratic` fitter) narrows them.

The laws are fitted against each run's *planned* budget, grouped exactly as planned
(`Observations.groups()`): measured compute drifts a little from plan (shape rounding, the
convention), and rounding it to regroup runs can merge or split budgets silently.

Everything after the optima is the skeleton it shares with `quadratic` (`laws.fit_laws`): the
monotonicity rule, the laws, and the checks every fitter of this package reports
(`diagnostics.law_diagnostics`): R², the sum of the N* and D* exponents, how well identified
the N* exponent is, and the leave-one-out error of each budget's optimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flops_fit_core import FitResult, Fitter, Observations, PluginConfig

from .checks import MIN_RUNS_PER_BUDGET, budget_for_message
from .config import CommonConfig
from .flags import EDGE_FLAG, FEW_RUNS_FLAG
from .laws import RESOLVED_LAWS, BudgetOptimum, fit_laws
from .powerlaw import resolution_shifts

__all__ = ["EmpiricalConfig", "EmpiricalFitter"]


class EmpiricalConfig(CommonConfig):
    """Options of the `empirical` fitter (the `[fitter]` section with `name = "empirical"`).

    Exactly the options every fitter of this package shares (`CommonConfig`): the empirical
    fitter has no knob of its own.
    """


@dataclass
class _BestRun(BudgetOptimum):
    """A budget's optimum read off its best run, which `best_runs` names."""

    run_id: str = ""


class EmpiricalFitter(Fitter):
    """Per budget the run with the lowest loss; power laws in log space over the budgets."""

    name: ClassVar[str] = "empirical"
    Config: ClassVar[type[PluginConfig]] = EmpiricalConfig
    config: EmpiricalConfig

    def fit(self, observations: Observations) -> FitResult:
        """Find each budget's best run, check the optima, and fit N*, D*, L*, D*/N* over C.

        Warnings the observations carry (from reading the data) come first in the result's.
        Raises `InputError` for runs without budgets, and `FitError` for fewer than `min_budgets`
        budgets, when too few survive the monotonicity rule or, with `strict`, when a law's R² is
        below `min_r_squared`.
        """
        return fit_laws(self, observations, self._best_run, diagnostics=_diagnostics)

    @staticmethod
    def _best_run(observations: Observations, budget: float, rows: np.ndarray) -> _BestRun:
        """The budget's best run, with its grid's half step as `resolution`, and its flags.

        Per law, the resolution is half the local grid step in ln units: an argmin can only
        land on a grid point, so that much of the optimum's error is resolution, not noise.
        """
        # `rows` is sorted by N, so among equal losses the smaller model wins.
        best = int(rows[int(np.argmin(observations.loss[rows]))])
        grids = {
            "n_opt": observations.params,
            "d_opt": observations.tokens,
            "tokens_per_param": observations.tokens / observations.params,
        }
        out = _BestRun.at_run(
            observations,
            budget,
            rows,
            best,
            resolution={n: _half_step(v[rows], v[best]) for n, v in grids.items()},
            run_id=observations.ids[best],
        )
        _flag_budget(observations, out, best)
        return out


def _flag_budget(observations: Observations, out: _BestRun, best: int) -> None:
    """Flags and warnings of one budget: too few runs, or a best run at the grid's edge.

    An optimum at the edge is a lower or upper bound, not an estimate: the true optimum may
    lie beyond the sampled sizes, and the law through it is biased towards the grid centre.
    """
    rows = out.rows
    where = f"budget {budget_for_message(out.budget)}"
    if rows.size < MIN_RUNS_PER_BUDGET:
        out.flags.append(FEW_RUNS_FLAG)
        out.warnings.append(
            f"{where} has {rows.size} run(s), fewer than {MIN_RUNS_PER_BUDGET}: its "
            f"optimum is poorly located"
        )
    sizes = observations.params[rows]
    n_best = observations.params[best]
    lo, hi = sizes.min(), sizes.max()
    if lo == hi:
        out.flags.append(EDGE_FLAG)
        out.warnings.append(
            f"{where}: every run has the same model size (N={lo:.4g}), so the optimum over "
            f"N is not located at all"
        )
    elif n_best in (lo, hi):
        out.flags.append(EDGE_FLAG)
        side, beyond = ("smallest", "below") if n_best == lo else ("largest", "above")
        out.warnings.append(
            f"{where}: the best run is the {side} model of the grid (N={n_best:.4g}); the "
            f"optimum may lie {beyond} the sampled sizes, outside the grid"
        )


def _diagnostics(optima: list[_BestRun], used: list[_BestRun]) -> dict:
    """The edge budgets, the grid's half steps and what they can do to each exponent, and
    which run is each budget's optimum."""
    c = np.array([o.budget for o in used])
    return {
        "edge_budgets": [o.budget for o in optima if EDGE_FLAG in o.flags],
        "grid_half_step": [float(o.resolution["n_opt"]) for o in used],
        "exponent_resolution": {
            name: float(np.hypot(*resolution_shifts(c, [o.resolution[name] for o in used])[:, 1]))
            for name in RESOLVED_LAWS
        },
        "best_runs": [o.run_id for o in optima],
    }


def _half_step(values: np.ndarray, best: float) -> float:
    """Half the mean gap, in ln units, between `best` and its neighbours among `values`.

    A grid of sizes need not be evenly spaced, so the step is read where the optimum is. At an
    edge only the inner gap exists (the edge flag warns that the error may be larger), and a
    budget with a single distinct value has no step to read: 0, with its own flag.
    """
    grid = np.unique(np.log(values))
    j = int(np.searchsorted(grid, np.log(best)))
    gaps = []
    if j > 0:
        gaps.append(grid[j] - grid[j - 1])
    if j < grid.size - 1:
        gaps.append(grid[j + 1] - grid[j])
    return float(np.mean(gaps)) / 2.0 if gaps else 0.0
