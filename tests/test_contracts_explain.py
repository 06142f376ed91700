"""The contract suites fail deliberately broken plugins, and say what is wrong with each.

A plugin author's first contact with a contract is often a failure: it must name the problem
(a 10x FLOP count, a wrong D* exponent, a pyplot figure left open), not end in a bare
`AssertionError`. The broken plugins run in a pytest subprocess, as in an author's own suite.
"""

from __future__ import annotations

import re

pytest_plugins = ["pytester"]

BROKEN = '''
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from flops_fit_core import Plotter, PluginConfig
from flops_fit_core.testing import FitterContract, PlotterContract, TrainerContract
from flops_fit_fitters import EmpiricalFitter
from flops_fit_mock import MockTrainer


class TenfoldTrainer(MockTrainer):
    """Counts ten times the FLOPs it trained."""

    name = "tenfold"

    def train(self, spec, context):
        result = super().train(spec, context)
        return result.model_copy(update={"flops_exact": 10 * result.flops_exact})


class SteepDataFitter(EmpiricalFitter):
    """Gets N* right and reports a D* exponent of 0.9."""

    name = "steep-data"

    def fit(self, observations):
        fit = super().fit(observations)
        law = fit.laws["d_opt"].model_copy(update={"exponent": 0.9, "exponent_interval": None})
        return fit.model_copy(update={"laws": {**fit.laws, "d_opt": law}})


class OpenFigurePlotter(Plotter):
    """Draws with pyplot and never closes its figure."""

    name = "open-figure"

    class Config(PluginConfig):
        formats: tuple[str, ...] = ("png",)

    def plot(self, observations, fit, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        fig = plt.figure()
        fig.gca().plot(observations.compute, observations.loss)
        path = out_dir / "open-figure.png"
        fig.savefig(path)
        return [path]


class TestTenfold(TrainerContract):
    @pytest.fixture
    def plugin(self):
        return TenfoldTrainer

    @pytest.fixture
    def plugin_config(self):
        return {"curve_points": 5}  # it looks for a cancel at each point


class TestSteepData(FitterContract):
    @pytest.fixture
    def plugin(self):
        return SteepDataFitter


class TestOpenFigure(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return OpenFigurePlotter
'''


def _failures(output: str) -> dict[str, str]:
    """test name -> the `E ...` lines of its failure."""
    names = re.findall(r"\n_{5,} (\S+) _{5,}\n", output)
    blocks = re.split(r"\n_{5,} \S+ _{5,}\n", output)[1:]
    return {
        name: "\n".join(line for line in block.splitlines() if line.startswith("E "))
        for name, block in zip(names, blocks, strict=True)
    }


def test_broken_plugins_fail_their_contracts_with_messages_that_name_the_problem(pytester):
    pytester.makepyfile(test_broken=BROKEN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--tb=short")
    failures = _failures(result.stdout.str())
    failed = set(failures)
    assert failed == {
        "TestTenfold.test_trains_the_planned_tokens_and_counts_flops",
        "TestSteepData.test_recovers_the_data_exponent_within_its_interval",
        "TestOpenFigure.test_leaves_no_pyplot_figure_open",
    }, result.stdout.str()

    flops = failures["TestTenfold.test_trains_the_planned_tokens_and_counts_flops"]
    assert "flops_exact" in flops and "(10x;" in flops, flops
    steep = failures["TestSteepData.test_recovers_the_data_exponent_within_its_interval"]
    assert "d_opt exponent is 0.9000" in steep and "true one 0.5484" in steep, steep
    left = failures["TestOpenFigure.test_leaves_no_pyplot_figure_open"]
    assert "left 1 pyplot figure(s) open" in left, left
    # Everything else about these plugins is right, and the suites say so.
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 3 and outcomes["passed"] >= 20, outcomes
