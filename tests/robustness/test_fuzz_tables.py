"""Fuzz: a user's own table of runs (CSV, JSON lines, JSON, Parquet) through `fit`, `predict`
and `report --results`.

Most examples start from a valid IsoFLOP table (the synthetic law of
`flops_fit_core.testing`, under names the aliases know or ones `--map` gives) and break it a
little, so they reach the column checks, grouping and the fitters; the rest are garbage. Each
outcome keeps the promise (`assert_promise`) and leaves the table byte for byte as it was.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flops_fit_core.testing import isoflop_observations
from tests.clirunner import assert_one_line_error, flops_fit, snapshot
from tests.robustness.fuzz_support import (
    ODD_NUMBERS,
    assert_fit_readable,
    assert_promise,
    printable_text,
)
from tests.robustness.profiles import fuzz_settings

pytestmark = pytest.mark.robustness

CS336 = Path(__file__).resolve().parents[1] / "data/cs336/isoflops_curves.csv"

#: Header names for each field: its own, an alias (any case), and names only --map finds.
NAMES = {
    "params": ["params", "N", "n", "parameters", "Param_Count", "größe", "N (params)"],
    "tokens": ["tokens", "D", "training_tokens", "tokens_trained", "données"],
    "compute": ["compute", "C", "FLOPs", "compute_budget", "計算"],
    "loss": ["loss", "final_loss", "Val_Loss", "eval_loss", "xent ∇"],
    "budget": ["budget", "Budget", "plan"],
}

#: What a broken cell may hold.
ODD_CELLS = [
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "-1e400",
    "1e-400",
    "0",
    "-0",
    "-3",
    "abc",
    "1,5",
    " 2.5 ",
    "0x10",
    "1_000",
    "\uff13",  # a fullwidth digit three
    "1e18\n",
    '"',
    "9" * 400,
    "None",
    "True",
]


@st.composite
def base_tables(draw):
    """(header, rows, --map items): a valid table of an IsoFLOP sweep."""
    n_budgets = draw(st.sampled_from([1, 2, 3, 4, 4, 5, 5, 6]))
    sizes = draw(st.sampled_from([1, 3, 5, 5, 7]))
    first = draw(st.sampled_from([1e17, 1e18, 1e19]))
    budgets = first * 10.0 ** np.arange(n_budgets)
    obs = isoflop_observations(budgets, sizes, noise=0.01, seed=draw(st.integers(0, 3)))
    given_fields = draw(
        st.sampled_from(
            [
                ("params", "compute"),
                ("tokens", "compute"),
                ("params", "tokens"),
                ("params", "tokens", "compute"),
                ("params", "tokens", "budget"),
                ("params", "compute", "budget"),
            ]
        )
    )
    fields = [*given_fields, "loss"]
    fields = draw(st.permutations(fields))
    header, mapping = [], []
    for field in fields:
        name = draw(st.sampled_from(NAMES[field]))
        header.append(name)
        if name.lower() not in {n.lower() for n in NAMES[field][:4]} or field == "budget":
            mapping.append(f"{field}={name}")
    digits = draw(st.sampled_from(["{:.6g}", "{!r}", "{:.17e}"]))
    rows = [
        [digits.format(float(getattr(obs, field)[i])) for field in fields] for i in range(len(obs))
    ]
    return header, rows, mapping


@st.composite
def broken_tables(draw):
    """A base table with zero to three of the ways real tables go wrong."""
    header, rows, mapping = draw(base_tables())
    header, rows = list(header), [list(r) for r in rows]
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3]))):
        kind = draw(
            st.sampled_from(
                [
                    "cell",
                    "cell",
                    "duplicate",
                    "one_row",
                    "no_rows",
                    "drop_column",
                    "extra_column",
                    "rename",
                    "short_row",
                    "long_row",
                    "zeros",
                    "blank_rows",
                ]
            )
        )
        if kind == "cell" and rows:
            r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(header) - 1))
            rows[r][c] = draw(st.sampled_from(ODD_CELLS) | printable_text(8))
        elif kind == "duplicate" and rows:
            rows.append(list(draw(st.sampled_from(rows))))
        elif kind == "one_row":
            rows = rows[:1]
        elif kind == "no_rows":
            rows = []
        elif kind == "drop_column" and len(header) > 1:
            c = draw(st.integers(0, len(header) - 1))
            header.pop(c)
            rows = [r[:c] + r[c + 1 :] for r in rows]
        elif kind == "extra_column":
            header.append(draw(st.sampled_from(["note", "N", "loss", "", "C", "run"])))
            rows = [[*r, draw(st.sampled_from(["a", "1", "", "run-1"]))] for r in rows]
        elif kind == "rename":
            c = draw(st.integers(0, len(header) - 1))
            header[c] = draw(printable_text(10) | st.sampled_from(header))
        elif kind == "short_row" and rows:
            rows[-1] = rows[-1][:-1]
        elif kind == "long_row" and rows:
            rows[0] = [*rows[0], "1"]
        elif kind == "zeros" and rows:
            c = draw(st.integers(0, len(header) - 1))
            for r in rows:
                if c < len(r):
                    r[c] = "0"
        elif kind == "blank_rows":
            rows.insert(draw(st.integers(0, len(rows))), [""] * len(header))
    return header, rows, mapping


def _cell_value(cell: str):
    """A CSV cell as a JSON value: a number when it reads as one, else the text."""
    try:
        return float(cell)
    except ValueError:
        return cell


@st.composite
def table_files(draw):
    """(file name, bytes, --map items): a broken table written in one of the formats, in one of
    the dialects real exports use; or plain garbage."""
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(["t.csv", "t.jsonl", "t.json", "t.parquet"]))
        garbage = draw(
            st.sampled_from([b"", b"\n\n", b"\xef\xbb\xbf", b"\x00\x01\x02", b"[", b"{}", b"[]"])
            | st.binary(max_size=64)
        )
        return name, garbage, []
    header, rows, mapping = draw(broken_tables())
    fmt = draw(st.sampled_from(["csv", "csv", "jsonl", "json", "parquet"]))
    if fmt == "csv":
        delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
        newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)
        text = out.getvalue()
        encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
        return "t.csv", text.encode(encoding, errors="replace"), mapping
    records = [
        {h: _cell_value(c) for h, c in zip(header, r, strict=False)}
        for r in rows
        if any(str(c).strip() for c in r)
    ]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {h: [rec.get(h) for rec in records] for h in dict.fromkeys(header)}
        mixed = any(
            len({type(v) for v in col if v is not None}) > 1 or any(type(v) is str for v in col)
            for col in columns.values()
        )
        if mixed:  # a Parquet column has one type: text, as a careless export writes it
            columns = {
                h: [None if v is None else str(v) for v in col] for h, col in columns.items()
            }
        sink = io.BytesIO()
        pq.write_table(pa.table(columns) if columns else pa.table({}), sink)
        return "t.parquet", sink.getvalue(), mapping
    if fmt == "json":
        return "t.json", json.dumps(records, indent=1).encode(), mapping
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = "".join(json.dumps(rec) + newline for rec in records)
    if draw(st.booleans()) and text:  # a torn last line, as a crashed exporter leaves
        text = text[: draw(st.integers(1, len(text)))]
    return "t.jsonl", text.encode(), mapping


#: Fitters and options to fit a table with (no -c: the default preset's, `quadratic`).
FITTERS = [
    [],
    ["--fitter", "empirical"],
    ["--fitter", "robust", "--set", "fitter.bootstrap=0"],
    ["--fitter", "robust", "--set", "fitter.bootstrap=40", "--set", "fitter.grid=[8, 8]"],
    ["--fitter", "empirical", "--set", "fitter.flops=exact"],
    ["--set", "fitter.params=non_embedding"],
    ["--fitter", "empirical", "--set", "fitter.leave_one_out=false", "--set", "fitter.strict=true"],
]


def _write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    return path


@fuzz_settings(90)
@given(
    table=table_files(),
    fitter=st.sampled_from(FITTERS),
    tolerance=st.sampled_from([None, None, None, "1", "5", "0.001"]),
    compute=st.sampled_from(["1e24", "6e18", "1e400", "1e-300"]),
)
def test_fit_and_predict_a_table(capsys, table, fitter, tolerance, compute):
    name, data, mapping = table
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "in", name, data)
        before = snapshot(path.parent)
        maps = [arg for item in mapping for arg in ("--map", item)]
        grouping = ["--group-tolerance", tolerance] if tolerance else []
        out = Path(tmp) / "out" / "fit.json"
        outcome = flops_fit(capsys, "-q", "fit", path, "-o", out, *fitter, *maps, *grouping)
        assert_promise(outcome)
        assert snapshot(path.parent) == before
        assert out.exists() == (outcome.code == 0)
        if outcome.code == 0:
            assert_fit_readable(capsys, out)
            fitted = snapshot(out.parent)
            assert_promise(flops_fit(capsys, "predict", out, "--compute", compute))
            assert_promise(flops_fit(capsys, "predict", out, "--compute", compute, "--json"))
            assert snapshot(out.parent) == fitted


@fuzz_settings(40)
@given(
    header=st.lists(printable_text(12), min_size=1, max_size=5),
    cells=st.lists(
        st.lists(st.sampled_from(ODD_CELLS) | printable_text(6), max_size=5), max_size=4
    ),
    mapping=st.lists(
        st.builds(
            "{}={}".format,
            st.sampled_from(["params", "tokens", "compute", "loss", "budget", "run"]),
            printable_text(12),
        ),
        max_size=3,
    ),
)
def test_fit_a_table_of_anything(capsys, header, cells, mapping):
    """Headers and cells of any text (quotes, newlines, unicode), with --map naming any of
    them: the CSV reader, the column resolution and the mapping's messages."""
    out = io.StringIO()
    csv.writer(out).writerows([header, *cells])
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "in", "t.csv", out.getvalue().encode())
        before = snapshot(path.parent)
        maps = [arg for item in mapping for arg in ("--map", item)]
        outcome = flops_fit(capsys, "-q", "fit", path, "-o", Path(tmp) / "fit.json", *maps)
        assert_promise(outcome)
        assert snapshot(path.parent) == before


