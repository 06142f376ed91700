"""The fitters of this package pass the fitter contract every fitter must pass."""

from __future__ import annotations

import pytest

from flops_fit_core.testing import FitterContract
from flops_fit_fitters import EmpiricalFitter, QuadraticFitter, RobustFitter


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
