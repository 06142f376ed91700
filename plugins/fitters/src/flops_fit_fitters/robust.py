"""The `robust` fitter: Chinchilla's Approach 3, L(N, D) = E + A/N^alpha + B/D^beta, with intervals.

It fits every run at once rather than one optimum per budget, so it uses all the data and
extrapolates with a model of the loss surface, not a line through a handful of points. The
procedure follows Hoffmann et al. (2022) and Besiroglu et al. (2024): Huber loss (delta 1e-3) on
ln L in the log-sum-exp form, summed over runs; starts over a grid at least as wide as
Chinchilla's; bootstrap intervals. It differs in how the work is done (`variable_projection`):
the grid is over (alpha, beta) only, with (E, A, B) projected out by least squares at each
start, and the polish, the 1,000 resamples and the leave-one-budget-out refits are one batched
exact-Newton computation each. Epoch AI found that Chinchilla's own fit had stopped short of its
optimum; this one reports how many starts reach the best objective, which parameters sit on a
bound, and which resamples failed, so a user can see whether the optimiser can be trusted.

From the fitted surface, with C = k N D (k measured from the data: 6 under the 6N convention):
a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)),
N*(C) = G (C/k)^a, D*(C) = (C/k)^b / G, and L*(C) = E + K C^(-alpha beta/(alpha+beta)), an
exact power law with an offset (`surface.frontier`). Every derived number carries the
bootstrap's interval.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from flops_fit_core import (
    Estimate,
    FitError,
    FitResult,
    Fitter,
    InputError,
    Observations,
    Optimum,
    PowerLaw,
)

from .checks import (
    MIN_RUNS_PER_BUDGET,
    budget_for_message,
    check_budgets_left,
    check_n_budgets,
    format_budgets,
    not_decreasing,
)
from .config import CommonConfig
from .diagnostics import check_exponent_identified, check_exponent_sum, exponent_sum
from .flags import EXCLUDED_FLAG, EXTRAPOLATED_FLAG, FEW_RUNS_FLAG
from .parabola import fit_parabola
from .powerlaw import exp_in_range
from .surface import PARAMS, THETA_NAMES, fitted_loss, frontier, frontier_at
from .variable_projection import (
    SAME_OPTIMUM,
    Data,
    Grid,
    Objective,
    Problem,
    evaluate,
    grid_basins,
    point_gradients,
    screen,
)

__all__ = ["RobustConfig", "RobustFitter"]

Param = Literal["E", "A", "B", "alpha", "beta"]

#: Without budgets (a table whose compute lies on no grid), the optima are reported at this
#: many C, log-spaced from the smallest run's C to the largest's.
UNBUDGETED_OPTIMA = 6

#: ln of the largest float, less a margin: exp of more than this overflows.
_LN_FLOAT_MAX = 700.0


class RobustConfig(CommonConfig):
    """Options of the `robust` fitter (the `[fitter]` section with `name = "robust"`)."""

    loss: Literal["huber", "mse", "log_mse", "asymmetric_mae"] = Field(
        "huber",
        description="huber: Huber on ln L (Chinchilla, Epoch); mse: squared error of L; "
        "log_mse: squared error of ln L; asymmetric_mae: |error of L| weighted by side",
    )
    delta: float = Field(
        1e-3, gt=0.0, description="Huber threshold (ln L units), or the smoothing of asymmetric_mae"
    )
    asymmetry: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="asymmetric_mae: weight of over-predicted losses (1 - it for under-predicted)",
    )
    grid: tuple[int, int] = Field(
        (75, 60), description="starts: points in alpha x points in beta (default 4,500)"
    )
    alpha_range: tuple[float, float] = Field((0.0, 2.5), description="alpha span of the starts")
    beta_range: tuple[float, float] = Field((0.0, 2.5), description="beta span of the starts")
    polish: int = Field(
        16, ge=1, description="local minima of the start grid polished to full precision"
    )
    bootstrap: int = Field(
        1000, ge=0, description="bootstrap resamples for the intervals (0: covariance only)"
    )
    resample: Literal["point", "size", "budget"] = Field(
        "point", description="bootstrap unit: a run, all runs of a model size, or a whole budget"
    )
    interval: Literal["percentile", "basic", "normal"] = Field(
        "percentile", description="how bootstrap replicates become an interval"
    )
    seed: int = Field(0, description="seed of the bootstrap resampling")
    fixed: dict[Param, float] = Field(
        default_factory=dict, description="parameters held at a value, e.g. {alpha = 0.34}"
    )
    bounds: dict[Param, tuple[float, float]] = Field(
        default_factory=dict, description="parameter bounds, e.g. {beta = [0.1, 1.0]}"
    )
    profile: bool = Field(
        False,
        description="also compute profile-likelihood intervals and lmfit's report (slower: "
        "imports lmfit)",
    )

    @field_validator("grid")
    @classmethod
    def _grid_positive(cls, value):
        if min(value) < 2:
            raise ValueError("grid needs at least 2 points in alpha and in beta")
        return value

    @field_validator("bootstrap")
    @classmethod
    def _enough_resamples(cls, value):
        if 0 < value < 40:
            raise ValueError(
                "bootstrap needs at least 40 resamples to place a 95% interval (or 0 for none)"
            )
        return value

    @model_validator(mode="after")
    def _fixed_within_bounds(self) -> RobustConfig:
        for name, value in self.fixed.items():
            if name in self.bounds:
                lo, hi = self.bounds[name]
                if not lo <= value <= hi:
                    raise ValueError(f"fixed {name} = {value} lies outside its bounds [{lo}, {hi}]")
        return self

    @field_validator("alpha_range", "beta_range")
    @classmethod
    def _range_ordered(cls, value):
        if not 0.0 <= value[0] <= value[1]:
            raise ValueError("a range must satisfy 0 <= low <= high")
        return value

    @field_validator("fixed")
    @classmethod
    def _fixed_positive(cls, value):
        for name, v in value.items():
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"fixed {name} must be positive, got {v}")
        return value

    @field_validator("bounds")
    @classmethod
    def _bounds_ordered(cls, value):
        for name, (lo, hi) in value.items():
            if not 0.0 <= lo < hi:
                raise ValueError(f"bounds of {name} must satisfy 0 <= low < high")
        return value


class RobustFitter(Fitter):
    """Parametric fit of every run: multi-start, batched Newton, bootstrap intervals."""

    name: ClassVar[str] = "robust"
    Config: ClassVar[type] = RobustConfig
    fits_surface: ClassVar[bool] = True
    config: RobustConfig

    # ------------------------------------------------------------------ the fit
    def fit(self, observations: Observations) -> FitResult:
        """Fit L(N, D) to every run and derive N*, D*, L* and their laws with intervals.

        Runs without budgets are fitted all the same (the surface needs none): the optima
        are then reported at `UNBUDGETED_OPTIMA` log-spaced C across the runs, and the
        per-budget checks (monotonicity, leave-one-budget-out) are skipped.

        Raises `FitError` for fewer than `min_budgets` budgets and when the
        optimiser finds no finite optimum.
        """
        cfg = self.config
        budgeted = observations.has_budgets
        if budgeted:
            groups = observations.groups()
            check_n_budgets(len(groups), cfg.min_budgets, self.name, observations.source)
        elif cfg.resample == "budget":
            observations.require_budgets("the robust fitter's resample = 'budget'")
        else:
            groups = []
        warnings = list(observations.warnings)
        used, excluded = self._monotonic_rows(observations, groups, warnings)
        if budgeted:
            check_budgets_left(len(groups), [(b, EXCLUDED_FLAG) for b in excluded], cfg.min_budgets)
        data = Data.from_arrays(
            observations.params[used], observations.tokens[used], observations.loss[used]
        )
        k_flops = float(
            np.median(observations.compute / (observations.params * observations.tokens))
        )

        problem = self._problem(data)
        best, search = self._search(problem)
        replicates, failed = self._bootstrap(observations, used, problem, best)
        level = cfg.confidence
        point = frontier(best[None, :], k_flops)
        undefined = [name for name, value in point.items() if not np.isfinite(value).all()]
        if undefined:  # e.g. alpha = beta = 0: a surface without N or D effect
            raise FitError(
                f"the fitted surface (alpha = {best[3]:.4g}, beta = {best[4]:.4g}) has no "
                f"compute-optimal frontier ({', '.join(undefined)} not finite): these runs do "
                "not show the loss falling with both N and D; check the data"
            )
        reps = None
        if replicates is not None:
            reps = frontier(replicates, k_flops)
            finite = np.all([np.isfinite(v) for v in reps.values()], axis=0)
            if not finite.all():  # e.g. a resample with no N effect: alpha -> 0, N* -> inf
                failed += int((~finite).sum())
                replicates = replicates[finite]
                reps = {k: v[finite] for k, v in reps.items()}
            if len(replicates) < 2:
                raise FitError(
                    f"only {len(replicates)} of {cfg.bootstrap} bootstrap resamples gave a finite "
                    f"fit: no interval can be stated; check the fit's warnings and the data"
                )

        r2, rms = _r_squared(best, data)
        reported = groups if budgeted else _nearest_budgets(observations, UNBUDGETED_OPTIMA)
        laws = self._laws(point, reps, level, r2, len(reported), warnings)
        warnings.extend(self._surface_warnings(r2, rms))
        if reps is None:
            warnings.append(
                "bootstrap = 0: the laws and predictions carry no intervals, and the parametric "
                "ones come from the sandwich covariance, which under-covers with the Huber loss "
                "(about 70-75% for a nominal 95% in our tests)"
            )
        parametric = self._parametric(best, replicates, search, level, warnings)
        optima = self._optima(observations, reported, point, reps, used, warnings)
        warnings.extend(_optimum_warnings(optima))
        warnings.extend(self._search_warnings(search))
        if failed:
            share = failed / cfg.bootstrap
            if share > 0.01:
                warnings.append(
                    f"{failed} of {cfg.bootstrap} bootstrap resamples did not converge "
                    f"({share:.1%}); their exponents are left out of the intervals"
                )
        unstable = [
            name
            for name, law in laws.items()
            if law.exponent_interval is not None
            and not law.exponent_interval[0] <= law.exponent <= law.exponent_interval[1]
        ]
        if unstable:
            warnings.append(
                f"the bootstrap intervals of {', '.join(unstable)} do not contain the estimate: "
                f"resamples land on a different optimum than the data, so the fit is unstable; "
                f"do not trust these intervals"
            )
        for warning in (
            check_exponent_sum(point["a"][0], point["b"][0], cfg.exponent_tolerance),
            check_exponent_identified(laws["n_opt"], "n_opt"),
        ):
            if warning is not None:
                warnings.append(warning)

        diagnostics = {
            "n_points": len(observations),
            "n_points_used": int(used.sum()),
            "n_budgets": len(groups),
            "excluded_budgets": excluded,
            "objective": float(search["objective"]),
            "loss": cfg.loss,
            "r2": r2,
            "flops_per_param_token": k_flops,
            "exponent_sum": exponent_sum(laws),
            "convergence": {
                "starts": search["starts"],
                "local_minima": search["local_minima"],
                "polished": search["polished"],
                "share_at_best": search["share_at_best"],
                "polish_converged": search["polish_converged"],
                "bound_hits": search["bound_hits"],
                "bootstrap_resamples": cfg.bootstrap,
                "bootstrap_failed": failed,
            },
            "theta": dict(zip(THETA_NAMES, map(float, best), strict=True)),
            "covariance_intervals": search["covariance_intervals"],
            "best_runs": [
                observations.ids[rows[np.argmin(observations.loss[rows])]] for _, rows in groups
            ],
        }
        if not budgeted:
            lo, hi = reported[0][0], reported[-1][0]
            diagnostics["optima_at"] = (
                f"{len(reported)} log-spaced C from {lo:.3g} to {hi:.3g} (the runs have no "
                "budgets; an optimum's runs are those nearest its C)"
            )
            if cfg.leave_one_out:
                diagnostics["leave_one_out"] = "skipped: no budgets to leave out"
        elif cfg.leave_one_out:
            diagnostics["leave_one_out"] = self._leave_one_out(
                observations, groups, used, problem, best, k_flops
            )
        if cfg.profile:
            from .profile import profile_intervals

            diagnostics["profile"] = profile_intervals(problem, best, level)
        return FitResult(
            fitter=self.name,
            settings={**cfg.model_dump(mode="json"), **observations.record()},
            conventions=observations.conventions,
            parametric=parametric,
            laws=laws,
            optima=optima,
            diagnostics=diagnostics,
            warnings=warnings,
        )

    # ------------------------------------------------------------------ steps
    def _monotonic_rows(self, observations, groups, warnings):
        """Rows to fit: all, less budgets whose best loss is not below every smaller one's."""
        used = np.ones(len(observations), bool)
        best = np.array([observations.loss[rows].min() for _, rows in groups])
        bad = not_decreasing(best)
        excluded = [float(groups[i][0]) for i in np.flatnonzero(bad)]
        if bad.any():
            named = format_budgets(excluded)
            if self.config.enforce_monotonic:
                for i in np.flatnonzero(bad):
                    used[groups[i][1]] = False
                warnings.append(
                    f"best loss does not fall with compute at budget(s) {named}: their runs are "
                    f"excluded from the fit (enforce_monotonic)"
                )
            else:
                warnings.append(
                    f"best loss does not fall with compute at budget(s) {named}; kept because "
                    f"enforce_monotonic is off"
                )
                excluded = []
        for budget, rows in groups:
            if rows.size < MIN_RUNS_PER_BUDGET:
                warnings.append(
                    f"budget {budget_for_message(budget)} has {rows.size} run(s), fewer than "
                    f"{MIN_RUNS_PER_BUDGET}: it constrains the surface little"
                )
        if used.sum() < 6:
            raise InputError(
                f"{observations.source or 'observations'}: the robust fitter needs at least 6 "
                f"runs for its 5 parameters, got {int(used.sum())}"
            )
        return used, excluded

    def _problem(self, data: Data) -> Problem:
        """The loss, the free mask, and the bounds in theta space (ln E, ln A, ln B, alpha,
        beta) that every solve of this fit shares."""
        cfg = self.config
        free = np.array([name not in cfg.fixed for name in PARAMS])
        lower = np.full(5, -np.inf)
        upper = np.full(5, np.inf)
        lower[3:] = 0.0
        for j, name in enumerate(PARAMS):
            if name in cfg.bounds:
                lo, hi = cfg.bounds[name]
                if j < 3:
                    lower[j] = math.log(lo) if lo > 0 else -np.inf
                    upper[j] = math.log(hi)
                else:
                    lower[j], upper[j] = lo, hi
        fixed = {PARAMS.index(name): value for name, value in cfg.fixed.items()}
        objective = Objective(cfg.loss, cfg.delta, cfg.asymmetry)
        return Problem(data, objective, free, lower, upper, fixed)

    def _search(self, problem: Problem):
        """Grid of starts, discrete descent to local minima, polish; the convergence report."""
        cfg = self.config
        data, objective, fixed = problem.data, problem.objective, problem.fixed
        free, lower, upper = problem.free, problem.lower, problem.upper
        a_lo, a_hi = cfg.alpha_range
        b_lo, b_hi = cfg.beta_range
        if "alpha" in cfg.bounds:
            a_lo, a_hi = max(a_lo, cfg.bounds["alpha"][0]), min(a_hi, cfg.bounds["alpha"][1])
        if "beta" in cfg.bounds:
            b_lo, b_hi = max(b_lo, cfg.bounds["beta"][0]), min(b_hi, cfg.bounds["beta"][1])
        grid = Grid((a_lo, a_hi), (b_lo, b_hi), *cfg.grid)
        theta, values = screen(grid, data, objective, fixed)
        if np.isfinite(lower[:3]).any() or np.isfinite(upper[:3]).any():
            # Bounds on E, A, B: rank the starts where they may actually begin.
            flat = np.clip(theta.reshape(-1, 5), lower, upper)
            theta = flat.reshape(theta.shape)
            values = evaluate(flat, data, objective, derivatives=False).reshape(values.shape)
        values = np.where(np.isfinite(values), values, np.inf)
        minima, basin = grid_basins(values)
        order = np.argsort(values.ravel()[minima])
        chosen = order[: cfg.polish]
        starts = theta.reshape(-1, 5)[minima[chosen]]
        for j, value in fixed.items():
            starts[:, j] = math.log(value) if j < 3 else value
        sol = problem.minimise(starts, max_iter=500)
        finite = np.isfinite(sol.objective)
        if not finite.any():
            raise FitError("the robust fit found no finite optimum from any start")
        i_best = int(np.nanargmin(np.where(finite, sol.objective, np.inf)))
        best = sol.theta[i_best]
        f_best = float(sol.objective[i_best])
        at_best = np.zeros(minima.size, bool)
        at_best[chosen] = sol.objective <= f_best + SAME_OPTIMUM * abs(f_best)
        share = float(at_best[basin].mean())
        covariance, cov_intervals = _sandwich(best, problem, cfg.confidence)
        # A term whose share of the fitted loss is below 1e-4 everywhere is a coefficient at
        # its natural bound, 0, however its logarithm happened to stop.
        terms = np.stack(
            [
                np.full_like(data.ln_n, math.exp(best[0])),
                np.exp(best[1] - best[3] * data.ln_n),
                np.exp(best[2] - best[4] * data.ln_d),
            ]
        )
        term_share = (terms / terms.sum(axis=0)).max(axis=1)
        bound_hits = [
            PARAMS[j]
            for j in range(5)
            if free[j]
            and (
                (np.isfinite(lower[j]) and best[j] - lower[j] <= 1e-6 * max(1.0, abs(lower[j])))
                or (np.isfinite(upper[j]) and upper[j] - best[j] <= 1e-6 * max(1.0, abs(upper[j])))
                or (j < 3 and term_share[j] < 1e-4)
            )
        ]
        return best, {
            "objective": f_best,
            "starts": int(values.size),
            "local_minima": int(minima.size),
            "polished": int(chosen.size),
            "share_at_best": share,
            "polish_converged": bool(sol.converged[i_best]),
            "bound_hits": bound_hits,
            "covariance": covariance,
            "covariance_intervals": cov_intervals,
        }

    def _bootstrap(self, observations, used, problem: Problem, best):
        """Refit `bootstrap` resamples at once (as per-run weights), warm-started at the optimum."""
        cfg = self.config
        if cfg.bootstrap == 0:
            return None, 0
        rng = np.random.default_rng(cfg.seed)
        units = _resample_units(observations, cfg.resample)[used]
        _, unit_of_row = np.unique(units, return_inverse=True)
        n_units = int(unit_of_row.max()) + 1
        draws = rng.integers(0, n_units, size=(cfg.bootstrap, n_units))
        counts = np.zeros((cfg.bootstrap, n_units))
        np.add.at(counts, (np.arange(cfg.bootstrap)[:, None], draws), 1.0)
        weights = counts[:, unit_of_row]
        start = np.tile(best, (cfg.bootstrap, 1))
        sol = problem.minimise(start, weights, rtol=1e-10, lam0=1e-3)
        ok = sol.converged & np.isfinite(sol.objective)
        return sol.theta[ok], int((~ok).sum())

    def _laws(self, point, reps, level, r2, n_budgets, warnings):
        """n_opt, d_opt, tokens_per_param (pure power laws) and loss_opt (with offset E)."""

        def law(label, name_k, name_a, offset=None):
            k = exp_in_range(float(point[name_k][0]), f"{label} coefficient")
            a = float(point[name_a][0])
            fields = dict(coefficient=k, exponent=a, r2=r2, level=level, n_points=n_budgets)
            if offset is not None:
                fields["offset"] = float(point[offset][0])
            if reps is None:
                return PowerLaw(**fields)
            lnk_iv = self._interval(point[name_k][0], reps[name_k], level)
            if lnk_iv[1] > _LN_FLOAT_MAX:  # as for E, A and B in `_parametric`
                warnings.append(
                    f"{label}'s coefficient interval reaches beyond {math.exp(700):.1e}: the "
                    "law is not identified by these runs, so it is reported without intervals"
                )
                return PowerLaw(**fields)
            cols = [reps[name_k], reps[name_a]]
            if offset is not None:
                cols.insert(0, reps[offset])
                fields["offset_interval"] = self._interval(point[offset][0], reps[offset], level)
            cov = np.cov(np.vstack(cols)) if len(reps[name_a]) > 1 else np.zeros((len(cols),) * 2)
            fields.update(
                coefficient_interval=(math.exp(lnk_iv[0]), math.exp(lnk_iv[1])),
                exponent_interval=self._interval(a, reps[name_a], level),
                covariance=tuple(tuple(float(x) for x in row) for row in np.atleast_2d(cov)),
                t_value=NormalDist().inv_cdf(0.5 + level / 2.0),
            )
            return PowerLaw(**fields)

        return {
            "n_opt": law("n_opt", "ln_kn", "a"),
            "d_opt": law("d_opt", "ln_kd", "b"),
            "loss_opt": law("loss_opt", "ln_kl", "gamma", offset="E"),
            "tokens_per_param": law("tokens_per_param", "ln_kr", "b_minus_a"),
        }

    def _interval(self, estimate, replicates, level):
        """A `level` interval for one quantity from its bootstrap replicates."""
        tail = (1.0 - level) / 2.0
        lo, hi = np.quantile(replicates, [tail, 1.0 - tail])
        method = self.config.interval
        if method == "basic":
            lo, hi = 2 * estimate - hi, 2 * estimate - lo
        elif method == "normal":
            half = NormalDist().inv_cdf(1.0 - tail) * float(np.std(replicates, ddof=1))
            lo, hi = estimate - half, estimate + half
        return (float(lo), float(hi))

    def _parametric(self, best, replicates, search, level, warnings: list[str]):
        """E, A, B, alpha, beta with bootstrap stderr and interval (covariance if no bootstrap)."""
        natural = np.concatenate([np.exp(best[:3]), best[3:]])
        out = {}
        for j, name in enumerate(PARAMS):
            value = float(natural[j])
            if replicates is not None and len(replicates) > 1:
                reps = replicates[:, j]
                # E, A and B are positive and skewed: their intervals are made in ln units.
                # The stderr is half the central 68% range of the resamples: the standard
                # deviation for a normal spread, but not ruled by the few resamples that run
                # off to a huge A or B (their plain std reached 1e71, and overflowed). Both
                # are taken in ln units and exponentiated last (exp is monotone).
                lo, hi = self._interval(float(best[j]), reps, level)
                q16, q84 = np.percentile(reps, [15.865, 84.135])
                if j < 3:
                    if max(hi, q84) > _LN_FLOAT_MAX:
                        warnings.append(
                            f"{name}'s bootstrap interval reaches beyond {math.exp(700):.1e}: "
                            f"{name} is not identified by these runs, so it is reported "
                            "without an interval"
                        )
                        out[name] = Estimate(value=value)
                        continue
                    lo, hi, q16, q84 = (math.exp(v) for v in (lo, hi, q16, q84))
                stderr = float(q84 - q16) / 2.0
                out[name] = Estimate(value=value, stderr=stderr, interval=(lo, hi))
                continue
            # no bootstrap: the sandwich's interval, and its stderr (delta method for E, A, B)
            interval = search["covariance_intervals"][name]
            if interval is None:  # an unsupported term: no finite interval
                out[name] = Estimate(value=value)
                continue
            se = math.sqrt(search["covariance"][j, j]) * (value if j < 3 else 1.0)
            out[name] = Estimate(value=value, stderr=se, interval=tuple(interval))
        return out

    def _optima(self, observations, groups, point, reps, used, warnings):
        """Each budget's optimum on the fitted surface, flagged when it lies outside its grid."""
        level = self.config.confidence
        optima = []
        unbounded = []
        for budget, rows in groups:
            with np.errstate(over="ignore"):
                values = frontier_at(point, budget)
                spread = {} if reps is None else frontier_at(reps, budget)
            if not all(np.isfinite(values[key][0]) for key in ("n", "d", "l")):
                raise FitError(
                    f"the fitted surface's optimum at {budget:.4g} FLOPs is beyond the range "
                    f"of a float (N* = {values['n'][0]:.4g}, D* = {values['d'][0]:.4g}): the "
                    "data hold values too extreme to fit a law through; check the runs"
                )
            estimate = {
                key: self._estimate(float(values[key][0]), spread.get(key), level)
                for key in ("n", "d", "l")
            }
            for key, name in (("n", "N*"), ("d", "D*"), ("l", "L*")):
                if not _finite_estimate(estimate[key]):  # resamples beyond floats: no interval
                    estimate[key] = Estimate(value=estimate[key].value)
                    unbounded.append(f"{name} at {budget:.4g}")

            flags = []
            sizes = observations.params[rows]
            if sizes.size and not sizes.min() <= values["n"][0] <= sizes.max():
                flags.append(EXTRAPOLATED_FLAG)
            if rows.size < MIN_RUNS_PER_BUDGET:
                flags.append(FEW_RUNS_FLAG)
            if not used[rows].all():
                flags.append(EXCLUDED_FLAG)
            optima.append(
                Optimum(
                    budget=float(budget),
                    params=estimate["n"],
                    tokens=estimate["d"],
                    loss=estimate["l"],
                    n_runs=int(rows.size),
                    flags=flags,
                )
            )
        if unbounded:
            warnings.append(
                f"the bootstrap intervals of {', '.join(unbounded[:3])}"
                f"{', ...' if len(unbounded) > 3 else ''} reach beyond the range of a float: "
                "they are not identified by these runs, so they are reported without intervals"
            )
        return optima

    def _estimate(self, value, replicates, level) -> Estimate:
        """A value with the bootstrap's standard error and interval (none without replicates)."""
        if replicates is None or len(replicates) < 2:
            return Estimate(value=value)
        return Estimate(
            value=value,
            stderr=float(np.std(replicates, ddof=1)),
            interval=self._interval(value, replicates, level),
        )

    def _surface_warnings(self, r2: float, rms: float) -> list[str]:
        """How well the surface fits the runs: a poor R² (or `FitError` with `strict`), or a
        perfect one, which means the runs carry no noise to estimate uncertainty from."""
        cfg = self.config
        if r2 < cfg.min_r_squared:
            message = (
                f"the fitted surface explains R² = {r2:.4f} of the variance of ln L, below "
                f"min_r_squared = {cfg.min_r_squared:g}: L = E + A/N^alpha + B/D^beta does not "
                f"describe these runs well; check for bad runs, or compare with `quadratic`"
            )
            if cfg.strict:
                raise FitError(message + " (strict is on)")
            return [message]
        if rms <= 1e-7:
            return [
                f"the runs lie exactly on the fitted surface (RMS error of ln L {rms:.1e}): they "
                f"carry no noise, so every interval has zero width; real runs never do this, "
                f"synthetic ones do"
            ]
        return []

    def _search_warnings(self, search):
        out = []
        if search["bound_hits"]:
            out.append(
                f"the optimum sits on a bound for {', '.join(search['bound_hits'])}: the data do "
                f"not pin these down (a coefficient at 0 means that term is not supported)"
            )
        if search["share_at_best"] < 0.05:
            out.append(
                f"only {search['share_at_best']:.1%} of the starts reach the best objective: the "
                f"surface has competing optima; check the fit against `quadratic`"
            )
        if not search["polish_converged"]:
            out.append("the best start had not converged when the polish stopped")
        return out

    def _leave_one_out(self, observations, groups, used, problem: Problem, best, k_flops):
        """Refit without each budget (one batched solve) and predict that budget's optimum.

        Same shape as `diagnostics.leave_one_out`: per law the errors ln(predicted/observed).
        The held-out optimum is read from the held-out runs alone: the vertex of a parabola of
        ln L in ln N (ln D) when it is convex and interior, else the best run. `loss_log_rmse`
        is the RMS error of ln L on the held-out runs, an out-of-sample check of the surface.
        """
        row_index = np.flatnonzero(used)
        position = {r: i for i, r in enumerate(row_index)}
        # Budgets excluded from the fit are not held out: no refit could leave them out.
        held_groups = [(b, rows) for b, rows in groups if used[rows].all()]
        weights = np.ones((len(held_groups), row_index.size))
        for g, (_, rows) in enumerate(held_groups):
            weights[g, [position[r] for r in rows]] = 0.0
        sol = problem.minimise(np.tile(best, (len(held_groups), 1)), weights, rtol=1e-12)
        errors: dict[str, list[float | None]] = {"n_opt": [], "d_opt": []}
        loss_rmse: list[float | None] = []
        for g, (budget, rows) in enumerate(held_groups):
            theta = sol.theta[g]
            with np.errstate(all="ignore"):
                predicted = frontier_at(frontier(theta[None, :], k_flops), budget)
                loss = observations.loss[rows]
                for name, key, sizes in (
                    ("n_opt", "n", observations.params[rows]),
                    ("d_opt", "d", observations.tokens[rows]),
                ):
                    error = np.log(predicted[key][0] / _held_out_optimum(sizes, loss))
                    # A refit that cannot place the optimum (e.g. alpha -> 0) has no error.
                    ok = sol.converged[g] and np.isfinite(error)
                    errors[name].append(float(error) if ok else None)
                ln_n, ln_d = np.log(observations.params[rows]), np.log(observations.tokens[rows])
                resid = np.log(fitted_loss(theta, ln_n, ln_d)) - np.log(loss)
                rmse = float(np.sqrt(np.mean(resid**2)))
            loss_rmse.append(rmse if sol.converged[g] and math.isfinite(rmse) else None)
        out: dict = {"budgets": [float(b) for b, _ in held_groups]}
        worst = None
        for name, errs in errors.items():
            known = [
                (abs(e), b) for e, b in zip(errs, out["budgets"], strict=True) if e is not None
            ]
            top = max(known) if known else (None, None)
            out[name] = {"errors": errs, "max_abs_error": top[0], "worst_budget": top[1]}
            if top[0] is not None:
                worst = top[0] if worst is None else max(worst, top[0])
        out["max_abs_error"] = worst
        out["loss_log_rmse"] = loss_rmse
        return out


