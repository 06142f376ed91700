"""Profile intervals and lmfit's report for the `robust` fitter (opt-in: `profile = true`).

lmfit holds the model's parameters (values, bounds, which are fixed) and computes profile
intervals with `conf_interval`: each parameter is stepped away from the optimum while the
others are re-fitted, until the objective has risen by the F-test threshold. It is opt-in
because importing lmfit (and the scipy.stats and scipy.optimize it pulls in) alone takes longer
on a small machine than the whole default fit.

lmfit minimises a sum of squared residuals, so each point's residual is given as
sign(r) sqrt(2 rho(r)): its square sum is twice the robust objective, whatever the loss.
"""

from __future__ import annotations

import math

import numpy as np

from .surface import PARAMS, THETA_NAMES, fitted_loss
from .variable_projection import Problem

# Used by `robust` alone: nothing here is imported from outside this package.
__all__: list[str] = []


def profile_intervals(problem: Problem, theta: np.ndarray, level: float) -> dict[str, object]:
    """Profile intervals of E, A, B, alpha and beta at `level` around the optimum `theta`,
    under `problem`'s loss and constraints, and lmfit's fit report."""
    import lmfit

    data, objective = problem.data, problem.objective
    params = lmfit.Parameters()
    for j, name in enumerate(THETA_NAMES):
        params.add(
            name,
            value=float(theta[j]),
            vary=bool(problem.free[j]),
            min=float(problem.lower[j]),
            max=float(problem.upper[j]),
        )

    def residual(p):
        t = np.array([p[name].value for name in THETA_NAMES])
        fitted = fitted_loss(t, data.ln_n, data.ln_d)
        r = np.log(fitted) - data.ln_loss if objective.log_space else fitted - data.loss
        rho = objective.rho(r)[0]
        return np.sign(r) * np.sqrt(2.0 * rho)

    minimizer = lmfit.Minimizer(residual, params)
    result = minimizer.minimize(method="leastsq")
    out: dict[str, object] = {"report": lmfit.fit_report(result)}
    try:
        ci = lmfit.conf_interval(minimizer, result, sigmas=[level])
    except Exception as exc:  # lmfit raises bare errors when a profile cannot be traced
        out["error"] = f"profile intervals could not be computed: {exc}"
        return out
    for j, (name, label) in enumerate(zip(THETA_NAMES, PARAMS, strict=True)):
        if name not in ci:
            continue
        bounds = sorted(v for p, v in ci[name] if p > 0)
        lo, hi = bounds[0], bounds[-1]
        out[label] = [math.exp(lo), math.exp(hi)] if j < 3 else [lo, hi]
    return out
