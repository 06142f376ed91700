"""The `empirical` fitter on data whose answer is known: Chinchilla's law on IsoFLOP grids."""

from __future__ import annotations

import math
from importlib.metadata import entry_points

import numpy as np
import pluggy
import pytest
from pydantic import ValidationError

from flops_fit_core import (
    ConfigError,
    Conventions,
    FitError,
    FitResult,
    Observations,
)
from flops_fit_core import hookspecs as core_hookspecs
from flops_fit_fitters import EmpiricalFitter, QuadraticFitter, flops_fit_register_fitters
from flops_fit_fitters.checks import budget_for_message
from flops_fit_fitters.config import CommonConfig
from flops_fit_fitters.diagnostics import leave_one_out
from flops_fit_fitters.flags import EDGE_FLAG, EXCLUDED_FLAG, FEW_RUNS_FLAG
from flops_fit_fitters.powerlaw import fit_power_law

# Chinchilla's Approach 3 law (Hoffmann et al. 2022), rounded as published.
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
A_TRUE = BETA / (ALPHA + BETA)  # N* ∝ C^a
B_TRUE = ALPHA / (ALPHA + BETA)  # D* ∝ C^b
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))

COARSE = np.geomspace(0.25, 4.0, 7)  # 7 sizes over ±4x: optima move in visible steps
FINE = np.geomspace(1 / 8, 8.0, 41)  # 41 sizes over ±8x


def chinchilla_loss(n, d):
    return E + A / np.power(n, ALPHA) + B / np.power(d, BETA)


def true_n_opt(c):
    return G * (c / 6.0) ** A_TRUE


def guess_centre(c):
    """A planner's guess that is wrong on purpose (20 tokens/param, N ∝ C^0.5)."""
    return math.sqrt(c / 120.0)


def chinchilla_observations(
    budgets,
    ratios=COARSE,
    *,
    centre=guess_centre,
    noise=0.0,
    seed=0,
    conventions: Conventions | None = None,
) -> Observations:
    """Runs on a grid of N around `centre(C)` with D = C / (6N), loss from Chinchilla's law
    times lognormal noise of relative size `noise`."""
    rng = np.random.default_rng(seed)
    budget, params = [], []
    for c in budgets:
        for r in ratios:
            budget.append(float(c))
            params.append(centre(c) * r)
    budget, params = np.array(budget), np.array(params)
    tokens = budget / (6.0 * params)
    loss = chinchilla_loss(params, tokens)
    if noise:
        loss = loss * np.exp(rng.normal(0.0, noise, loss.size))
    return Observations(
        budget=budget,
        params=params,
        tokens=tokens,
        compute=6.0 * params * tokens,
        loss=loss,
        ids=tuple(f"run-{i}" for i in range(budget.size)),
        conventions=conventions or Conventions(),
    )


def subset(obs: Observations, mask) -> Observations:
    mask = np.asarray(mask)
    return Observations(
        budget=obs.budget[mask],
        params=obs.params[mask],
        tokens=obs.tokens[mask],
        compute=obs.compute[mask],
        loss=obs.loss[mask],
        ids=tuple(i for i, m in zip(obs.ids, mask, strict=True) if m),
        conventions=obs.conventions,
    )


BUDGETS = np.logspace(18, 22, 6)


def test_each_optimum_is_the_best_grid_point_and_laws_are_least_squares():
    obs = chinchilla_observations(BUDGETS)
    result = EmpiricalFitter().fit(obs)
    assert [o.budget for o in result.optima] == list(BUDGETS)
    for opt, c in zip(result.optima, BUDGETS, strict=True):
        # brute force, independent of the fitter: every grid point's loss, pick the lowest
        grid = [
            (chinchilla_loss(guess_centre(c) * r, c / (6 * guess_centre(c) * r)), r) for r in COARSE
        ]
        best_loss, best_r = min(grid)
        n_best = guess_centre(c) * best_r
        assert opt.params.value == n_best
        assert opt.tokens.value == c / (6 * n_best)
        assert opt.loss.value == best_loss
        assert opt.params.interval is None and opt.n_runs == len(COARSE)
    n_star = np.array([o.params.value for o in result.optima])
    d_star = np.array([o.tokens.value for o in result.optima])
    l_star = np.array([o.loss.value for o in result.optima])
    lc = np.log(BUDGETS)
    for name, y in [
        ("n_opt", n_star),
        ("d_opt", d_star),
        ("loss_opt", l_star),
        ("tokens_per_param", d_star / n_star),
    ]:
        slope, intercept = np.polyfit(lc, np.log(y), 1)
        assert result.laws[name].exponent == pytest.approx(slope, abs=1e-9), name
        assert math.log(result.laws[name].coefficient) == pytest.approx(intercept, abs=1e-8)
    # The grid is coarse, so the staircase of optima is off the truth, but not by much.
    assert abs(result.laws["n_opt"].exponent - A_TRUE) < 0.05


