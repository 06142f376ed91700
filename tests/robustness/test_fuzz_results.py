"""Fuzz: a run directory's results.jsonl and fit.json, broken, through `fit`, `predict`, `plot`,
`report`, and `run`/`train` resuming the study.

The base is a finished mock study (`mock_study`); each example breaks its results the ways a
crash, a full disk or a hand edit does: a torn last line, garbage lines, a record with a field
of another type or value (wrong schema_version, NaN, inf or negative losses), duplicate ids,
CRLF, a BOM. Readers must keep the promise and leave every file as it was; `run` and `train`
may only append records (and set a torn tail aside) to a results file they resume.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.clirunner import NO_FIGURES, assert_one_line_error, flops_fit, snapshot
from tests.robustness.fuzz_support import (
    ODD_VALUES,
    Broken,
    assert_fit_readable,
    assert_promise,
    copy_study,
    json_values,
    mutate_json,
    printable_text,
)
from tests.robustness.profiles import fuzz_settings

pytestmark = pytest.mark.robustness

#: Fields of a result record worth breaking, and values each may get besides `ODD_VALUES`.
RECORD_FIELDS = {
    ("schema_version",): [0, 2, 999, "1", 1.5],
    ("experiment_id",): ["other", "", "3244b4b52188"],
    ("status",): ["failed", "running", "OK"],
    ("loss",): [-1.0, 0.0, 1e-300, 1e300, 3.0],
    ("train_loss",): [-1.0],
    ("tokens_trained",): [-5, 1, 10**30],
    ("flops",): [-1.0, 1e30],
    ("flops_6n",): [-1.0],
    ("flops_exact",): [-1.0],
    ("spec", "budget"): [-1.0, 1e17, 1.5e18],
    ("spec", "params"): [1, 10**12],
    ("spec", "tokens"): [1, -3],
    ("spec", "id"): ["abc"],
    ("spec", "seed"): [-1, 2**70],
    ("spec", "schedule"): ["", "cosin"],
    ("spec", "shape", "d_model"): [3, 0, 10**9],
    ("spec", "shape", "n_heads"): [3, 7],
    ("spec", "conventions", "flops"): ["exact", "7n"],
    ("spec", "conventions", "params"): ["non_embedding", "some"],
    ("spec", "extras"): [{"x": 1}],
    ("trainer",): [{"name": "mock"}, {"name": "other", "options_digest": "x"}],
    ("trainer", "options_digest"): ["000000000000"],
    ("trainer", "options"): [{"seed": 7}],
    ("curve",): [[[1, 2]], [[-1, 2], [0, 0]], [[1, "x"]], [[1e400, 1]], [[1, 2, 3]], [[]]],
    ("error",): ["boom", ""],
    ("cause",): ["worker_died", "trainer_error", "other"],
    ("started_at",): ["yesterday", "2026-13-40T00:00:00Z", 0],
    ("details",): [{"schedule": 5}, {"schedule": "cosine"}],
    ("metrics",): [{"a": "x"}],
    ("warnings",): [["w"], "w"],
}

#: Raw JSON numbers Python's json writes or a hand edit leaves, put in the text as they are.
RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "-0", "1" * 400, "1E5", "0x10"]

#: What a line that is not a record may hold.
GARBAGE_LINES = [
    "",
    "   ",
    "{",
    "}",
    "[]",
    "null",
    "3",
    '"text"',
    "{}",
    '{"schema_version": 1}',
    '{"schema_version": 1, "oops": true}',
    "\x00\x01",
    "[" * 100_000,
    '{"schema_version": 1, "experiment_id": ',
]


def _set(record: dict, path: tuple, value) -> None:
    node = record
    for part in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(part, {})
    if isinstance(node, dict):
        node[path[-1]] = value


def _parsed(line: str) -> dict | None:
    """A line's record, or None when it is not a JSON object (garbage an edit put there)."""
    if not line.lstrip("\ufeff").startswith("{"):
        return None
    try:
        record = json.loads(line.lstrip("\ufeff"))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


