"""A real study through the CLI with the `local` trainer, shrunk to seconds: every stage runs on
real training, results record what trained them, and a rerun trains nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clirunner import NO_FIGURES, flops_fit, sigint_as_from_a_terminal

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


def test_approach_1_reads_only_the_end_of_each_cosine_run(capsys, local_run, tmp_path):
    """These runs decay a cosine and log 8 log-spaced checkpoints, so the envelope reads only
    each run's last 15% and says what it dropped. (This shrunk grid's best runs are its
    smallest models, which the envelope would leave out as a bound: kept here, to read them.)"""
    outcome = flops_fit(
        capsys, "fit", local_run / "results.jsonl", "--fitter", "envelope", "--json",
        "--set", "fitter.keep_edge_sizes=true", "--set", "fitter.min_runs_on_frontier=2",
        "-o", tmp_path / "envelope.json",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    fit = outcome.json()
    assert fit["diagnostics"]["frontier_position_min"] >= 0.85
    assert fit["diagnostics"]["dropped"]["mid_schedule"] > 0
    dropped = [w for w in fit["warnings"] if "before the last 15% of their runs" in w]
    assert dropped and "under cosine" in dropped[0]


def test_running_again_trains_nothing(capsys, local_run, cache):
    before = (local_run / "results.jsonl").read_bytes()
    outcome = flops_fit(capsys, "-q", *_args(local_run), *NO_FIGURES)
    assert outcome.code == 0, outcome.err
    assert (local_run / "results.jsonl").read_bytes() == before


def _one_budget(run, budget: str) -> list[str]:
    """`-c` the default preset at one budget of `local_run`'s (its experiments there have
    the same ids), and `--set` the rest of SMALL, checkpointing every 5 steps. One budget is
    too few to fit: the tests train with `run` and resume with `train`."""
    from importlib import resources

    text = (resources.files("flops_fit_core") / "presets" / "cpu-tiny.toml").read_text()
    dropped = ("min_flops", "max_flops", "n_budgets", "workers")
    kept = [ln for ln in text.splitlines() if not ln.startswith(dropped)]
    config = run.parent / "one-budget.toml"
    config.write_text("\n".join(kept).replace("[planner]", f"[planner]\nbudgets = [{budget}]"))
    ranged = ("planner.min_flops", "planner.max_flops", "planner.n_budgets")
    items = [item for item in SMALL if not item.startswith(ranged)]
    return ["-c", str(config), *(a for i in items for a in ("--set", i))]


def _reference(local_run) -> dict[str, float]:
    """The uninterrupted study's losses (its first 9 records: a later test appends more)."""
    return {r["experiment_id"]: r["loss"] for r in read_jsonl(local_run / "results.jsonl")[:9]}


def _cli_args(run, executor: str, command: str = "run", budget: str = "1e10") -> list[str]:
    """`run --out RUN` (or `train RUN/plan.json`) of the one-budget study under `executor`."""
    head = ["run", "--out", str(run)] if command == "run" else ["train", str(run / "plan.json")]
    items = ["trainer.checkpoint_every_steps=5", f"executor.name='{executor}'"]
    if executor == "process":
        items.append("executor.workers=2")
    sets = [a for item in items for a in ("--set", item)]
    return [*head, *_one_budget(run, budget), *sets, *NO_FIGURES]


def _start(args, cache) -> subprocess.Popen:
    """`flops-fit ARGS` in its own process group (a terminal's Ctrl-C goes to the group)."""
    env = {**os.environ, "FLOPS_FIT_CACHE": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-m", "flops_fit_core", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=sigint_as_from_a_terminal,
    )


def _wait_for(predicate, seconds: float = 120.0, what: str = "", proc=None) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc is None or proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)


