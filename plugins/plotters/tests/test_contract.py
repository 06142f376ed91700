"""Every plotter passes the plotter contract every plotter must pass."""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_core import (
    FitResult,
    Observations,
    PlanRound,
    PlanStop,
    StudyOutcome,
    SweepPlan,
)
from flops_fit_core.testing import (
    PlotterContract,
    isoflop_observations,
    round_outcome,
    tiny_specs,
    truth_fit,
)
from flops_fit_plotters import (
    CurvesPlotter,
    EnvelopePlotter,
    FrontierPlotter,
    IsoFlopPlotter,
    ParametricPlotter,
    ReportPlotter,
    ResidualsPlotter,
    RoundsPlotter,
    ScalingPlotter,
)


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


class TestFrontierPlotterContract(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return FrontierPlotter

    @pytest.fixture
    def plugin_config(self):
        return {"targets": [1e24]}


class TestParametricPlotterContract(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return ParametricPlotter


class TestResidualsPlotterContract(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return ResidualsPlotter


class TestCurvesPlotterContract(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return CurvesPlotter

    @pytest.fixture
    def observations(self) -> Observations:
        """The contract's runs, each with a loss curve falling to its final loss."""
        base = isoflop_observations()
        curves = tuple(
            [(float(d) * f, float(loss) * (1 + 0.5 * (1 - f))) for f in np.geomspace(0.05, 1, 6)]
            for d, loss in zip(base.tokens, base.loss, strict=True)
        )
        return Observations(
            budget=base.budget,
            params=base.params,
            tokens=base.tokens,
            compute=base.compute,
            loss=base.loss,
            ids=base.ids,
            conventions=base.conventions,
            source=base.source,
            curves=curves,
        )


class TestReportPlotterContract(PlotterContract):
    follows_formats = False  # one HTML page, whatever the figure formats

    @pytest.fixture
    def plugin(self):
        return ReportPlotter

    @pytest.fixture
    def fit(self) -> FitResult:
        """Without the parametric law: fewer figures to draw three times (test_report.py
        checks a report with every figure)."""
        return truth_fit().model_copy(update={"parametric": None})

    @pytest.fixture
    def plugin_config(self):
        return {"targets": [1e24]}


class TestRoundsPlotterContract(PlotterContract):
    needs_a_study = True  # the rounds are the plan's

    @pytest.fixture
    def plugin(self):
        return RoundsPlotter

    @pytest.fixture
    def outcome(self) -> StudyOutcome:
        """Six runs planned in two rounds, then stopped, trained on the synthetic law."""
        specs = tiny_specs(6, budgets=(1e12, 1e12, 1e13, 1e13, 1e14, 1e14))
        ids = [s.id for s in specs]
        plan = SweepPlan(
            planner="adaptive",
            config={"target": "n_exponent", "target_width": 0.1},
            experiments=specs,
            rounds=[
                PlanRound(index=1, experiments=ids[:4], note="first"),
                PlanRound(
                    index=2,
                    experiments=ids[4:],
                    note="more",
                    width=0.3,
                    compute=4e12,
                    predicted_width=0.12,
                ),
            ],
            stop=PlanStop(note="done", reached=True, width=0.09, compute=6e12),
        )
        return round_outcome(plan)


class TestEnvelopePlotterContract(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return EnvelopePlotter

    @pytest.fixture
    def observations(self) -> Observations:
        return isoflop_observations(curve_points=12)

    @pytest.fixture
    def fit(self, frontier_fit) -> FitResult:
        return frontier_fit()
