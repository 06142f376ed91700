"""The `quadratic` fitter (Chinchilla Approach 2): parabolas per budget, on Llama 3's published
IsoFLOP points, on Chinchilla's law with noise, and on grids built to trip each check."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from flops_fit_core import (
    ConfigError,
    Conventions,
    FitError,
    FitResult,
    Observations,
)
from flops_fit_core.testing.synthetic import CHINCHILLA, isoflop_observations
from flops_fit_fitters import QuadraticConfig, QuadraticFitter, flops_fit_register_fitters
from flops_fit_fitters.flags import (
    EXCLUDED_FLAG,
    FEW_SIZES_FLAG,
    NOT_CONVEX_FLAG,
    OFF_CENTRE_FLAG,
    OUTSIDE_FLAG,
)
from flops_fit_fitters.parabola import fit_parabola
from flops_fit_fitters.powerlaw import fit_power_law
from flops_fit_fitters.quadratic import CENTRE_BAND

LLAMA3 = Path(__file__).parent / "data" / "llama3" / "isoflops_points.csv"
BUDGETS = np.geomspace(1e18, 1e22, 5)
A_TRUE = CHINCHILLA.a


def grid_observations(
    budgets=BUDGETS,
    *,
    sizes: int = 7,
    span: float = 8.0,
    shift: dict[float, float] | None = None,
    noise: float = 0.0,
    seed: int = 0,
    loss=None,
) -> Observations:
    """Per budget N = N*(C) * shift[C] * span^[-1..1], D = C / (6N), loss from Chinchilla's law
    (or `loss(c, n, d)`) times lognormal noise."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    rows = []
    for c in budgets:
        for n in CHINCHILLA.n_opt(c) * shift.get(c, 1.0) * span ** np.linspace(-1, 1, sizes):
            d = c / (6 * n)
            value = CHINCHILLA.loss(n, d) if loss is None else loss(c, n, d)
            rows.append((c, n, d, value * math.exp(noise * rng.standard_normal())))
    c, n, d, values = (np.array(col) for col in zip(*rows, strict=True))
    return Observations(
        budget=c,
        params=n,
        tokens=d,
        compute=c,
        loss=values,
        ids=tuple(f"r{i}" for i in range(c.size)),
        conventions=Conventions(flops="6n"),
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


# --- the parabola --------------------------------------------------------------------------


def test_an_exact_parabola_gives_its_vertex_and_minimum():
    x = np.log(np.geomspace(1e8, 1e10, 9))
    vertex = math.log(3e9)
    p = fit_parabola(x, 2.5 + 0.04 * (x - vertex) ** 2)
    assert p.vertex == pytest.approx(vertex, abs=1e-9)
    assert p.minimum == pytest.approx(2.5, abs=1e-12)
    assert p.curvature == pytest.approx(0.04, rel=1e-9)
    assert p.position == pytest.approx((vertex - x[0]) / (x[-1] - x[0]), abs=1e-9)
    assert p.ssr < 1e-20 and p.dof == 6
    assert p.vertex_stderr() < 1e-6


def test_three_sizes_leave_no_standard_error():
    p = fit_parabola(np.array([0.0, 1.0, 2.0]), np.array([3.0, 2.0, 2.5]))
    assert p.dof == 0 and p.covariance is None
    assert p.vertex_stderr() is None and p.minimum_stderr() is None
    with pytest.raises(ValueError, match="3 distinct"):
        fit_parabola(np.array([0.0, 0.0, 1.0, 1.0]), np.array([3.0, 2.9, 2.0, 2.1]))


def test_delta_method_intervals_cover_the_vertex_and_minimum_at_their_level():
    """400 noisy 9-point parabolas: the 95% t intervals of the vertex and of the minimum cover
    the truth about 95% of the time (0.92-0.98 is about ±2.7 binomial standard errors)."""
    rng = np.random.default_rng(0)
    x = np.linspace(-2.0, 2.0, 9)
    truth_vertex, truth_min = 0.3, 2.0
    clean = truth_min + 0.05 * (x - truth_vertex) ** 2
    t = stats.t.ppf(0.975, x.size - 3)
    hits_vertex = hits_min = 0
    for _ in range(400):
        p = fit_parabola(x, clean + rng.normal(0.0, 0.01, x.size))
        hits_vertex += abs(p.vertex - truth_vertex) <= t * p.vertex_stderr()
        hits_min += abs(p.minimum - truth_min) <= t * p.minimum_stderr()
    assert 0.92 <= hits_vertex / 400 <= 0.98
    assert 0.92 <= hits_min / 400 <= 0.98


def test_an_unidentified_vertex_keeps_a_finite_interval():
    """A nearly flat parabola: the vertex's error in ln N is in the hundreds. Its interval is
    clipped to finite numbers, so fit.json can hold it."""
    u = np.array([-1.5, -0.5, 0.5, 1.5])
    # a curvature of 1e-4 under residuals 1000x larger (a pattern no parabola can absorb)
    p = fit_parabola(20.0 + u, 2.0 + 1e-4 * u**2 + 0.1 * np.array([-1.0, 3.0, -3.0, 1.0]))
    assert p.curvature > 0 and p.vertex_stderr() > 100
    estimate = QuadraticFitter()._log_estimate(p)
    lo, hi = estimate.interval
    assert 0.0 < lo < estimate.value < hi < math.inf


# --- the fitter on data with a known answer ------------------------------------------------


def test_optima_are_parabola_vertices_and_laws_are_least_squares_through_them():
    obs = grid_observations(noise=0.005, seed=1)
    result = QuadraticFitter().fit(obs)
    objective = 0.0
    t = stats.t.ppf(0.975, 7 - 3)
    for opt, (c, rows) in zip(result.optima, obs.groups(), strict=True):
        assert opt.budget == c and opt.n_runs == 7 and opt.flags == []
        ln_n, ln_d, loss = np.log(obs.params[rows]), np.log(obs.tokens[rows]), obs.loss[rows]
        (c2, c1, c0), cov = np.polyfit(ln_n, loss, 2, cov=True)
        vertex = -c1 / (2 * c2)
        assert math.log(opt.params.value) == pytest.approx(vertex, abs=1e-9)
        assert opt.loss.value == pytest.approx(c0 - c1 * c1 / (4 * c2), abs=1e-12)
        d2, d1, _ = np.polyfit(ln_d, loss, 2)
        assert math.log(opt.tokens.value) == pytest.approx(-d1 / (2 * d2), abs=1e-9)
        # delta method on numpy's covariance of (c2, c1, c0), uncentred: same answer
        grad = np.array([c1 / (2 * c2 * c2), -1 / (2 * c2), 0.0])
        se = math.sqrt(grad @ cov @ grad)
        assert opt.params.stderr == pytest.approx(opt.params.value * se, rel=1e-6)
        lo, hi = opt.params.interval
        assert (math.log(lo), math.log(hi)) == pytest.approx(
            (vertex - t * se, vertex + t * se), abs=1e-6
        )
        resid = loss - np.polyval([c2, c1, c0], ln_n)
        objective += float(resid @ resid)
    assert result.diagnostics["objective"] == pytest.approx(objective, rel=1e-9)
    c = np.array([o.budget for o in result.optima])
    for name, values in [
        ("n_opt", [o.params.value for o in result.optima]),
        ("d_opt", [o.tokens.value for o in result.optima]),
        ("loss_opt", [o.loss.value for o in result.optima]),
    ]:
        assert result.laws[name] == fit_power_law(c, values)
    assert result.warnings == []


def _llama3() -> Observations:
    """Llama 3's IsoFLOP points (tokens, loss per budget); N = C / (6D) under C = 6ND."""
    with open(LLAMA3, newline="") as f:
        rows = list(csv.DictReader(f))
    c = np.array([float(r["compute_budget"]) for r in rows])
    d = np.array([float(r["training_tokens"]) for r in rows])
    return Observations(
        budget=c,
        params=c / (6 * d),
        tokens=d,
        compute=c,
        loss=np.array([float(r["validation_loss"]) for r in rows]),
        ids=tuple(f"llama3-{i}" for i in range(len(rows))),
        conventions=Conventions(flops="6n"),
        source=LLAMA3.name,
    )


def test_reproduces_llama3_approach_2():
    """The published fit: per budget a quadratic of loss in log10 D, vertex = D*, OLS of
    log10 D* on log10 C: b = 0.5368, coefficient 0.2994, D*(3.8e25) = 16.1e12 tokens."""
    result = QuadraticFitter().fit(_llama3())
    assert len(result.optima) == 10 and result.diagnostics["n_budgets_used"] == 10
    d_law = result.laws["d_opt"]
    assert d_law.exponent == pytest.approx(0.5368, abs=0.002)
    assert d_law.coefficient == pytest.approx(0.2994, rel=0.02)
    tokens = result.predict(3.8e25).tokens.value
    assert tokens == pytest.approx(16.1e12, rel=0.02)
    assert result.laws["n_opt"].exponent == pytest.approx(0.4632, abs=0.002)
    assert result.diagnostics["exponent_sum"] == pytest.approx(1.0, abs=1e-9)
    print(f"Llama 3 Approach 2: b = {d_law.exponent:.4f}, D*(3.8e25) = {tokens:.4g} tokens")
    # Every vertex lies in the middle half of its grid: no off-centre flags, no warnings.
    assert result.warnings == []
    positions = [p["vertex_position"] for p in result.diagnostics["parabolas"]]
    assert all(CENTRE_BAND[0] <= p <= CENTRE_BAND[1] for p in positions)


def _synthetic(seed: int, noise: float, span: float) -> FitResult:
    obs = isoflop_observations(
        budgets=BUDGETS, sizes_per_budget=7, span=span, noise=noise, seed=seed
    )
    return QuadraticFitter().fit(obs)


def test_recovers_chinchilla_exponent_from_noisy_grids():
    """5 budgets x 7 sizes over ±8x, 1% loss noise, 20 seeds: the median error of the N*
    exponent is about 0.01, and the 95% interval covers the truth in most seeds."""
    fits = [_synthetic(seed, noise=0.01, span=8.0) for seed in range(20)]
    errors = [abs(f.laws["n_opt"].exponent - A_TRUE) for f in fits]
    median = float(np.median(errors))
    print(f"quadratic, 1% noise, span 8: median |a_hat - a| = {median:.4f} over 20 seeds")
    assert median <= 0.025
    covered = sum(
        f.laws["n_opt"].exponent_interval[0] <= A_TRUE <= f.laws["n_opt"].exponent_interval[1]
        for f in fits
    )
    assert covered >= 17


def test_says_so_when_the_data_cannot_pin_the_exponent():
    """2% noise on grids of only ±4x: the curvature is barely above the noise, the vertices
    scatter, and the fit says so. What holds over 20 seeds (measured: intervals cover the truth
    in 19, twice as wide as at 1% noise over ±8x; 15 seeds warn, 14 of them that the exponent
    is barely identified):"""
    noisy = [_synthetic(seed, noise=0.02, span=4.0) for seed in range(20)]
    clean = [_synthetic(seed, noise=0.01, span=8.0) for seed in range(20)]

    def half_width(fit):
        lo, hi = fit.laws["n_opt"].exponent_interval
        return (hi - lo) / 2

    covered = sum(
        f.laws["n_opt"].exponent_interval[0] <= A_TRUE <= f.laws["n_opt"].exponent_interval[1]
        for f in noisy
    )
    assert covered >= 17
    assert np.median([half_width(f) for f in noisy]) > 2 * np.median([half_width(f) for f in clean])
    warned = [f for f in noisy if f.warnings]
    assert len(warned) >= 12
    barely = [f for f in noisy if any("barely identifies" in w for w in f.warnings)]
    assert len(barely) >= 10
    assert all(half_width(f) > 0.1 for f in barely)
    # and the clean grids raise no such alarm
    assert not any(any("barely identifies" in w for w in f.warnings) for f in clean)


# --- the checks, one budget at a time --------------------------------------------------------


def test_a_budget_with_fewer_than_three_sizes_is_excluded():
    obs = grid_observations(BUDGETS)
    c = BUDGETS[2]
    keep = (obs.budget != c) | (obs.params >= np.sort(obs.params[obs.budget == c])[5])
    result = QuadraticFitter().fit(subset(obs, keep))
    opt = result.optima[2]
    assert opt.n_runs == 2 and opt.flags == [FEW_SIZES_FLAG]
    assert opt.params.interval is None  # the best run, nothing more
    assert opt.loss.value == obs.loss[keep & (obs.budget == c)].min()
    assert result.diagnostics["excluded"] == [c]
    assert result.laws["n_opt"].n_points == 4
    assert any("1e+20 has 2 distinct size(s)" in w and "excluded" in w for w in result.warnings)
    # Three runs on two sizes are no better.
    rows = np.flatnonzero(obs.budget == c)[[2, 3, 3]]
    twice = Observations(
        budget=np.concatenate([obs.budget[obs.budget != c], obs.budget[rows]]),
        params=np.concatenate([obs.params[obs.budget != c], obs.params[rows]]),
        tokens=np.concatenate([obs.tokens[obs.budget != c], obs.tokens[rows]]),
        compute=np.concatenate([obs.compute[obs.budget != c], obs.compute[rows]]),
        loss=np.concatenate([obs.loss[obs.budget != c], obs.loss[rows] * [1.0, 1.0, 1.01]]),
        ids=tuple(f"x{i}" for i in range(int((obs.budget != c).sum()) + 3)),
    )
    assert QuadraticFitter().fit(twice).optima[2].flags == [FEW_SIZES_FLAG]


def test_a_budget_without_curvature_is_excluded():
    c = BUDGETS[1]

    def loss(budget, n, d):  # at 1e19 a hump instead of a valley
        if budget != c:
            return CHINCHILLA.loss(n, d)
        return 3.0 - 0.02 * (math.log(n / CHINCHILLA.n_opt(c))) ** 2

    result = QuadraticFitter().fit(grid_observations(loss=loss))
    assert result.optima[1].flags == [NOT_CONVEX_FLAG]
    assert result.diagnostics["excluded"] == [c]
    assert any("1e+19" in w and "curvature <= 0" in w for w in result.warnings)
    parabola = result.diagnostics["parabolas"][1]
    assert parabola["curvature"] < 0 and parabola["vertex_ln_n"] is None


def test_a_vertex_outside_the_grid_is_excluded():
    # At 1e21 every size is 3-190x too small: loss falls across the whole grid.
    c = BUDGETS[3]
    result = QuadraticFitter().fit(grid_observations(shift={c: 1 / 24}))
    opt = result.optima[3]
    assert opt.flags == [OUTSIDE_FLAG]
    assert opt.params.value == pytest.approx(CHINCHILLA.n_opt(c) / 24 * 8)  # the largest run
    assert result.diagnostics["parabolas"][3]["vertex_position"] > 1
    assert any(
        "1e+21" in w and "above the sampled N range" in w and "larger N" in w
        for w in result.warnings
    )
    assert result.diagnostics["excluded"] == [c]
    # the laws are those of the other four budgets
    clean = QuadraticFitter().fit(subset(grid_observations(), grid_observations().budget != c))
    assert result.laws["n_opt"].exponent == pytest.approx(clean.laws["n_opt"].exponent, abs=1e-12)
    below = QuadraticFitter().fit(grid_observations(shift={c: 24.0}))
    assert below.optima[3].flags == [OUTSIDE_FLAG]
    assert any("below the sampled N range" in w for w in below.warnings)


def test_an_off_centre_vertex_is_flagged_kept_and_biased_towards_the_centre():
    # At 1e20 the grid is centred 4x above the optimum: it sits at ~17% of the ln N range.
    c = BUDGETS[2]
    obs = grid_observations(shift={c: 4.0})
    result = QuadraticFitter().fit(obs)
    opt = result.optima[2]
    assert opt.flags == [OFF_CENTRE_FLAG]
    assert result.diagnostics["off_centre_budgets"] == [c]
    assert result.diagnostics["excluded"] == []  # kept in the laws
    position = result.diagnostics["parabolas"][2]["vertex_position"]
    assert position < CENTRE_BAND[0]
    warning = next(w for w in result.warnings if "1e+20" in w)
    assert "towards the grid centre" in warning and "likely smaller" in warning
    # The bias the warning describes: the vertex lies between the truth and the grid centre.
    truth, centre = math.log(CHINCHILLA.n_opt(c)), math.log(CHINCHILLA.n_opt(c) * 4.0)
    assert truth < math.log(opt.params.value) < centre
    # On the other side, the pull is the other way.
    high = QuadraticFitter().fit(grid_observations(shift={c: 1 / 4.0}))
    assert high.optima[2].flags == [OFF_CENTRE_FLAG]
    assert any("1e+20" in w and "likely larger" in w for w in high.warnings)
    # and within the middle half nothing is said
    assert QuadraticFitter().fit(grid_observations(shift={c: 1.5})).warnings == []


def test_exactly_three_sizes_give_a_vertex_without_an_interval():
    result = QuadraticFitter().fit(grid_observations(sizes=3))
    assert all(o.params.interval is None and o.params.stderr is None for o in result.optima)
    assert all(o.loss.interval is None for o in result.optima)
    assert sum("exactly 3 sizes" in w for w in result.warnings) == 5
    assert result.laws["n_opt"].exponent_interval is not None


def test_non_monotonic_budget_is_excluded_when_enforced():
    obs = grid_observations(noise=0.002)
    broken = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens,
        compute=obs.compute,
        loss=np.where(obs.budget == BUDGETS[3], obs.loss + 0.5, obs.loss),
        ids=obs.ids,
    )
    result = QuadraticFitter().fit(broken)
    assert result.optima[3].flags == [EXCLUDED_FLAG]
    assert result.diagnostics["excluded"] == [BUDGETS[3]]
    assert result.laws["n_opt"].n_points == 4
    # with its interval from the parabola: the exclusion is about the loss, not the vertex
    assert result.optima[3].params.interval is not None
    kept = QuadraticFitter({"enforce_monotonic": False}).fit(broken)
    assert kept.laws["n_opt"].n_points == 5


