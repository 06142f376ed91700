"""The `robust` fitter (Approach 3): published fits, known truths, and its engine against scipy."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from flops_fit_core import Conventions, FitError, FitResult, InputError, Observations
from flops_fit_core.testing.synthetic import CHINCHILLA, Law, isoflop_observations
from flops_fit_fitters.robust import RobustConfig, RobustFitter
from flops_fit_fitters.variable_projection import (
    Data,
    Grid,
    Objective,
    evaluate,
    minimise,
    project,
    screen,
)

LLAMA3 = Path(__file__).parent / "data" / "llama3" / "isoflops_points.csv"
BUDGETS = (1e18, 1e19, 1e20, 1e21, 1e22)


def llama3() -> Observations:
    with open(LLAMA3, newline="") as f:
        rows = list(csv.DictReader(f))
    c = np.array([float(r["compute_budget"]) for r in rows])
    d = np.array([float(r["training_tokens"]) for r in rows])
    loss = np.array([float(r["validation_loss"]) for r in rows])
    return Observations(
        budget=c,
        params=c / (6 * d),
        tokens=d,
        compute=c,
        loss=loss,
        ids=tuple(f"line {i + 2}" for i in range(len(rows))),
        conventions=Conventions(flops="6n"),
        source=str(LLAMA3),
    )


def fit(observations, **settings) -> FitResult:
    return RobustFitter(RobustConfig(**settings)).fit(observations)


# ----------------------------------------------------------------- published and known fits
def test_llama3_least_squares_matches_the_published_variable_projection_fit():
    """Open-Athena's VPNLS on Llama 3's IsoFLOP points: E=0.6047 A=59.1 B=155.1 alpha=0.3100
    beta=0.3136 (least squares on the raw loss)."""
    p = fit(llama3(), loss="mse", bootstrap=0).parametric
    assert p["E"].value == pytest.approx(0.6047, abs=1e-3)
    assert p["alpha"].value == pytest.approx(0.3100, abs=1e-3)
    assert p["beta"].value == pytest.approx(0.3136, abs=1e-3)
    assert p["A"].value == pytest.approx(59.1, rel=0.01)
    assert p["B"].value == pytest.approx(155.1, rel=0.01)


def test_noiseless_truth_is_recovered_exactly_under_every_loss():
    truth = isoflop_observations(BUDGETS, sizes_per_budget=7, noise=0.0)
    for loss in ("huber", "mse", "log_mse", "asymmetric_mae"):
        result = fit(truth, loss=loss, bootstrap=0, leave_one_out=False)
        p = {k: v.value for k, v in result.parametric.items()}
        assert p["alpha"] == pytest.approx(CHINCHILLA.alpha, abs=1e-5), loss
        assert p["beta"] == pytest.approx(CHINCHILLA.beta, abs=1e-5), loss
        assert p["E"] == pytest.approx(CHINCHILLA.E, rel=1e-5), loss
        assert p["A"] == pytest.approx(CHINCHILLA.A, rel=1e-3), loss
        assert result.laws["n_opt"].exponent == pytest.approx(CHINCHILLA.a, abs=1e-5), loss
        assert result.diagnostics["objective"] < 1e-12, loss


def test_synthetic_recovery_over_20_seeds():
    """5 budgets x 7 sizes over 1/8x-8x, 1% noise: median |a_hat - a| <= 0.02."""
    errors = [
        abs(
            fit(isoflop_observations(BUDGETS, 7, 8.0, 0.01, seed)).laws["n_opt"].exponent
            - CHINCHILLA.a
        )
        for seed in range(20)
    ]
    print(f"robust: median |a_hat - a| over 20 seeds = {np.median(errors):.4f}")
    assert np.median(errors) <= 0.02


def test_a_barely_identified_exponent_says_so():
    """2% noise on a ±4x span: the exponent is barely identifiable, and the fit must say so
    through intervals that are wide and still hold the truth, plus a warning."""
    wide, held = 0, 0
    for seed in range(10):
        result = fit(isoflop_observations(BUDGETS, 7, 4.0, 0.02, seed), bootstrap=400)
        lo, hi = result.laws["n_opt"].exponent_interval
        wide += any("barely identifies" in w for w in result.warnings)
        held += lo <= CHINCHILLA.a <= hi
        assert hi - lo > 0.1
    assert wide >= 5 and held >= 8


def test_derived_optimum_is_the_minimum_of_the_fitted_surface():
    result = fit(isoflop_observations(BUDGETS, 7, 8.0, 0.01, 3), bootstrap=0)
    p = {k: v.value for k, v in result.parametric.items()}
    law = Law(E=p["E"], A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])
    for c in (1e19, 1e23, 1e25):
        n = np.exp(np.linspace(np.log(law.n_opt(c)) - 0.5, np.log(law.n_opt(c)) + 0.5, 200001))
        loss = law.loss(n, c / (6 * n))
        pred = result.predict(c)
        assert pred.params.value == pytest.approx(n[np.argmin(loss)], rel=1e-4)
        assert pred.loss.value == pytest.approx(loss.min(), rel=1e-9)
        assert pred.tokens.value == pytest.approx(c / (6 * pred.params.value), rel=1e-9)


def test_intervals_and_laws_are_consistent():
    result = fit(isoflop_observations(BUDGETS, 7, 8.0, 0.01, 4))
    for name in ("n_opt", "d_opt", "loss_opt", "tokens_per_param"):
        law = result.laws[name]
        lo, hi = law.exponent_interval
        assert lo < law.exponent < hi, name
    assert result.laws["n_opt"].exponent + result.laws["d_opt"].exponent == pytest.approx(1.0)
    pred = result.predict(1e24)
    for est in (pred.params, pred.tokens, pred.loss, pred.tokens_per_param):
        assert est.interval[0] < est.value < est.interval[1]
    for key, est in result.parametric.items():
        assert est.interval[0] <= est.value <= est.interval[1], key
        assert est.stderr > 0


def test_fit_json_has_every_documented_key():
    data = fit(isoflop_observations(BUDGETS, 7, 8.0, 0.01, 5)).model_dump(mode="json")
    assert {"fitter", "settings", "parametric", "laws", "optima", "diagnostics", "warnings"} <= set(
        data
    )
    for name in ("E", "A", "B", "alpha", "beta"):
        assert set(data["parametric"][name]) == {"value", "stderr", "interval"}
    for name in ("n_opt", "d_opt", "loss_opt"):
        law = data["laws"][name]
        assert {
            "coefficient",
            "exponent",
            "coefficient_interval",
            "exponent_interval",
            "r2",
        } <= set(law)
    conv = data["diagnostics"]["convergence"]
    assert conv["starts"] >= 4500 and 0 < conv["share_at_best"] <= 1
    assert data["diagnostics"]["objective"] > 0
    assert data["settings"]["loss"] == "huber" and data["settings"]["delta"] == 1e-3
    loo = data["diagnostics"]["leave_one_out"]
    assert len(loo["n_opt"]["errors"]) == len(loo["d_opt"]["errors"]) == 5
    assert loo["max_abs_error"] < 0.5


def test_seeded_bootstrap_is_deterministic_and_the_seed_matters():
    obs = isoflop_observations(BUDGETS, 7, 8.0, 0.01, 6)
    first, again = fit(obs, bootstrap=400, seed=1), fit(obs, bootstrap=400, seed=1)
    other = fit(obs, bootstrap=400, seed=2)
    assert first.laws == again.laws
    assert first.laws["n_opt"].exponent_interval != other.laws["n_opt"].exponent_interval


@pytest.mark.parametrize("unit", ["size", "budget"])
def test_resampling_whole_sizes_or_budgets(unit):
    result = fit(isoflop_observations(BUDGETS, 7, 8.0, 0.01, 7), bootstrap=400, resample=unit)
    lo, hi = result.laws["n_opt"].exponent_interval
    assert lo < result.laws["n_opt"].exponent < hi


def test_fixed_parameters_stay_fixed_and_bounds_hold():
    obs = isoflop_observations(BUDGETS, 7, 8.0, 0.01, 8)
    fixed = fit(obs, fixed={"alpha": 0.34}, bootstrap=50).parametric
    assert fixed["alpha"].value == 0.34 and fixed["alpha"].interval == (0.34, 0.34)
    bounded = fit(obs, bounds={"beta": (0.1, 0.25)}, bootstrap=50)
    assert 0.1 <= bounded.parametric["beta"].value <= 0.25
    assert "beta" in bounded.diagnostics["convergence"]["bound_hits"]
    assert any("bound" in w for w in bounded.warnings)


def test_too_few_runs_or_budgets_is_a_clear_error():
    obs = isoflop_observations((1e18, 1e19), 7, 8.0, 0.01, 0)
    with pytest.raises(FitError, match="at least 3 compute budgets"):
        fit(obs)
    tiny = isoflop_observations(BUDGETS, 1, 8.0, 0.01, 0)
    with pytest.raises(InputError, match="at least 6 runs"):
        fit(tiny)


def test_profile_intervals_through_lmfit_bracket_the_estimate():
    result = fit(isoflop_observations(BUDGETS, 7, 8.0, 0.01, 9), bootstrap=0, profile=True)
    profile = result.diagnostics["profile"]
    assert "[[Variables]]" in profile["report"]
    for name in ("alpha", "beta"):
        lo, hi = profile[name]
        assert lo < result.parametric[name].value < hi


# ----------------------------------------------------------------- the engine
def _data(seed=0):
    obs = isoflop_observations(BUDGETS, 7, 8.0, 0.01, seed)
    return Data.from_arrays(obs.params, obs.tokens, obs.loss)


@pytest.mark.parametrize("kind", ["huber", "mse", "log_mse", "asymmetric_mae"])
def test_gradient_and_hessian_match_finite_differences(kind):
    data = _data()
    objective = Objective(kind, delta=1e-3 if kind == "huber" else 0.05, asymmetry=0.3)
    theta = np.array([[0.5, 6.0, 6.0, 0.34, 0.28], [0.6, 5.5, 6.5, 0.3, 0.3]])
    _, g, h = evaluate(theta, data, objective)
    eps = 1e-6
    for j in range(5):
        up, down = theta.copy(), theta.copy()
        up[:, j] += eps
        down[:, j] -= eps
        fu, gu, _ = evaluate(up, data, objective)
        fd, gd, _ = evaluate(down, data, objective)
        np.testing.assert_allclose(
            g[:, j], (fu - fd) / (2 * eps), rtol=1e-5, atol=1e-7 * np.abs(g).max()
        )
        np.testing.assert_allclose(
            h[:, :, j], (gu - gd) / (2 * eps), rtol=1e-5, atol=1e-7 * np.abs(h).max()
        )


def test_projection_is_the_exact_nonnegative_least_squares_solution():
    from scipy.optimize import nnls

    data = _data(1)
    alphas, betas = np.array([0.05, 0.34, 1.2, 2.4]), np.array([0.0, 0.28, 0.9])
    for objective in (Objective("mse"), Objective("huber")):
        coef = project(alphas, betas, data, objective)
        w = np.sqrt(1 / data.loss**2 if objective.log_space else np.ones_like(data.loss))
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                x = np.stack(
                    [np.ones(len(data)), np.exp(-a * data.ln_n), np.exp(-b * data.ln_d)], 1
                )
                ref, _ = nnls(x * w[:, None], data.loss * w)
                ours = np.sum(((x @ coef[i, j]) - data.loss) ** 2 * w**2)
                best = np.sum(((x @ ref) - data.loss) ** 2 * w**2)
                assert (coef[i, j] >= 0).all()
                assert ours <= best * (1 + 1e-9) + 1e-18


def test_newton_reaches_scipy_lbfgsb_optimum_or_better():
    from scipy.optimize import minimize

    data = _data(2)
    objective = Objective()
    theta, values = screen(Grid(n_alpha=20, n_beta=20), data, objective)
    start = theta.reshape(-1, 5)[np.argmin(values)]
    ours = minimise(start[None, :], data, objective)

    def fun(t):
        f, g, _ = evaluate(t[None, :], data, objective)
        return f[0], g[0]

    ref = minimize(fun, start, jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})
    assert ours.converged[0]
    assert ours.objective[0] <= ref.fun + 1e-12


def test_a_batch_gives_the_same_answers_as_one_row_at_a_time():
    data = _data(3)
    objective = Objective()
    rng = np.random.default_rng(0)
    weights = rng.multinomial(len(data), np.full(len(data), 1 / len(data)), size=6).astype(float)
    start = np.tile([0.53, 6.0, 6.0, 0.34, 0.28], (6, 1))
    batch = minimise(start, data, objective, weights)
    for i in range(6):
        single = minimise(start[i : i + 1], data, objective, weights[i : i + 1])
        np.testing.assert_allclose(batch.theta[i], single.theta[0], rtol=1e-8)


def test_exact_data_and_a_poor_surface_are_reported():
    exact = fit(isoflop_observations(BUDGETS, 7, 8.0, 0.0, 0), bootstrap=40)
    assert any("exactly on the fitted surface" in w for w in exact.warnings)
    noisy = isoflop_observations(BUDGETS, 7, 8.0, 0.2, 0)  # 20% noise: the surface explains little
    poor = fit(noisy, bootstrap=40)
    assert poor.diagnostics["r2"] < 0.9
    assert sum("explains R²" in w for w in poor.warnings) == 1
    with pytest.raises(FitError, match="strict"):
        fit(noisy, bootstrap=40, strict=True)


def test_projection_with_fixed_coefficients_is_exact():
    from scipy.optimize import nnls

    data = _data(1)
    alphas, betas = np.array([0.1, 0.34, 1.0]), np.array([0.2, 0.28])
    for fixed in ({0: 1.7}, {1: 400.0}, {0: 1.7, 2: 410.0}):
        coef = project(alphas, betas, data, Objective("mse"), fixed)
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                x = np.stack(
                    [
                        np.ones(len(data)),
                        np.exp(-a * data.ln_n),
                        np.exp(-b * data.ln_d),
                    ],
                    1,
                )
                free = [k for k in range(3) if k not in fixed]
                target = data.loss - sum(x[:, k] * v for k, v in fixed.items())
                ref = np.array([fixed.get(k, 0.0) for k in range(3)])
                ref[free] = nnls(x[:, free], target)[0]
                assert np.allclose(coef[i, j, list(fixed)], list(fixed.values()))
                sse = np.sum((x @ coef[i, j] - data.loss) ** 2)
                assert sse <= np.sum((x @ ref - data.loss) ** 2) * (1 + 1e-9)


def test_a_bound_that_binds_gives_the_same_optimum_as_fixing_it_there():
    obs = isoflop_observations(BUDGETS, 7, 8.0, 0.01, 0)
    bounded = fit(obs, bounds={"E": (2.0, 3.0)}, bootstrap=40)
    fixed = fit(obs, fixed={"E": 2.0}, bootstrap=40)
    assert bounded.diagnostics["objective"] == pytest.approx(
        fixed.diagnostics["objective"], rel=1e-9
    )
    assert bounded.parametric["alpha"].value == pytest.approx(
        fixed.parametric["alpha"].value, rel=1e-6
    )
    assert bounded.diagnostics["convergence"]["bootstrap_failed"] == 0


def test_data_without_one_term_is_reported_not_crashed():
    """Loss that does not depend on N: the A term is unsupported and A goes to 0."""
    obs = isoflop_observations(BUDGETS, 7, 8.0, 0.005, 0)
    loss = 1.69 + 410.7 / obs.tokens**0.28 * np.exp(
        0.005 * np.random.default_rng(0).standard_normal(len(obs))
    )
    flat = dataclasses.replace(obs, loss=loss)
    try:
        result = fit(flat, bootstrap=40)
    except FitError as exc:  # an honest refusal is acceptable, a traceback is not
        assert "bootstrap" in str(exc) or "finite" in str(exc)
        return
    FitResult.model_validate_json(result.model_dump_json())  # fit.json stays readable
    assert "A" in result.diagnostics["convergence"]["bound_hits"]
    assert any("not supported" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bootstrap": 10}, "at least 40"),
        ({"grid": (1, 1)}, "at least 2 points"),
        ({"fixed": {"alpha": 0.34}, "bounds": {"alpha": (0.5, 1.0)}}, "outside its bounds"),
        ({"fixed": {"alpha": -1.0}}, "positive"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        RobustConfig(**settings)


def test_budgets_excluded_as_non_monotonic_count_against_min_budgets():
    obs = isoflop_observations(BUDGETS, 7, 8.0, 0.01, 0)
    loss = obs.loss.copy()
    loss[obs.budget >= 1e20] += 5.0  # the three largest budgets are broken
    broken = dataclasses.replace(obs, loss=loss)
    with pytest.raises(FitError, match="min_budgets"):
        fit(broken, bootstrap=40)


def test_standard_errors_of_a_barely_identified_law_stay_finite_and_quiet():
    """Nine noisy runs barely identify A and B: some resamples run off to enormous values.
    The stderr (half the central 68% of the resamples) stays finite and within the 95%
    interval's width, and nothing overflows (the plain std reached 1e71 and warned)."""
    import warnings

    obs = isoflop_observations(budgets=(1e18, 1e19, 1e20), sizes_per_budget=3, noise=0.05, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fit = RobustFitter({"bootstrap": 200}).fit(obs)
    for name, est in fit.parametric.items():
        lo, hi = est.interval
        assert np.isfinite(est.stderr) and 0 < est.stderr <= hi - lo, (name, est)


def test_a_bootstrap_that_runs_off_to_overflowing_a_leaves_a_without_an_interval():
    """ln A resamples beyond ~709 would overflow exp: A is then reported without interval or
    stderr, with a warning, and fit.json stays valid JSON (no inf)."""
    best = np.array([np.log(1.7), np.log(400.0), np.log(410.0), 0.34, 0.28])
    rng = np.random.default_rng(0)
    replicates = best + rng.normal(0, 0.05, (200, 5))
    replicates[:40, 1] = 800.0  # 20% of resamples: ln A = 800
    warnings: list[str] = []
    out = RobustFitter()._parametric(best, replicates, None, 0.95, warnings)
    assert out["A"].interval is None and out["A"].stderr is None
    assert out["A"].value == pytest.approx(400.0)
    assert any("A's bootstrap interval reaches beyond" in w for w in warnings)
    for name in ("E", "B", "alpha", "beta"):
        assert out[name].interval is not None and np.isfinite(out[name].stderr)