def _group(pgid: int) -> list[int]:
    """The live processes of a process group (zombies left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def _training(run) -> set[str]:
    """Ids of the experiments with a training log and no result yet: the runs in flight."""
    results = run / "results.jsonl"
    done = set()
    for line in results.read_text().splitlines() if results.exists() else []:
        try:
            done.add(json.loads(line)["experiment_id"])
        except ValueError:
            continue  # a record being appended
    return {p.stem for p in (run / "logs").glob("*.jsonl")} - done


def _stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


@pytest.mark.parametrize("executor", ["process", "serial"])
def test_ctrl_c_stops_within_seconds_and_the_rerun_ends_as_if_uninterrupted(
    capsys, tmp_path, cache, local_run, executor
):
    """Issue 12: SIGINT to the command's process group mid-run: every run in flight (in the
    workers too) checkpoints and stops, nothing is fitted, exit 130 within 30 s, no
    traceback, no process left. The rerun resumes those runs to the losses of the
    uninterrupted study, bit for bit (resumed with `train`: two budgets are too few to fit)."""
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    proc = _start(_cli_args(run, executor), cache)
    try:
        in_flight = 2 if executor == "process" else 1
        _wait_for(lambda: len(_training(run)) >= in_flight, what="runs in flight", proc=proc)
        flying = _training(run)
        os.killpg(proc.pid, signal.SIGINT)
        started = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        _stop(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "stopping: the runs in flight checkpoint and stop" in err
    assert "Interrupted:" in err and "rerun the same command to resume" in err
    _wait_for(lambda: not _group(proc.pid), 10, "the process group to end")
    assert not (run / "fit.json").exists()
    interrupted = flying - {r["experiment_id"] for r in read_jsonl(run / "results.jsonl")}
    assert interrupted, "every run in flight finished before the interrupt"
    for spec_id in interrupted:
        assert (run / "checkpoints" / spec_id / "checkpoint.pt").is_file(), spec_id
    print(f"{executor}: exit 130 {took:.1f} s after SIGINT")

    # resumed in this process (`serial`: no workers to start; the same threads, so the
    # checkpoints of the interrupted runs fit)
    outcome = flops_fit(capsys, "-q", *_cli_args(run, "serial", "train"))
    assert outcome.code == 0, outcome.err
    records = {r["experiment_id"]: r for r in read_jsonl(run / "results.jsonl")}
    reference = _reference(local_run)
    assert len(records) == 3 and set(records) <= set(reference)
    assert {k: r["loss"] for k, r in records.items()} == {k: reference[k] for k in records}
    assert all(records[k]["details"]["sessions"] == 2 for k in interrupted)


def _workers(pid: int) -> list[int]:
    """The pool's worker processes among `pid`'s children (not the resource tracker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for child in map(int, children):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            out.append(child)
    return out


def _training_in(worker: int, run) -> str | None:
    """The id of the run a worker trains: the training log it holds open."""
    logs = str(run / "logs")
    for fd in Path(f"/proc/{worker}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(logs) and target.endswith(".jsonl"):
            return Path(target).stem
    return None


def test_a_worker_killed_mid_run_costs_one_retry_from_its_checkpoint(
    capsys, tmp_path, cache, local_run
):
    """Issue 12: SIGKILL of one `process` worker (as the OOM killer would): the worker is
    replaced, its experiment trained again from its checkpoint, and the sweep finishes every
    experiment with the losses of the uninterrupted study."""
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    # the larger budget's runs take seconds: the kill lands while its victim trains
    options = _cli_args(run, "process", budget="2e10")[3:]  # all but `run --out RUN`
    plan = flops_fit(capsys, "-q", "plan", "-o", run / "plan.json", *options)
    assert plan.code == 0, plan.err
    proc = _start(_cli_args(run, "process", "train", budget="2e10"), cache)
    try:
        victim: dict[str, int | str] = {}

        def a_worker_with_a_checkpoint() -> bool:
            for worker in _workers(proc.pid):
                spec_id = _training_in(worker, run)
                if spec_id and (run / "checkpoints" / spec_id / "checkpoint.pt").is_file():
                    victim.update(pid=worker, spec=spec_id)
                    return True
            return False

        _wait_for(a_worker_with_a_checkpoint, what="a worker with a checkpoint", proc=proc)
        os.kill(victim["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        _stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "trained 3, failed 0" in out
    records = {r["experiment_id"]: r for r in read_jsonl(run / "results.jsonl")}
    assert len(records) == 3 and all(r["status"] == "ok" for r in records.values())
    reference = _reference(local_run)
    assert {k: r["loss"] for k, r in records.items()} == {k: reference[k] for k in records}
    assert records[victim["spec"]]["details"]["sessions"] == 2  # resumed, not restarted


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
