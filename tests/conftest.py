"""Shared fixtures for the core tests."""

from __future__ import annotations

import pytest

from flops_fit_core.plugins import reset_host


@pytest.fixture(autouse=True)
def _fresh_plugin_host(monkeypatch):
    """Each test sees freshly loaded plugins (FLOPS_FIT_DISABLE_PLUGINS may differ)."""
    monkeypatch.delenv("FLOPS_FIT_DISABLE_PLUGINS", raising=False)
    reset_host()
    yield
    reset_host()


#: The test files that take longest (seconds of one measured default run, 2 cores): they go
#: first, so the two workers of the default run (a whole file each) end together instead of
#: one finishing a long file alone. Only the order changes; a file missing here runs after.
SLOW_FILES = {
    "tests/test_local_study.py": 92,
    "plugins/slurm/tests/test_slurm_executor.py": 58,
    "plugins/api/tests/test_server.py": 55,
    "tests/test_report_study.py": 52,
    "plugins/api/tests/test_against_server.py": 42,
    "tests/test_documented_examples.py": 48,
    "tests/test_adaptive_study.py": 30,
    "tests/test_envelope_study.py": 20,
    "plugins/ray/tests/test_ray_executor.py": 39,
    "plugins/plotters/tests/test_contract.py": 32,
    "plugins/torch/tests/test_trainer.py": 32,
    "plugins/torch/tests/test_compile.py": 30,
    "plugins/torch/tests/test_bench.py": 15,
    "plugins/torch/tests/test_packing.py": 12,
}


def pytest_collection_modifyitems(config, items):
    def weight(item) -> float:
        path = item.path.relative_to(config.rootpath).as_posix()
        return -SLOW_FILES.get(path, 0)

    items.sort(key=weight)  # stable: within a file, and among the rest, the order stays
