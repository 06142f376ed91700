"""Bring your own results: a user's table becomes the same `Observations` as our own results.

Checked on two published IsoFLOP tables (CS336: N given, D derived; Llama 3: D given, N
derived), the same rows in every format, column mapping, the grouping rule and every refusal.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from flops_fit_core import (
    ConfigError,
    Conventions,
    FitterConfig,
    InputError,
    Observations,
    UsageError,
)
from flops_fit_core.grouping import group_compute
from flops_fit_core.observations import (
    is_results_file,
    load_observations,
    read_observations,
    requested_conventions,
)
from flops_fit_core.store import ResultsStore
from flops_fit_core.tables import parse_mapping, read_table
from tests.clirunner import mock_study_args

ROOT = Path(__file__).resolve().parents[1]
CS336 = ROOT / "tests/data/cs336/isoflops_curves.csv"
LLAMA3 = ROOT / "plugins/fitters/tests/data/llama3/isoflops_points.csv"  # read only


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sweep(budgets, sizes=8, jitter=0.0, seed=0):
    """Rows (params, compute, loss) of an IsoFLOP sweep around the given budgets."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt = 0.1 * c**0.5
        for n in n_opt * np.geomspace(1 / 8, 8, sizes):
            compute = c * (1 + rng.uniform(-jitter, jitter))
            rows.append([f"{n:.6g}", f"{compute:.10g}", f"{2 + np.log(n / n_opt) ** 2:.6g}"])
    return rows


