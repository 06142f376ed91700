"""The empirical fitter passes the fitter contract every fitter must pass."""

from __future__ import annotations

import pytest

from flops_fit_core.testing import FitterContract
from flops_fit_fitters import EmpiricalFitter


class TestEmpiricalFitterContract(FitterContract):
    @pytest.fixture
    def plugin(self):
        return EmpiricalFitter