@st.composite
def broken_lines(draw, lines: list[str]) -> bytes:
    """The bytes of a results file: `lines` (records as JSON text) with zero to three breaks."""
    lines = list(lines)
    edits = []
    if draw(st.booleans()):  # a small study: fewer, shorter records (faster to fit)
        lines = lines[: draw(st.integers(0, len(lines)))]
        edits.append(f"first {len(lines)} lines")
    newline = "\n"
    torn = None
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        kind = draw(
            st.sampled_from(
                [
                    "field",
                    "field",
                    "field",
                    "raw",
                    "mutate",
                    "torn",
                    "garbage",
                    "duplicate",
                    "drop",
                    "crlf",
                    "bom",
                    "blank",
                ]
            )
        )
        if kind in ("field", "raw", "mutate", "duplicate", "drop"):
            records = [k for k, line in enumerate(lines) if _parsed(line) is not None]
            if not records:
                continue
            i = draw(st.sampled_from(records))
        if kind == "field":
            record = _parsed(lines[i])
            path = draw(st.sampled_from(sorted(RECORD_FIELDS)))
            value = draw(st.sampled_from(RECORD_FIELDS[path] + ODD_VALUES))
            _set(record, path, value)
            lines[i] = json.dumps(record)
            edits.append(f"line {i + 1}: {'.'.join(path)} = {value!r}")
        elif kind == "raw":
            record = _parsed(lines[i])
            path = draw(st.sampled_from([("loss",), ("flops",), ("spec", "budget"), ("curve",)]))
            _set(record, path, "@RAW@")
            raw = draw(st.sampled_from(RAW_NUMBERS))
            raw = f"[[1e9, {raw}]]" if path == ("curve",) else raw
            lines[i] = json.dumps(record).replace('"@RAW@"', raw)
            edits.append(f"line {i + 1}: {'.'.join(path)} = {raw} (raw)")
        elif kind == "mutate":
            lines[i] = json.dumps(draw(mutate_json(_parsed(lines[i]))))
            edits.append(f"line {i + 1} mutated: {lines[i][:300]}")
        elif kind == "torn":
            torn = draw(st.integers(1, 400))
            edits.append(f"last line torn after {torn} characters")
        elif kind == "garbage":
            junk = draw(st.sampled_from(GARBAGE_LINES) | printable_text(30))
            at = draw(st.integers(0, len(lines)))
            lines.insert(at, junk)
            edits.append(f"line {at + 1} inserted: {junk[:50]!r}")
        elif kind == "duplicate":
            record = _parsed(lines[i])
            if draw(st.booleans()) and isinstance(record, dict):
                record["loss"] = draw(st.sampled_from([1.0, 9.0, 3.5]))
            at = draw(st.integers(0, len(lines)))
            lines.insert(at, json.dumps(record))
            edits.append(f"line {i + 1} repeated as line {at + 1} (loss {record.get('loss')})")
        elif kind == "drop":
            del lines[i]
            edits.append(f"line {i + 1} removed")
        elif kind == "crlf":
            newline = "\r\n"
            edits.append("CRLF")
        elif kind == "bom":
            lines.insert(0, "\ufeff" + (lines.pop(0) if lines else ""))
            edits.append("BOM")
        elif kind == "blank":
            at = draw(st.integers(0, len(lines)))
            lines.insert(at, "")
            edits.append(f"line {at + 1} blank")
    text = "".join(line + newline for line in lines)
    if torn is not None and lines:  # a write cut short: the last line loses its end
        last = len(lines[-1]) + len(newline)
        text = text[: len(text) - last + min(torn, last - 1)]
    return Broken(text.encode(), edits)


def _study_lines(study: Path) -> list[str]:
    return study.joinpath("results.jsonl").read_text().splitlines()


FITTERS = [
    [],
    ["--preset", "mock"],
    ["--preset", "mock", "--fitter", "robust", "--set", "fitter.bootstrap=0"],
    ["--fitter", "envelope", "--set", "fitter.bootstrap=0", "--set", "fitter.points=50"],
    ["--set", "fitter.flops=exact"],
    ["--preset", "mock", "--set", "fitter.params=non_embedding"],
]


