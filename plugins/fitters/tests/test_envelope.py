"""The `envelope` fitter: each method's frontier, which checkpoints it reads, and its intervals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flops_fit_core import ANYTIME, FitError, Observations
from flops_fit_core.testing import CHINCHILLA, isoflop_observations
from flops_fit_fitters import EnvelopeConfig, EnvelopeFitter
from flops_fit_fitters.checkpoints import smooth_curve
from flops_fit_fitters.envelope import extract_frontier

GRID = dict(budgets=np.geomspace(1e18, 1e22, 5), sizes_per_budget=9, noise=0.002)


def fit(observations: Observations, **options):
    return EnvelopeFitter(EnvelopeConfig(**options)).fit(observations)


@pytest.fixture(scope="module")
def curves() -> Observations:
    """An IsoFLOP grid whose runs carry the law along them (every checkpoint a run's end)."""
    return isoflop_observations(**GRID, curve_points=40)


def _runs(table: list[tuple], schedule=None) -> Observations:
    """Observations of runs given as (N, [(tokens, loss), ...]) under C = 6ND."""
    params = np.array([n for n, _ in table], dtype=float)
    tokens = np.array([c[-1][0] for _, c in table], dtype=float)
    return Observations(
        budget=None,
        params=params,
        tokens=tokens,
        compute=6 * params * tokens,
        loss=np.array([c[-1][1] for _, c in table]),
        ids=tuple(f"r{i}" for i in range(len(table))),
        curves=tuple(c for _, c in table),
        schedules=(schedule,) * len(table),
    )


@pytest.mark.parametrize("method", ["chinchilla", "pareto", "hull"])
def test_each_method_recovers_the_true_exponents_within_its_intervals(curves, method):
    result = fit(curves, method=method, loss_floor=True)
    for name, truth in (("n_opt", CHINCHILLA.a), ("d_opt", CHINCHILLA.b)):
        lo, hi = result.laws[name].exponent_interval
        assert lo <= truth <= hi, (name, lo, hi)
    assert result.diagnostics["method"] == method
    assert result.laws["loss_opt"].offset == pytest.approx(CHINCHILLA.E, rel=0.05)


def test_the_methods_agree_and_the_fit_records_every_frontier(curves):
    results = {m: fit(curves, method=m, bootstrap=0) for m in ("chinchilla", "pareto", "hull")}
    exponents = [r.laws["n_opt"].exponent for r in results.values()]
    assert max(exponents) - min(exponents) < 0.02
    frontiers = results["chinchilla"].diagnostics["frontiers"]
    assert set(frontiers) == {"chinchilla", "pareto", "hull"}
    for method, result in results.items():
        assert frontiers[method]["n_exponent"] == pytest.approx(result.laws["n_opt"].exponent)


def test_chinchilla_reads_the_best_run_at_log_spaced_compute(curves):
    front = extract_frontier(curves, EnvelopeConfig(points=300))
    assert front.compute.size <= 300
    assert np.allclose(np.diff(np.log(front.compute)), np.diff(np.log(front.compute))[0])
    # the best run at each C is, within the grid's spacing, the true optimum's size
    error = np.log(front.params / CHINCHILLA.n_opt(front.compute))
    assert np.median(np.abs(error)) < np.log(8) / 8 * 1.5


def test_pareto_keeps_only_undominated_checkpoints_and_hull_only_convex_ones():
    table = [
        (1e6, [(1e7, 4.0), (2e7, 3.0), (4e7, 2.75)]),  # C 6e13, 1.2e14, 2.4e14
        (2e6, [(1e7, 3.5), (2e7, 2.8), (4e7, 2.4)]),  # C 1.2e14, 2.4e14, 4.8e14
    ]
    observations = _runs(table, ANYTIME)
    config = dict(method="pareto", smooth=1, warmup_fraction=0.0)
    front = extract_frontier(observations, EnvelopeConfig(**config))
    # r1's first two checkpoints lose to r0's at the same C; its last beats everything before
    assert front.compute == pytest.approx([6e13, 1.2e14, 2.4e14, 4.8e14])
    assert front.loss == pytest.approx([4.0, 3.0, 2.75, 2.4])
    assert list(front.params) == [1e6, 1e6, 1e6, 2e6]
    assert list(front.tokens) == [1e7, 2e7, 4e7, 4e7]
    # in (ln C, ln L) the slopes are -0.415, -0.126, -0.196: the third point is not convex
    hull = extract_frontier(observations, EnvelopeConfig(**{**config, "method": "hull"}))
    assert hull.loss == pytest.approx([4.0, 3.0, 2.4])


def test_checkpoints_of_one_budget_a_hair_cheaper_do_not_win_by_that():
    """Runs of one budget differ in C by shape rounding: the cheapest checkpoint is not on the
    frontier for being 0.1% cheaper when another has a far lower loss."""
    table = [
        (8e6, [(0.999e8 / 8, 9.0)]),  # C = 5.994e14, a bad loss
        (1e6, [(1e8, 3.0)]),  # C = 6e14
        (2e6, [(1e8, 2.5)]),  # C = 1.2e15
        (4e6, [(1e8, 2.2)]),
    ]
    front = extract_frontier(_runs(table, ANYTIME), EnvelopeConfig(method="pareto"))
    assert 9.0 not in front.loss


def test_mid_schedule_checkpoints_are_dropped_with_a_warning_unless_kept(curves):
    cosine = dataclasses.replace(curves, schedules=("cosine",) * len(curves))
    result = fit(cosine, method="pareto", bootstrap=20)
    assert result.diagnostics["frontier_position_min"] >= 0.85
    warning = next(w for w in result.warnings if "before the last 15% of their runs" in w)
    assert "under cosine" in warning and "keep_mid_schedule" in warning
    kept = fit(cosine, method="pareto", bootstrap=20, keep_mid_schedule=True)
    assert kept.diagnostics["frontier_position_min"] < 0.85
    assert any("kept" in w and "keep_mid_schedule is on" in w for w in kept.warnings)
    # the law along a run (ANYTIME) is read whole, without a word
    anytime = fit(curves, method="pareto", bootstrap=20)
    assert anytime.diagnostics["dropped"]["mid_schedule"] == 0
    assert not any("mid-schedule" in w for w in anytime.warnings)


def test_warmup_checkpoints_are_left_out(curves):
    result = fit(curves, method="pareto", bootstrap=0, warmup_fraction=0.2)
    assert result.diagnostics["frontier_position_min"] >= 0.2
    assert result.diagnostics["dropped"]["warmup"] > 0
    tokens = fit(curves, method="pareto", bootstrap=0, min_tokens=1e9, warmup_fraction=0.0)
    front = tokens.diagnostics["frontier"]
    assert (
        min(c / (6 * n) for c, n in zip(front["compute"], front["params"], strict=True))
        >= 1e9 * 0.999
    )


def test_chinchilla_needs_curves_and_says_so():
    finals = isoflop_observations(**GRID)
    with pytest.raises(FitError, match=r'chinchilla method interpolates .* method = "pareto"'):
        fit(finals)
    assert fit(finals, method="pareto").laws["n_opt"].exponent_interval is not None


def test_too_few_runs_on_the_frontier_is_a_fit_error():
    table = [(1e6, [(1e8, 3.0)]), (2e6, [(1e8, 2.5)]), (1e6, [(3e8, 2.9)])]
    with pytest.raises(FitError, match="min_runs_on_frontier = 3"):
        fit(_runs(table, ANYTIME), method="pareto")


def test_the_interval_comes_from_resampling_runs_and_is_repeatable(curves):
    one = fit(curves, bootstrap=100, seed=3)
    assert one == fit(curves, bootstrap=100, seed=3)
    assert one.diagnostics["bootstrap"] == {"resamples": 100, "failed": 0}
    lo, hi = one.laws["n_opt"].exponent_interval
    assert lo < one.laws["n_opt"].exponent < hi
    # resampling runs, not checkpoints: more checkpoints per run do not narrow the interval
    denser = fit(isoflop_observations(**GRID, curve_points=160), bootstrap=100, seed=3)
    width = hi - lo
    dense_lo, dense_hi = denser.laws["n_opt"].exponent_interval
    assert dense_hi - dense_lo > 0.5 * width
    assert fit(curves, bootstrap=0).laws["n_opt"].exponent_interval is None


def test_leave_one_out_refits_without_each_frontier_run(curves):
    result = fit(curves, bootstrap=0)
    without = result.diagnostics["leave_one_out"]["n_opt_exponent_without"]
    assert set(without) == set(result.diagnostics["frontier_runs"])
    assert all(abs(a - result.laws["n_opt"].exponent) < 0.05 for a in without.values())


def test_smoothing_keeps_a_straight_stretch_and_its_ends_and_averages_noise():
    x = np.log(np.geomspace(1e6, 1e9, 60))
    line = 3.0 - 0.2 * x
    assert np.allclose(smooth_curve(x, line, 10), line)
    noisy = line + np.random.default_rng(0).normal(0, 0.01, x.size)
    smoothed = smooth_curve(x, noisy, 10)
    assert np.std(smoothed - line) < 0.6 * np.std(noisy - line)
    assert np.array_equal(smooth_curve(x, noisy, 1), noisy)


def test_frontier_points_of_the_edge_sizes_are_a_bound_and_left_out():
    """Sizes over only 1/2x-2x of the optimum: below the smallest budget (the curves' early
    checkpoints) the smallest model is the best there is, not the optimum."""
    narrow = isoflop_observations(**{**GRID, "span": 2.0}, curve_points=40)
    result = fit(narrow, bootstrap=0)
    smallest = float(narrow.params.min())
    warning = next(w for w in result.warnings if "edge model sizes" in w)
    assert f"the smallest (N={smallest:.4g})" in warning and "left out of the laws" in warning
    assert smallest not in result.diagnostics["frontier"]["params"]
    kept = fit(narrow, bootstrap=0, keep_edge_sizes=True)
    assert smallest in kept.diagnostics["frontier"]["params"]
    assert any("kept because keep_edge_sizes is on" in w for w in kept.warnings)
    # left out, the ends no longer flatten N*(C)
    assert abs(result.laws["n_opt"].exponent - CHINCHILLA.a) < abs(
        kept.laws["n_opt"].exponent - CHINCHILLA.a
    )


def test_chinchilla_compares_the_single_late_checkpoints_of_one_budget():
    """Cosine runs logged sparsely keep only their final checkpoint; those of one budget end
    within 2% of each other in C (shape rounding), and each run reaches 2% past its end, so at
    each budget the best one is the frontier's point."""
    table = []
    for budget in (1e18, 1e19, 1e20, 1e21):
        for k, scale in enumerate((0.25, 1.0, 4.0)):
            n = float(CHINCHILLA.n_opt(budget)) * scale
            d = budget * (1 + 0.005 * k) / (6 * n)
            curve = [(f * d, float(CHINCHILLA.loss(n, f * d))) for f in (0.1, 0.5, 1.0)]
            table.append((n, curve))
    result = fit(_runs(table, "cosine"), bootstrap=0, min_runs_on_frontier=2)
    diagnostics = result.diagnostics
    assert 0.85 <= diagnostics["frontier_position_min"] <= 1.02  # 2% past its end at most
    assert diagnostics["dropped"]["mid_schedule"] == 24
    # the middle size (the true optimum) of every budget, and nothing else
    assert diagnostics["frontier_runs"] == ["r1", "r4", "r7", "r10"]
