"""`fit_power_law`: exact on clean lines, equal to textbook OLS, calibrated intervals, and equal
to a published scaling-law fit (Porian et al. 2024)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from flops_fit_core import FitError, PowerLaw
from flops_fit_fitters.powerlaw import fit_power_law, log_residuals, resolution_shifts

DATA = Path(__file__).parent / "data" / "porian"
TRUE_K, TRUE_A = 0.3, 0.45
COMPUTE = np.logspace(18, 22, 6)


def noisy_line(seed: int, sigma: float = 0.1, x: np.ndarray = COMPUTE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return TRUE_K * x**TRUE_A * np.exp(rng.normal(0.0, sigma, x.size))


def test_clean_line_is_recovered_exactly_with_collapsed_intervals():
    law = fit_power_law(COMPUTE, TRUE_K * COMPUTE**TRUE_A)
    assert law.exponent == pytest.approx(TRUE_A, abs=1e-12)
    assert law.coefficient == pytest.approx(TRUE_K, rel=1e-9)
    assert law.r2 == pytest.approx(1.0, abs=1e-12)
    lo, hi = law.exponent_interval
    assert hi - lo == pytest.approx(0.0, abs=1e-9)
    assert law.n_points == COMPUTE.size and law.level == 0.95


def test_matches_polyfit_and_linregress_standard_errors():
    y = noisy_line(seed=3)
    law = fit_power_law(COMPUTE, y, level=0.9)
    slope, intercept = np.polyfit(np.log(COMPUTE), np.log(y), 1)
    ref = stats.linregress(np.log(COMPUTE), np.log(y))
    assert law.exponent == pytest.approx(slope, abs=1e-12)
    assert math.log(law.coefficient) == pytest.approx(intercept, abs=1e-9)
    assert law.r2 == pytest.approx(ref.rvalue**2, abs=1e-12)
    (v_k, c_ka), (c_ak, v_a) = law.covariance
    assert c_ka == c_ak
    assert math.sqrt(v_a) == pytest.approx(ref.stderr, rel=1e-9)
    assert math.sqrt(v_k) == pytest.approx(ref.intercept_stderr, rel=1e-9)
    # Intercept and slope of a regression on uncentred x are negatively correlated when x > 0.
    assert c_ka == pytest.approx(-np.log(COMPUTE).mean() * v_a, rel=1e-9)
    t = stats.t.ppf(0.95, COMPUTE.size - 2)
    assert law.t_value == pytest.approx(t, rel=1e-12)
    lo, hi = law.exponent_interval
    assert (lo, hi) == pytest.approx((slope - t * ref.stderr, slope + t * ref.stderr), rel=1e-9)
    k_lo, k_hi = law.coefficient_interval
    assert math.log(k_lo) == pytest.approx(intercept - t * ref.intercept_stderr, abs=1e-9)
    assert math.log(k_hi) == pytest.approx(intercept + t * ref.intercept_stderr, abs=1e-9)


def test_residuals_are_the_minimised_ones():
    y = noisy_line(seed=4)
    law = fit_power_law(COMPUTE, y)
    resid = log_residuals(law, COMPUTE, y)
    slope, intercept = np.polyfit(np.log(COMPUTE), np.log(y), 1)
    expected = np.log(y) - (intercept + slope * np.log(COMPUTE))
    np.testing.assert_allclose(resid, expected, atol=1e-9)
    assert abs(resid.sum()) < 1e-9  # OLS with an intercept: residuals sum to zero


def test_intervals_cover_the_truth_at_their_level():
    """Over 400 seeds the 95% intervals (exponent, coefficient, law at an extrapolated C) cover
    the true line in roughly 95% of them: 0.92-0.98 is about ±2.7 binomial standard errors."""
    seeds = 400
    target = 1e24  # two decades beyond the data: exercises the covariance term
    hits = {"exponent": 0, "coefficient": 0, "predict": 0}
    for seed in range(seeds):
        law = fit_power_law(COMPUTE, noisy_line(seed))
        lo, hi = law.exponent_interval
        hits["exponent"] += lo <= TRUE_A <= hi
        lo, hi = law.coefficient_interval
        hits["coefficient"] += lo <= TRUE_K <= hi
        lo, hi = law.predict_interval(target)
        hits["predict"] += lo <= TRUE_K * target**TRUE_A <= hi
    for name, count in hits.items():
        assert 0.92 <= count / seeds <= 0.98, (name, count / seeds)


def test_wider_level_gives_wider_intervals():
    y = noisy_line(seed=5)
    narrow = fit_power_law(COMPUTE, y, level=0.5).exponent_interval
    wide = fit_power_law(COMPUTE, y, level=0.99).exponent_interval
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_interval_uses_t_not_normal_quantile_for_three_points():
    x = np.array([1e18, 1e19, 1e20])
    law = fit_power_law(x, TRUE_K * x**TRUE_A * np.array([1.05, 0.9, 1.04]))
    assert law.t_value == pytest.approx(12.706, abs=1e-3)


def test_round_trips_through_json():
    law = fit_power_law(COMPUTE, noisy_line(seed=6))
    again = PowerLaw.model_validate_json(law.model_dump_json())
    assert again == law
    assert again.predict_interval(3e23) == pytest.approx(law.predict_interval(3e23), rel=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "error"),
    [
        ([1e18, 1e19], [1.0, 2.0], FitError),
        ([1e18, 1e18, 1e18], [1.0, 2.0, 3.0], FitError),
        ([1e18, 1e19, 0.0], [1.0, 2.0, 3.0], ValueError),
        ([1e18, 1e19, 1e20], [1.0, -2.0, 3.0], ValueError),
        ([1e18, 1e19, 1e20], [1.0, math.nan, 3.0], ValueError),
        ([1e18, 1e19, 1e20], [1.0, 2.0], ValueError),
    ],
)
def test_rejects_data_without_a_fittable_law(x, y, error):
    with pytest.raises(error):
        fit_power_law(x, y)


def test_rejects_a_level_outside_zero_one():
    with pytest.raises(ValueError, match="level"):
        fit_power_law(COMPUTE, noisy_line(seed=7), level=95)


def _porian(with_std: bool = False):
    """Per configuration the (flops, n_star[, n_star_std]) rows without NaN, and the published
    fits. `n_star_std` is Porian et al.'s bootstrap spread of ln n_star (in their code the
    weights of the `weighted` fits are 1 / std²)."""
    pairs: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    with open(DATA / "porian_optimal_pairs.csv", newline="") as f:
        for row in csv.DictReader(f):
            values = [float(row[k] or "nan") for k in ("flops", "n_star", "n_star_std")]
            if not with_std:
                values = values[:2]
            if all(math.isfinite(v) for v in values):
                pairs[row["config_id"]].append(tuple(values))
    with open(DATA / "porian_fit_results.csv", newline="") as f:
        published = {row["config_id"]: row for row in csv.DictReader(f)}
    return pairs, published


def test_reproduces_porian_published_exponents():
    """Porian et al.'s `basic` fits are OLS of ln n* on ln C: the same fit, to 1e-6."""
    pairs, published = _porian()
    assert len(published) == 15 and set(pairs) == set(published)
    for config_id, points in pairs.items():
        flops, n_star = np.array(points).T
        law = fit_power_law(flops, n_star)
        row = published[config_id]
        assert law.exponent == pytest.approx(float(row["basic_n_exponent"]), abs=1e-6), config_id
        assert law.coefficient == pytest.approx(float(row["basic_n_coef"]), rel=1e-5), config_id
    refined_web_tuned = pairs["summary_df#4"]
    flops, n_star = np.array(refined_web_tuned).T
    assert fit_power_law(flops, n_star).exponent == pytest.approx(0.497029, abs=1e-6)


