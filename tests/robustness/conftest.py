"""The robustness suites: hundreds of ways to break a promise of docs/index.md, each bounded.

They run as a CI step of their own (`uv run pytest -m robustness tests/robustness`), not in the
default run (every module sets `pytestmark = pytest.mark.robustness`).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mock_study(tmp_path_factory):
    """A finished mock study without figures (its `fits/envelope.json` included): a valid run
    directory for the fuzz suites to copy and break. Read only: each example copies it."""
    from flops_fit_core.cli import main
    from tests.clirunner import mock_study_args

    out = tmp_path_factory.mktemp("fuzz-study") / "run"
    assert main(mock_study_args(out)) == 0
    return out
