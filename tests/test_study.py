"""The acceptance checks of the foundation issue, run through the real CLI on the mock preset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flops_fit_core.testing import CHINCHILLA
from tests.clirunner import NO_FIGURES, flops_fit, mock_study_args
from tests.test_plugin_host import BUILT_INS

TRUE_A = CHINCHILLA.a  # beta / (alpha + beta) of the mock's default law


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    from flops_fit_core.cli import main

    out = tmp_path_factory.mktemp("mock") / "run"
    assert main(["-q", "run", "--preset", "mock", "--out", str(out)]) == 0
    return out


def test_the_mock_study_writes_every_artefact(mock_run):
    for name in ("config.toml", "plan.json", "results.jsonl", "fit.json"):
        assert (mock_run / name).is_file(), name
    figures = {p.name for p in (mock_run / "figures").iterdir()}
    assert {"isoflop.png", "isoflop.svg", "scaling.png", "scaling.svg"} <= figures
    assert (mock_run / "report.html").is_file()


def test_the_mock_study_recovers_the_true_exponent(mock_run):
    fit = json.loads((mock_run / "fit.json").read_text())
    a_hat = fit["laws"]["n_opt"]["exponent"]
    assert abs(a_hat - TRUE_A) <= 0.06, a_hat
    assert fit["fitter"] == "empirical"
    assert fit["conventions"] == {"params": "total", "flops": "6n"}


def test_every_result_records_its_conventions_and_trainer(mock_run):
    for record in read_jsonl(mock_run / "results.jsonl"):
        assert record["spec"]["conventions"] == {"params": "total", "flops": "6n"}
        assert record["trainer"]["name"] == "mock" and record["trainer"]["version"] != "unknown"
        assert record["flops_exact"] > 0 and record["flops_6n"] > 0


def test_running_again_trains_nothing(capsys, mock_run):
    before = (mock_run / "results.jsonl").read_bytes()
    outcome = flops_fit(capsys, "run", "--preset", "mock", "--out", mock_run, "--json")
    assert outcome.code == 0, outcome.err
    summary = outcome.json()
    assert summary["trained"] == 0 and summary["skipped"] == summary["experiments"]
    assert (mock_run / "results.jsonl").read_bytes() == before


def test_more_sizes_keep_old_ids_and_train_only_the_new(capsys, tmp_path, mock_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mock_run, run)
    old_ids = {s["id"] for s in json.loads((run / "plan.json").read_text())["experiments"]}
    outcome = flops_fit(
        capsys,
        "run",
        "--preset",
        "mock",
        "--out",
        run,
        "--json",
        "--set",
        "planner.sizes_per_budget=17",
        *NO_FIGURES,
    )
    assert outcome.code == 0, outcome.err
    new_ids = {s["id"] for s in json.loads((run / "plan.json").read_text())["experiments"]}
    assert old_ids < new_ids
    summary = outcome.json()
    assert summary["trained"] == len(new_ids - old_ids)
    assert summary["skipped"] == len(old_ids)
    trained = [r["experiment_id"] for r in read_jsonl(run / "results.jsonl")]
    assert len(trained) == len(set(trained)) == len(new_ids)  # nothing trained twice


def test_without_noise_the_fit_is_exactly_the_grid_argmin(capsys, tmp_path):
    run = tmp_path / "run"
    outcome = flops_fit(capsys, *mock_study_args(run, "--set", "trainer.noise=0.0"))
    assert outcome.code == 0, outcome.err
    results = [r for r in read_jsonl(run / "results.jsonl") if r["status"] == "ok"]
    fit = json.loads((run / "fit.json").read_text())
    budgets = sorted({r["spec"]["budget"] for r in results})
    best = []
    for c in budgets:
        group = [r for r in results if r["spec"]["budget"] == c]
        best.append(min(group, key=lambda r: r["loss"])["spec"]["params"])
    assert [o["params"]["value"] for o in fit["optima"]] == best
    slope = np.polyfit(np.log(budgets), np.log(best), 1)[0]
    assert abs(fit["laws"]["n_opt"]["exponent"] - slope) <= 1e-9


def test_the_process_executor_gives_the_same_results(capsys, tmp_path, mock_run):
    run = tmp_path / "run"
    workers = ["--set", "executor.name=process", "--set", "executor.workers=2"]
    outcome = flops_fit(capsys, *mock_study_args(run, *workers))
    assert outcome.code == 0, outcome.err

    def losses(path):
        return {r["experiment_id"]: r["loss"] for r in read_jsonl(path)}

    assert losses(run / "results.jsonl") == losses(mock_run / "results.jsonl")


def test_stage_by_stage_matches_the_whole_run(capsys, tmp_path, mock_run):
    plan = tmp_path / "plan.json"
    assert flops_fit(capsys, "plan", "--preset", "mock", "-o", plan).code == 0
    assert flops_fit(capsys, "train", plan, "--preset", "mock").code == 0
    results = tmp_path / "results.jsonl"
    fit = flops_fit(capsys, "fit", results, "--preset", "mock", "--json")
    assert fit.code == 0, fit.err
    whole = json.loads((mock_run / "fit.json").read_text())
    assert fit.json()["laws"] == whole["laws"]
    pred = flops_fit(capsys, "predict", tmp_path / "fit.json", "--compute", "1e24", "--json")
    assert pred.code == 0
    p = pred.json()
    law = whole["laws"]["n_opt"]
    assert p["params"]["value"] == pytest.approx(law["coefficient"] * 1e24 ** law["exponent"])
    lo, hi = p["params"]["interval"]
    assert lo < p["params"]["value"] < hi
    figs = flops_fit(capsys, "plot", results, tmp_path / "fit.json", "-o", tmp_path / "figs")
    assert figs.code == 0, figs.err
    drawn = {p.name for p in (tmp_path / "figs").iterdir()}
    # The same figures as the whole run (the report is `flops-fit report`'s, in a run dir),
    # but for the envelope's: it draws a compared fit, and `plot` is given only the study's.
    whole_run = {p.name for p in (mock_run / "figures").iterdir()}
    assert drawn == whole_run - {"envelope.png", "envelope.svg"}


def test_plugins_json_lists_every_built_in(capsys):
    outcome = flops_fit(capsys, "plugins", "--json")
    assert outcome.code == 0
    listing = outcome.json()
    found = {(p["kind"], p["name"]): p for p in listing["plugins"]}
    for key in sorted(BUILT_INS):
        assert key in found, key
        assert found[key]["distribution"].startswith("flops-fit")
        assert found[key]["version"] == "0.1.0"
    assert listing["errors"] == []


def test_plan_dry_run_writes_nothing(capsys, tmp_path):
    outcome = flops_fit(capsys, "plan", "--preset", "mock", "-o", tmp_path / "p.json", "--dry-run")
    assert outcome.code == 0 and "72 experiments" in outcome.out
    assert not (tmp_path / "p.json").exists()


def test_config_show_prints_every_resolved_option(capsys):
    import tomllib

    outcome = flops_fit(capsys, "config", "show", "--preset", "mock", "--set", "trainer.seed=4")
    resolved = tomllib.loads(outcome.out)
    assert resolved["trainer"]["seed"] == 4 and "noise" in resolved["trainer"]
    assert resolved["planner"]["sizes_per_budget"] == 9
