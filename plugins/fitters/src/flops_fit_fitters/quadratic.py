"""The `quadratic` fitter: Chinchilla's Approach 2, a parabola per IsoFLOP curve.

Per planned budget, loss is fitted by least squares as a parabola in ln N (and, separately, in
ln D); the vertex is that budget's optimum N* (D*) and the parabola's value there is L*. Power
laws in C are then fitted through the vertices exactly as `empirical` fits its best runs
(`fit_power_law`), so the two fitters' laws differ only in where the optima come from. Unlike
a best run, a vertex is not tied to the grid: it moves smoothly with the data, and the
parabola's coefficient covariance gives it a standard error (delta method), so each optimum
comes with an interval of its own.

The price is a shape assumption. An IsoFLOP curve is not a parabola in ln N (for Chinchilla's
law it is a sum of two exponentials, steeper on the small-N side), and a parabola fitted to it
puts its vertex off the true minimum. While the grid is centred on the optimum that offset is
small and the same at every budget (about +3% in N on Chinchilla's law, 7 sizes over ±8x), so
it cancels in the exponent. When the grid is off-centre, the sample of the curve is lopsided
and the vertex is pulled towards the grid centre, by more the further off it is: on the same
grid, a true optimum at 85% of the sampled ln N range comes out 9% too small, at 90% 14% (on
the steeper small-N side the pull is weaker: 4% too large at 15%, 6% at 10%).
Hence the checks below, which this fitter applies to every budget:

- fewer than 3 distinct sizes: no parabola can be fitted; the budget is excluded;
- curvature <= 0 (in ln N or ln D): the curve has no minimum; excluded;
- vertex outside the sampled range: the parabola's minimum lies beyond the sizes that were
  trained, where it is an extrapolation of a wrong shape and can be arbitrarily far off (a
  nearly flat curve puts it anywhere); excluded rather than kept as a bound, because unlike
  `empirical`'s edge optimum it is not even a bound;
- vertex outside the middle half of the sampled ln N range (`CENTRE_BAND`): kept, flagged
  `off-centre`, with a warning saying which way the pull goes. The middle half is where, on
  Chinchilla's law, the vertex's offset stays between -0.02 and +0.035 in ln N; beyond it the
  offset grows quickly (-0.095 at 85%, see above). The middle third would be stricter than the
  data warrants: it would flag two of Llama 3's ten budgets, whose vertices all lie in the
  middle half (the most lopsided at 26% of its ln N range, 74% of its ln D range).

Then the skeleton shared with `empirical` (`laws.fit_laws`): the monotonicity rule (a budget
whose L* is not below every smaller budget's is excluded under `enforce_monotonic`), the laws,
and the law-level diagnostics every fitter reports (`diagnostics.law_diagnostics`: R², exponent
sum, identification, leave-one-out).

Validated on Llama 3's IsoFLOP points (the published Approach 2: a quadratic in log10 D per
budget, OLS of log10 D* on log10 C): D* exponent 0.5368 and D*(3.8e25) = 16.1e12 tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from flops_fit_core import Estimate, FitResult, Fitter, Observations, PluginConfig

from .checks import MIN_RUNS_PER_BUDGET, budget_for_message
from .config import CommonConfig
from .flags import (
    FEW_SIZES_FLAG,
    NOT_CONVEX_FLAG,
    NOT_POSITIVE_FLAG,
    OFF_CENTRE_FLAG,
    OUTSIDE_FLAG,
)
from .laws import BudgetOptimum, fit_laws
from .parabola import Parabola, fit_parabola

__all__ = ["CENTRE_BAND", "QuadraticConfig", "QuadraticFitter"]

#: The vertex's position in the sampled ln N range (0 = smallest size, 1 = largest) outside
#: which a budget is flagged off-centre: the middle half (see the module docstring for why).
CENTRE_BAND = (0.25, 0.75)


class QuadraticConfig(CommonConfig):
    """Options of the `quadratic` fitter (the `[fitter]` section with `name = "quadratic"`).

    The options every fitter of this package shares (`CommonConfig`); `confidence` also sets
    the level of each vertex's interval.
    """


@dataclass
class _Budget(BudgetOptimum):
    """One budget's optimum, and the parabolas (in ln N, in ln D) it was read from."""

    n_parabola: Parabola | None = None
    d_parabola: Parabola | None = None