def test_too_few_usable_budgets_is_a_fit_error():
    obs = grid_observations(BUDGETS[:3], shift={BUDGETS[1]: 1 / 24})
    with pytest.raises(FitError, match=r"only 2 of 3 budgets.*excluded: 1e\+19"):
        QuadraticFitter().fit(obs)


# --- diagnostics, settings, plumbing ---------------------------------------------------------


def test_diagnostics_and_settings_are_recorded():
    obs = grid_observations(noise=0.003, seed=2)
    result = QuadraticFitter().fit(obs)
    diag = result.diagnostics
    assert diag["n_budgets"] == 5 and diag["n_runs"] == 35 and diag["n_budgets_used"] == 5
    assert diag["budgets_used"] == list(BUDGETS)
    n_star = [o.params.value for o in result.optima]
    d_star = [o.tokens.value for o in result.optima]
    loo = diag["leave_one_out"]
    assert len(loo["n_opt"]["errors"]) == 5 and len(loo["d_opt"]["errors"]) == 5
    held_out = np.arange(5) != 0
    law = fit_power_law(BUDGETS[held_out], np.array(n_star)[held_out])
    assert loo["n_opt"]["errors"][0] == pytest.approx(
        math.log(law.predict(BUDGETS[0]) / n_star[0]), abs=1e-9
    )
    assert diag["exponent_sum"] == pytest.approx(
        result.laws["n_opt"].exponent + result.laws["d_opt"].exponent
    )
    # under C = 6ND the D-parabola is the N-parabola mirrored: D* = C / (6 N*) exactly
    np.testing.assert_allclose(d_star, BUDGETS / (6 * np.array(n_star)), rtol=1e-9)
    assert len(diag["parabolas"]) == 5 and all(p["fitted"] for p in diag["parabolas"])
    assert set(diag["r2"]) == {"n_opt", "d_opt", "loss_opt", "tokens_per_param"}
    assert result.settings == QuadraticConfig().model_dump(mode="json")
    assert set(result.settings) >= {
        "confidence",
        "min_r_squared",
        "strict",
        "enforce_monotonic",
        "min_budgets",
        "leave_one_out",
        "exponent_tolerance",
    }
    off = QuadraticFitter({"leave_one_out": False, "confidence": 0.8}).fit(obs)
    assert "leave_one_out" not in off.diagnostics
    assert off.settings["confidence"] == 0.8 and off.laws["n_opt"].level == 0.8
    lo, hi = off.optima[0].params.interval
    lo95, hi95 = result.optima[0].params.interval
    assert lo95 < lo < hi < hi95
    assert "quadratic" in result.report()