@fuzz_settings(40)
@given(
    value=st.sampled_from(ODD_NUMBERS)
    | st.floats()
    | st.integers(-(2**80), 2**80)
    | st.sampled_from(["1e400", "NaN", "-Infinity", "1" * 5000, "[1]", '{"a": 1}', "true"]),
    column=st.integers(0, 2),
    fmt=st.sampled_from(["jsonl", "json", "parquet"]),
)
def test_odd_json_and_parquet_values(capsys, value, column, fmt):
    """One value of a valid JSON or Parquet table replaced by any number, a huge integer, or a
    literal JSON cannot hold (1e400, NaN): the typed readers and the number checks."""
    obs = isoflop_observations((1e18, 1e19, 1e20), 4, seed=1)
    keys = ["N", "C", "loss"]
    records = [
        [float(obs.params[i]), float(obs.compute[i]), float(obs.loss[i])] for i in range(len(obs))
    ]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        column_values = [[r[k] for r in records] for k in range(3)]
        cell = value if isinstance(value, float) else str(value)
        column_values[column][2] = cell
        if isinstance(cell, str):
            column_values[column] = [str(v) for v in column_values[column]]
        sink = io.BytesIO()
        pq.write_table(pa.table(dict(zip(keys, column_values, strict=True))), sink)
        data, name = sink.getvalue(), "t.parquet"
    else:
        raw = value if isinstance(value, str) else json.dumps(value)
        lines = [
            "{" + ", ".join(f'"{k}": {v!r}' for k, v in zip(keys, r, strict=True)) + "}"
            for r in records
        ]
        keyed = f'"{keys[column]}": '
        start = lines[2].index(keyed) + len(keyed)
        end = lines[2].find(",", start) if column < 2 else len(lines[2]) - 1
        lines[2] = lines[2][:start] + raw + lines[2][end:]
        text = "\n".join(lines) + "\n" if fmt == "jsonl" else "[" + ",\n".join(lines) + "]"
        data, name = text.encode(), f"t.{fmt}"
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "in", name, data)
        before = snapshot(path.parent)
        outcome = flops_fit(capsys, "-q", "fit", path, "-o", Path(tmp) / "fit.json")
        assert_promise(outcome)
        assert snapshot(path.parent) == before