def test_fine_grid_recovers_chinchilla_exponents_without_warnings():
    budgets = np.logspace(17, 23, 7)
    result = EmpiricalFitter().fit(chinchilla_observations(budgets, FINE))
    assert abs(result.laws["n_opt"].exponent - A_TRUE) < 0.01
    assert abs(result.laws["d_opt"].exponent - B_TRUE) < 0.01
    # The truth lies well inside every grid (no edge), so the fit should have nothing to say.
    assert result.warnings == []
    assert all(o.flags == [] for o in result.optima)
    n_star = np.array([o.params.value for o in result.optima])
    ratio = n_star / true_n_opt(budgets)
    step = FINE[1] / FINE[0]
    assert np.all((ratio > 1 / step) & (ratio < step))  # within one grid step of the truth


def test_noisy_fits_are_calibrated_and_close():
    """What the FitterContract checks, over many seeds instead of one, on the mock preset's
    layout (6 budgets over five decades, 9 sizes over ±8x, 0.2% loss noise): the 95% interval
    of the N* exponent covers the truth in at least 95% of seeds (plain OLS intervals: 87%),
    and the estimate is within 0.05 of it in most."""
    seeds = 200
    covered = close = 0
    budgets = np.logspace(18, 23, 6)
    ratios = np.geomspace(1 / 8, 8.0, 9)
    for seed in range(seeds):
        law = (
            EmpiricalFitter()
            .fit(chinchilla_observations(budgets, ratios, noise=2e-3, seed=seed))
            .laws["n_opt"]
        )
        lo, hi = law.exponent_interval
        covered += lo <= A_TRUE <= hi
        close += abs(law.exponent - A_TRUE) < 0.05
    assert covered / seeds >= 0.95
    assert close / seeds >= 0.9


def test_grid_resolution_keeps_intervals_honest_without_noise():
    """Noise-free runs on 9 sizes over ±8x: every budget's best run is the same grid index, so
    the optima lie exactly on a line of slope 0.5 and a plain OLS interval has zero width and
    misses the truth 0.4516. The fitter's interval must own up to the grid's resolution."""
    budgets = np.logspace(18, 22, 5)

    def centre(c):  # the truth at 1e20, but growing as C^0.5
        return true_n_opt(1e20) * (c / 1e20) ** 0.5

    result = EmpiricalFitter().fit(
        chinchilla_observations(budgets, np.geomspace(1 / 8, 8.0, 9), centre=centre)
    )
    n_star = np.array([o.params.value for o in result.optima])
    plain = fit_power_law(budgets, n_star)
    lo, hi = plain.exponent_interval
    assert hi - lo < 1e-9 and not lo <= A_TRUE <= hi  # the trap
    law = result.laws["n_opt"]
    assert law.exponent == pytest.approx(plain.exponent, abs=1e-12)
    lo, hi = law.exponent_interval
    assert lo <= A_TRUE <= hi
    half_step = math.log(8.0) / 8  # a grid step is ln(64) / 8
    np.testing.assert_allclose(result.diagnostics["grid_half_step"], half_step, rtol=1e-12)
    assert (hi - lo) / 2 == pytest.approx(result.diagnostics["exponent_resolution"]["n_opt"])
    for name in ("d_opt", "tokens_per_param"):
        lo, hi = result.laws[name].exponent_interval
        truth = B_TRUE if name == "d_opt" else B_TRUE - A_TRUE
        assert lo <= truth <= hi, name
    # The law's interval at a far budget covers the true optimum there too.
    lo, hi = result.predict(1e25).params.interval
    assert lo <= true_n_opt(1e25) <= hi


def test_runs_are_grouped_by_planned_budget_not_measured_compute():
    """Measured compute drifts by up to ±40% around the plan (more than the 2x spacing of the
    budgets allows for rounding): groups and laws still use the planned budget."""
    budgets = np.geomspace(1e19, 1.6e20, 5)
    obs = chinchilla_observations(budgets)
    drift = np.random.default_rng(1).uniform(0.6, 1.4, len(obs))
    obs = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens * drift,
        compute=obs.compute * drift,
        loss=obs.loss,
        ids=obs.ids,
    )
    result = EmpiricalFitter().fit(obs)
    assert [o.budget for o in result.optima] == list(budgets)
    assert all(o.n_runs == len(COARSE) for o in result.optima)
    n_star = [o.params.value for o in result.optima]
    slope = np.polyfit(np.log(budgets), np.log(n_star), 1)[0]
    assert result.laws["n_opt"].exponent == pytest.approx(slope, abs=1e-9)


