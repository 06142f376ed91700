"""The `envelope` figure: the runs' curves in (C, L) and each method's frontier on them."""

from __future__ import annotations

import pytest

from flops_fit_core import NothingToDraw, StudyOutcome
from flops_fit_core.testing import isoflop_observations, truth_fit
from flops_fit_plotters import EnvelopePlotter


def _gids(fig) -> set[str]:
    return {line.get_gid() for ax in fig.axes for line in ax.lines if line.get_gid()}


def test_it_draws_every_run_and_every_method_with_its_exponent(frontier_fit):
    observations = isoflop_observations(curve_points=12)
    fig = EnvelopePlotter().figure(observations, frontier_fit())
    gids = _gids(fig)
    assert {f"curve-{run}" for run in observations.ids} <= gids
    for method in ("chinchilla", "pareto", "hull"):
        assert {f"frontier-{method}", f"size-{method}", f"law-{method}"} <= gids
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "chinchilla: a = 0.452 (the fit's)" in legend and "hull: a = 0.472" in legend


def test_a_study_shows_its_compared_envelope_fit_and_says_why_without_one(frontier_fit):
    observations = isoflop_observations(curve_points=12)
    outcome = StudyOutcome(
        fits=(truth_fit(), frontier_fit(("pareto",))), observations=(observations,) * 2
    )
    assert "frontier-pareto" in _gids(EnvelopePlotter().figure_for(outcome))
    with pytest.raises(NothingToDraw, match="envelope fitter"):
        EnvelopePlotter().figure_for(StudyOutcome.single(observations, truth_fit()))