# ---------------------------------------------------------------------- helpers
def _r_squared(theta, data: Data) -> tuple[float, float]:
    """R² of ln L on the fitted surface (the share of the runs' log-loss variance it explains)
    and the RMS error of ln L."""
    resid = np.log(fitted_loss(theta, data.ln_n, data.ln_d)) - data.ln_loss
    spread = data.ln_loss - data.ln_loss.mean()
    sst = float(spread @ spread)
    ssr = float(resid @ resid)
    r2 = float(min(max(1.0 - ssr / sst, 0.0), 1.0)) if sst > 0 else 1.0
    return r2, float(np.sqrt(ssr / resid.size))


def _sandwich(theta, problem: Problem, level):
    """Covariance of theta by the M-estimator sandwich H^-1 (sum psi² q q') H^-1; intervals."""
    _, _, hess = evaluate(theta[None, :], problem.data, problem.objective)
    per_point = point_gradients(theta, problem.data, problem.objective)
    meat = per_point.T @ per_point
    h = hess[0]
    idx = np.flatnonzero(problem.free)
    cov = np.zeros((5, 5))
    try:
        h_inv = np.linalg.inv(h[np.ix_(idx, idx)])
        cov[np.ix_(idx, idx)] = h_inv @ meat[np.ix_(idx, idx)] @ h_inv
    except np.linalg.LinAlgError:
        cov[np.ix_(idx, idx)] = np.nan
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    natural = np.concatenate([np.exp(theta[:3]), theta[3:]])
    intervals = {}
    for j, name in enumerate(PARAMS):
        se = math.sqrt(cov[j, j]) if cov[j, j] >= 0 else float("nan")
        if j < 3:  # symmetric in ln E, so a ratio interval for E
            with np.errstate(over="ignore"):
                ends = np.exp([theta[j] - z * se, theta[j] + z * se])
        else:
            ends = np.array([natural[j] - z * se, natural[j] + z * se])
        # An unsupported term (a coefficient at 0) has no finite interval: None says so.
        intervals[name] = [float(e) for e in ends] if np.isfinite(ends).all() else None
    return cov, intervals


