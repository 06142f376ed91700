"""The options every fitter in this package shares, declared once.

`empirical`, `quadratic` and `robust` read the same keys with the same meaning and defaults, so
a study can switch fitters with `--fitter NAME` and keep its `[fitter]` section. Each key is
consumed by every fitter and recorded in `fit.json`'s `settings`; the conventions
(`params`, `flops`) come from the core's `FitterConfig` and are applied by the pipeline when it
builds the observations. `envelope`, whose laws run over frontier points rather than budgets,
shares all of them but `min_budgets` (`LawConfig`).
"""

from __future__ import annotations

from pydantic import Field

from flops_fit_core import FitterConfig

from .powerlaw import MIN_POINTS

__all__ = ["CommonConfig", "LawConfig"]


class LawConfig(FitterConfig):
    """Options of every fitter of this package, including those whose laws are not fitted
    over budgets (`envelope`): how intervals are stated and laws are checked."""

    confidence: float = Field(
        0.95, gt=0.0, lt=1.0, description="level of every interval the fit reports"
    )
    min_r_squared: float = Field(
        0.9, ge=0.0, le=1.0, description="R² below which a law (n_opt, d_opt, loss_opt) is poor"
    )
    strict: bool = Field(
        False, description="raise FitError instead of warning when min_r_squared is not met"
    )
    enforce_monotonic: bool = Field(
        True,
        description="exclude optima (budgets, or envelope frontier points) whose loss is not "
        "below every smaller compute's",
    )
    leave_one_out: bool = Field(
        True,
        description="refit without each budget (envelope: each frontier run) in turn and "
        "report what it changes (diagnostics.leave_one_out)",
    )
    exponent_tolerance: float = Field(
        0.05,
        ge=0.0,
        description="warn when |a + b - 1| exceeds this (N* and D* exponents must sum to 1 "
        "when C is proportional to N·D)",
    )


class CommonConfig(LawConfig):
    """Options shared by every fitter of this package that fits laws over budgets."""

    min_budgets: int = Field(
        3,
        ge=MIN_POINTS,
        description="fewest budgets to fit laws to; 3 is the least that leaves an interval",
    )
