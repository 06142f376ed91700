"""The `local` trainer passes the trainer contract every trainer must pass."""

from __future__ import annotations

import pytest

from flops_fit_core.testing import TrainerContract
from flops_fit_torch import LocalTrainer


class TestLocalTrainerContract(TrainerContract):
    @pytest.fixture
    def plugin(self):
        return LocalTrainer

    @pytest.fixture
    def plugin_config(self, local_config):
        return local_config

    @pytest.fixture
    def spec(self, make_spec):
        return make_spec(steps=8)
