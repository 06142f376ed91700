"""Sanity checks every fitter in this package applies to its per-budget optima and its laws.

They live apart from any one fitter so that `empirical`, `quadratic` and `robust` agree on what
"too few budgets", "non-monotonic" and "poor fit" mean, and word their warnings the same way:
a user comparing two fitters' reports should see the same budgets named for the same reason.
Both "too few budgets" errors (too few in the data, too few left after exclusions) are
worded here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from flops_fit_core import FitError, PowerLaw

from .flags import EXCLUDED, EXCLUDED_FLAG

__all__ = [
    "budget_for_message",
    "check_monotonic",
    "check_n_budgets",
    "check_r_squared",
    "not_decreasing",
    "not_increasing",
]

#: A budget with fewer runs than this says little about where its optimum lies: three points are
#: the fewest that can bracket a minimum (and that a parabola needs), so fewer gets a flag.
MIN_RUNS_PER_BUDGET = 3

#: The laws whose R² is held to `min_r_squared`. `tokens_per_param` is left out on purpose: its
#: exponent b - a is close to zero for compute-optimal scaling (~0.1 for Chinchilla), so its R²
#: is small even for a perfect fit and would raise alarms that mean nothing.
R2_CHECKED_LAWS = ("n_opt", "d_opt", "loss_opt")


def budget_for_message(budget: float) -> str:
    """A budget as a warning or an error names it (`1e+20`), with enough digits to tell close
    budgets apart."""
    return f"{budget:.6g}"


def format_budgets(budgets: Iterable[float]) -> str:
    """Budgets as one comma-separated list, so a warning names every budget it is about."""
    return ", ".join(budget_for_message(float(b)) for b in budgets)


def check_n_budgets(n_budgets: int, min_budgets: int, fitter: str, source: str = "") -> None:
    """Raise `FitError` when the data has fewer budgets than the fit needs.

    A law over budgets is a line through the per-budget optima: with fewer budgets than
    `min_budgets` there is no honest interval on its exponent, so no answer is given at all.
    """
    if n_budgets < min_budgets:
        where = f"{source}: " if source else ""
        raise FitError(
            f"{where}the {fitter} fitter needs at least {min_budgets} compute budgets "
            f"(min_budgets), but the data has {n_budgets}"
        )


def check_budgets_left(
    n_budgets: int, excluded: Sequence[tuple[float, str]], min_budgets: int
) -> None:
    """Raise `FitError` when fewer than `min_budgets` budgets are left once `excluded` are out.

    `excluded` holds (budget, flag) pairs, the flag being the `flags.EXCLUDED` one that removed
    it; the error names each budget with its reason, so a user sees what to fix where.
    """
    n_used = n_budgets - len(excluded)
    if n_used >= min_budgets:
        return
    named = ", ".join(
        f"{budget_for_message(b)} ({flag.removeprefix(EXCLUDED).strip()})" for b, flag in excluded
    )
    advice = "inspect those runs (the warnings say what is wrong with each)"
    if any(flag == EXCLUDED_FLAG for _, flag in excluded):
        advice += ", or set enforce_monotonic = false"
    raise FitError(
        f"only {n_used} of {n_budgets} budgets remain after exclusions, fewer than min_budgets = "
        f"{min_budgets}; excluded: {named}; {advice}"
    )


def not_increasing(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Mask of entries that are not above every earlier entry (the first is never flagged)."""
    arr = np.asarray(values, dtype=float)
    out = np.zeros(arr.shape, dtype=bool)
    if arr.size > 1:
        out[1:] = arr[1:] <= np.maximum.accumulate(arr)[:-1]
    return out


def not_decreasing(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Mask of entries that are not below every earlier entry (the first is never flagged)."""
    arr = np.asarray(values, dtype=float)
    out = np.zeros(arr.shape, dtype=bool)
    if arr.size > 1:
        out[1:] = arr[1:] >= np.minimum.accumulate(arr)[:-1]
    return out


@dataclass(frozen=True)
class MonotonicCheck:
    """Which budgets break the expected ordering, and which the fit should keep."""

    keep: np.ndarray
    excluded: tuple[float, ...]
    warnings: list[str] = field(default_factory=list)


def check_monotonic(
    budgets: Sequence[float] | np.ndarray,
    params: Sequence[float] | np.ndarray,
    tokens: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    enforce: bool,
) -> MonotonicCheck:
    """Check that N* and D* grow and L* falls with C (inputs in ascending budget order).

    Only the loss decides exclusions. A larger budget can always afford the smaller budget's
    best model trained on more tokens, so a best loss that is not below every smaller budget's
    is a broken budget (diverged runs, a bad learning rate, a mislabelled row), and with
    `enforce` it is left out of the law fits. A stalled or shrinking N* or D* is often only the
    grid's spacing showing (neighbouring budgets pick the same grid size), so it is reported,
    not removed. N* and D* are checked over the budgets that are kept, so a broken budget is not
    blamed twice.
    """
    b = np.asarray(budgets, dtype=float)
    if b.size > 1 and not np.all(np.diff(b) > 0):
        raise ValueError("budgets must be strictly ascending")
    bad_loss = not_decreasing(loss)
    keep = ~bad_loss if enforce else np.ones(b.shape, dtype=bool)
    warnings: list[str] = []
    if bad_loss.any():
        named = format_budgets(b[bad_loss])
        if enforce:
            warnings.append(
                f"best loss does not fall with compute at budget(s) {named}: each is not below "
                f"a smaller budget's best loss, so it is excluded from the law fits "
                f"(enforce_monotonic)"
            )
        else:
            warnings.append(
                f"best loss does not fall with compute at budget(s) {named}; they are kept "
                f"because enforce_monotonic is off, and may bias the laws"
            )
    for label, values in (("N*", params), ("D*", tokens)):
        kept_values = np.asarray(values, dtype=float)[keep]
        bad = not_increasing(kept_values)
        if bad.any():
            warnings.append(
                f"{label} does not grow with compute at budget(s) {format_budgets(b[keep][bad])}; "
                f"the grids may be too coarse or off-centre there"
            )
    excluded = tuple(float(v) for v in b[~keep])
    return MonotonicCheck(keep=keep, excluded=excluded, warnings=warnings)


def check_r_squared(
    laws: Mapping[str, PowerLaw],
    min_r_squared: float,
    *,
    strict: bool,
    names: Iterable[str] = R2_CHECKED_LAWS,
) -> list[str]:
    """Warnings for each checked law whose R² is below `min_r_squared`, or `FitError` if strict.

    A low R² means the optima do not lie on a power law in C; the law's interval still states
    the scatter honestly, but extrapolating it is a gamble a user should know they are taking.
    """
    problems = []
    for name in names:
        law = laws.get(name)
        if law is None or law.r2 is None or law.r2 >= min_r_squared:
            continue
        problems.append(
            f"{name} R² = {law.r2:.4f} is below min_r_squared = {min_r_squared:g}: the optima "
            f"do not follow a power law in compute; check for bad runs or off-centre grids"
        )
    if problems and strict:
        raise FitError("; ".join(problems) + " (strict is on)")
    return problems
