"""The built-in executors pass the executor contract, and the pipeline resumes by id."""

from __future__ import annotations

import pytest

from flops_fit_core.executors import ProcessExecutor, SerialExecutor
from flops_fit_core.testing import ExecutorContract


class TestSerialExecutor(ExecutorContract):
    @pytest.fixture
    def plugin(self):
        return SerialExecutor


class TestProcessExecutor(ExecutorContract):
    @pytest.fixture
    def plugin(self):
        return ProcessExecutor

    @pytest.fixture
    def plugin_config(self):
        return {"workers": 2}


def test_process_executor_really_uses_other_processes(tmp_path):
    import os

    from flops_fit_core.testing import EchoTrainer, tiny_specs

    devices = []
    ProcessExecutor({"workers": 2}).map(
        EchoTrainer(), tiny_specs(4), lambda r: devices.append(r.device), run_dir=tmp_path
    )
    assert len(devices) == 4
    assert f"pid-{os.getpid()}" not in devices
