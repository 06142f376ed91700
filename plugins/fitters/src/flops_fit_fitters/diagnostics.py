"""The diagnostics every fitter reports about its laws, computed in one place.

A law fitted to five budgets always looks good on those five budgets. What a user wants to know
is how far to trust it beyond them, and three cheap checks say a lot about that:

- **leave-one-out by budget**: refit the N* (and D*) law without each budget and see how far
  its prediction for the held-out budget lands from that budget's own optimum. One bad budget
  shows up as one large error; a law that bends shows up as large errors at both ends.
- **exponent sum**: when C is proportional to N·D (C = 6ND), N*·D* ∝ C, so the exponents of
  N* and D* must add up to 1. Fitters that estimate N* and D* separately (`quadratic`) or from
  a parametric law (`robust`) can break that; by how much is a consistency check for free.
- **identification**: an exponent whose interval is wider than `MAX_EXPONENT_HALF_WIDTH` either
  side is not identified by the data in any useful sense (see that constant).

`law_diagnostics` runs all of them, plus the R² check of `checks.check_r_squared`, from a
fitter's `CommonConfig`, so `empirical`, `quadratic` and `robust` put the same keys in
`FitResult.diagnostics` and word the same warnings the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from flops_fit_core import PowerLaw

from .checks import check_r_squared
from .config import CommonConfig, LawConfig

__all__ = [
    "MAX_EXPONENT_HALF_WIDTH",
    "check_exponent_identified",
    "check_exponent_sum",
    "exponent_sum",
    "law_checks",
    "law_diagnostics",
    "leave_one_out",
    "ols_line",
]

#: Half-width of the N* exponent's interval beyond which it is reported as barely identified.
#: Why 0.1: the exponents that matter sit near 0.5, and the disagreements the field cares about
#: are of that size (Kaplan's 0.73 against Chinchilla's 0.50, the gap Porian et al. explain).
#: An interval of ±0.1 cannot tell a 0.4 from a 0.6 allocation, and three decades past the data
#: it means N* is uncertain by a factor e^(0.1 · ln 1000) = 2 either way. The mock preset's
#: study sits inside it: ±0.085 with `empirical` (whose intervals include the grid's
#: resolution), ±0.01 with `quadratic`.
MAX_EXPONENT_HALF_WIDTH = 0.1


def ols_line(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the OLS line of ly on lx (two points are enough)."""
    dx = lx - lx.mean()
    slope = float(dx @ (ly - ly.mean())) / float(dx @ dx)
    return slope, float(ly.mean() - slope * lx.mean())


def leave_one_out(
    budgets: Sequence[float] | np.ndarray,
    optima_n: Sequence[float] | np.ndarray,
    optima_d: Sequence[float] | np.ndarray | None = None,
) -> dict:
    """Refit each law without one budget at a time and predict the budget left out.

    Returns a JSON-ready dict: `budgets`, and per law (`n_opt`, and `d_opt` when `optima_d` is
    given) the errors ln(predicted / observed) of each held-out optimum, in budget order, with
    `max_abs_error` (per law, and overall) and the budget where it is largest. The refit is a
    plain OLS line in log space: with three budgets it goes through the other two, which is
    enough to see whether one budget disagrees with the rest (no interval is attempted here).
    Errors are in ln units: 0.1 means the held-out optimum is missed by about 10%. The first
    and last errors are extrapolations, so they are the ones that speak about predicting beyond
    the data. With fewer than three budgets there is nothing to hold out: empty errors.
    """
    c = np.asarray(budgets, dtype=float)
    laws = {"n_opt": optima_n} if optima_d is None else {"n_opt": optima_n, "d_opt": optima_d}
    out: dict = {"budgets": [float(b) for b in c]}
    worst = (0.0, None)
    lc = np.log(c)
    for name, values in laws.items():
        ly = np.log(np.asarray(values, dtype=float))
        if ly.shape != c.shape:
            raise ValueError(f"{name}: {ly.size} optima for {c.size} budgets")
        errors = []
        if c.size >= 3:
            for i in range(c.size):
                rest = np.arange(c.size) != i
                slope, intercept = ols_line(lc[rest], ly[rest])
                errors.append(intercept + slope * lc[i] - ly[i])
        errors_arr = np.abs(np.array(errors))
        j = int(np.argmax(errors_arr)) if errors else None
        out[name] = {
            "errors": [float(e) for e in errors],
            "max_abs_error": float(errors_arr[j]) if j is not None else None,
            "worst_budget": float(c[j]) if j is not None else None,
        }
        if j is not None and errors_arr[j] >= worst[0]:
            worst = (float(errors_arr[j]), float(c[j]))
    out["max_abs_error"] = worst[0] if worst[1] is not None else None
    return out


