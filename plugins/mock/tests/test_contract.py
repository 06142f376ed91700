"""The mock trainer passes the trainer contract every trainer must pass."""

from __future__ import annotations

import pytest

from flops_fit_core.testing import TrainerContract
from flops_fit_mock import MockTrainer


class TestMockTrainerContract(TrainerContract):
    @pytest.fixture
    def plugin(self):
        return MockTrainer

    @pytest.fixture
    def plugin_config(self):
        return {"seed": 3, "noise": 0.01, "curve_points": 5}