def test_zero_resolution_changes_nothing():
    y = noisy_line(seed=8)
    assert fit_power_law(COMPUTE, y, resolution=np.zeros(COMPUTE.size)) == fit_power_law(COMPUTE, y)


def test_resolution_adds_the_worst_offset_and_ramp_in_quadrature():
    y = noisy_line(seed=9)
    h = 0.2
    plain = fit_power_law(COMPUTE, y)
    law = fit_power_law(COMPUTE, y, resolution=np.full(COMPUTE.size, h))
    assert (law.exponent, law.coefficient, law.r2) == (plain.exponent, plain.coefficient, plain.r2)
    lx = np.log(COMPUTE)
    dx = lx - lx.mean()
    ramp = h * np.abs(dx).sum() / (dx @ dx)  # slope shift of errors +h above, -h below the mean
    ols_half = (plain.exponent_interval[1] - plain.exponent_interval[0]) / 2
    half = (law.exponent_interval[1] - law.exponent_interval[0]) / 2
    assert half == pytest.approx(math.hypot(ols_half, ramp), rel=1e-9)
    # A common offset of h moves ln k by h and the slope not at all; at ln x = 0 the ramp
    # moves ln k by -ramp * mean(ln x) (the signs of dx balance for this symmetric grid).
    shifts = resolution_shifts(COMPUTE, np.full(COMPUTE.size, h))
    np.testing.assert_allclose(shifts, [[h, 0.0], [-ramp * lx.mean(), ramp]], atol=1e-12)
    # predict_interval carries the same terms at every compute.
    for c in (1e17, 1e20, 1e24):
        x = math.log(c)
        lo, hi = law.predict_interval(c)
        p_lo, p_hi = plain.predict_interval(c)
        ols = (math.log(p_hi) - math.log(p_lo)) / 2
        extra = [(dk + da * x) for dk, da in shifts]
        assert (math.log(hi) - math.log(lo)) / 2 == pytest.approx(
            math.sqrt(ols**2 + sum(e * e for e in extra)), rel=1e-9
        )
    assert np.all(np.linalg.eigvalsh(np.array(law.covariance)) >= 0)


