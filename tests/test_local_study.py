"""A real study through the CLI with the `local` trainer, shrunk to seconds: every stage runs on
real training, results record what trained them, and a rerun trains nothing."""

from __future__ import annotations

import json

import pytest

from tests.clirunner import NO_FIGURES, flops_fit

#: The default preset's shapes and trainer, at budgets small enough for the test suite, on a
#: small synthetic corpus, fitted with `empirical` (which needs no particular curve shape).
SMALL = [
    "planner.min_flops=1e10",
    "planner.max_flops=4e10",
    "planner.n_budgets=3",
    "planner.sizes_per_budget=3",
    "planner.span=3.0",
    "fitter.name='empirical'",
    "executor.name='serial'",
    "trainer.data.synthetic.words=512",
    "trainer.data.synthetic.tokens=262144",
    "trainer.data.eval_tokens=4096",
]


def _args(run):
    out = ["run", "--out", str(run)]
    for item in SMALL:
        out += ["--set", item]
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("cache")
        mp.setenv("FLOPS_FIT_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, cache):
    from flops_fit_core.cli import main

    run = tmp_path_factory.mktemp("local") / "run"
    assert main(["-q", *_args(run)]) == 0
    return run


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_default_preset_study_trains_for_real(local_run, cache):
    records = read_jsonl(local_run / "results.jsonl")
    assert len(records) == 9 and all(r["status"] == "ok" for r in records)
    for r in records:
        assert r["trainer"]["name"] == "local"
        assert r["tokens_trained"] == pytest.approx(r["spec"]["tokens"], rel=0.01)
        assert r["flops_exact"] == pytest.approx(r["spec"]["budget"], rel=0.01)
        assert r["loss"] > r["metrics"]["entropy_rate"] > 0
        assert (local_run / "checkpoints" / r["experiment_id"] / "checkpoint.pt").is_file()
        assert (local_run / "logs" / f"{r['experiment_id']}.jsonl").is_file()
    assert any(cache.iterdir())  # tokens were cached where FLOPS_FIT_CACHE says
    fit = json.loads((local_run / "fit.json").read_text())
    assert [o["budget"] for o in fit["optima"]] == [1e10, 2e10, 4e10]


def test_running_again_trains_nothing(capsys, local_run, cache):
    before = (local_run / "results.jsonl").read_bytes()
    outcome = flops_fit(capsys, "-q", *_args(local_run), *NO_FIGURES)
    assert outcome.code == 0, outcome.err
    assert (local_run / "results.jsonl").read_bytes() == before


def test_changing_an_optimizer_option_trains_again_and_once(capsys, local_run, cache):
    """Issue 11: results remember the trainer options that made them. A rerun with another
    optimizer option trains every experiment again under it (and says so); a second rerun
    with the same option trains nothing. (Last in the module: it changes `local_run`.)"""
    run = local_run
    first = {r["experiment_id"]: r["loss"] for r in read_jsonl(run / "results.jsonl")}
    first_fit = (run / "fit.json").read_text()
    # (no figures: training is what this checks, and the figures are most of a rerun's cost)
    changed = [*_args(run), "--set", "trainer.optimizer.beta2=0.99", *NO_FIGURES, "--json"]
    outcome = flops_fit(capsys, *changed)
    assert outcome.code == 0, outcome.err
    assert outcome.json()["trained"] == 9
    assert (
        "9 results were trained with other trainer options (optimizer.beta2 0.95 -> 0.99); "
        "training them again" in outcome.err
    )
    records = read_jsonl(run / "results.jsonl")[9:]
    assert {r["experiment_id"] for r in records} == set(first)
    assert all(r["trainer"]["options"]["optimizer"]["beta2"] == 0.99 for r in records)
    assert all(r["loss"] != first[r["experiment_id"]] for r in records)
    assert "beta2 = 0.99" in (run / "config.toml").read_text()
    assert (run / "fit.json").read_text() != first_fit  # fitted to the new losses
    again = flops_fit(capsys, *changed)
    assert again.code == 0 and again.json()["trained"] == 0
    assert len(read_jsonl(run / "results.jsonl")) == 18
