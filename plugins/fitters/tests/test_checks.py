"""The checks shared by the fitters: budget count, monotonicity and R²."""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_core import FitError, PowerLaw
from flops_fit_fitters.checks import (
    check_monotonic,
    check_n_budgets,
    check_r_squared,
    not_decreasing,
    not_increasing,
)

BUDGETS = np.array([1e18, 1e19, 1e20, 1e21, 1e22])


def test_running_extreme_masks():
    # 3.0 is below its predecessor 5.0 but not below 2.0 two budgets earlier: still flagged.
    np.testing.assert_array_equal(
        not_decreasing([4.0, 2.0, 5.0, 3.0, 1.0]), [False, False, True, True, False]
    )
    np.testing.assert_array_equal(
        not_increasing([1.0, 3.0, 3.0, 2.0, 4.0]), [False, False, True, True, False]
    )
    assert not_increasing([]).size == 0 and not not_decreasing([7.0]).any()


def test_check_n_budgets_names_have_and_need():
    check_n_budgets(3, 3, "empirical")
    with pytest.raises(FitError, match=r"at least 4 compute budgets.*has 2") as info:
        check_n_budgets(2, 4, "empirical", "results.jsonl")
    assert str(info.value).startswith("results.jsonl: ")


def test_monotonic_data_passes_silently():
    out = check_monotonic(
        BUDGETS, [1, 2, 3, 4, 5], [5, 6, 7, 8, 9], [3.0, 2.8, 2.6, 2.5, 2.4], enforce=True
    )
    assert out.keep.all() and out.excluded == () and out.warnings == []


def test_loss_violation_excludes_only_when_enforced():
    loss = [3.0, 2.8, 2.9, 2.5, 2.4]
    n = [1, 2, 3, 4, 5]
    enforced = check_monotonic(BUDGETS, n, n, loss, enforce=True)
    np.testing.assert_array_equal(enforced.keep, [True, True, False, True, True])
    assert enforced.excluded == (1e20,)
    assert len(enforced.warnings) == 1 and "1e+20" in enforced.warnings[0]
    assert "excluded" in enforced.warnings[0]
    kept = check_monotonic(BUDGETS, n, n, loss, enforce=False)
    assert kept.keep.all() and kept.excluded == ()
    assert "kept" in kept.warnings[0] and "1e+20" in kept.warnings[0]


def test_size_violations_warn_but_never_exclude():
    out = check_monotonic(
        BUDGETS, [1, 2, 2, 4, 5], [5, 6, 7, 6.5, 9], [3.0, 2.8, 2.6, 2.5, 2.4], enforce=True
    )
    assert out.keep.all()
    assert any(w.startswith("N*") and "1e+20" in w for w in out.warnings)
    assert any(w.startswith("D*") and "1e+21" in w for w in out.warnings)


def test_size_violations_are_judged_among_kept_budgets():
    # The 1e20 budget is broken (loss up, N* down); once it is excluded, N* grows again.
    out = check_monotonic(
        BUDGETS, [1, 2, 0.5, 4, 5], [5, 6, 7, 8, 9], [3.0, 2.8, 2.9, 2.5, 2.4], enforce=True
    )
    assert out.excluded == (1e20,)
    assert not any(w.startswith("N*") for w in out.warnings)


def test_check_monotonic_rejects_unsorted_budgets():
    with pytest.raises(ValueError, match="ascending"):
        check_monotonic([1e19, 1e18, 1e20], [1, 2, 3], [1, 2, 3], [3, 2, 1], enforce=True)


def _law(r2: float) -> PowerLaw:
    return PowerLaw(coefficient=1.0, exponent=0.5, r2=r2)


def test_r_squared_warns_or_raises():
    laws = {"n_opt": _law(0.5), "d_opt": _law(0.95), "loss_opt": _law(0.99)}
    problems = check_r_squared(laws, 0.9, strict=False)
    assert len(problems) == 1 and problems[0].startswith("n_opt R² = 0.5000")
    assert check_r_squared(laws, 0.4, strict=True) == []
    with pytest.raises(FitError, match="n_opt R²"):
        check_r_squared(laws, 0.9, strict=True)


def test_tokens_per_param_r_squared_is_not_checked():
    laws = {
        "n_opt": _law(0.99),
        "d_opt": _law(0.99),
        "loss_opt": _law(0.99),
        "tokens_per_param": _law(0.1),
    }
    assert check_r_squared(laws, 0.9, strict=True) == []
