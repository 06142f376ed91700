"""Benchmarks are opt-in: `uv run pytest tests/benchmarks -m benchmark -n 0 -s`.

Every test here is marked `benchmark`, which the default run deselects.
"""

import os

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "benchmarks" in str(item.path):
            item.add_marker(pytest.mark.benchmark)


@pytest.fixture(autouse=True)
def _alone():
    """A benchmark's timings mean nothing with another test running beside it: in a
    pytest-xdist worker (the default run's two), it skips and says how to run it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip(
            "benchmarks run alone: add -n 0 (uv run pytest tests/benchmarks -m benchmark -n 0 -s)"
        )