def test_warns_when_the_vertices_exponents_do_not_add_up_to_one():
    """N* and D* come from separate parabolas, so nothing forces N*·D* ∝ C: a tokens column
    that grows like C^0.1 too fast (a wrong convention, say) shows up as a + b = 1.1."""
    obs = grid_observations(noise=0.002)
    skewed = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens * (obs.budget / 1e20) ** 0.1,
        compute=obs.compute,
        loss=obs.loss,
        ids=obs.ids,
    )
    result = QuadraticFitter().fit(skewed)
    assert result.diagnostics["exponent_sum"] == pytest.approx(1.1, abs=1e-9)
    assert any("add up to 1.1000" in w for w in result.warnings)
    assert not QuadraticFitter({"exponent_tolerance": 0.2}).fit(skewed).warnings


def test_json_round_trip_preserves_everything():
    result = QuadraticFitter().fit(grid_observations(noise=0.003, shift={BUDGETS[1]: 3.0}))
    again = FitResult.model_validate_json(result.model_dump_json())
    assert again == result
    assert again.predict(1e24) == result.predict(1e24)


def test_observation_warnings_come_first():
    obs = grid_observations()
    noted = Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens,
        compute=obs.compute,
        loss=obs.loss,
        ids=obs.ids,
        warnings=("dropped 2 duplicate rows",),
    )
    assert QuadraticFitter().fit(noted).warnings[0] == "dropped 2 duplicate rows"


@pytest.mark.parametrize(
    "config", [{"degree": 3}, {"confidence": 1.0}, {"min_budgets": 2}, {"exponent_tolerance": -1}]
)
def test_bad_config_is_a_config_error(config):
    with pytest.raises(ConfigError):
        QuadraticFitter(config)


def test_registered_and_exported():
    assert QuadraticFitter.name == "quadratic"
    assert QuadraticFitter in flops_fit_register_fitters()