@fuzz_settings(6)
@given(table=table_files(), extra=st.sampled_from([[], ["--target", "1e23"]]))
def test_report_on_a_table(capsys, mock_study, table, extra):
    """`report RUN --results TABLE`: the run directory's fits drawn against a user's table
    (each drawn report takes seconds: few examples). The run directory only gains files (the
    report, its figures); the table is untouched."""
    name, data, mapping = table
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "in", name, data)
        run = Path(tmp) / "run"
        run.mkdir()
        fitted = flops_fit(
            capsys, "-q", "fit", path, "-o", run / "fit.json",
            *[a for m in mapping for a in ("--map", m)],
        )  # fmt: skip
        assert_promise(fitted)
        if fitted.code != 0:  # then report a fit of our study against this table
            (run / "fit.json").write_bytes((mock_study / "fit.json").read_bytes())
        before, run_before = snapshot(path.parent), snapshot(run)
        maps = [arg for item in mapping for arg in ("--map", item)]
        outcome = flops_fit(capsys, "-q", "report", run, "--results", path, *maps, *extra)
        assert_promise(outcome)
        assert snapshot(path.parent) == before
        after = snapshot(run)
        assert {p: after.get(p) for p in run_before} == run_before  # only new files


# -- what the fuzzing found: each input, as a plain regression test ------------------------------


