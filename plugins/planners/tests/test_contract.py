"""The planners through the core's planner contract: isoflop with the defaults and a variant,
adaptive with its first round and a next round."""

from __future__ import annotations

import pytest

from flops_fit_core.testing import PlannerContract
from flops_fit_planners import AdaptivePlanner, IsoFlopPlanner


class TestIsoFlopPlannerContract(PlannerContract):
    @pytest.fixture
    def plugin(self):
        return IsoFlopPlanner


class TestIsoFlopPlannerContractVariant(PlannerContract):
    """Explicit budgets and prior, non-embedding 6N conventions, a coarse grid."""

    @pytest.fixture
    def plugin(self):
        return IsoFlopPlanner

    @pytest.fixture
    def plugin_config(self):
        return {
            "budgets": [3e17, 1e19],
            "sizes_per_budget": 9,
            "prior_coefficient": 0.1,
            "prior_exponent": 0.5,
            "conventions": {"params": "non_embedding", "flops": "6n"},
            "d_model_multiple": 128,
            "head_options": [2, 6],
            "head_dim": 96,
            "lr_schedule": {"lr_power": 0.3},
        }


class TestAdaptivePlannerContract(PlannerContract):
    """The adaptive planner's first round, and its next round from the contract's outcome."""

    @pytest.fixture
    def plugin(self):
        return AdaptivePlanner

    @pytest.fixture
    def plugin_config(self):
        return {"conventions": {"params": "total", "flops": "6n"}}
