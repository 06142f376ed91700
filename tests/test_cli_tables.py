"""`flops-fit fit FILE` on a user's own table, and fits of our results under another convention.

Every bad table or option: one `Error:` line on stderr, exit 2, no traceback, and the
directory byte for byte as it was (no fit.json half written, nothing else touched).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flops_fit_core import read_observations
from flops_fit_core.store import ResultsStore
from tests.clirunner import assert_one_line_error, flops_fit, mock_study_args, snapshot

ROOT = Path(__file__).resolve().parents[1]
CS336 = ROOT / "tests/data/cs336/isoflops_curves.csv"
LLAMA3 = ROOT / "plugins/fitters/tests/data/llama3/isoflops_points.csv"  # read only


@pytest.fixture
def cs336(tmp_path):
    return Path(shutil.copy(CS336, tmp_path / "isoflops_curves.csv"))


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    """A finished mock study (planned under total parameters, C = 6ND)."""
    from flops_fit_core.cli import main

    out = tmp_path_factory.mktemp("mock") / "run"
    assert main(mock_study_args(out)) == 0
    return out


def test_fit_a_csv_with_n_given(capsys, cs336):
    outcome = flops_fit(capsys, "fit", cs336, "--fitter", "empirical")
    assert outcome.code == 0, outcome.err
    assert "conventions: N = total parameters, C = 6n FLOPs" in outcome.out
    assert "budgets:     9" in outcome.out
    assert "- D derived as C / (6 N)" in outcome.out
    assert outcome.out.rstrip().endswith(f"written to {cs336.parent / 'fit.json'}")
    fit = json.loads((cs336.parent / "fit.json").read_text())
    assert fit["fitter"] == "empirical"
    assert [o["budget"] for o in fit["optima"]][:2] == [6e18, 1e19]
    assert all(o["n_runs"] == 8 for o in fit["optima"])
    assert fit["diagnostics"]["best_runs"][0].startswith("line ")


def test_fit_json_prints_and_writes_beside_the_table(capsys, cs336):
    outcome = flops_fit(capsys, "fit", cs336, "--json")
    assert outcome.code == 0, outcome.err
    assert outcome.json() == json.loads((cs336.parent / "fit.json").read_text())
    assert outcome.json()["conventions"] == {"params": "total", "flops": "6n"}


def test_fit_a_csv_with_d_given(capsys, tmp_path):
    table = Path(shutil.copy(LLAMA3, tmp_path / "llama3.csv"))
    outcome = flops_fit(capsys, "fit", table, "-o", tmp_path / "out" / "llama3-fit.json", "--json")
    assert outcome.code == 0, outcome.err
    fit = outcome.json()
    assert len(fit["optima"]) == 10
    assert sum(o["n_runs"] for o in fit["optima"]) == 133
    assert "N derived as C / (6 D)" in fit["warnings"]
    assert (tmp_path / "out" / "llama3-fit.json").exists()
    assert not (tmp_path / "fit.json").exists()


def test_map_renames_columns(capsys, tmp_path):
    lines = CS336.read_text().splitlines()
    renamed = tmp_path / "runs.csv"
    renamed.write_text("\n".join(["n,c,bpb", *lines[1:]]) + "\n")
    outcome = flops_fit(
        capsys, "fit", renamed, "--map", "params=n", "--map", "compute=c", "--map", "loss=bpb"
    )
    assert outcome.code == 0, outcome.err
    mapped = json.loads((tmp_path / "fit.json").read_text())
    plain = flops_fit(capsys, "fit", CS336, "--json", "-o", tmp_path / "plain.json").json()
    assert mapped["laws"] == plain["laws"]


def test_predict_from_a_table_fit(capsys, cs336):
    assert flops_fit(capsys, "-q", "fit", cs336).code == 0
    outcome = flops_fit(capsys, "predict", cs336.parent / "fit.json", "--compute", "1e22")
    assert outcome.code == 0, outcome.err
    line = outcome.out.strip()
    assert line.startswith("at C = 1e+22 FLOPs: ")
    for name in ("N*", "D*", "L*", "D*/N*"):
        assert f" {name} = " in line
    assert line.count("[") == 4  # each with its interval
    pred = flops_fit(capsys, "predict", cs336.parent / "fit.json", "--compute", "1e22", "--json")
    data = pred.json()
    for key in ("params", "tokens", "loss", "tokens_per_param"):
        lo, hi = data[key]["interval"]
        assert lo < data[key]["value"] < hi


def test_duplicates_are_reported_not_fatal(capsys, tmp_path):
    lines = CS336.read_text().splitlines()
    table = tmp_path / "dups.csv"
    table.write_text("\n".join([*lines, lines[5], lines[9]]) + "\n")
    outcome = flops_fit(capsys, "fit", table, "--json")
    assert outcome.code == 0, outcome.err
    warnings = outcome.json()["warnings"]
    assert "line 74 (= line 6), line 75 (= line 10)" in warnings[0]
    assert outcome.json()["diagnostics"]["n_runs"] == 72


# -- our own results under a chosen convention ------------------------------------------------


def test_fit_our_results_under_6n(capsys, tmp_path, mock_run):
    results = mock_run / "results.jsonl"
    out = tmp_path / "fit.json"
    outcome = flops_fit(capsys, "fit", results, "--set", "fitter.flops=6n", "-o", out, "--json")
    assert outcome.code == 0, outcome.err
    assert outcome.json()["conventions"] == {"params": "total", "flops": "6n"}
    obs = read_observations(results, flops="6n")
    ok = ResultsStore(results).load().ok()
    np.testing.assert_array_equal(obs.compute, [r.flops_6n for r in ok])


def test_fit_our_results_under_exact(capsys, tmp_path, mock_run):
    results = mock_run / "results.jsonl"
    before = snapshot(mock_run)
    out = tmp_path / "fit.json"
    outcome = flops_fit(capsys, "fit", results, "--set", "fitter.flops=exact", "-o", out, "--json")
    assert outcome.code == 0, outcome.err
    fit = outcome.json()
    assert fit["conventions"] == {"params": "total", "flops": "exact"}
    obs = read_observations(results, flops="exact")
    ok = ResultsStore(results).load().ok()
    np.testing.assert_array_equal(obs.compute, [r.flops_exact for r in ok])
    assert [o["budget"] for o in fit["optima"]] == [float(b) for b in obs.budgets]
    assert fit["optima"][0]["budget"] > 1e18  # the geometric mean of exact compute, not the plan
    assert snapshot(mock_run) == before


# -- bad input: one line, exit 2, nothing changed -----------------------------------------------

GOOD = "parameters,compute_budget,final_loss\n1e8,1e18,3.0\n2e8,1e18,2.9\n"


@pytest.mark.parametrize(
    ("name", "text", "args", "needles"),
    [
        (
            "nan.csv",
            GOOD + "3e8,1e18,nan\n",
            [],
            ["column 'final_loss' (loss) needs positive finite numbers", ": line 4 (nan)"],
        ),
        ("empty_cell.csv", GOOD + "3e8,,3.1\n", [], ["column 'compute_budget'", "line 4 (empty)"]),
        ("word.csv", GOOD + "big,1e18,3.1\n", [], ["column 'parameters'", "line 4 ('big')"]),
        ("zero.csv", GOOD + "0,1e18,3.1\n", [], ["column 'parameters'", "line 4 (0)"]),
        ("negative.csv", GOOD + "3e8,1e18,-3\n", [], ["column 'final_loss'", "line 4 (-3)"]),
        ("empty.csv", "", [], ["the file is empty"]),
        ("header_only.csv", GOOD.splitlines()[0] + "\n", [], ["the table has no rows"]),
        ("runs.txt", GOOD, [], ["unknown table format '.txt'"]),
        ("cells.csv", GOOD + "1,2,3,4\n", [], ["line 4 has 4 cells"]),
        ("bad.jsonl", '{"N": 1, "C": 2, "loss": 3}\n{"N"\n', [], ["line 2 is not valid JSON"]),
        ("bad.parquet", GOOD, [], ["not a readable Parquet file"]),
        ("no_loss.csv", "N,C,bpb\n1,2,3\n", [], ["no loss column", "columns: N, C, bpb"]),
        ("t.csv", GOOD, ["--map", "lr=x"], ["unknown field 'lr'", "valid fields: params, tokens"]),
        ("t.csv", GOOD, ["--map", "loss"], ["--map expects FIELD=COLUMN, got 'loss'"]),
        (
            "t.csv",
            GOOD,
            ["--map", "loss=bpb"],
            ["--map loss=bpb: no such column", "columns: parameters, compute_budget, final_loss"],
        ),
        (
            "t.csv",
            GOOD,
            ["--set", "fitter.flops=exact"],
            ["no tokens (D) column", "cannot be derived under the 'exact' FLOPs convention"],
        ),
        (
            "chain.csv",
            "N,C,loss\n" + "".join(f"{i + 1}e8,{1e20 * 1.006**i:.6g},3\n" for i in range(6)),
            [],
            ["compute values from 1e+20 to 1.03e+20", "--map budget=COLUMN"],
        ),
    ],
)
def test_bad_tables(capsys, tmp_path, name, text, args, needles):
    table = tmp_path / name
    table.write_text(text)
    before = snapshot(tmp_path)
    outcome = flops_fit(capsys, "fit", table, *args)
    assert_one_line_error(outcome, *needles)
    assert snapshot(tmp_path) == before  # no fit.json, nothing touched


def test_map_on_our_results_is_a_usage_error(capsys, mock_run):
    before = snapshot(mock_run)
    outcome = flops_fit(capsys, "fit", mock_run / "results.jsonl", "--map", "loss=x")
    assert_one_line_error(outcome, "--map is for tables")
    assert snapshot(mock_run) == before
