"""Groups a table's runs into compute budgets by their compute C, or refuses to.

It refuses when the values do not fall into clearly separated groups: grouping runs into the
wrong budgets moves every optimum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .errors import ConfigError, InputError

__all__ = [
    "RELATIVE_GAP",
    "budgets_of",
    "group_by_tolerance",
    "group_compute",
]


#: Two sorted compute values more than this far apart (relative) belong to different budgets,
#: and no budget's values may spread wider than this (see `group_compute`). 1% is far above
#: the rounding of a planned budget (IsoFLOP sweeps space budgets by 2x or more, runs of one
#: budget differ by shape rounding of a fraction of a percent) and far below any real gap.
RELATIVE_GAP = 0.01


def group_compute(
    compute: np.ndarray, ids: Iterable[str] = (), source: str = "table"
) -> np.ndarray:
    """Each row's budget, found by clustering its compute; raises on ambiguous clusters.

    Sorted, a value more than `RELATIVE_GAP` above the one before starts a new budget. A
    budget whose values then spread more than `RELATIVE_GAP` (min to max) is a chain of close
    values, not a budget: it could be split in several places, each giving different optima,
    so it is an `InputError` asking for a budget column rather than a guess. Rounding to a few
    significant digits is never used: 9.99e19 and 1.001e20 would land in different budgets.
    A budget's value is the geometric mean of its runs' compute (exactly the value when they
    all agree), the centre of its spread on the log scale the laws are fitted on.
    """
    budget, chain = _cluster(compute, ids)
    if budget is None:
        raise InputError(
            f"{source}: {chain}; add a column with each run's budget and name it with "
            f"--map budget=COLUMN, or group runs whose C lie within P% with --group-tolerance P"
        )
    return budget


def _cluster(compute: np.ndarray, ids: Iterable[str] = ()) -> tuple[np.ndarray | None, str]:
    """`group_compute`'s budgets, or None and why the compute values are ambiguous."""
    compute = np.asarray(compute, dtype=float)
    ids = list(ids) or [f"row {i + 1}" for i in range(compute.size)]
    order = np.argsort(compute, kind="stable")
    ordered = compute[order]
    starts = np.flatnonzero(ordered[1:] > ordered[:-1] * (1 + RELATIVE_GAP)) + 1
    budget = np.empty_like(compute)
    for members in np.split(order, starts):
        values = compute[members]
        lo, hi = values.min(), values.max()
        if hi > lo * (1 + RELATIVE_GAP):
            rows = [ids[i] for i in members[np.argsort(values, kind="stable")]]
            named = ", ".join(rows if len(rows) <= 3 else [*rows[:2], "...", rows[-1]])
            return None, (
                f"compute values from {lo:.4g} to {hi:.4g} ({named}) run together in steps "
                f"under {RELATIVE_GAP:.0%} but spread {hi / lo - 1:.1%}, so which runs share a "
                f"budget is ambiguous"
            )
        budget[members] = lo if lo == hi else float(np.exp(np.mean(np.log(values))))
    return budget, ""


def budgets_of(compute: np.ndarray, ids: list[str]) -> tuple[np.ndarray | None, str]:
    """A table's budgets from its compute when they are unambiguous, else None and why.

    Unambiguous: `_cluster` finds no chain of close values, and at most half the runs are
    alone in their budget (or there is one budget). Compute spread continuously (each run its
    own C) clusters into one-run "budgets" that no IsoFLOP fit can use: no budgets then.
    """
    budget, chain = _cluster(compute, ids)
    if budget is None:
        return None, f"its compute values fall into no clearly separated budgets ({chain})"
    _, counts = np.unique(budget, return_counts=True)
    alone = int((counts == 1).sum())
    if counts.size > 1 and alone > budget.size / 2:
        return None, (
            f"its compute values do not fall into budgets: {alone} of {budget.size} runs are "
            f"alone at their C (no other run within {RELATIVE_GAP:.0%})"
        )
    return budget, ""


def group_by_tolerance(compute: np.ndarray, tolerance: float) -> np.ndarray:
    """Each row's budget when runs whose C lie within `tolerance` percent are grouped.

    Sorted by C, a run joins the current budget while its C is at most `tolerance`% above the
    budget's smallest C, and starts a new budget otherwise; so every budget's runs lie within
    `tolerance`% of each other, and the grouping does not depend on row order. A budget's
    value is the geometric mean of its runs' C, as in `group_compute`.
    """
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ConfigError(f"--group-tolerance must be a positive percentage, got {tolerance:g}")
    compute = np.asarray(compute, dtype=float)
    factor = 1.0 + tolerance / 100.0
    order = np.argsort(compute, kind="stable")
    budget = np.empty_like(compute)
    members: list[int] = []
    for i in order:
        if members and compute[i] > compute[members[0]] * factor:
            budget[members] = np.exp(np.mean(np.log(compute[members])))
            members = []
        members.append(int(i))
    if members:
        budget[members] = np.exp(np.mean(np.log(compute[members])))
    return budget