def test_a_header_cell_with_a_line_break_is_quoted_on_one_line(capsys, tmp_path):
    """A quoted CSV header cell holding a carriage return was echoed into the message (`the
    file's columns: 0<CR>0`), splitting the `Error:` line in two."""
    table = tmp_path / "t.csv"
    table.write_bytes(b'"0\r0"\r\nnan\r\n')
    outcome = flops_fit(capsys, "fit", table, "-o", tmp_path / "fit.json")
    assert_one_line_error(outcome, "no loss column", "the file's columns: 0\\r0")


def test_a_parabola_vertex_beyond_any_float_is_named(capsys, tmp_path):
    """One N of 4.1e15 in a budget of 1e18 FLOPs: the quadratic fitter's parabola through that
    budget is nearly flat, its vertex lies at ln N ~ 10^4, and the warning that names it
    overflowed `math.exp` (an internal error) instead of excluding the budget."""
    obs = isoflop_observations((1e18, 1e19, 1e20), 4, seed=1)
    rows = [
        {"N": float(obs.params[i]), "C": float(obs.compute[i]), "loss": float(obs.loss[i])}
        for i in range(len(obs))
    ]
    rows[2]["N"] = 4104240192145790.0
    table = tmp_path / "t.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outcome = flops_fit(capsys, "fit", table, "-o", tmp_path / "fit.json")
    assert_one_line_error(outcome, "1e+18 (vertex outside the grid)", code=1)


def _log_uniform(low: float, high: float):
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: 10.0**e)


#: Any positive finite size, or one a run could have.
ANY_SIZE = _log_uniform(1e-300, 1e300) | _log_uniform(1e6, 1e12)
#: Any positive finite loss, or one a run could reach.
ANY_LOSS = _log_uniform(1e-300, 1e300) | _log_uniform(1, 10)

