"""The robustness suites: hundreds of ways to break a promise of docs/index.md, each bounded.

They run as a CI step of their own (`uv run pytest -m robustness tests/robustness`), not in the
default run (every module sets `pytestmark = pytest.mark.robustness`).
"""