def test_diagnostics_describe_the_fit():
    obs = chinchilla_observations(BUDGETS)
    result = EmpiricalFitter().fit(obs)
    diag = result.diagnostics
    assert diag["n_budgets"] == 6 and diag["n_runs"] == len(obs) == 42
    assert diag["budgets_used"] == list(BUDGETS) and diag["excluded"] == []
    assert set(diag["r2"]) == {"n_opt", "d_opt", "loss_opt", "tokens_per_param"}
    assert diag["r2"]["n_opt"] == result.laws["n_opt"].r2
    n_star = np.array([o.params.value for o in result.optima])
    slope, intercept = np.polyfit(np.log(BUDGETS), np.log(n_star), 1)
    expected = np.log(n_star) - (intercept + slope * np.log(BUDGETS))
    np.testing.assert_allclose(diag["residuals"], expected, atol=1e-9)
    assert diag["objective"] == pytest.approx(float(expected @ expected), rel=1e-9)
    assert diag["objective"] > 0  # a coarse grid's optima are not on a perfect line
    np.testing.assert_allclose(diag["grid_half_step"], math.log(16.0) / 12, rtol=1e-12)
    assert set(diag["exponent_resolution"]) == {"n_opt", "d_opt", "tokens_per_param"}
    assert diag["exponent_resolution"]["n_opt"] > 0
    for run_id, opt in zip(diag["best_runs"], result.optima, strict=True):
        assert obs.params[obs.ids.index(run_id)] == opt.params.value
    assert result.settings == {
        "confidence": 0.95,
        "min_r_squared": 0.9,
        "strict": False,
        "enforce_monotonic": True,
        "min_budgets": 3,
        "leave_one_out": True,
        "exponent_tolerance": 0.05,
        "params": None,
        "flops": None,
    }
    assert "empirical" in result.report()


def test_settings_and_conventions_are_carried():
    conventions = Conventions(params="non_embedding", flops="6n")
    obs = chinchilla_observations(BUDGETS, conventions=conventions)
    fitter = EmpiricalFitter({"confidence": 0.8, "min_r_squared": 0.5})
    result = fitter.fit(obs)
    assert result.conventions == conventions
    assert result.settings["confidence"] == 0.8 and result.settings["min_r_squared"] == 0.5
    assert all(law.level == 0.8 for law in result.laws.values())
    assert result.predict(1e23).conventions == conventions


def test_json_round_trip_preserves_predict():
    result = EmpiricalFitter().fit(chinchilla_observations(BUDGETS, noise=1e-3))
    again = FitResult.model_validate_json(result.model_dump_json())
    assert again == result
    for c in (1e18, 3.3e20, 1e24):
        before, after = result.predict(c), again.predict(c)
        assert after == before
        assert after.params.interval[0] < after.params.value < after.params.interval[1]
        assert after.tokens_per_param.value == pytest.approx(
            result.laws["tokens_per_param"].predict(c), rel=1e-12
        )


def test_r_squared_below_threshold_warns_or_raises_when_strict():
    # Five budgets, three runs each; the best (middle) run's size jumps around with C, so N*
    # follows no power law while the best loss still falls.
    budgets = np.logspace(18, 22, 5)
    n_best = np.array([1e8, 1e7, 1e9, 3e7, 2e8])
    rows = [
        (c, n * f, 2.9 - 0.1 * i + (0.1 if f != 1 else 0.0))
        for i, (c, n) in enumerate(zip(budgets, n_best, strict=True))
        for f in (0.5, 1.0, 2.0)
    ]
    c, n, loss = (np.array(v) for v in zip(*rows, strict=True))
    obs = Observations(
        budget=c,
        params=n,
        tokens=c / (6 * n),
        compute=c,
        loss=loss,
        ids=tuple(f"r{i}" for i in range(len(c))),
    )
    result = EmpiricalFitter().fit(obs)
    assert result.laws["n_opt"].r2 < 0.9
    assert any(w.startswith("n_opt R²") for w in result.warnings)
    assert result.diagnostics["excluded"] == []  # a poor law, but no broken budget
    assert not any(
        w.startswith("n_opt R²") for w in EmpiricalFitter({"min_r_squared": 0.0}).fit(obs).warnings
    )
    with pytest.raises(FitError, match="n_opt R²"):
        EmpiricalFitter({"strict": True}).fit(obs)


