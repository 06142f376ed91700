"""The example's classes pass the contracts every flops-fit trainer and plotter must pass.

The trainer's contract runs for real: each check starts `python -m flops_fit_example.toy_train`
as a subprocess, as a study would.
"""

from __future__ import annotations

import pytest
from flops_fit_core.testing import PlotterContract, TrainerContract

from flops_fit_example.command import CommandTrainer
from flops_fit_example.plotter import TokensPerParamPlotter


class DeterministicCommandTrainer(CommandTrainer):
    """`command` running the stand-in program, which is deterministic for a seed and run id:
    claimed here, so the contract checks it (the same loss again, and after a cancel)."""

    deterministic = True


class TestCommandTrainer(TrainerContract):
    @pytest.fixture
    def plugin(self):
        return DeterministicCommandTrainer

    @pytest.fixture
    def plugin_config(self):
        return {}  # the default command: the stand-in program


class TestTokensPerParamPlotter(PlotterContract):
    @pytest.fixture
    def plugin(self):
        return TokensPerParamPlotter

    @pytest.fixture
    def plugin_config(self):
        return {"formats": ["png", "svg"], "dpi": 72, "targets": [1e24]}
