"""The skeleton every budget fitter shares: one optimum per budget in, a checked `FitResult` out.

A budget fitter (`empirical`, `quadratic`, or a third party's) decides one thing: where a
budget's optimum lies, given that budget's runs. The rest is the same for all of them and lives
in `fit_laws`: the budget checks (every run has a budget, at least `min_budgets` of them), the
monotonicity rule, the four power laws N*(C), D*(C), L*(C) and D*/N*(C) over the optima that
survive, the law diagnostics (`diagnostics.law_diagnostics`) and the `FitResult` envelope. So
two fitters with the same optima report the same laws, warnings and diagnostics, and a new
budget fitter is a Config and a function that finds one budget's optimum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self, TypeVar

import numpy as np

from flops_fit_core import Estimate, FitResult, Fitter, Observations, Optimum

from .checks import check_budgets_left, check_monotonic, check_n_budgets
from .config import CommonConfig
from .diagnostics import law_diagnostics
from .flags import EXCLUDED, EXCLUDED_FLAG
from .powerlaw import fit_power_law, log_residuals

__all__ = ["BudgetOptimum", "fit_laws"]

#: The laws whose optima may carry a `resolution` term (L* is the minimum of a smooth curve: a
#: point near the optimum misses it only to second order, so its law never needs one).
RESOLVED_LAWS = ("n_opt", "d_opt", "tokens_per_param")


@dataclass
class BudgetOptimum:
    """One budget's optimum as a budget fitter found it, and what it found wrong there.

    A flag starting with `flags.EXCLUDED` leaves the budget out of the laws; it is reported all
    the same, with the estimate it has. `warnings` enter the result in budget order.
    `resolution`, per law of `RESOLVED_LAWS` (in ln units), bounds an error of the optimum that
    is not random, such as an optimum read off a grid; it widens the laws' intervals
    (`powerlaw.fit_power_law`), and is used only when every budget in the laws has one.
    Subclasses add what a fitter's own diagnostics need (its parabolas, its best run).
    """

    budget: float
    rows: np.ndarray
    params: Estimate
    tokens: Estimate
    loss: Estimate
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resolution: dict[str, float] | None = None

    @classmethod
    def at_run(
        cls, observations: Observations, budget: float, rows: np.ndarray, run: int, **fields
    ) -> Self:
        """The optimum read off one run (row `run` of `observations`), without intervals."""
        return cls(
            budget=float(budget),
            rows=rows,
            params=Estimate(value=float(observations.params[run])),
            tokens=Estimate(value=float(observations.tokens[run])),
            loss=Estimate(value=float(observations.loss[run])),
            **fields,
        )

    @property
    def exclusion(self) -> str | None:
        """The first flag that leaves the budget out of the laws, if any."""
        return next((f for f in self.flags if f.startswith(EXCLUDED)), None)

    @property
    def used(self) -> bool:
        """Whether the budget enters the laws (no flag excludes it)."""
        return self.exclusion is None

    def optimum(self) -> Optimum:
        return Optimum(
            budget=self.budget,
            params=self.params,
            tokens=self.tokens,
            loss=self.loss,
            n_runs=int(self.rows.size),
            flags=list(self.flags),
        )


OptimumT = TypeVar("OptimumT", bound=BudgetOptimum)


def fit_laws(
    fitter: Fitter,
    observations: Observations,
    find_optimum: Callable[[Observations, float, np.ndarray], OptimumT],
    *,
    diagnostics: Callable[[list[OptimumT], list[OptimumT]], dict] | None = None,
) -> FitResult:
    """Find each budget's optimum, check the optima, and fit N*, D*, L*, D*/N* over C.

    `fitter` gives the name and the settings (a `config.CommonConfig`). `find_optimum(
    observations, budget, rows)` is called once per planned budget (`Observations.groups()`,
    its rows sorted by N) and returns that budget's `BudgetOptimum`. `diagnostics(optima,
    used)`, given every budget's optimum and those the laws use, returns the fitter's own
    diagnostics; they follow the shared ones, and replace any shared key they repeat (a
    fitter that minimises something other than the N* law's squared log residuals states its
    own `objective`). The laws are plain OLS in log space over the optima used, as the
    published Approaches 1 and 2 fit them, widened by the optima's `resolution` when given.

    Warnings come in this order: the observations' (from reading the data), each budget's,
    the monotonicity rule's, the laws'. Raises `InputError` for runs without budgets, and
    `FitError` for fewer than `min_budgets` budgets, when fewer than `min_budgets` survive the
    exclusions or, with `strict`, when a law's R² is below `min_r_squared`.
    """
    cfg: CommonConfig = fitter.config
    observations.require_budgets(f"the {fitter.name} fitter")
    groups = observations.groups()
    check_n_budgets(len(groups), cfg.min_budgets, fitter.name, observations.source)

    optima = [find_optimum(observations, budget, rows) for budget, rows in groups]
    warnings: list[str] = list(observations.warnings)
    for o in optima:
        warnings.extend(o.warnings)
    # The monotonicity rule, over the budgets that no check of the fitter's excluded.
    candidates = [o for o in optima if o.used]
    mono = check_monotonic(
        [o.budget for o in candidates],
        [o.params.value for o in candidates],
        [o.tokens.value for o in candidates],
        [o.loss.value for o in candidates],
        enforce=cfg.enforce_monotonic,
    )
    warnings.extend(mono.warnings)
    for o, keep in zip(candidates, mono.keep, strict=True):
        if not keep:
            o.flags.append(EXCLUDED_FLAG)
    used = [o for o in optima if o.used]
    check_budgets_left(
        len(optima),
        [(o.budget, o.exclusion) for o in optima if not o.used],
        cfg.min_budgets,
    )

    c = np.array([o.budget for o in used])
    n_star = np.array([o.params.value for o in used])
    d_star = np.array([o.tokens.value for o in used])
    l_star = np.array([o.loss.value for o in used])
    resolution = {
        name: None
        if any(o.resolution is None for o in used)
        else np.array([o.resolution[name] for o in used])
        for name in RESOLVED_LAWS
    }
    laws = {
        "n_opt": fit_power_law(c, n_star, cfg.confidence, resolution=resolution["n_opt"]),
        "d_opt": fit_power_law(c, d_star, cfg.confidence, resolution=resolution["d_opt"]),
        # A pure power law k * C^a, no irreducible loss (PowerLaw has no offset here), so far
        # beyond the data it runs low.
        "loss_opt": fit_power_law(c, l_star, cfg.confidence),
        "tokens_per_param": fit_power_law(
            c, d_star / n_star, cfg.confidence, resolution=resolution["tokens_per_param"]
        ),
    }
    law_diag, law_warnings = law_diagnostics(laws, c, n_star, d_star, cfg)
    warnings.extend(law_warnings)

    residuals = log_residuals(laws["n_opt"], c, n_star)
    out = {
        "n_budgets": len(optima),
        "n_runs": len(observations),
        "n_budgets_used": len(used),
        "budgets_used": [float(v) for v in c],
        "excluded": [o.budget for o in optima if not o.used],
        **law_diag,
        "residuals": [float(r) for r in residuals],
        "objective": float(residuals @ residuals),
    }
    if diagnostics is not None:
        out.update(diagnostics(optima, used))
    return FitResult(
        fitter=fitter.name,
        settings={**cfg.model_dump(mode="json"), **observations.record()},
        conventions=observations.conventions,
        laws=laws,
        optima=[o.optimum() for o in optima],
        diagnostics=out,
        warnings=warnings,
    )
