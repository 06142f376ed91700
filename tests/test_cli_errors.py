"""Every bad input: one line on stderr naming the problem, exit 2, no traceback, nothing lost."""

from __future__ import annotations

import pytest

from tests.clirunner import assert_one_line_error, flops_fit, mock_study_args


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished mock study to break things against."""
    from flops_fit_core.cli import main

    out = tmp_path_factory.mktemp("study") / "run"
    assert main(mock_study_args(out)) == 0
    return out


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--set", "trainer.name=nope"], ["Unknown trainer 'nope'. Available: api, local, mock"]),
        (["--set", "fitter.name=nope"], ["Unknown fitter 'nope'. Available: empirical"]),
        (
            ["--set", "executor.name=nope"],
            ["Unknown executor 'nope'. Available: process, ray, serial, slurm"],
        ),
        (["--set", "trainer.bogus=1"], ["trainer 'local'", "unknown key 'bogus'"]),
        (["--set", "planner.n_budgets=zero"], ["planner 'isoflop'", "n_budgets"]),
        (["--set", "bogus.key=1"], ["unknown key 'bogus'"]),
        (["--set", "novalue"], ["key=value"]),
        (
            ["--preset", "nope"],
            ["Unknown preset 'nope'. Available: cpu-tiny, gpu-small, mock, mock-adaptive"],
        ),
        (["-c", "missing.toml"], ["config file not found: missing.toml"]),
        (["--target", "-5"], ["--target", "positive"]),
        (["--no-such-option"], ["No such option"]),
    ],
)
def test_bad_run_invocations(capsys, tmp_path, study, args, needles):
    before = {p: p.read_bytes() for p in study.rglob("*") if p.is_file()}
    outcome = flops_fit(capsys, "run", "--out", study, *args)
    assert_one_line_error(outcome, *needles)
    after = {p: p.read_bytes() for p in study.rglob("*") if p.is_file()}
    assert after == before  # nothing overwritten


def test_malformed_config_file(capsys, tmp_path):
    bad = tmp_path / "study.toml"
    bad.write_text("[trainer\nname =")
    assert_one_line_error(flops_fit(capsys, "config", "validate", "-c", bad), "invalid TOML")


def test_missing_and_malformed_inputs(capsys, tmp_path, study):
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{ this is not json")
    assert_one_line_error(flops_fit(capsys, "train", tmp_path / "nope.json"), "plan not found")
    assert_one_line_error(flops_fit(capsys, "train", garbage), "not a valid plan")
    assert_one_line_error(flops_fit(capsys, "fit", tmp_path / "nope.jsonl"), "not found")
    assert_one_line_error(
        flops_fit(capsys, "predict", garbage, "--compute", "1e24"), "not a valid fit"
    )
    assert_one_line_error(
        flops_fit(capsys, "predict", study / "fit.json", "--compute", "0"), "positive"
    )
    assert_one_line_error(
        flops_fit(capsys, "predict", study / "fit.json", "--compute", "lots"), "not a valid float"
    )
    assert_one_line_error(
        flops_fit(
            capsys,
            "plot",
            study / "results.jsonl",
            study / "fit.json",
            "--plotter",
            "pie",
            "-o",
            tmp_path / "figs",
        ),
        "Unknown plotter 'pie'",
    )
    assert not (tmp_path / "figs").exists()


def test_a_corrupt_results_line_is_named(capsys, tmp_path, study):
    lines = (study / "results.jsonl").read_text().splitlines()
    bad = tmp_path / "results.jsonl"
    bad.write_text("\n".join([lines[0], '{"schema_version": 1, "oops": true}', *lines[1:]]) + "\n")
    assert_one_line_error(flops_fit(capsys, "fit", bad), "results.jsonl:2")


def test_a_torn_last_line_is_reported_and_the_rest_used(capsys, tmp_path, study):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(study, run)
    results = run / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:100])  # killed mid-write
    fit = flops_fit(capsys, "fit", results, "--json", "-o", tmp_path / "fit.json")
    assert fit.code == 0 and fit.json()["diagnostics"]["n_runs"] == len(lines) - 1
    assert f"skipped 1 torn record (line {len(lines)}: a write cut short" in fit.err
    outcome = flops_fit(capsys, "train", run / "plan.json")
    assert outcome.code == 0, outcome.err
    assert "results.jsonl ended in a torn record" in outcome.err
    assert "set aside to results.jsonl.torn-" in outcome.err
    assert "trained 1," in outcome.out  # only the torn experiment is trained again
    fit = flops_fit(capsys, "fit", results, "--json", "-o", tmp_path / "fit.json")
    assert fit.code == 0 and fit.json()["diagnostics"]["n_runs"] == len(lines)
    assert "torn" not in fit.err


#: What would fail every run of the default study, each caught before anything trains.
EVERY_RUN_FAILS = [
    (["planner.schedule=cosin"], ["'cosin' is not a schedule", "cosine, wsd, constant"]),
    (["planner.vocab_size=32"], ["vocab_size 32 is below", "planner.vocab_size=64"]),
    (
        ["trainer.model.parametrization=sp", "trainer.model.attn_mult=2.0"],
        ["attn_mult only applies to parametrization = 'umup'"],
    ),
]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.parametrize(("items", "needles"), EVERY_RUN_FAILS)
def test_config_validate_catches_what_would_fail_every_run(capsys, items, needles):
    """Issue 11: one line, exit 2, for each of these (each passed validation before)."""
    assert_one_line_error(flops_fit(capsys, "config", "validate", *_sets(items)), *needles)


def test_config_validate_catches_a_split_local_files_do_not_have(capsys, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(
        '[trainer]\nname = "local"\n'
        'data = { source = "files", files = ["corpus.txt"], split = "test" }\n'
    )
    outcome = flops_fit(capsys, "config", "validate", "-c", study)
    assert_one_line_error(outcome, "split = 'test' does not exist for source = 'files'")


@pytest.mark.parametrize(("items", "needles"), EVERY_RUN_FAILS[:2])
def test_plan_and_run_refuse_them_before_writing_anything(capsys, tmp_path, items, needles):
    plan = tmp_path / "plan.json"
    assert_one_line_error(flops_fit(capsys, "plan", "-o", plan, *_sets(items)), *needles)
    assert not plan.exists()
    run = tmp_path / "run"
    assert_one_line_error(flops_fit(capsys, "run", "--out", run, *_sets(items)), *needles)
    assert not run.exists()


def test_train_checks_the_plan_it_is_given(capsys, tmp_path):
    """A plan file made for another trainer: `train` checks it against this one's options."""
    plan = tmp_path / "plan.json"
    made = flops_fit(
        capsys, "plan", "--preset", "mock", "--set", "planner.schedule=cosin", "-o", plan
    )
    assert made.code == 0, made.err
    outcome = flops_fit(capsys, "train", plan, "--preset", "cpu-tiny")
    assert_one_line_error(outcome, "'cosin' is not a schedule")
    assert not (tmp_path / "results.jsonl").exists()
