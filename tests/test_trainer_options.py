"""Issue 11: every answer true to what produced it. Results are keyed by the trainer options
that made them: a rerun under other options trains again (and says so), `--keep-results`
keeps the old results and the report says they differ from the config, and results written
before options were recorded load as before, with their options stated unknown."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.clirunner import NO_FIGURES, flops_fit, mock_study_args


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def seed0(tmp_path_factory):
    from flops_fit_core.cli import main

    out = tmp_path_factory.mktemp("options") / "run"
    assert main(mock_study_args(out)) == 0
    return out


@pytest.fixture
def run_dir(seed0, tmp_path):
    """A private copy of the seed-0 mock study."""
    return shutil.copytree(seed0, tmp_path / "run")


def test_a_new_seed_trains_every_experiment_again_then_nothing(capsys, run_dir):
    before = {r["experiment_id"]: r["loss"] for r in read_jsonl(run_dir / "results.jsonl")}
    args = ["run", "--preset", "mock", "--out", str(run_dir), "--set", "trainer.seed=7"]
    args += NO_FIGURES
    outcome = flops_fit(capsys, *args, "--json")
    assert outcome.code == 0, outcome.err
    assert outcome.json()["trained"] == len(before) == 72
    assert (
        "72 results were trained with other trainer options (seed 0 -> 7); training them again"
        in outcome.err
    )
    new = read_jsonl(run_dir / "results.jsonl")[72:]
    assert {r["experiment_id"] for r in new} == set(before)
    assert all(r["loss"] != before[r["experiment_id"]] for r in new)
    assert all(r["trainer"]["options"]["seed"] == 7 for r in new)
    config = (run_dir / "config.toml").read_text()
    assert "seed = 7" in config.split("[trainer]")[1].split("[executor]")[0]
    # the study's fit is the fit of the seed-7 results alone
    only_new = run_dir / "seven.jsonl"
    only_new.write_text("".join(json.dumps(r) + "\n" for r in new))
    alone = run_dir / "seven-fit.json"
    assert flops_fit(capsys, "fit", str(only_new), "--preset", "mock", "-o", str(alone)).code == 0
    laws = [json.loads(p.read_text())["laws"] for p in (run_dir / "fit.json", alone)]
    assert laws[0] == laws[1]
    again = flops_fit(capsys, *args, "--json")
    assert again.code == 0 and again.json()["trained"] == 0
    assert "other trainer options" not in again.err
    assert len(read_jsonl(run_dir / "results.jsonl")) == 144
    # and going back to seed 0 finds its results again: nothing trains
    back = flops_fit(
        capsys, "run", "--preset", "mock", "--out", str(run_dir), *NO_FIGURES, "--json"
    )
    assert back.code == 0 and back.json()["trained"] == 0


def test_keep_results_keeps_them_and_the_report_says_they_differ(capsys, run_dir):
    before = (run_dir / "results.jsonl").read_bytes()
    args = ["run", "--preset", "mock", "--out", str(run_dir), "--set", "trainer.seed=7"]
    outcome = flops_fit(capsys, *args, "--keep-results", "--json")
    assert outcome.code == 0, outcome.err
    assert outcome.json()["trained"] == 0
    assert (run_dir / "results.jsonl").read_bytes() == before
    assert "72 results were trained with other trainer options (seed 0 -> 7); kept" in outcome.err
    note = "72 of these results were trained with other trainer options than the config records"
    assert note in (run_dir / "report.html").read_text()
    # `flops-fit report` alone, from config.toml and the results, says the same
    (run_dir / "report.html").unlink()
    assert flops_fit(capsys, "report", str(run_dir)).code == 0
    assert note in (run_dir / "report.html").read_text()


def test_results_from_before_options_were_recorded_load_as_before(capsys, run_dir):
    path = run_dir / "results.jsonl"
    records = read_jsonl(path)
    for r in records:
        r["trainer"] = {"name": r["trainer"]["name"], "version": r["trainer"]["version"]}
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    args = ["run", "--preset", "mock", "--out", str(run_dir), "--set", "trainer.seed=7"]
    outcome = flops_fit(capsys, *args, "--json")
    assert outcome.code == 0, outcome.err
    assert outcome.json()["trained"] == 0
    unknown = "72 results were written before flops-fit recorded trainer options"
    assert unknown in outcome.err
    assert unknown in (run_dir / "report.html").read_text()


def test_fitting_a_file_that_mixes_trainer_options_warns(capsys, run_dir):
    args = ["run", "--preset", "mock", "--out", str(run_dir), "--set", "trainer.seed=7"]
    assert flops_fit(capsys, "-q", *args, *NO_FIGURES).code == 0
    results = run_dir / "results.jsonl"
    records = read_jsonl(results)
    mixed = run_dir / "mixed.jsonl"  # seed 0 for half the experiments, seed 7 for the rest
    mixed.write_text("".join(json.dumps(r) + "\n" for r in records[:36] + records[108:]))
    outcome = flops_fit(capsys, "fit", str(mixed), "--preset", "mock", "-o", str(run_dir / "f"))
    assert outcome.code == 0, outcome.err
    assert "trained under 2 different sets of trainer options" in outcome.out + outcome.err
