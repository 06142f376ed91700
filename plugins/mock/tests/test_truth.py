"""The noise-free truth other packages' tests compare against must itself be right."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flops_fit_mock import (
    MockConfig,
    optimal_coefficient,
    optimal_exponents,
    optimal_laws,
    optimal_loss,
    optimal_params,
    optimal_tokens,
    true_loss,
)

CONFIGS = [
    MockConfig(),
    MockConfig(E=2.0, A=50.0, B=3000.0, alpha=0.5, beta=0.2),
    MockConfig(E=0.0, A=1000.0, B=20.0, alpha=0.25, beta=0.45),
]
BUDGETS = [1e15, 1e18, 1e21, 1e24]


def _argmin_params(config: MockConfig, compute: float) -> float:
    """N minimising true_loss along C = 6 N D, by golden-section search over ln N.

    Brackets the whole feasible line (from N = 1 to D = 1) and uses nothing but `true_loss`,
    so it checks the closed form instead of restating it. L is convex in ln N on that line.
    """
    lo, hi = 0.0, math.log(compute / 6.0)
    invphi = (math.sqrt(5.0) - 1.0) / 2.0

    def f(x: float) -> float:
        n = math.exp(x)
        return true_loss(config, n, compute / (6.0 * n))

    a, b = hi - invphi * (hi - lo), lo + invphi * (hi - lo)
    fa, fb = f(a), f(b)
    while hi - lo > 1e-10:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - invphi * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + invphi * (hi - lo)
            fb = f(b)
    return math.exp((lo + hi) / 2.0)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("compute", BUDGETS)
def test_closed_form_optimum_matches_numerical_argmin(config, compute):
    n_star = optimal_params(config, compute)
    d_star = optimal_tokens(config, compute)
    assert 6.0 * n_star * d_star == pytest.approx(compute, rel=1e-12)
    numeric = _argmin_params(config, compute)
    assert n_star == pytest.approx(numeric, rel=1e-6)
    assert d_star == pytest.approx(compute / (6.0 * numeric), rel=1e-6)
    best = optimal_loss(config, compute)
    assert best == true_loss(config, n_star, d_star)
    for factor in (0.9, 1.1):  # any other split of the same compute is worse
        assert true_loss(config, n_star * factor, d_star / factor) > best


@pytest.mark.parametrize("config", CONFIGS)
def test_exponents_and_coefficient_follow_the_formulas(config):
    a, b = optimal_exponents(config)
    s = config.alpha + config.beta
    assert (a, b) == (config.beta / s, config.alpha / s)
    assert a + b == pytest.approx(1.0, rel=1e-15)
    g = optimal_coefficient(config)
    assert g == pytest.approx(
        (config.alpha * config.A / (config.beta * config.B)) ** (1 / s), rel=1e-15
    )


@pytest.mark.parametrize("config", CONFIGS)
def test_optimal_laws_reproduce_the_helpers(config):
    laws = optimal_laws(config)
    c = np.array(BUDGETS)
    k, e = laws["n_opt"]
    np.testing.assert_allclose(k * c**e, optimal_params(config, c), rtol=1e-12)
    k, e = laws["d_opt"]
    np.testing.assert_allclose(k * c**e, optimal_tokens(config, c), rtol=1e-12)
    k, e = laws["reducible_loss_opt"]
    np.testing.assert_allclose(k * c**e, optimal_loss(config, c) - config.E, rtol=1e-10)
    assert e == pytest.approx(-config.alpha * config.beta / (config.alpha + config.beta))


def test_chinchilla_defaults_give_the_published_allocation():
    """Approach 3's rounded law puts N* near C**0.45 (a = 0.28 / 0.62), D* near C**0.55."""
    a, b = optimal_exponents(MockConfig())
    assert a == pytest.approx(0.4516, abs=1e-4) and b == pytest.approx(0.5484, abs=1e-4)
    # b > a: the compute-optimal tokens per parameter grow with the budget
    c = np.array(BUDGETS)
    ratio = optimal_tokens(MockConfig(), c) / optimal_params(MockConfig(), c)
    assert np.all(np.diff(ratio) > 0)


def test_true_loss_broadcasts_and_scalars_are_floats():
    cfg = MockConfig()
    n = np.array([1e7, 1e8, 1e9])
    d = np.array([[1e9], [1e10]])
    grid = true_loss(cfg, n, d)
    assert isinstance(grid, np.ndarray) and grid.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            scalar = true_loss(cfg, n[j], d[i, 0])
            assert isinstance(scalar, float)
            assert grid[i, j] == pytest.approx(scalar, rel=1e-15)
    assert np.all(np.diff(grid, axis=0) < 0) and np.all(np.diff(grid, axis=1) < 0)
    assert np.all(grid > cfg.E)
    assert isinstance(optimal_params(cfg, 1e20), float)
    assert optimal_params(cfg, np.array([1e20])).shape == (1,)
