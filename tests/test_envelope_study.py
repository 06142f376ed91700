"""Approach 1 through the CLI: the mock preset's curves, and checkpoint tables of ad-hoc runs.

The mock's curves are its law along each run, so every method of the `envelope` fitter must
recover the true N* exponent a = 0.4516 within its own interval, and the three must agree. A
team's checkpoint table (one row per checkpoint, any order, runs of mixed horizons) fits with
`--map`; a table of final losses alone fits with `pareto` and `hull`, and `chinchilla` says
why it cannot.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from flops_fit_mock import MockConfig, optimal_exponents, true_loss
from tests.clirunner import assert_one_line_error, flops_fit

TRUE_A = optimal_exponents(MockConfig())[0]
METHODS = ("chinchilla", "pareto", "hull")


@pytest.fixture(scope="module")
def mock_study(tmp_path_factory):
    """`flops-fit run --preset mock`, whole (its report and figures included)."""
    from flops_fit_core.cli import main

    run = tmp_path_factory.mktemp("mock") / "run"
    assert main(["-q", "run", "--preset", "mock", "--out", str(run)]) == 0
    return run


def _fit(capsys, data, out, *options) -> dict:
    outcome = flops_fit(capsys, "fit", data, "--fitter", "envelope", "-o", out, *options)
    assert outcome.code == 0, outcome.err
    return json.loads(out.read_text())


def test_each_method_recovers_the_mock_exponent_and_they_agree(capsys, mock_study, tmp_path):
    compared = json.loads((mock_study / "fits" / "envelope.json").read_text())
    assert compared["settings"]["method"] == "chinchilla"
    exponents = {}
    for method in METHODS:
        fit = _fit(
            capsys,
            mock_study / "results.jsonl",
            tmp_path / f"{method}.json",
            "--set",
            f"fitter.method={method}",
        )
        law = fit["laws"]["n_opt"]
        lo, hi = law["exponent_interval"]
        assert lo <= TRUE_A <= hi, (method, law)
        exponents[method] = law["exponent"]
    assert exponents["chinchilla"] == compared["laws"]["n_opt"]["exponent"]
    assert max(exponents.values()) - min(exponents.values()) <= 0.02, exponents


def test_the_report_puts_the_approaches_side_by_side(mock_study):
    html = (mock_study / "report.html").read_text()
    fits = html[
        html.index('<section id="fits">') : html.index("</section>", html.index('id="fits"'))
    ]
    assert "<td>empirical</td>" in fits and "<td>envelope</td>" in fits
    assert "none (frontier of" in fits
    assert 'data-figure="envelope"' in html
    assert (mock_study / "figures" / "envelope.svg").is_file()


TABLE = Path(__file__).parent / "data" / "checkpoints" / "mock_law.csv"


def checkpoint_rows(seed: int = 0, shuffled: bool = False) -> list[dict]:
    """30 runs of the mock's law (10 sizes x 3 horizons), 50 checkpoints each, 0.2% noise
    (tests/data/checkpoints/README.md)."""
    rng = np.random.default_rng(seed)
    law = MockConfig()
    rows = []
    for i, n in enumerate(np.geomspace(3e7, 3e9, 10)):
        for j, tokens_per_param in enumerate((5, 20, 80)):
            horizon = n * tokens_per_param
            for t in horizon * np.arange(1, 51) / 50:
                loss = true_loss(law, n, t) * np.exp(0.002 * rng.standard_normal())
                row = {"job": f"size{i}-h{j}", "model_size": f"{n:.6g}", "seen": f"{t:.6g}"}
                rows.append({**row, "xent": f"{loss:.6f}"})
    if shuffled:
        random.Random(0).shuffle(rows)
    return rows


def _write(path, rows):
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


MAP = (
    "--map",
    "run=job",
    "--map",
    "params=model_size",
    "--map",
    "tokens=seen",
    "--map",
    "loss=xent",
)


def test_the_shipped_checkpoint_table_is_what_its_readme_says(tmp_path):
    assert (
        TABLE.read_text() == _write(tmp_path / "t.csv", checkpoint_rows(shuffled=True)).read_text()
    )


def test_a_checkpoint_table_fits_in_any_row_order(capsys, tmp_path):
    """Every checkpoint of this table is the law at that length, a run's end (`late_fraction =
    1` says so): the whole curves recover the truth, whatever the order of the rows."""
    whole = ("--set", "fitter.late_fraction=1")
    fit = _fit(capsys, TABLE, tmp_path / "fit.json", *MAP, *whole)
    assert fit["diagnostics"]["n_runs"] == 30 and fit["diagnostics"]["n_checkpoints"] == 1500
    assert len(fit["diagnostics"]["frontier_runs"]) >= 3
    lo, hi = fit["laws"]["n_opt"]["exponent_interval"]
    assert lo <= TRUE_A <= hi
    in_order = _write(tmp_path / "sorted.csv", checkpoint_rows())
    assert _fit(capsys, in_order, tmp_path / "again.json", *MAP, *whole)["laws"] == fit["laws"]


def test_a_checkpoint_table_of_unknown_schedule_is_read_only_near_each_run_end(capsys, tmp_path):
    """A table does not say its schedule: only each run's last 15% is read, and it says so.
    These runs' ends do not overlap in compute, so nothing is left to interpolate between runs
    (`chinchilla` says so); the non-dominated checkpoints still make a frontier."""
    fit = _fit(capsys, TABLE, tmp_path / "fit.json", *MAP, "--set", "fitter.method=pareto")
    assert fit["diagnostics"]["frontier_position_min"] >= 0.85
    warning = "before the last 15% of their runs (1200 under unknown)"
    assert any(warning in w for w in fit["warnings"])
    lo, hi = fit["laws"]["n_opt"]["exponent_interval"]
    assert lo <= TRUE_A <= hi
    outcome = flops_fit(capsys, "fit", TABLE, "--fitter", "envelope", *MAP)
    assert_one_line_error(outcome, "no compute value is reached by two runs", code=1)


def test_a_table_of_final_losses_fits_with_pareto_and_hull_but_not_chinchilla(capsys, tmp_path):
    rows = checkpoint_rows()
    last = {r["job"]: r for r in rows}  # each run's checkpoints come in order of tokens
    finals = list(last.values())
    assert len(finals) == 30
    table = _write(tmp_path / "finals.csv", finals)
    for method in ("pareto", "hull"):
        fit = _fit(
            capsys, table, tmp_path / f"{method}.json", *MAP, "--set", f"fitter.method={method}"
        )
        assert len(fit["diagnostics"]["frontier_runs"]) >= 3
    outcome = flops_fit(capsys, "fit", table, "--fitter", "envelope", *MAP)
    assert_one_line_error(outcome, "chinchilla method interpolates", 'method = "pareto"', code=1)


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        (
            [
                {"job": "a", "N": 1e6, "D": 1e8, "loss": 3.0},
                {"job": "a", "N": 2e6, "D": 2e8, "loss": 2.9},
            ],
            "run 'a' has checkpoints with different params",
        ),
        (
            [
                {"job": "a", "N": 1e6, "D": 1e8, "loss": 3.0},
                {"job": "a", "N": 1e6, "D": 1e8, "loss": 2.9},
            ],
            "run 'a' has two checkpoints at 1e+08 tokens",
        ),
        ([{"job": "", "N": 1e6, "D": 1e8, "loss": 3.0}], "1 empty: line 2"),
    ],
)
def test_a_checkpoint_table_that_mixes_up_its_runs_is_refused(capsys, tmp_path, rows, needle):
    table = _write(tmp_path / "bad.csv", rows)
    outcome = flops_fit(capsys, "fit", table, "--fitter", "envelope", "--map", "run=job")
    assert_one_line_error(outcome, needle)


def test_a_checkpoint_table_reads_the_same_from_jsonl_and_parquet(capsys, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = checkpoint_rows(shuffled=True)
    jsonl = tmp_path / "checkpoints.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "checkpoints.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [{k: (v if k == "job" else float(v)) for k, v in r.items()} for r in rows]
        ),
        parquet,
    )
    whole = ("--map", "run=job", "--set", "fitter.late_fraction=1", "--set", "fitter.bootstrap=50")
    laws = [
        _fit(capsys, path, tmp_path / f"{path.suffix[1:]}.json", *MAP, *whole[2:])["laws"]
        for path in (TABLE, jsonl, parquet)
    ]
    assert laws[0] == laws[1] == laws[2]
