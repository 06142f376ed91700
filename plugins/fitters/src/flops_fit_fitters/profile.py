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

from .vpnls import PARAMS, Data, Objective, fitted_loss

__all__ = ["profile_intervals"]

_NAMES = ("ln_E", "ln_A", "ln_B", "alpha", "beta")


def profile_intervals(data: Data, objective: Objective, theta, free, lower, upper, level):
    """Profile intervals of E, A, B, alpha and beta at `level`, and lmfit's fit report."""
    import lmfit

    params = lmfit.Parameters()
    for j, name in enumerate(_NAMES):
        params.add(
            name,
            value=float(theta[j]),
            vary=bool(free[j]),
            min=float(lower[j]),
            max=float(upper[j]),
        )

    def residual(p):
        t = np.array([p[name].value for name in _NAMES])
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
    for j, (name, label) in enumerate(zip(_NAMES, PARAMS, strict=True)):
        if name not in ci:
            continue
        bounds = sorted(v for p, v in ci[name] if p > 0)
        lo, hi = bounds[0], bounds[-1]
        out[label] = [math.exp(lo), math.exp(hi)] if j < 3 else [lo, hi]
    return out