@fuzz_settings(60)
@given(data=st.data(), fitter=st.sampled_from(FITTERS))
def test_fit_and_predict_broken_results(capsys, mock_study, data, fitter):
    """`fit` reads the results as they are (refusing a bad record by its line, skipping a torn
    last one); a fit it writes answers `predict`. Nothing in the input folder changes."""
    results = data.draw(broken_lines(_study_lines(mock_study)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        (folder / "results.jsonl").write_bytes(results)
        before = snapshot(folder)
        out = Path(tmp) / "out" / "fit.json"
        outcome = flops_fit(capsys, "-q", "fit", folder / "results.jsonl", "-o", out, *fitter)
        assert_promise(outcome, what="fit")
        assert snapshot(folder) == before
        if outcome.code == 0:
            assert_fit_readable(capsys, out)
            compute = data.draw(st.sampled_from(["1e24", "1e18", "1e30", "1"]))
            assert_promise(flops_fit(capsys, "predict", out, "--compute", compute, "--json"))


def _resumed_correctly(before: bytes, after: bytes, run: Path) -> None:
    """A resumed results file keeps every byte it had, but for a torn last line, which only
    moves aside to `results.jsonl.torn-*`."""
    if after.startswith(before):
        return
    complete = before[: before.rfind(b"\n") + 1]
    assert after.startswith(complete), "a complete record was rewritten"
    torn = before[len(complete) :]
    aside = [p.read_bytes() for p in run.glob("results.jsonl.torn-*")]
    assert torn in aside, "a torn record vanished instead of moving aside"


@fuzz_settings(40)
@given(data=st.data(), command=st.sampled_from(["run", "train"]))
def test_resume_broken_results(capsys, mock_study, data, command):
    """`run` and `train` resume a study whose results.jsonl was broken: they train what is
    missing or refuse with one line, and never rewrite a record they found."""
    results = data.draw(broken_lines(_study_lines(mock_study)))
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_study(mock_study, Path(tmp))
        (run / "results.jsonl").write_bytes(results)
        plan = (run / "plan.json").read_bytes()
        if command == "run":
            args = ["run", "--preset", "mock", "--out", run, *NO_FIGURES, "--set", "compare=[]"]
        else:
            args = ["train", run / "plan.json", "--preset", "mock"]
        outcome = flops_fit(capsys, "-q", *args)
        assert_promise(outcome, what=command, said_before=True)
        _resumed_correctly(results, (run / "results.jsonl").read_bytes(), run)
        if command == "train":
            assert (run / "plan.json").read_bytes() == plan


def assert_plot_and_report_keep_their_inputs(capsys, run: Path, figures: Path) -> None:
    """`plot` (into `figures`) and `report` over a broken `run`: each keeps the promise, and
    the files they read stay as they were."""
    before = snapshot(run)
    plotted = flops_fit(
        capsys, "-q", "plot", run / "results.jsonl", run / "fit.json",
        "--plotter", "scaling", "--set", 'plot.formats=["svg"]', "-o", figures,
    )  # fmt: skip
    assert_promise(plotted, what="plot")
    assert_promise(flops_fit(capsys, "-q", "report", run), what="report")
    after = snapshot(run)
    assert {p: after.get(p) for p in before} == before


@fuzz_settings(4)
@given(data=st.data())
def test_plot_and_report_broken_results(capsys, mock_study, data):
    """`plot` and `report` on a study with broken results (each draw takes a second or more:
    few examples). The files they read stay as they were."""
    results = data.draw(broken_lines(_study_lines(mock_study)))
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_study(mock_study, Path(tmp))
        (run / "results.jsonl").write_bytes(results)
        assert_plot_and_report_keep_their_inputs(capsys, run, Path(tmp) / "figs")


# -- fit.json and predict --compute -------------------------------------------------------------

#: `--compute` values as a user may type them.
COMPUTE_TEXTS = [
    "1e24",
    "0",
    "-1",
    "-0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "1e-400",
    "5e-324",
    "1.8e308",
    "[1e20]",
    "1e20,1e21",
    "1e20 1e21",
    " 1e21 ",
    "1_000",
    "0x10",
    "\uff11e21",  # a fullwidth digit one
    "",
    "e",
    "--json",
    "-h",
]


@fuzz_settings(30)
@given(
    compute=st.sampled_from(COMPUTE_TEXTS)
    | st.floats().map(repr)
    | st.integers(-(10**30), 10**400).map(str)
    | printable_text(12),
    as_json=st.booleans(),
)
def test_predict_any_compute(capsys, mock_study, compute, as_json):
    before = snapshot(mock_study)
    outcome = flops_fit(
        capsys, "predict", mock_study / "fit.json", "--compute", compute, *["--json"] * as_json
    )
    assert_promise(outcome, what="predict")
    assert snapshot(mock_study) == before


@st.composite
def broken_fits(draw, fit: dict) -> bytes:
    """A fit.json with edits anywhere in it, or its text cut or replaced."""
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "laws", "text"]))
    if kind == "text":
        text = json.dumps(fit)
        return draw(
            st.sampled_from([b"", b"{}", b"[]", b"null", text[: len(text) // 2].encode()])
            | st.binary(max_size=40)
        )
    if kind == "laws":  # a law's numbers: where predict computes
        fit = json.loads(json.dumps(fit))
        law = draw(st.sampled_from(sorted(fit["laws"])))
        key = draw(
            st.sampled_from(
                ["coefficient", "exponent", "coefficient_interval", "exponent_interval", "offset"]
            )
        )
        value = draw(json_values() | st.sampled_from([[1e308, 1e308], [-1, 1], 1e308, -1e308]))
        if fit["laws"][law] is not None:
            fit["laws"][law][key] = value
        return json.dumps(fit).encode()
    return json.dumps(draw(mutate_json(fit))).encode()


@fuzz_settings(50)
@given(data=st.data(), compute=st.sampled_from(["1e24", "1e18", "1e300", "1e-300"]))
def test_predict_from_a_broken_fit(capsys, mock_study, data, compute):
    fit = json.loads((mock_study / "fit.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fit.json"
        path.write_bytes(data.draw(broken_fits(fit)))
        before = path.read_bytes()
        for extra in ([], ["--json"]):
            outcome = flops_fit(capsys, "predict", path, "--compute", compute, *extra)
            assert_promise(outcome, what="predict")
        assert path.read_bytes() == before


@fuzz_settings(4)
@given(data=st.data())
def test_plot_and_report_a_broken_fit(capsys, mock_study, data):
    fit = json.loads((mock_study / "fit.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        run = copy_study(mock_study, Path(tmp))
        (run / "fit.json").write_bytes(data.draw(broken_fits(fit)))
        assert_plot_and_report_keep_their_inputs(capsys, run, Path(tmp) / "figs")


# -- what the fuzzing found: each input, as a plain regression test ------------------------------


def test_a_fit_that_fails_on_torn_results_says_one_line(capsys, mock_study, tmp_path):
    """Two budgets' results and a torn last line: `fit` printed its warning about the torn
    record, then the fitter's error, two lines; the warning now comes with a fit made."""
    lines = _study_lines(mock_study)
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(lines[:18]) + "\n" + lines[18][:100])
    outcome = flops_fit(capsys, "fit", results, "-o", tmp_path / "fit.json")
    assert_one_line_error(outcome, "needs at least 3 compute budgets", code=1)


def test_loss_curves_beyond_float_range_fail_the_envelope_in_one_line(capsys, mock_study, tmp_path):
    """Every run's curve at a loss of 1e308: the envelope's law of L* has a coefficient of
    e^2000, and `math.exp` overflowed (an internal error) instead of a FitError."""
    records = [json.loads(line) for line in _study_lines(mock_study)]
    for record in records:
        record["curve"] = [[1e9, 1e308], [1e10, 1e308]]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    outcome = flops_fit(
        capsys, "fit", results, "--preset", "mock", "--fitter", "envelope",
        "--set", "fitter.bootstrap=0", "--set", "fitter.method=pareto",
        "--set", "fitter.loss_floor=true", "-o", tmp_path / "fit.json",
    )  # fmt: skip
    assert_one_line_error(outcome, "beyond the range of a float", code=1)


def test_one_loss_far_above_the_rest_excludes_its_budget(capsys, mock_study, tmp_path):
    """One run of 1e5 nats: the quadratic fitter's parabola through its budget bends below zero
    at its vertex, and the L* law was handed a negative loss (`ValueError: y must be finite and
    positive`, an internal error). That budget is now excluded, with a flag saying why."""
    records = [json.loads(line) for line in _study_lines(mock_study)]
    records[25]["loss"] = 1e5
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    outcome = flops_fit(capsys, "fit", results, "--json", "-o", tmp_path / "fit.json")
    assert outcome.code == 0, outcome.err
    flags = {o["budget"]: o["flags"] for o in outcome.json()["optima"]}
    assert flags[records[25]["spec"]["budget"]] == ["excluded: minimum not positive"]


@pytest.mark.parametrize("version", [0, 2, 999])
def test_a_record_of_another_schema_version_is_refused(capsys, mock_study, tmp_path, version):
    """A result line, a fit.json or a study config of another `schema_version` was read as if
    it were this version's (any integer passed)."""
    records = [json.loads(line) for line in _study_lines(mock_study)]
    records[3]["schema_version"] = version
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    outcome = flops_fit(capsys, "fit", results, "-o", tmp_path / "fit.json")
    assert_one_line_error(outcome, "results.jsonl:4", f"schema_version: {version} is not the")
    fit = json.loads((mock_study / "fit.json").read_text())
    (tmp_path / "other.json").write_text(json.dumps({**fit, "schema_version": version}))
    outcome = flops_fit(capsys, "predict", tmp_path / "other.json", "--compute", "1e22")
    assert_one_line_error(outcome, "not a valid fit", f"{version} is not the version")


@pytest.mark.parametrize(
    ("law", "key", "value", "needle"),
    [
        ("n_opt", "coefficient", -1.0, "n_opt law has coefficient -1.0"),
        ("d_opt", "exponent", float("nan"), "d_opt law has exponent nan"),
        ("loss_opt", "coefficient", 0.0, "loss_opt law has coefficient 0.0"),
    ],
)
def test_predict_from_a_law_that_predicts_nothing(
    capsys, mock_study, tmp_path, law, key, value, needle
):
    """A hand-edited fit.json whose law has a coefficient of -1 or 0, or a NaN exponent:
    `predict` printed `N* = nan [nan, nan]`, exit 0."""
    fit = json.loads((mock_study / "fit.json").read_text())
    fit["laws"][law][key] = value
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit))
    outcome = flops_fit(capsys, "predict", path, "--compute", "1e22")
    assert_one_line_error(outcome, needle)