def test_optimum_at_the_grid_edge_is_flagged():
    budgets = np.logspace(18, 22, 5)
    shift = {budgets[1]: 8.0, budgets[3]: 1 / 8}  # grids far above / below the optimum

    def centre(c):
        return true_n_opt(c) * shift.get(c, 1.0)

    result = EmpiricalFitter().fit(
        chinchilla_observations(budgets, np.geomspace(0.5, 2.0, 5), centre=centre)
    )
    flags = [o.flags for o in result.optima]
    assert flags == [[], [EDGE_FLAG], [], [EDGE_FLAG], []]
    assert result.diagnostics["edge_budgets"] == [budgets[1], budgets[3]]
    assert any("1e+19" in w and "smallest" in w and "below" in w for w in result.warnings)
    assert any("1e+21" in w and "largest" in w and "above" in w for w in result.warnings)
    low = result.optima[1]
    assert low.params.value == pytest.approx(true_n_opt(budgets[1]) * 8 * 0.5, rel=1e-12)


def test_budget_with_few_runs_is_flagged():
    obs = chinchilla_observations(BUDGETS)
    keep = ~((obs.budget == BUDGETS[2]) & (obs.params < guess_centre(BUDGETS[2]) * 0.9))
    keep &= ~((obs.budget == BUDGETS[2]) & (obs.params > guess_centre(BUDGETS[2]) * 1.9))
    result = EmpiricalFitter().fit(subset(obs, keep))
    opt = result.optima[2]
    assert opt.n_runs == 2 and FEW_RUNS_FLAG in opt.flags
    assert any("has 2 run(s)" in w for w in result.warnings)
    assert all(FEW_RUNS_FLAG not in o.flags for i, o in enumerate(result.optima) if i != 2)


def test_non_monotonic_budget_is_excluded_when_enforced():
    obs = chinchilla_observations(BUDGETS)
    broken = np.where(obs.budget == BUDGETS[3], obs.loss + 0.5, obs.loss)
    bad = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens,
        compute=obs.compute,
        loss=broken,
        ids=obs.ids,
    )
    result = EmpiricalFitter().fit(bad)
    assert result.optima[3].flags == [EXCLUDED_FLAG]
    assert result.diagnostics["excluded"] == [BUDGETS[3]]
    assert result.diagnostics["budgets_used"] == [c for c in BUDGETS if c != BUDGETS[3]]
    named = budget_for_message(BUDGETS[3])
    assert named == "2.51189e+20"
    assert any(named in w and "excluded" in w for w in result.warnings)
    # The laws are exactly those of the data without the broken budget.
    clean = EmpiricalFitter().fit(subset(obs, obs.budget != BUDGETS[3]))
    for name, law in result.laws.items():
        assert law.exponent == pytest.approx(clean.laws[name].exponent, abs=1e-12)
    assert len(result.diagnostics["residuals"]) == 5

    kept = EmpiricalFitter({"enforce_monotonic": False}).fit(bad)
    assert kept.diagnostics["excluded"] == [] and kept.optima[3].flags == []
    assert kept.laws["loss_opt"].n_points == 6
    assert any(named in w and "kept" in w for w in kept.warnings)


def test_too_few_budgets_left_after_exclusion_is_a_fit_error():
    budgets = BUDGETS[:3]
    obs = chinchilla_observations(budgets)
    broken = np.where(obs.budget == budgets[2], obs.loss + 2.0, obs.loss)
    bad = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens,
        compute=obs.compute,
        loss=broken,
        ids=obs.ids,
    )
    with pytest.raises(FitError, match=r"only 2 of 3 budgets.*enforce_monotonic"):
        EmpiricalFitter().fit(bad)
    assert EmpiricalFitter({"enforce_monotonic": False}).fit(bad).laws["n_opt"].n_points == 3


@pytest.mark.parametrize(("n_budgets", "config"), [(2, {}), (1, {}), (4, {"min_budgets": 5})])
def test_too_few_budgets_is_an_input_error(n_budgets, config):
    obs = chinchilla_observations(BUDGETS[:n_budgets])
    need = config.get("min_budgets", 3)
    with pytest.raises(FitError, match=rf"at least {need} compute budgets.*has {n_budgets}"):
        EmpiricalFitter(config).fit(obs)


def test_no_observations_is_a_fit_error():
    empty = np.array([])
    obs = Observations(budget=empty, params=empty, tokens=empty, compute=empty, loss=empty, ids=())
    with pytest.raises(FitError, match="has 0"):
        EmpiricalFitter().fit(obs)