def test_the_ramp_is_the_worst_bounded_error_for_the_slope():
    rng = np.random.default_rng(10)
    x = np.sort(rng.uniform(40, 52, 7)).astype(float)
    x = np.exp(x)
    bound = rng.uniform(0.05, 0.3, x.size)
    worst = abs(resolution_shifts(x, bound)[1, 1])
    lx = np.log(x)
    dx = lx - lx.mean()
    for _ in range(2000):
        errors = bound * rng.uniform(-1.0, 1.0, x.size)
        assert abs(dx @ errors / (dx @ dx)) <= worst + 1e-15
    extreme = bound * np.sign(dx)
    assert abs(dx @ extreme / (dx @ dx)) == pytest.approx(worst, rel=1e-12)


@pytest.mark.parametrize(
    "bound", [[0.1, 0.1], [0.1, -0.1, 0.1, 0.1, 0.1, 0.1], [0.1, math.inf, 0.1, 0.1, 0.1, 0.1]]
)
def test_rejects_bad_resolution(bound):
    with pytest.raises(ValueError, match="resolution"):
        fit_power_law(COMPUTE, noisy_line(seed=11), resolution=bound)


def test_reproduces_porian_weighted_exponents():
    """Porian et al.'s `weighted` fits are least squares of ln n* on ln C weighted by
    1 / std(ln n*)²: the same fit, to 1e-6 on every configuration (in fact to ~1e-15)."""
    pairs, published = _porian(with_std=True)
    assert len(published) == 15 and set(pairs) == set(published)
    worst = 0.0
    for config_id, points in pairs.items():
        flops, n_star, std = np.array(points).T
        law = fit_power_law(flops, n_star, weights=1.0 / std**2)
        row = published[config_id]
        target = float(row["weighted_n_exponent"])
        assert law.exponent == pytest.approx(target, abs=1e-6), config_id
        assert law.coefficient == pytest.approx(float(row["weighted_n_coef"]), rel=1e-5), config_id
        worst = max(worst, abs(law.exponent - target))
        # The weights matter: the unweighted fit differs from the weighted one by up to 0.007.
        assert abs(law.exponent - fit_power_law(flops, n_star).exponent) < 0.01
    print(f"Porian weighted exponents: worst |difference| {worst:.1e} over 15 configurations")
    owt2_tuned = np.array(pairs["summary_df_owt2#4"]).T
    law = fit_power_law(owt2_tuned[0], owt2_tuned[1], weights=owt2_tuned[2] ** -2.0)
    assert law.exponent == pytest.approx(0.5184542, abs=1e-6)


def _wls_reference(x, y, w):
    """Textbook weighted least squares on uncentred ln x: beta = (XᵀWX)⁻¹XᵀWy and the
    covariance s²(XᵀWX)⁻¹, s² = sum w r² / (n - 2) (relative weights)."""
    design = np.column_stack([np.ones(len(x)), np.log(x)])
    gram = design.T @ (w[:, None] * design)
    beta = np.linalg.solve(gram, design.T @ (w * np.log(y)))
    resid = np.log(y) - design @ beta
    s2 = float(w @ resid**2) / (len(x) - 2)
    return beta, s2 * np.linalg.inv(gram)