class QuadraticFitter(Fitter):
    """Per budget the vertex of a parabola in ln N (and ln D); power laws over the vertices."""

    name: ClassVar[str] = "quadratic"
    Config: ClassVar[type[PluginConfig]] = QuadraticConfig
    config: QuadraticConfig

    def fit(self, observations: Observations) -> FitResult:
        """Fit each budget's parabolas, check their vertices, and fit N*, D*, L*, D*/N* over C.

        The laws are plain OLS over the vertices, as the published Approach 2 fits them
        (Chinchilla, Llama 3): the scatter of the vertices about the line already carries their
        noise. Raises `InputError` for runs without budgets, and `FitError` for fewer than
        `min_budgets` budgets, when fewer than `min_budgets` survive the checks or, with
        `strict`, when a law's R² is below `min_r_squared`.
        """
        return fit_laws(self, observations, self._fit_budget, diagnostics=_diagnostics)

    def _fit_budget(self, observations: Observations, budget: float, rows: np.ndarray) -> _Budget:
        """Fit one budget's parabolas and read its optimum; flag and warn about what is wrong.

        A budget that gets an `excluded:` flag keeps an optimum, so that reports and plots show
        every budget: its best run, without intervals (its parabola gave nothing better).
        """
        where = f"budget {budget_for_message(budget)}"
        ln_n = np.log(observations.params[rows])
        ln_d = np.log(observations.tokens[rows])
        loss = observations.loss[rows]
        out = _Budget.at_run(observations, budget, rows, int(rows[int(np.argmin(loss))]))

        n_distinct = min(np.unique(ln_n).size, np.unique(ln_d).size)
        if n_distinct < MIN_RUNS_PER_BUDGET:
            out.flags.append(FEW_SIZES_FLAG)
            out.warnings.append(
                f"{where} has {n_distinct} distinct size(s) in {rows.size} run(s), fewer than "
                f"the {MIN_RUNS_PER_BUDGET} a parabola needs: excluded from the laws"
            )
            return out

        out.n_parabola = fit_parabola(ln_n, loss)
        out.d_parabola = fit_parabola(ln_d, loss)
        concave = [
            axis
            for axis, p in (("ln N", out.n_parabola), ("ln D", out.d_parabola))
            if not p.curvature > 0
        ]
        if concave:
            out.flags.append(NOT_CONVEX_FLAG)
            out.warnings.append(
                f"{where}: the parabola of loss in {' and '.join(concave)} has curvature <= 0, "
                f"so the runs show no minimum (noise, or a grid far from the optimum): "
                f"excluded from the laws"
            )
            return out

        outside = [
            (axis, p)
            for axis, p in (("N", out.n_parabola), ("D", out.d_parabola))
            if not 0.0 <= p.position <= 1.0
        ]
        if outside:
            out.flags.append(OUTSIDE_FLAG)
            axis, p = outside[0]
            side, extend = ("below", "smaller") if p.position < 0 else ("above", "larger")
            out.warnings.append(
                f"{where}: the parabola's vertex ({axis} = {_shown_exp(p.vertex)}) lies "
                f"{side} the sampled {axis} range [{math.exp(p.x_min):.4g}, "
                f"{math.exp(p.x_max):.4g}], so the runs have no interior minimum: excluded "
                f"from the laws; extend the grid to {extend} {axis}"
            )
            return out

        if not out.n_parabola.minimum > 0:
            out.flags.append(NOT_POSITIVE_FLAG)
            out.warnings.append(
                f"{where}: the parabola's minimum is a loss of {out.n_parabola.minimum:.4g}, "
                f"not a positive one (a run far above the others bends it: inspect their "
                f"losses): excluded from the laws"
            )
            return out

        position = out.n_parabola.position
        lo, hi = CENTRE_BAND
        if not lo <= position <= hi:
            out.flags.append(OFF_CENTRE_FLAG)
            further = "smaller" if position < lo else "larger"
            out.warnings.append(
                f"{where}: the vertex lies at {position:.0%} of the sampled ln N range, outside "
                f"its middle {hi - lo:.0%}: a parabola fitted to a lopsided sample of a curve "
                f"that is not a parabola pulls its vertex towards the grid centre (Approach "
                f"2's bias), so the true N* is likely {further} than estimated; recentre this "
                f"budget's grid on it"
            )
        if out.n_parabola.dof == 0:
            out.warnings.append(
                f"{where} has exactly 3 sizes: the parabola passes through every run, so its "
                f"vertex has no standard error or interval"
            )

        out.params = self._log_estimate(out.n_parabola)
        out.tokens = self._log_estimate(out.d_parabola)
        out.loss = self._loss_estimate(out.n_parabola)
        return out

    def _t(self, dof: int) -> float:
        # Imported here: scipy.stats is slow to import and `flops-fit plan` never needs it.
        from scipy import stats

        return float(stats.t.ppf(0.5 + self.config.confidence / 2.0, dof))

    def _log_estimate(self, parabola: Parabola) -> Estimate:
        """N* (or D*) = exp(vertex): stderr N*·se(vertex), interval exp(vertex ± t·se).

        The interval is made in ln units, where the vertex lives and its error is symmetric,
        so it is asymmetric in N; `stderr` is its first-order equivalent in N units. Student's
        t on the parabola's n - 3 degrees of freedom, as for the laws.
        """
        value = math.exp(parabola.vertex)
        se = parabola.vertex_stderr()
        if se is None:
            return Estimate(value=value)
        half = self._t(parabola.dof) * se
        return Estimate(
            value=value,
            stderr=value * se,
            interval=(_exp(parabola.vertex - half), _exp(parabola.vertex + half)),
        )

    def _loss_estimate(self, parabola: Parabola) -> Estimate:
        """L* = the parabola's minimum, with a symmetric t interval in loss units."""
        value = parabola.minimum
        se = parabola.minimum_stderr()
        if se is None:
            return Estimate(value=value)
        half = self._t(parabola.dof) * se
        return Estimate(value=value, stderr=se, interval=(value - half, value + half))


