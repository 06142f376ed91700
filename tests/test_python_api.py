"""The user guide's Python API example runs as written and prints what the guide shows.

Each ```python block of docs/index.md runs in a fresh directory (with the repository's `tests/`
linked in, for the data it reads); when a ```text block follows it after a line `prints`, its
stdout must be exactly that text.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from flops_fit_core import FitResult, Observations, fit, read_observations

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "index.md"

_BLOCK = re.compile(r"```python\n(.*?)```\n(?:\nprints\n\n```text\n(.*?)```\n)?", re.S)


def _examples() -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(GUIDE.read_text())]


def test_the_guide_has_a_python_example_with_its_output():
    examples = _examples()
    assert examples, "docs/index.md has no ```python example"
    assert all(shown is not None for _, shown in examples), "an example does not show its output"


@pytest.mark.parametrize("index", range(len(_examples())))
def test_the_python_api_example_runs_and_prints_what_the_guide_shows(index, tmp_path):
    code, shown = _examples()[index]
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    old = Path.cwd()
    os.chdir(tmp_path)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"docs/index.md python example {index}", "exec"), {})
    finally:
        os.chdir(old)
    assert out.getvalue() == shown
    assert (tmp_path / "runs" / "notebook" / "fit.json").is_file()


def test_fit_takes_observations_a_table_or_a_results_file_alike(tmp_path):
    """`fit` on a path reads it under the fitter's conventions; on Observations it fits them."""
    table = ROOT / "tests/data/cs336/isoflops_curves.csv"
    from_path = fit(table, "quadratic")
    from_observations = fit(read_observations(table), "quadratic")
    assert isinstance(from_path, FitResult)
    assert from_path.laws["n_opt"].exponent == from_observations.laws["n_opt"].exponent
    assert isinstance(read_observations(table), Observations)


def test_fit_validates_the_fitter_options_as_a_config_does():
    from flops_fit_core import ConfigError

    table = ROOT / "tests/data/cs336/isoflops_curves.csv"
    with pytest.raises(ConfigError, match="not_an_option"):
        fit(table, "quadratic", options={"not_an_option": 1})