def _nearest_budgets(observations: Observations, count: int) -> list[tuple[float, np.ndarray]]:
    """`count` log-spaced C from the runs' smallest to their largest, each with the rows
    (sorted by N) whose C is nearest it in log C: where a fit of runs without budgets states
    its optima, and which runs each optimum's flags speak for."""
    ln_c = np.log(observations.compute)
    centres = np.linspace(ln_c.min(), ln_c.max(), count if ln_c.max() > ln_c.min() else 1)
    nearest = np.argmin(np.abs(ln_c[:, None] - centres[None, :]), axis=1)
    out = []
    for j, centre in enumerate(centres):
        rows = np.flatnonzero(nearest == j)
        out.append((float(np.exp(centre)), rows[np.argsort(observations.params[rows])]))
    return out


def _resample_units(observations: Observations, resample: str) -> np.ndarray:
    """The unit each run is resampled with: itself, its model size, or its budget."""
    if resample == "point":
        return np.arange(len(observations), dtype=float)
    if resample == "size":
        return observations.params
    return observations.budget


def _held_out_optimum(params: np.ndarray, loss: np.ndarray) -> float:
    """A budget's optimum from its own runs: a convex interior parabola's vertex, else its best."""
    x = np.log(params)
    if np.unique(x).size >= 3:
        parabola = fit_parabola(x, np.log(loss))
        if parabola.curvature > 0 and parabola.x_min <= parabola.vertex <= parabola.x_max:
            return float(math.exp(parabola.vertex))
    return float(params[np.argmin(loss)])


def _finite_estimate(estimate: Estimate) -> bool:
    """Whether every number of an estimate is finite (an inf would be written as null)."""
    numbers = [estimate.stderr, *(estimate.interval or ())]
    return all(v is None or math.isfinite(v) for v in numbers)


def _optimum_warnings(optima: list[Optimum]) -> list[str]:
    outside = [o.budget for o in optima if EXTRAPOLATED_FLAG in o.flags]
    if not outside:
        return []
    named = format_budgets(outside)
    return [
        f"at budget(s) {named} the fitted optimum lies outside the sampled model sizes: the "
        f"law there is an extrapolation of the surface; centre those grids on it"
    ]
