"""Benchmarks are opt-in: `uv run pytest tests/benchmarks -m benchmark -s`.

Every test here is marked `benchmark`, which the default run deselects.
"""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "benchmarks" in str(item.path):
            item.add_marker(pytest.mark.benchmark)
