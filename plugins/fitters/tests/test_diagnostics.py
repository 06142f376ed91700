"""The law diagnostics every fitter shares: leave-one-out, exponent sum, identification."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flops_fit_core import FitError, PowerLaw
from flops_fit_fitters.config import CommonConfig
from flops_fit_fitters.diagnostics import (
    MAX_EXPONENT_HALF_WIDTH,
    check_exponent_identified,
    check_exponent_sum,
    exponent_sum,
    law_diagnostics,
    leave_one_out,
)
from flops_fit_fitters.powerlaw import fit_power_law

BUDGETS = np.logspace(18, 22, 5)


def test_leave_one_out_of_exact_laws_is_zero():
    n = 0.1 * BUDGETS**0.45
    d = BUDGETS / (6 * n)
    out = leave_one_out(BUDGETS, n, d)
    assert out["budgets"] == list(BUDGETS)
    for name in ("n_opt", "d_opt"):
        np.testing.assert_allclose(out[name]["errors"], 0.0, atol=1e-9)
        assert out[name]["max_abs_error"] < 1e-9
    assert out["max_abs_error"] < 1e-9


def test_leave_one_out_names_the_budget_that_disagrees():
    n = 0.1 * BUDGETS**0.45
    n[2] *= 1.5  # the middle budget's optimum 50% too large
    out = leave_one_out(BUDGETS, n)
    assert "d_opt" not in out
    lc, ln = np.log(BUDGETS), np.log(n)
    for i in range(5):
        rest = np.arange(5) != i
        slope, intercept = np.polyfit(lc[rest], ln[rest], 1)
        expected = intercept + slope * lc[i] - ln[i]  # ln(predicted / observed)
        assert out["n_opt"]["errors"][i] == pytest.approx(expected, abs=1e-9)
    # without it, the others lie on the clean law, which predicts 1/1.5 of its optimum
    assert out["n_opt"]["errors"][2] == pytest.approx(-math.log(1.5), abs=1e-9)
    assert out["n_opt"]["worst_budget"] == BUDGETS[2]
    assert out["n_opt"]["max_abs_error"] == pytest.approx(math.log(1.5), abs=1e-9)
    assert out["max_abs_error"] == out["n_opt"]["max_abs_error"]
    # At the largest budget (an extrapolation when held out) it is measured the same way.
    n = 0.1 * BUDGETS**0.45
    n[4] *= 1.5
    out = leave_one_out(BUDGETS, n)
    assert out["n_opt"]["errors"][4] == pytest.approx(-math.log(1.5), abs=1e-9)


def test_leave_one_out_with_three_budgets_uses_two_point_lines():
    c = BUDGETS[:3]
    n = np.array([1.0, 2.0, 8.0])
    out = leave_one_out(c, n)
    # without the last budget the line through (1e18, 1) and (1e19, 2) predicts 4 at 1e20
    assert out["n_opt"]["errors"][2] == pytest.approx(math.log(4.0 / 8.0), abs=1e-12)
    assert out["n_opt"]["errors"][1] == pytest.approx(math.log(math.sqrt(8.0) / 2.0), abs=1e-12)


def test_leave_one_out_needs_three_budgets():
    out = leave_one_out(BUDGETS[:2], [1.0, 2.0], [3.0, 4.0])
    assert out["n_opt"]["errors"] == [] and out["n_opt"]["max_abs_error"] is None
    assert out["max_abs_error"] is None
    with pytest.raises(ValueError, match="optima"):
        leave_one_out(BUDGETS, [1.0, 2.0])


def test_exponent_sum_warns_only_beyond_the_tolerance():
    assert check_exponent_sum(0.46, 0.54, 0.05) is None
    assert check_exponent_sum(0.46, 0.58, 0.05) is None  # off by 0.04
    warning = check_exponent_sum(0.46, 0.62, 0.05)
    assert warning is not None
    assert "1.0800" in warning and "exponent_tolerance = 0.05" in warning
    assert check_exponent_sum(0.46, 0.62, 0.1) is None
    assert check_exponent_sum(0.40, 0.50, 0.05) is not None  # too small is as wrong
    laws = {
        "n_opt": PowerLaw(coefficient=1, exponent=0.4),
        "d_opt": PowerLaw(coefficient=1, exponent=0.5),
    }
    assert exponent_sum(laws) == pytest.approx(0.9)


def _law_with_half_width(half: float) -> PowerLaw:
    return PowerLaw(coefficient=1.0, exponent=0.5, exponent_interval=(0.5 - half, 0.5 + half))


def test_a_wide_exponent_interval_is_reported_as_barely_identified():
    assert MAX_EXPONENT_HALF_WIDTH == 0.1
    assert check_exponent_identified(_law_with_half_width(0.05)) is None
    assert check_exponent_identified(_law_with_half_width(0.1)) is None
    warning = check_exponent_identified(_law_with_half_width(0.15))
    assert warning is not None and warning.startswith("n_opt exponent 0.5000")
    assert "±0.15" in warning and "wider than ±0.1" in warning
    assert check_exponent_identified(_law_with_half_width(0.15), max_half_width=0.2) is None
    assert check_exponent_identified(PowerLaw(coefficient=1.0, exponent=0.5)) is None


def _laws(n, d, c=BUDGETS):
    return {
        "n_opt": fit_power_law(c, n),
        "d_opt": fit_power_law(c, d),
        "loss_opt": fit_power_law(c, 3.0 * c**-0.05),
    }


def test_law_diagnostics_collects_every_check():
    rng = np.random.default_rng(0)
    n = 0.1 * BUDGETS**0.45 * np.exp(rng.normal(0, 0.02, 5))
    d = 2.0 * BUDGETS**0.55 * np.exp(rng.normal(0, 0.02, 5))
    laws = _laws(n, d)
    diag, warnings = law_diagnostics(laws, BUDGETS, n, d, CommonConfig())
    assert warnings == []
    assert diag["r2"] == {name: law.r2 for name, law in laws.items()}
    assert diag["exponent_sum"] == pytest.approx(laws["n_opt"].exponent + laws["d_opt"].exponent)
    assert diag["leave_one_out"] == leave_one_out(BUDGETS, n, d)
    diag, _ = law_diagnostics(laws, BUDGETS, n, d, CommonConfig(leave_one_out=False))
    assert "leave_one_out" not in diag


def test_law_diagnostics_warns_about_sum_identification_and_r2():
    # D* grows like C^0.65: the exponents add up to 1.1; N* is scattered over three budgets.
    c = BUDGETS[:3]
    n = 0.1 * c**0.45 * np.array([1.0, 1.6, 0.8])
    d = 2.0 * c**0.65
    laws = _laws(n, d, c)
    _, warnings = law_diagnostics(laws, c, n, d, CommonConfig())
    assert any(w.startswith("n_opt R²") for w in warnings)
    assert any("add up to" in w for w in warnings)
    assert any(w.startswith("n_opt exponent") and "barely" in w for w in warnings)
    _, quiet = law_diagnostics(
        laws, c, n, d, CommonConfig(min_r_squared=0.0, exponent_tolerance=0.2)
    )
    assert len(quiet) == 1 and "barely" in quiet[0]
    with pytest.raises(FitError, match="n_opt R²"):
        law_diagnostics(laws, c, n, d, CommonConfig(strict=True))
