"""A fourth budget fitter is a Config and one function on top of `laws.fit_laws`.

`LowestLossFitter` below is the whole of such a fitter (the lowest-loss run per budget, with
no grid-resolution term): it passes the fitter contract every fitter must pass, and its laws
are those of `empirical` less the resolution term, because everything after the optima is the
same skeleton.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from flops_fit_core import FitError, FitResult, Fitter, Observations
from flops_fit_core.testing import FitterContract
from flops_fit_core.testing.synthetic import isoflop_observations
from flops_fit_fitters import EmpiricalFitter
from flops_fit_fitters.config import CommonConfig
from flops_fit_fitters.flags import EXCLUDED_FLAG
from flops_fit_fitters.laws import BudgetOptimum, fit_laws


# --- the fourth fitter: everything from here to the next marker ------------------------------
class LowestLossConfig(CommonConfig):
    """Options of the `lowest-loss` fitter: those every fitter of this package shares."""


class LowestLossFitter(Fitter):
    """Per budget the run with the lowest loss; power laws in log space over the budgets."""

    name: ClassVar[str] = "lowest-loss"
    Config: ClassVar[type] = LowestLossConfig
    config: LowestLossConfig

    def fit(self, observations: Observations) -> FitResult:
        return fit_laws(self, observations, self._lowest_loss)

    @staticmethod
    def _lowest_loss(observations: Observations, budget: float, rows: np.ndarray):
        best = int(rows[int(np.argmin(observations.loss[rows]))])
        return BudgetOptimum.at_run(observations, budget, rows, best)


# --- end of the fourth fitter ----------------------------------------------------------------


class TestLowestLossFitterContract(FitterContract):
    @pytest.fixture
    def plugin(self):
        return LowestLossFitter


def test_the_fourth_fitter_is_short():
    source = Path(__file__).read_text()
    start = source.index("# --- the fourth fitter")
    body = source[start : source.index("# --- end of the fourth fitter")]
    assert len(body.splitlines()) <= 80


def test_the_skeleton_gives_every_budget_fitter_the_same_laws_and_checks():
    """Same optima as `empirical`: the same N* exponent, diagnostics and warnings from the
    shared skeleton; only `empirical`'s resolution term widens its intervals."""
    obs = isoflop_observations(noise=0.02, seed=3)
    mine, empirical = LowestLossFitter().fit(obs), EmpiricalFitter().fit(obs)
    assert [o.params.value for o in mine.optima] == [o.params.value for o in empirical.optima]
    for name, law in mine.laws.items():
        assert law.exponent == pytest.approx(empirical.laws[name].exponent, abs=1e-12)
    assert mine.laws["loss_opt"] == empirical.laws["loss_opt"]  # no resolution term for L*
    lo, hi = mine.laws["n_opt"].exponent_interval
    e_lo, e_hi = empirical.laws["n_opt"].exponent_interval
    assert e_lo < lo < hi < e_hi
    shared = ("n_budgets", "budgets_used", "excluded", "r2", "leave_one_out", "objective")
    assert {k: mine.diagnostics[k] for k in shared} == {k: empirical.diagnostics[k] for k in shared}


def _broken(budgets, at=1e19):
    """Synthetic runs whose budget `at` has losses 30% too high: not below a smaller budget's."""
    obs = isoflop_observations(budgets=budgets, noise=0.001)
    return Observations(
        budget=obs.budget,
        params=obs.params,
        tokens=obs.tokens,
        compute=obs.compute,
        loss=np.where(obs.budget == at, obs.loss * 1.3, obs.loss),
        ids=obs.ids,
    )


def test_the_skeleton_applies_the_monotonicity_rule_and_names_what_it_excluded():
    result = LowestLossFitter().fit(_broken((1e18, 1e19, 1e20, 1e21)))
    assert result.optima[1].flags == [EXCLUDED_FLAG]
    assert result.diagnostics["excluded"] == [1e19] and result.laws["n_opt"].n_points == 3
    assert any("1e+19" in w and "excluded" in w for w in result.warnings)
    with pytest.raises(FitError, match=r"only 2 of 3 budgets.*1e\+19 \(non-monotonic\)"):
        LowestLossFitter().fit(_broken((1e18, 1e19, 1e20)))
    kept = LowestLossFitter({"enforce_monotonic": False}).fit(_broken((1e18, 1e19, 1e20)))
    assert kept.diagnostics["excluded"] == [] and kept.laws["n_opt"].n_points == 3