#: The envelope fitter's methods, quick (no bootstrap), on a checkpoint table.
ENVELOPES = [
    ["--fitter", "envelope", "--set", "fitter.bootstrap=0", "--set", "fitter.points=50"],
    ["--fitter", "envelope", "--set", "fitter.bootstrap=0", "--set", "fitter.method=pareto"],
    [
        "--fitter", "envelope", "--set", "fitter.bootstrap=0", "--set", "fitter.method=hull",
        "--set", "fitter.loss_floor=true", "--set", "fitter.late_fraction=1.0",
    ],
]  # fmt: skip


@fuzz_settings(40)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([1e18, 1e19, 1e20, 1e21]), ANY_SIZE, ANY_LOSS),
        min_size=3,
        max_size=40,
    ),
    fitter=st.sampled_from(FITTERS),
)
def test_fit_numbers_of_any_size(capsys, rows, fitter):
    """Every cell positive and finite, so every row passes the table's checks, but N and the
    loss of any size from 1e-300 to 1e300: what the fitters make of numbers no run has."""
    text = "budget,N,loss\n" + "".join(",".join(map(repr, row)) + "\n" for row in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "in", "t.csv", text.encode())
        out = Path(tmp) / "fit.json"
        outcome = flops_fit(capsys, "-q", "fit", path, "-o", out, *fitter)
        assert_promise(outcome, what=" ".join(fitter[:2]))
        if outcome.code == 0:
            assert_fit_readable(capsys, out)


@fuzz_settings(30)
@given(
    runs=st.lists(
        st.tuples(
            st.sampled_from([1e18, 1e19, 1e20]),
            ANY_SIZE,
            st.lists(st.tuples(ANY_SIZE, ANY_LOSS), min_size=1, max_size=6),
        ),
        min_size=1,
        max_size=8,
    ),
    fitter=st.sampled_from(ENVELOPES),
)
def test_fit_checkpoints_of_any_size(capsys, runs, fitter):
    """A checkpoint table (one row per checkpoint of a run) of any positive finite numbers,
    through the envelope fitter's three methods."""
    lines = ["run,budget,N,D,loss"]
    for i, (budget, n, checkpoints) in enumerate(runs):
        lines += [f"r{i},{budget!r},{n!r},{d!r},{loss!r}" for d, loss in checkpoints]
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "in", "t.csv", ("\n".join(lines) + "\n").encode())
        out = Path(tmp) / "fit.json"
        outcome = flops_fit(capsys, "-q", "fit", path, "-o", out, *fitter)
        assert_promise(outcome, what="envelope")
        if outcome.code == 0:
            assert_fit_readable(capsys, out)


@pytest.mark.parametrize("bootstrap", ["0", "40"])
def test_a_robust_law_beyond_float_range_is_a_fit_error(capsys, tmp_path, bootstrap):
    """Runs of N = 1 and 10 with losses down to 1e-27: the robust fitter's laws come out at
    k = e^-2640 (N*) and e^2638 (D*). The D* interval overflowed `math.exp` (an internal
    error); without a bootstrap the N* coefficient became 0 and the D* one inf, written to
    fit.json as null (exit 0, and a fit `predict` then refused)."""
    rows = [(1e18, 1.0, 1.0)] * 23 + [
        (1e18, 1.0, 10.0),
        (1e18, 10.0, 1.0),
        (1e18, 10.0, 10.0),
        (1e19, 1.0, 0.1),
        (1e20, 1.0, 1e-27),
    ]
    table = tmp_path / "t.csv"
    table.write_text("budget,N,loss\n" + "".join(",".join(map(repr, r)) + "\n" for r in rows))
    outcome = flops_fit(
        capsys, "fit", table, "-o", tmp_path / "fit.json", "--fitter", "robust",
        "--set", f"fitter.bootstrap={bootstrap}", "--set", "fitter.grid=[8, 8]",
    )  # fmt: skip
    assert_one_line_error(outcome, "n_opt coefficient comes out as e^-2639", code=1)
    assert not (tmp_path / "fit.json").exists()


