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

Its laws get the checks every fitter of this package reports (`diagnostics.law_diagnostics`):
R², the sum of the N* and D* exponents, how well identified the N* exponent is, and the
leave-one-out error of each budget's optimum.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flops_fit_core import (
    Estimate,
    FitError,
    FitResult,
    Fitter,
    Observations,
    Optimum,
    PluginConfig,
)

from .checks import (
    EXCLUDED_FLAG,
    MIN_RUNS_PER_BUDGET,
    check_monotonic,
    check_n_budgets,
    format_budget,
    format_budgets,
)
from .diagnostics import law_diagnostics
from .powerlaw import fit_power_law, log_residuals, resolution_shifts
from .settings import CommonConfig

__all__ = ["EDGE_FLAG", "FEW_RUNS_FLAG", "EmpiricalConfig", "EmpiricalFitter"]

#: Flag of an optimum that sits at the smallest or largest model of its budget's grid.
EDGE_FLAG = "edge"
#: Flag of a budget with fewer than `MIN_RUNS_PER_BUDGET` runs.
FEW_RUNS_FLAG = "few runs"


class EmpiricalConfig(CommonConfig):
    """Options of the `empirical` fitter (the `[fitter]` section with `name = "empirical"`).

    Exactly the options every fitter of this package shares (`CommonConfig`): the empirical
    fitter has no knob of its own.
    """


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
        cfg = self.config
        observations.require_budgets(f"the {self.name} fitter")
        groups = observations.groups()
        check_n_budgets(len(groups), cfg.min_budgets, self.name, observations.source)

        warnings: list[str] = list(observations.warnings)
        budgets = np.array([b for b, _ in groups], dtype=float)
        best = np.empty(len(groups), dtype=int)
        flags: list[list[str]] = []
        for i, (budget, rows) in enumerate(groups):
            # `rows` is sorted by N, so among equal losses the smaller model wins.
            best[i] = rows[int(np.argmin(observations.loss[rows]))]
            budget_flags, budget_warnings = self._budget_flags(observations, budget, rows, best[i])
            flags.append(budget_flags)
            warnings.extend(budget_warnings)
        n_star = observations.params[best]
        d_star = observations.tokens[best]
        l_star = observations.loss[best]

        mono = check_monotonic(budgets, n_star, d_star, l_star, enforce=cfg.enforce_monotonic)
        warnings.extend(mono.warnings)
        for i in np.flatnonzero(~mono.keep):
            flags[i].append(EXCLUDED_FLAG)
        keep = mono.keep
        n_used = int(keep.sum())
        if n_used < cfg.min_budgets:
            raise FitError(
                f"only {n_used} of {len(groups)} budgets remain after excluding non-monotonic "
                f"ones ({format_budgets(mono.excluded)}), fewer than min_budgets = "
                f"{cfg.min_budgets}; inspect those runs, or set enforce_monotonic = false"
            )

        c_used = budgets[keep]
        used = np.flatnonzero(keep)
        # Per budget and quantity, half the local grid step in ln units: an argmin can only
        # land on a grid point, so that much of each optimum's error is resolution, not noise.
        grids = {
            "n_opt": observations.params,
            "d_opt": observations.tokens,
            "tokens_per_param": observations.tokens / observations.params,
        }
        half_steps = {
            name: np.array([_half_step(values[groups[i][1]], values[best[i]]) for i in used])
            for name, values in grids.items()
        }
        laws = {
            "n_opt": fit_power_law(
                c_used, n_star[keep], cfg.confidence, resolution=half_steps["n_opt"]
            ),
            "d_opt": fit_power_law(
                c_used, d_star[keep], cfg.confidence, resolution=half_steps["d_opt"]
            ),
            # L* is the minimum of a smooth curve: a grid point near the optimum misses it only
            # to second order, so its law needs no resolution term. The law k * C^a has no
            # irreducible loss (PowerLaw has no offset), so far beyond the data it runs low.
            "loss_opt": fit_power_law(c_used, l_star[keep], cfg.confidence),
            "tokens_per_param": fit_power_law(
                c_used,
                d_star[keep] / n_star[keep],
                cfg.confidence,
                resolution=half_steps["tokens_per_param"],
            ),
        }
        law_diag, law_warnings = law_diagnostics(laws, c_used, n_star[keep], d_star[keep], cfg)
        warnings.extend(law_warnings)

        residuals = log_residuals(laws["n_opt"], c_used, n_star[keep])
        optima = [
            Optimum(
                budget=float(budgets[i]),
                params=Estimate(value=float(n_star[i])),
                tokens=Estimate(value=float(d_star[i])),
                loss=Estimate(value=float(l_star[i])),
                n_runs=len(groups[i][1]),
                flags=flags[i],
            )
            for i in range(len(groups))
        ]
        diagnostics = {
            "n_budgets": len(groups),
            "n_runs": len(observations),
            "n_budgets_used": n_used,
            "budgets_used": [float(c) for c in c_used],
            "excluded": list(mono.excluded),
            "edge_budgets": [float(budgets[i]) for i, f in enumerate(flags) if EDGE_FLAG in f],
            **law_diag,
            "grid_half_step": [float(h) for h in half_steps["n_opt"]],
            "exponent_resolution": {
                name: float(np.hypot(*resolution_shifts(c_used, h)[:, 1]))
                for name, h in half_steps.items()
            },
            "residuals": [float(r) for r in residuals],
            "objective": float(residuals @ residuals),
            "best_runs": [observations.ids[i] for i in best],
        }
        return FitResult(
            fitter=self.name,
            settings={**cfg.model_dump(mode="json"), **observations.record()},
            conventions=observations.conventions,
            laws=laws,
            optima=optima,
            diagnostics=diagnostics,
            warnings=warnings,
        )

    @staticmethod
    def _budget_flags(
        observations: Observations, budget: float, rows: np.ndarray, best: int
    ) -> tuple[list[str], list[str]]:
        """Flags and warnings of one budget: too few runs, or a best run at the grid's edge.

        An optimum at the edge is a lower or upper bound, not an estimate: the true optimum may
        lie beyond the sampled sizes, and the law through it is biased towards the grid centre.
        """
        flags: list[str] = []
        warnings: list[str] = []
        where = f"budget {format_budget(budget)}"
        if rows.size < MIN_RUNS_PER_BUDGET:
            flags.append(FEW_RUNS_FLAG)
            warnings.append(
                f"{where} has {rows.size} run(s), fewer than {MIN_RUNS_PER_BUDGET}: its "
                f"optimum is poorly located"
            )
        sizes = observations.params[rows]
        n_best = observations.params[best]
        lo, hi = sizes.min(), sizes.max()
        if lo == hi:
            flags.append(EDGE_FLAG)
            warnings.append(
                f"{where}: every run has the same model size (N={lo:.4g}), so the optimum over "
                f"N is not located at all"
            )
        elif n_best in (lo, hi):
            flags.append(EDGE_FLAG)
            side, beyond = ("smallest", "below") if n_best == lo else ("largest", "above")
            warnings.append(
                f"{where}: the best run is the {side} model of the grid (N={n_best:.4g}); the "
                f"optimum may lie {beyond} the sampled sizes, outside the grid"
            )
        return flags, warnings


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
