"""The flags an optimum can carry (`Optimum.flags`), spelled once for every fitter.

Reports, plots and users' scripts match these strings, so each is written here and nowhere
else. A flag starting with `EXCLUDED` ("excluded:") means the budget is left out of the laws;
the others only warn.
"""

from __future__ import annotations

__all__ = [
    "EDGE_FLAG",
    "EXCLUDED",
    "EXCLUDED_FLAG",
    "EXTRAPOLATED_FLAG",
    "FEW_RUNS_FLAG",
    "FEW_SIZES_FLAG",
    "NOT_CONVEX_FLAG",
    "NOT_POSITIVE_FLAG",
    "OFF_CENTRE_FLAG",
    "OUTSIDE_FLAG",
]

#: The prefix of every flag that leaves a budget out of the laws.
EXCLUDED = "excluded:"

# --- every fitter
#: The monotonicity rule removed the budget: its best loss is not below a smaller budget's.
EXCLUDED_FLAG = f"{EXCLUDED} non-monotonic"
#: Fewer runs than `checks.MIN_RUNS_PER_BUDGET`: the optimum is poorly located.
FEW_RUNS_FLAG = "few runs"

# --- empirical
#: The best run is the smallest or largest model of its budget's grid: a bound, not an estimate.
EDGE_FLAG = "edge"

# --- quadratic
#: Fewer than 3 distinct sizes (or token counts): no parabola through them.
FEW_SIZES_FLAG = f"{EXCLUDED} fewer than 3 sizes"
#: The parabola opens downwards (or is flat): no minimum.
NOT_CONVEX_FLAG = f"{EXCLUDED} not convex"
#: The vertex lies outside the sampled sizes: no interior minimum.
OUTSIDE_FLAG = f"{EXCLUDED} vertex outside the grid"
#: The parabola's minimum is a loss of zero or less (a run far above the others bends it):
#: no loss to fit a law through.
NOT_POSITIVE_FLAG = f"{EXCLUDED} minimum not positive"
#: The vertex lies outside `quadratic.CENTRE_BAND` of the sampled ln N range: biased towards
#: the grid centre.
OFF_CENTRE_FLAG = "off-centre"

# --- robust
#: The fitted surface's optimum lies outside the sizes the budget sampled (an extrapolation).
EXTRAPOLATED_FLAG = "optimum outside sampled sizes"