def test_a_robust_surface_without_a_frontier_is_a_fit_error(capsys, tmp_path):
    """Losses from 1e-63 to 100 on N of 1 to 100: the robust fitter's surface comes out with
    alpha = beta = 0, so a = beta / (alpha + beta) is NaN, and every law and optimum was
    written to fit.json as null (exit 0, and a fit `predict` then refused)."""
    table = tmp_path / "t.csv"
    table.write_text(
        "budget,N,loss\n1e18,1,1\n1e18,1,10\n1e18,1,100\n1e18,100,10\n1e19,10,0.1\n1e20,1,1e-63\n"
    )
    outcome = flops_fit(
        capsys, "fit", table, "-o", tmp_path / "fit.json", "--fitter", "robust",
        "--set", "fitter.bootstrap=0",
    )  # fmt: skip
    assert_one_line_error(outcome, "(alpha = 0, beta = 0) has no compute-optimal frontier", code=1)
    assert not (tmp_path / "fit.json").exists()


@pytest.mark.parametrize(("separator", "name"), [(";", "semicolons"), ("\t", "tabs")])
def test_a_table_separated_by_semicolons_or_tabs_is_named(capsys, tmp_path, separator, name):
    """A spreadsheet's `;` or tab export was read as one column, and refused as having no loss
    column, listing `N;C;loss` as the file's one column."""
    table = tmp_path / "t.csv"
    table.write_text(CS336.read_text().replace(",", separator))
    outcome = flops_fit(capsys, "fit", table, "-o", tmp_path / "fit.json")
    assert_one_line_error(outcome, f"separates its cells with {name}", "comma-separated")


def test_a_utf16_table_is_read(capsys, tmp_path):
    """A UTF-16 export (with its byte-order mark) was refused as `not a text file`."""
    table = tmp_path / "t.csv"
    table.write_bytes(CS336.read_text().encode("utf-16"))
    outcome = flops_fit(capsys, "fit", table, "--json", "-o", tmp_path / "fit.json")
    assert outcome.code == 0, outcome.err
    assert outcome.json()["diagnostics"]["n_runs"] == 72


def test_a_table_of_a_budget_and_a_loss_only(capsys, tmp_path):
    """Only a budget (which stands in for C) and a loss: naming what was found looked up a
    compute column the table does not have (`KeyError: 'compute'`, an internal error)."""
    table = tmp_path / "t.csv"
    table.write_text("budget,loss\n1e+17,4.908\n")
    outcome = flops_fit(capsys, "fit", table, "-o", tmp_path / "fit.json")
    assert_one_line_error(outcome, "found compute (from the budget column 'budget')")


def test_robust_optima_whose_resamples_leave_float_range(capsys, tmp_path):
    """One run of N = 1e147 among runs of N = 1 to 100: the robust fitter's bootstrap put D*
    at 1e-55 with an interval reaching inf, written to fit.json as null (a fit `predict` then
    refused). Such an optimum is now reported without its interval, with a warning."""
    rows = [(1e18, 100.0, 1.0), *[(1e18, 1.0, 1.0)] * 3, (1e18, 10.0, 10.0)]
    rows += [*[(1e18, 1.0, 1.0)] * 4, (1e18, 10.0, 1.0), (1e18, 1.0, 1.0), (1e19, 10.0, 0.1)]
    rows += [(1e20, 1.0, 0.001), (1e18, 1.0, 1.0), (1e18, 1e147, 1.0)]
    table = tmp_path / "t.csv"
    table.write_text("budget,N,loss\n" + "".join(",".join(map(repr, r)) + "\n" for r in rows))
    out = tmp_path / "fit.json"
    outcome = flops_fit(
        capsys, "fit", table, "-o", out, "--json", "--fitter", "robust",
        "--set", "fitter.bootstrap=40", "--set", "fitter.grid=[8, 8]",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert any("reach beyond the range of a float" in w for w in outcome.json()["warnings"])
    assert_fit_readable(capsys, out)