def exponent_sum(laws: Mapping[str, PowerLaw]) -> float:
    """a + b, the exponents of N*(C) and D*(C): 1 when C ∝ N·D holds for the optima."""
    return float(laws["n_opt"].exponent + laws["d_opt"].exponent)


def check_exponent_sum(a: float, b: float, tolerance: float) -> str | None:
    """A warning when |a + b - 1| exceeds `tolerance` (the `exponent_tolerance` setting).

    With C = 6ND every budget's optimum satisfies N*·D* = C/6, so the laws' exponents add up to
    1 exactly. A fitter that estimates N* and D* separately can break that, and when it does
    one of the two laws (at least) is off by the excess: they cannot both be right. Under the
    `exact` FLOPs convention C also counts attention, so a small excess is expected there.
    """
    excess = a + b - 1.0
    if abs(excess) <= tolerance:
        return None
    return (
        f"the N* and D* exponents add up to {a + b:.4f} (a = {a:.4f}, b = {b:.4f}), not 1 "
        f"within exponent_tolerance = {tolerance:g}: with C ∝ N·D they must, so at least one "
        f"law is off by about {abs(excess):.3f}; compare the laws of another fitter"
    )


def check_exponent_identified(
    law: PowerLaw, name: str = "n_opt", max_half_width: float = MAX_EXPONENT_HALF_WIDTH
) -> str | None:
    """A warning when the exponent's interval is wider than ±`max_half_width` (or missing).

    Such an exponent is barely identified by the data: the laws may look fine on the budgets
    they were fitted on, but extrapolation rests on an exponent the data does not pin down.
    More budgets, a wider range of compute, or less noisy optima narrow it.
    """
    if law.exponent_interval is None:
        return None
    lo, hi = law.exponent_interval
    half = (hi - lo) / 2.0
    if math.isfinite(half) and half <= max_half_width:
        return None
    return (
        f"{name} exponent {law.exponent:.4f} has a {law.level:.0%} interval of ±{half:.3g} "
        f"[{lo:.4f}, {hi:.4f}], wider than ±{max_half_width:g}: the data barely identifies it, "
        f"so predictions far beyond the budgets are unreliable; add budgets, widen the range "
        f"of compute, or reduce the noise of the optima"
    )


def law_checks(laws: Mapping[str, PowerLaw], config: LawConfig) -> tuple[dict, list[str]]:
    """The checks of the laws alone, as (diagnostics, warnings): `r2` per law and
    `exponent_sum`; R² below `min_r_squared` (a `FitError` with `strict`), an exponent sum off
    1 by more than `exponent_tolerance`, and a barely identified N* exponent. What every fitter
    reports, whether its laws run over budgets or over a frontier (`envelope`)."""
    warnings = list(check_r_squared(laws, config.min_r_squared, strict=config.strict))
    diagnostics: dict = {
        "r2": {name: law.r2 for name, law in laws.items()},
        "exponent_sum": exponent_sum(laws),
    }
    for warning in (
        check_exponent_sum(
            laws["n_opt"].exponent, laws["d_opt"].exponent, config.exponent_tolerance
        ),
        check_exponent_identified(laws["n_opt"], "n_opt"),
    ):
        if warning is not None:
            warnings.append(warning)
    return diagnostics, warnings


def law_diagnostics(
    laws: Mapping[str, PowerLaw],
    budgets: Sequence[float] | np.ndarray,
    optima_n: Sequence[float] | np.ndarray,
    optima_d: Sequence[float] | np.ndarray,
    config: CommonConfig,
) -> tuple[dict, list[str]]:
    """Everything a fitter reports about its laws, as (diagnostics, warnings).

    `budgets`, `optima_n`, `optima_d` are the optima the laws were fitted to (the budgets used,
    ascending). Diagnostics: `r2` per law, `exponent_sum`, and `leave_one_out` when the setting
    is on. Warnings: R² below `min_r_squared` (a `FitError` instead with `strict`), an exponent
    sum off 1 by more than `exponent_tolerance`, and a barely identified N* exponent.
    """
    diagnostics, warnings = law_checks(laws, config)
    if config.leave_one_out:
        loo = leave_one_out(budgets, optima_n, optima_d)
        diagnostics["leave_one_out"] = loo
    return diagnostics, warnings