def test_weighted_fit_is_textbook_weighted_least_squares():
    y = noisy_line(seed=12)
    w = np.random.default_rng(12).uniform(0.2, 5.0, COMPUTE.size)
    law = fit_power_law(COMPUTE, y, level=0.9, weights=w)
    (intercept, slope), cov = _wls_reference(COMPUTE, y, w)
    assert law.exponent == pytest.approx(slope, abs=1e-10)
    assert math.log(law.coefficient) == pytest.approx(intercept, abs=1e-8)
    np.testing.assert_allclose(np.array(law.covariance), cov, rtol=1e-7)
    # numpy's own weighted polyfit (weights on unsquared residuals: sqrt(w)), scaled covariance
    p, p_cov = np.polyfit(np.log(COMPUTE), np.log(y), 1, w=np.sqrt(w), cov=True)
    assert law.exponent == pytest.approx(p[0], abs=1e-10)
    assert law.covariance[1][1] == pytest.approx(p_cov[0, 0], rel=1e-7)
    t = stats.t.ppf(0.95, COMPUTE.size - 2)
    lo, hi = law.exponent_interval
    assert (hi - lo) / 2 == pytest.approx(t * math.sqrt(cov[1, 1]), rel=1e-7)
    ly = np.log(y)
    y_bar = float(w @ ly) / w.sum()
    resid = ly - (intercept + slope * np.log(COMPUTE))
    assert law.r2 == pytest.approx(1 - (w @ resid**2) / (w @ (ly - y_bar) ** 2), rel=1e-9)


def test_weights_are_relative_and_unit_weights_are_ols():
    y = noisy_line(seed=13)
    w = np.random.default_rng(13).uniform(0.2, 5.0, COMPUTE.size)
    law = fit_power_law(COMPUTE, y, weights=w)
    scaled = fit_power_law(COMPUTE, y, weights=1e6 * w)
    assert scaled.exponent == pytest.approx(law.exponent, abs=1e-12)
    assert scaled.exponent_interval == pytest.approx(law.exponent_interval, abs=1e-10)
    plain = fit_power_law(COMPUTE, y)
    ones = fit_power_law(COMPUTE, y, weights=np.ones(COMPUTE.size))
    assert ones.exponent == pytest.approx(plain.exponent, abs=1e-12)
    assert ones.exponent_interval == pytest.approx(plain.exponent_interval, abs=1e-12)
    assert ones.r2 == pytest.approx(plain.r2, abs=1e-12)


def test_a_heavy_weight_pulls_the_line_through_its_point():
    x = np.array([1e18, 1e19, 1e20, 1e21, 1e22])
    y = TRUE_K * x**TRUE_A * np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    plain = fit_power_law(x, y)
    heavy = fit_power_law(x, y, weights=[1.0, 1.0, 1.0, 1.0, 1e6])
    light = fit_power_law(x, y, weights=[1.0, 1.0, 1.0, 1.0, 1e-6])
    assert heavy.predict(1e22) == pytest.approx(y[-1], rel=1e-4)
    assert light.exponent == pytest.approx(TRUE_A, abs=1e-4)
    assert light.exponent < plain.exponent < heavy.exponent


def test_weighted_resolution_shifts_are_the_worst_case_of_the_weighted_estimate():
    rng = np.random.default_rng(14)
    x = np.exp(np.sort(rng.uniform(40, 52, 7)))
    w = rng.uniform(0.2, 5.0, x.size)
    bound = rng.uniform(0.05, 0.3, x.size)
    lx = np.log(x)
    design = np.column_stack([np.ones(x.size), lx])
    solve = np.linalg.solve(design.T @ (w[:, None] * design), (design * w[:, None]).T)
    worst = resolution_shifts(x, bound, weights=w)
    for _ in range(2000):
        errors = bound * rng.uniform(-1.0, 1.0, x.size)
        assert abs((solve @ errors)[1]) <= abs(worst[1, 1]) + 1e-15
    np.testing.assert_allclose(solve @ bound, worst[0], rtol=1e-9, atol=1e-12)
    # and fit_power_law adds them to the weighted covariance as it does to OLS's
    y = TRUE_K * x**TRUE_A * np.exp(rng.normal(0.0, 0.05, x.size))
    law = fit_power_law(x, y, weights=w, resolution=bound)
    base = fit_power_law(x, y, weights=w)
    expected = np.array(base.covariance) + worst.T @ worst / law.t_value**2
    np.testing.assert_allclose(np.array(law.covariance), expected, rtol=1e-9)


@pytest.mark.parametrize(
    "weights", [[1.0, 1.0], [1.0, 0.0, 1.0, 1.0, 1.0, 1.0], [1.0, math.nan, 1, 1, 1, 1]]
)
def test_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        fit_power_law(COMPUTE, noisy_line(seed=15), weights=weights)
