"""The fitters of this package pass the fitter contract every fitter must pass."""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_core.testing import FitterContract, isoflop_observations
from flops_fit_fitters import EmpiricalFitter, EnvelopeFitter, QuadraticFitter, RobustFitter


class TestEmpiricalFitterContract(FitterContract):
    @pytest.fixture
    def plugin(self):
        return EmpiricalFitter


class TestQuadratic(FitterContract):
    @pytest.fixture
    def plugin(self):
        return QuadraticFitter


class TestRobust(FitterContract):
    @pytest.fixture
    def plugin(self):
        return RobustFitter


class TestEnvelopeChinchilla(FitterContract):
    """The default method reads curves: the contract's grid with the law along each run. Its
    frontier reaches 1.3 decades below the smallest budget (the curves' early checkpoints),
    where a pure power law in C misses the curved L*(C) by 6%: the floor E is fitted."""

    @pytest.fixture
    def plugin(self):
        return EnvelopeFitter

    @pytest.fixture
    def plugin_config(self):
        return {"loss_floor": True}

    @pytest.fixture
    def observations(self):
        return isoflop_observations(
            budgets=np.geomspace(1e18, 1e22, 6), sizes_per_budget=15, noise=0.003, curve_points=40
        )


class TestEnvelopePareto(FitterContract):
    """pareto and hull read final losses alone: the contract's own data."""

    @pytest.fixture
    def plugin(self):
        return EnvelopeFitter

    @pytest.fixture
    def plugin_config(self):
        return {"method": "pareto"}


class TestEnvelopeHull(TestEnvelopePareto):
    @pytest.fixture
    def plugin_config(self):
        return {"method": "hull"}