def assert_same_observations(a: Observations, b: Observations) -> None:
    for name in ("budget", "params", "tokens", "compute", "loss"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.conventions == b.conventions
    assert a.warnings == b.warnings


# -- the validation tables ---------------------------------------------------------------------


def test_cs336_n_given_d_derived():
    obs = read_table(CS336)
    assert len(obs) == 72 and len(obs.budgets) == 9
    assert all(rows.size == 8 for _, rows in obs.groups())
    np.testing.assert_allclose(obs.tokens, obs.compute / (6 * obs.params), rtol=1e-12)
    assert obs.budgets[0] == 6e18 and obs.budgets[-1] == 3e21  # exact, not a rounded mean
    assert obs.warnings == ("D derived as C / (6 N)",)
    assert obs.conventions == Conventions(params="total", flops="6n")
    assert obs.ids[0] == "line 2" and obs.ids[-1] == "line 73"  # the header is line 1
    assert obs.source == str(CS336)


def test_llama3_d_given_n_derived():
    obs = read_table(LLAMA3)
    rows = rows_of(LLAMA3)
    assert len(obs) == 133 and len(obs.budgets) == 10
    np.testing.assert_array_equal(obs.compute, [float(r["compute_budget"]) for r in rows])
    np.testing.assert_array_equal(obs.tokens, [float(r["training_tokens"]) for r in rows])
    np.testing.assert_array_equal(obs.loss, [float(r["validation_loss"]) for r in rows])
    np.testing.assert_allclose(obs.params, obs.compute / (6 * obs.tokens), rtol=1e-12)
    np.testing.assert_array_equal(obs.budget, obs.compute)  # every budget exactly as written
    assert obs.warnings == ("N derived as C / (6 D)",)


# -- formats -----------------------------------------------------------------------------------


def test_jsonl_json_and_parquet_give_the_same_observations(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rows_of(CS336)
    records = [{k: float(v) for k, v in r.items()} for r in rows]
    from_csv = read_table(CS336)

    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    array = tmp_path / "runs.json"
    array.write_text(json.dumps(records, indent=1))
    parquet = tmp_path / "runs.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    strings = tmp_path / "strings.jsonl"  # numbers written as strings, as CSV exporters do
    strings.write_text("".join(json.dumps(r) + "\n" for r in rows))

    for path, first in [
        (jsonl, "line 1"),
        (array, "record 1"),
        (parquet, "row 1"),
        (strings, "line 1"),
    ]:
        obs = read_table(path)
        assert_same_observations(obs, from_csv)
        assert obs.ids[0] == first and len(obs.ids) == 72


def test_unknown_extension(tmp_path):
    path = tmp_path / "runs.txt"
    path.write_text("parameters,compute_budget,final_loss\n")
    with pytest.raises(InputError, match=r"unknown table format '\.txt'; use one of \.csv"):
        read_table(path)


def test_parquet_pyarrow_is_imported_only_for_parquet():
    import subprocess
    import sys

    code = (
        "import sys; from flops_fit_core.tables import read_table; "
        f"read_table({str(CS336)!r}); print('pyarrow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- columns -----------------------------------------------------------------------------------


def test_map_renames_columns_and_wins_over_aliases(tmp_path):
    rows = rows_of(CS336)
    path = write_csv(
        tmp_path / "renamed.csv",
        ["n", "c_total", "loss", "bpb"],
        [[r["parameters"], r["compute_budget"], "9.9", r["final_loss"]] for r in rows],
    )
    mapping = parse_mapping(["params=n", "compute=c_total", "loss=bpb"])
    assert mapping == {"params": "n", "compute": "c_total", "loss": "bpb"}
    obs = read_table(path, mapping)
    assert_same_observations(obs, read_table(CS336))


def test_aliases_match_ignoring_case(tmp_path):
    path = write_csv(
        tmp_path / "t.csv", ["N", "Tokens", "Val_Loss"], [[1e8, 2e9, 3.0], [2e8, 1e9, 3.1]]
    )
    obs = read_table(path)
    np.testing.assert_array_equal(obs.compute, [6 * 1e8 * 2e9, 6 * 2e8 * 1e9])
    assert obs.warnings == ("C derived as 6 N D",)


@pytest.mark.parametrize(
    ("items", "needle"),
    [
        (["loss"], "--map expects FIELD=COLUMN, got 'loss'"),
        (["=x"], "FIELD=COLUMN"),
        (["loss="], "FIELD=COLUMN"),
        (["lr=x"], "unknown field 'lr' in --map; valid fields: params, tokens"),
        (["loss=a", "loss=b"], "two columns for 'loss'"),
    ],
)
def test_bad_mappings(items, needle):
    with pytest.raises(ConfigError) as info:
        parse_mapping(items)
    assert needle in str(info.value)
    with pytest.raises(ConfigError):  # read_table checks a mapping it is given directly too
        read_table(CS336, {"lr": "x"})


def test_a_mapped_column_the_file_lacks_lists_the_columns():
    with pytest.raises(InputError) as info:
        read_table(CS336, {"loss": "bpb"})
    assert "--map loss=bpb: no such column" in str(info.value)
    assert "the file's columns: parameters, compute_budget, final_loss" in str(info.value)


def test_ambiguous_aliases_and_missing_columns(tmp_path):
    both = write_csv(tmp_path / "b.csv", ["N", "C", "loss", "val_loss"], [[1, 2, 3, 4]])
    with pytest.raises(InputError, match="'loss' and 'val_loss' could both be loss"):
        read_table(both)
    no_loss = write_csv(tmp_path / "n.csv", ["N", "C", "bpb"], [[1, 2, 3]])
    with pytest.raises(InputError, match=r"no loss column .* the file's columns: N, C, bpb"):
        read_table(no_loss)
    one = write_csv(tmp_path / "o.csv", ["N", "loss"], [[1, 2]])
    with pytest.raises(InputError, match=r"needs two of .* found params \('N'\)"):
        read_table(one)


# -- derived columns and conventions ------------------------------------------------------------


def test_exact_convention_cannot_derive(tmp_path):
    exact = Conventions(params="total", flops="exact")
    with pytest.raises(InputError, match=r"no tokens .* cannot be derived under the 'exact'"):
        read_table(CS336, conventions=exact)
    full = write_csv(tmp_path / "full.csv", ["N", "D", "C", "loss"], [[1e8, 2e9, 1.3e18, 3]])
    obs = read_table(full, conventions=exact)  # nothing to derive: fine under any convention
    assert obs.compute[0] == 1.3e18 and obs.warnings == () and obs.conventions == exact


def test_a_budget_column_groups_exactly_and_stands_in_for_c(tmp_path):
    # Exact compute of the runs of one budget spreads by more than 1% (attention FLOPs differ
    # by size); the budget column groups them anyway.
    path = write_csv(
        tmp_path / "b.csv",
        ["budget", "N", "D", "loss"],
        [[1e20, 1e9, 1.5e10, 3.0], [1e20, 2e9, 8e9, 3.1], [3e20, 1e9, 4e10, 2.9]],
    )
    exact = read_table(path, conventions=Conventions(flops="exact"))
    np.testing.assert_array_equal(exact.budget, [1e20, 1e20, 3e20])
    np.testing.assert_array_equal(exact.compute, exact.budget)
    assert exact.warnings == ("C taken from the budget column 'budget'",)
    six_n = read_table(path)  # under 6n, C = 6ND is each run's own compute
    np.testing.assert_array_equal(six_n.budget, [1e20, 1e20, 3e20])
    np.testing.assert_allclose(six_n.compute, [9e19, 9.6e19, 2.4e20])
    assert six_n.warnings == ("C derived as 6 N D",)


# -- grouping ----------------------------------------------------------------------------------


def test_jittered_budgets_group_into_exactly_five(tmp_path):
    budgets = [1e18, 1e19, 1e20, 1e21, 1e22]
    path = write_csv(tmp_path / "j.csv", ["N", "C", "loss"], sweep(budgets, jitter=0.003))
    obs = read_table(path)
    assert len(obs.budgets) == 5
    for (budget, rows), planned in zip(obs.groups(), budgets, strict=True):
        assert rows.size == 8
        assert budget == pytest.approx(np.exp(np.log(obs.compute[rows]).mean()), rel=1e-12)
        assert budget == pytest.approx(planned, rel=0.003)


def test_budgets_1_5_percent_apart_stay_separate():
    compute = np.array([1e20, 1.015e20, 1e20, 1.015e20, 1.0001e20])
    budget = group_compute(compute)
    assert len(set(budget)) == 2
    assert budget[1] == budget[3] == 1.015e20


def test_a_wide_chain_of_close_values_is_ambiguous():
    compute = 1e20 * 1.006 ** np.arange(6)  # each step under 1%, 3% from end to end
    ids = [f"line {i + 2}" for i in range(6)]
    with pytest.raises(InputError) as info:
        group_compute(compute, ids, "runs.csv")
    message = str(info.value)
    assert message.startswith("runs.csv: compute values from 1e+20 to 1.03e+20")
    assert "(line 2, line 3, ..., line 7)" in message
    assert "--map budget=COLUMN" in message


def test_grouping_is_independent_of_row_order():
    rng = np.random.default_rng(1)
    compute = np.repeat([1e19, 3e19, 1e20], 4) * (1 + rng.uniform(-0.004, 0.004, 12))
    order = rng.permutation(12)
    np.testing.assert_array_equal(group_compute(compute)[order], group_compute(compute[order]))


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "shown"),
    [("nan", "nan"), ("", "empty"), ("abc", "'abc'"), ("0", "0"), ("-3", "-3"), ("inf", "inf")],
)
def test_a_bad_value_names_the_column_and_line(tmp_path, cell, shown):
    rows = [[1e8, 1e18, 3.0], [2e8, 1e18, cell], [3e8, 1e18, 3.2]]
    path = write_csv(tmp_path / "t.csv", ["N", "C", "final_loss"], rows)
    with pytest.raises(InputError) as info:
        read_table(path)
    assert str(info.value) == (
        f"{path}: column 'final_loss' (loss) needs positive finite numbers; 1 bad: line 3 ({shown})"
    )


def test_many_bad_values_are_cut_short(tmp_path):
    rows = [[f"{i + 1}e8", 1e18, "x"] for i in range(8)]
    path = write_csv(tmp_path / "t.csv", ["N", "C", "loss"], rows)
    with pytest.raises(InputError, match=r"8 bad: line 2 \('x'\), .*line 6 \('x'\), \.\.\.$"):
        read_table(path)


def test_unused_columns_are_not_checked(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["N", "C", "loss", "note"], [[1e8, 1e18, 3.0, "n/a"]])
    assert len(read_table(path)) == 1


def test_exact_duplicates_are_dropped_with_a_warning(tmp_path):
    rows = [[1e8, 1e18, 3.0], [2e8, 1e18, 3.1], [1e8, 1e18, 3.0], [2e8, 1e18, 3.1]]
    path = write_csv(tmp_path / "t.csv", ["N", "C", "loss"], rows)
    obs = read_table(path)
    assert obs.ids == ("line 2", "line 3")
    assert obs.warnings[0] == (
        "dropped 2 duplicate rows (every used column equal to an earlier row's): "
        "line 4 (= line 2), line 5 (= line 3)"
    )


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("empty.csv", "", "the file is empty"),
        ("blank.csv", "\n\n", "the file is empty"),
        ("header.csv", "N,C,loss\n", "the table has no rows"),
        ("empty.jsonl", "\n", "the file is empty"),
        ("cells.csv", "N,C,loss\n1,2,3,4\n", "line 2 has 4 cells, the header 3"),
        ("dup.csv", "N,C,N,loss\n", "column 'N' appears twice"),
        ("bad.jsonl", '{"N": 1, "C": 2, "loss": 3}\n{"N": 1,\n', "line 2 is not valid JSON"),
        ("list.jsonl", "[1, 2, 3]\n", "record 1 is a JSON int"),
        ("scalar.jsonl", "3\n", "line 1 is a JSON int, not an object"),
        ("bad.parquet", "not parquet", "not a readable Parquet file"),
    ],
)
def test_malformed_files(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_table(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_json_values_that_are_not_numbers(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [{"N": 1e8, "C": 1e18, "loss": 3}, {"N": True, "C": 1e18, "loss": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(InputError, match=r"column 'N' \(params\) .* line 2 \(True\)"):
        read_table(path)


# -- our own results under a chosen convention ------------------------------------------------


@pytest.fixture(scope="module")
def mock_results(tmp_path_factory):
    """results.jsonl of a mock study (planned under total parameters, C = 6ND)."""
    from flops_fit_core.cli import main

    out = tmp_path_factory.mktemp("mock") / "run"
    assert main(mock_study_args(out)) == 0
    return out / "results.jsonl"


def test_from_results_keeps_todays_behaviour_without_conventions(mock_results):
    ok = ResultsStore(mock_results).load().ok()
    obs = load_observations(mock_results)
    assert obs.conventions == Conventions(params="total", flops="6n")
    np.testing.assert_array_equal(obs.budget, [r.spec.budget for r in ok])
    np.testing.assert_array_equal(obs.params, [r.spec.params for r in ok])
    np.testing.assert_array_equal(obs.compute, [r.flops for r in ok])
    same = load_observations(mock_results, params="total", flops="6n")
    assert_same_observations(same, obs)


def test_from_results_recounts_under_exact(mock_results):
    ok = ResultsStore(mock_results).load().ok()
    obs = load_observations(mock_results, flops="exact")
    assert obs.conventions == Conventions(params="total", flops="exact")
    np.testing.assert_array_equal(obs.compute, [r.flops_exact for r in ok])
    np.testing.assert_array_equal(obs.params, [r.spec.params for r in ok])
    planned = np.array([r.spec.budget for r in ok])
    assert len(obs.budgets) == len(np.unique(planned))  # still grouped as planned
    for b in np.unique(planned):
        rows = planned == b
        assert np.unique(obs.budget[rows]).size == 1
        assert obs.budget[rows][0] == pytest.approx(np.exp(np.log(obs.compute[rows]).mean()))
        assert obs.budget[rows][0] != b  # exact counts attention: more than 6ND


def test_from_results_recounts_non_embedding_params(mock_results):
    ok = ResultsStore(mock_results).load().ok()
    obs = load_observations(mock_results, params="non_embedding")
    assert obs.conventions == Conventions(params="non_embedding", flops="6n")
    n = np.array([r.spec.shape.params_non_embedding for r in ok], dtype=float)
    np.testing.assert_array_equal(obs.params, n)
    np.testing.assert_allclose(obs.compute, 6 * n * [r.tokens_trained for r in ok])
    assert (obs.budget < [r.spec.budget for r in ok]).all()


def test_requested_conventions_read_any_config_by_name():
    class Bare:
        config = object()

    class ThirdParty:
        class config:  # a config that does not subclass FitterConfig
            params = "non_embedding"
            flops = 3  # some other meaning of "flops": not ours to consume

    class Ours:
        config = FitterConfig(flops="exact")

    assert requested_conventions(Bare()) == {"params": None, "flops": None}
    assert requested_conventions(ThirdParty()) == {"params": "non_embedding", "flops": None}
    assert requested_conventions(Ours()) == {"params": None, "flops": "exact"}


def test_results_files_and_tables_are_told_apart(tmp_path, mock_results):
    assert is_results_file(mock_results)
    assert not is_results_file(CS336)
    table = tmp_path / "runs.jsonl"
    table.write_text('{"N": 1e8, "C": 1e18, "loss": 3}\n')
    assert not is_results_file(table)
    torn = tmp_path / "results.jsonl"
    lines = mock_results.read_text().splitlines()
    torn.write_text(lines[0][:50] + "\n" + "\n".join(lines[1:]) + "\n")
    assert is_results_file(torn)  # a torn first record is the store's to report
    assert len(read_observations(torn)) == len(lines) - 1
    with pytest.raises(UsageError, match="--map is for tables"):
        read_observations(mock_results, mapping={"loss": "x"})