@pytest.mark.parametrize(
    "config",
    [
        {"bootstrap": 100},  # unknown key
        {"confidence": 1.0},
        {"confidence": 0.0},
        {"min_r_squared": 1.5},
        {"min_budgets": 2},  # two points leave no interval
        {"strict": "sometimes"},
    ],
)
def test_bad_config_is_a_config_error(config):
    with pytest.raises(ConfigError):
        EmpiricalFitter(config)


def test_config_is_frozen_and_named():
    fitter = EmpiricalFitter()
    assert fitter.name == "empirical"
    with pytest.raises(ValidationError):
        fitter.config.confidence = 0.5


def test_registered_through_the_hook_and_entry_point():
    assert EmpiricalFitter in flops_fit_register_fitters()
    assert QuadraticFitter in flops_fit_register_fitters()
    pm = pluggy.PluginManager("flops_fit")
    pm.add_hookspecs(core_hookspecs)
    import flops_fit_fitters

    pm.register(flops_fit_fitters)
    assert pm.hook.flops_fit_register_fitters() == [flops_fit_register_fitters()]
    eps = {ep.name: ep.value for ep in entry_points(group="flops_fit")}
    assert eps.get("fitters") == "flops_fit_fitters"


def test_config_is_the_common_config():
    """Every option of `empirical` is one every fitter shares, declared once."""
    assert issubclass(EmpiricalFitter.Config, CommonConfig)
    assert set(EmpiricalFitter.Config.model_fields) == set(CommonConfig.model_fields)


def test_reports_leave_one_out_and_exponent_sum():
    obs = chinchilla_observations(BUDGETS, noise=1e-3)
    result = EmpiricalFitter().fit(obs)
    n_star = [o.params.value for o in result.optima]
    d_star = [o.tokens.value for o in result.optima]
    assert result.diagnostics["leave_one_out"] == leave_one_out(BUDGETS, n_star, d_star)
    # the optima are runs with C = 6ND, so N*·D* = C/6 and the exponents add up to 1
    assert result.diagnostics["exponent_sum"] == pytest.approx(1.0, abs=1e-9)
    assert "leave_one_out" not in EmpiricalFitter({"leave_one_out": False}).fit(obs).diagnostics


def test_leave_one_out_is_over_the_budgets_used():
    obs = chinchilla_observations(BUDGETS)
    broken = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens,
        compute=obs.compute,
        loss=np.where(obs.budget == BUDGETS[3], obs.loss + 0.5, obs.loss),
        ids=obs.ids,
    )
    loo = EmpiricalFitter().fit(broken).diagnostics["leave_one_out"]
    assert loo["budgets"] == [c for c in BUDGETS if c != BUDGETS[3]]
    assert len(loo["n_opt"]["errors"]) == 5


def test_warns_when_the_exponents_do_not_add_up_to_one():
    """Tokens recorded as 1.5x at 1e20 growing like C^0.1 (as a wrong tokens column would):
    N*·D* is no longer proportional to C, and the fit says so."""
    obs = chinchilla_observations(BUDGETS)
    skewed = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens * 1.5 * (obs.budget / 1e20) ** 0.1,
        compute=obs.compute,
        loss=obs.loss,
        ids=obs.ids,
    )
    result = EmpiricalFitter().fit(skewed)
    assert result.diagnostics["exponent_sum"] == pytest.approx(1.1, abs=1e-9)
    assert any("add up to 1.1000" in w for w in result.warnings)
    assert not any(
        "add up to" in w for w in EmpiricalFitter({"exponent_tolerance": 0.2}).fit(skewed).warnings
    )


def test_warns_when_the_exponent_is_barely_identified():
    # Three budgets a decade apart whose best sizes zigzag: a wide N* interval.
    budgets = np.array([1e18, 1e19, 1e20])
    shift = {1e19: 2.5}

    def centre(c):
        return true_n_opt(c) * shift.get(c, 1.0)

    result = EmpiricalFitter().fit(chinchilla_observations(budgets, COARSE, centre=centre))
    lo, hi = result.laws["n_opt"].exponent_interval
    assert (hi - lo) / 2 > 0.1
    assert any(w.startswith("n_opt exponent") and "barely" in w for w in result.warnings)


def test_observation_warnings_are_copied_first():
    obs = chinchilla_observations(BUDGETS)
    noted = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens,
        compute=obs.compute,
        loss=obs.loss,
        ids=obs.ids,
        warnings=("column N derived as C / (6 D)",),
    )
    assert EmpiricalFitter().fit(noted).warnings[0] == "column N derived as C / (6 D)"