def _exp(x: float) -> float:
    """exp, clipped to stay finite: a nearly flat parabola's vertex can have an error of
    hundreds in ln N, and an interval end of inf would not survive fit.json."""
    return math.exp(min(max(x, -700.0), 700.0))


def _shown_exp(x: float) -> str:
    """exp(x) as a message shows it: a nearly flat parabola's vertex may lie at ln N = 10^4,
    whose exp no float holds, so it is shown as e^x."""
    return f"{math.exp(x):.4g}" if x < 700.0 else f"e^{x:.4g}"


def _diagnostics(optima: list[_Budget], used: list[_Budget]) -> dict:
    """The off-centre budgets, what the fit minimised, and every budget's N-parabola."""
    return {
        "off_centre_budgets": [b.budget for b in optima if OFF_CENTRE_FLAG in b.flags],
        # The squared loss residuals of the N-parabolas of the budgets used (loss units²).
        # The D-parabolas are not added: under C = 6ND they are the same fit mirrored, and
        # adding them would count every run twice.
        "objective": float(sum(b.n_parabola.ssr for b in used)),
        "parabolas": [_describe(b) for b in optima],
    }


def _describe(b: _Budget) -> dict:
    """A budget's N-parabola in JSON form (ln N units), for reports and plots."""
    p = b.n_parabola
    entry: dict = {"budget": b.budget, "n_runs": int(b.rows.size), "flags": list(b.flags)}
    if p is None:
        return {**entry, "fitted": False}
    se = p.vertex_stderr()
    return {
        **entry,
        "fitted": True,
        "centre_ln_n": p.centre,
        "coefficients": list(p.coefficients),
        "curvature": p.curvature,
        "vertex_ln_n": p.vertex if p.curvature > 0 else None,
        "vertex_ln_n_stderr": se if p.curvature > 0 else None,
        "vertex_position": p.position if p.curvature > 0 else None,
        "ssr": p.ssr,
        "vertex_ln_d": b.d_parabola.vertex if b.d_parabola.curvature > 0 else None,
    }
