"""Both plotters pass the plotter contract every plotter must pass."""

from __future__ import annotations

import pytest

from flops_fit_core.testing import PlotterContract
from flops_fit_plotters import IsoFlopPlotter, ScalingPlotter


class TestIsoFlopPlotterContract(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return IsoFlopPlotter


class TestScalingPlotterContract(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return ScalingPlotter

    @pytest.fixture
    def plugin_config(self):
        return {"formats": ["svg"], "dpi": 72}
