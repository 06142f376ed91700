"""Power laws y = k * x**a fitted by (weighted) least squares in log space, with intervals.

Every fitter in this package ends the same way: a handful of per-budget optima (N*, D*, L*)
against their budgets C, summarised as a straight line in (ln C, ln y). Doing that fit in one
place means the laws of `empirical`, `quadratic` and `robust` carry the same kind of uncertainty,
computed the same way, and that `PowerLaw.predict_interval` in the core (which has no scipy)
receives everything it needs: the covariance of (ln k, a) and the t quantile.

Why OLS in log space: scaling laws are multiplicative, errors in N* scale with N*, and the
published fits this toolkit is checked against (Chinchilla Approach 1/2, Porian et al.) are all
OLS of ln y on ln x. Why Student's t with n - 2 degrees of freedom: a law is fitted to 3-10
budgets, where the normal quantile (1.96) would understate the uncertainty badly (the 95% t
quantile for 3 budgets is 12.7). Errors that are bounded but not random, such as an optimum
read off a grid, are not visible in the residuals; a fitter that knows them passes them as
`resolution` and they widen the intervals (see `resolution_shifts`). Optima whose precision is
known to differ (a per-budget standard error, as in Porian et al.'s weighted fits) are passed
as `weights` (1/sigma² of ln y) and the same machinery runs as weighted least squares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from flops_fit_core import FitError, PowerLaw

__all__ = ["exp_in_range", "fit_power_law", "log_residuals", "resolution_shifts"]

#: The fewest points with a residual degree of freedom: two points always lie on a line, so no
#: uncertainty could be stated for them, and this toolkit never reports a law without one.
MIN_POINTS = 3


def _as_positive_array(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be finite and positive to be fitted in log space")
    return arr


def _as_weights(weights: Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w) & (w > 0)):
        raise ValueError("weights must give one finite, positive weight per point")
    return w


def resolution_shifts(
    x: Sequence[float] | np.ndarray,
    resolution: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """How far bounded, non-random errors in ln y can move the fitted (ln k, a), at worst.

    `resolution[i]` bounds the error of ln y[i] that no amount of repetition averages away, such
    as an optimum read off a grid (it lies within about half a grid step of the best run). Two
    patterns of such errors do the most harm: a common offset (every point off by its bound in
    the same direction) moves the coefficient, and a ramp (points below the (weighted) mean
    ln x off one way, points above it the other) tilts the exponent. Returns their shifts of
    the least-squares estimate (weighted by `weights` when given), one row (d ln k, d a) per
    pattern.
    """
    lx = np.log(_as_positive_array(x, "x"))
    bound = np.asarray(resolution, dtype=float)
    if bound.shape != lx.shape or not np.all(np.isfinite(bound) & (bound >= 0)):
        raise ValueError("resolution must give one finite, non-negative bound per point")
    w = _as_weights(weights, lx.size)
    x_mean = float(w @ lx) / float(w.sum())
    dx = lx - x_mean
    sxx = float(w @ (dx * dx))
    if not sxx > 0.0:
        raise FitError("all x values are equal: the exponent of a power law cannot be fitted")
    shifts = []
    for errors in (bound, bound * np.sign(dx)):
        d_a = float((w * dx) @ errors) / sxx
        shifts.append((float(w @ errors) / float(w.sum()) - d_a * x_mean, d_a))
    return np.array(shifts)


def fit_power_law(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    level: float = 0.95,
    *,
    resolution: Sequence[float] | np.ndarray | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
) -> PowerLaw:
    """Fit y = k * x**a by least squares of ln y on ln x and return it with `level` intervals.

    The exponent interval is a ± t·se(a) and the coefficient interval exp(ln k ± t·se(ln k)),
    with t the two-sided Student quantile on n - 2 degrees of freedom; `covariance` is that of
    (ln k, a), so `PowerLaw.predict_interval` gives the interval of the fitted line at any x
    (confidence in the law, not a prediction interval for one new budget's noisy optimum).

    `resolution` (per point, in ln y) adds what the residuals cannot show: a bounded systematic
    error such as an optimum quantised to a grid. Without it, optima that sit on the same grid
    index at every budget lie on a perfect line and the interval collapses to a point that
    misses the truth. The worst offset and ramp of those errors (`resolution_shifts`) are
    added to the covariance as rank-one terms divided by t², so each interval's half-width is
    the statistical one and the resolution bound added in quadrature, and `predict_interval`
    carries the same term at every x. The estimates, R² and residuals are plain OLS either way.

    `weights` (per point, e.g. 1/sigma² with sigma the standard error of ln y[i]) make it
    weighted least squares: the line minimises sum w·r², R² is the weighted share of the
    weighted variance of ln y about its weighted mean, and `resolution` shifts are those of the
    weighted estimate. Weights are *relative*: the covariance is s²·(XᵀWX)⁻¹ with
    s² = sum w·r² / (n - 2), so scaling every weight by a constant changes nothing, and a set of
    sigmas that are right only up to a common factor (bootstrap spreads, say) still gives honest
    intervals; the t quantile stays on n - 2 degrees of freedom. This is the weighted fit of
    Porian et al. (2024), weights 1/std² of ln N*, to 1e-13 on their 15 configurations.
    Without weights, every point weighs 1 and the fit is OLS.

    The regression is computed on centred ln x: budgets sit near ln C ~ 40-50, where the
    textbook normal equations lose digits to cancellation.

    Raises `FitError` for fewer than `MIN_POINTS` points or when all x are equal (no slope can
    be estimated), and `ValueError` for non-positive, non-finite or mismatched inputs, which
    are a caller's bug rather than a property of the data.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    xs = _as_positive_array(x, "x")
    ys = _as_positive_array(y, "y")
    if xs.shape != ys.shape:
        raise ValueError(f"x and y differ in length: {xs.size} and {ys.size}")
    n = xs.size
    if n < MIN_POINTS:
        raise FitError(f"a power law with an interval needs at least {MIN_POINTS} points, got {n}")
    w = _as_weights(weights, n)
    lx, ly = np.log(xs), np.log(ys)
    w_sum = float(w.sum())
    x_mean, y_mean = float(w @ lx) / w_sum, float(w @ ly) / w_sum
    dx, dy = lx - x_mean, ly - y_mean
    sxx = float(w @ (dx * dx))
    if not sxx > 0.0:
        raise FitError("all x values are equal: the exponent of a power law cannot be fitted")
    slope = float((w * dx) @ dy) / sxx
    intercept = float(y_mean - slope * x_mean)
    resid = ly - (intercept + slope * lx)
    ssr = float(w @ (resid * resid))
    sst = float(w @ (dy * dy))
    # Least squares with an intercept explains a share in [0, 1] of the (weighted) variance.
    # When ln y does not vary at all the line explains it perfectly (ssr <= sst = 0), so R² is
    # 1, not undefined.
    r2 = 1.0 - ssr / sst if sst > 0.0 else 1.0
    r2 = min(max(r2, 0.0), 1.0)

    # Imported here, not at the top: the plugin host imports this package for every command
    # (`flops-fit plan` too), and scipy.stats alone takes a second or more to import.
    from scipy import stats

    dof = n - 2
    t_value = float(stats.t.ppf(0.5 + level / 2.0, dof))
    s2 = ssr / dof
    cov = np.array(
        [
            [s2 * (1.0 / w_sum + x_mean * x_mean / sxx), -s2 * x_mean / sxx],
            [-s2 * x_mean / sxx, s2 / sxx],
        ]
    )
    if resolution is not None:
        shifts = resolution_shifts(xs, resolution, weights=w)
        cov = cov + shifts.T @ shifts / (t_value * t_value)
    se_lnk, se_a = math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1])
    return PowerLaw(
        coefficient=exp_in_range(intercept, "coefficient"),
        exponent=slope,
        coefficient_interval=(
            exp_in_range(intercept - t_value * se_lnk, "coefficient's interval", bound=True),
            exp_in_range(intercept + t_value * se_lnk, "coefficient's interval", bound=True),
        ),
        exponent_interval=(slope - t_value * se_a, slope + t_value * se_a),
        r2=r2,
        covariance=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        t_value=t_value,
        level=level,
        n_points=n,
    )


def exp_in_range(value: float, what: str, bound: bool = False) -> float:
    """e**value for a law's coefficient fitted as ln k (or, with `bound`, an end of its
    interval); a `FitError` when it lies beyond the range of a float (ln k > 709.78), or for a
    coefficient (not a bound) when it underflows to 0 (ln k < -745). Only data with values too
    extreme to describe (losses of 1e300, say) get there, and no fit.json could hold the law
    (an inf is written as null; a coefficient of 0 predicts nothing)."""
    try:
        result = math.exp(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result) or (result == 0.0 and not bound):
        raise FitError(
            f"a power law's {what} comes out as e^{value:.6g}, beyond the range of a float: "
            "the data hold values too extreme to fit a law through (check the losses, N, D "
            "and C of the runs)"
        )
    return result


def log_residuals(
    law: PowerLaw, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> np.ndarray:
    """ln y - ln law(x): the residuals the fit minimised, for diagnostics and plots."""
    xs = _as_positive_array(x, "x")
    ys = _as_positive_array(y, "y")
    return np.log(ys) - (math.log(law.coefficient) + law.exponent * np.log(xs))
