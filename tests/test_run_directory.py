"""Issue 12: a run directory that survives anything. Torn appends of any length heal, one
writer at a time, inputs are never overwritten, disk errors are one line (exit 2) before
anything trains, temporary files do not outlive a kill, symlinks do not lead out, malformed
or oversized input is a usage error, and Ctrl-C or a cancel stops cleanly."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flops_fit_core import RunFailed, SweepPlan, TrainingCancelled
from tests.clirunner import (
    assert_one_line_error,
    flops_fit,
    mock_study_args,
    sigint_as_from_a_terminal,
    snapshot,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished mock study (no figures)."""
    from flops_fit_core.cli import main

    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(mock_study_args(run)) == 0
    return run


def _copy(finished, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run


# -- torn appends -------------------------------------------------------------------------


def test_a_torn_append_of_any_length_is_healed_by_run_and_nothing_else_trains(
    capsys, finished, tmp_path
):
    """A prefix of a valid record appended to a finished file (`{"schema_v`, what a full disk
    left): `fit` reports the skipped record; `run` sets it aside, says so once, trains
    nothing and leaves the file as it was. (Every length 1..n-1 goes through the same `heal`
    in tests/test_store.py; here a spread of lengths through the command.)"""
    run = _copy(finished, tmp_path)
    results = run / "results.jsonl"
    before = results.read_bytes()
    last = before.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    for n in sorted({1, 10, 17, len(last) // 2, len(last) - 1}):
        results.write_bytes(before + last[:n])
        fit = flops_fit(capsys, "fit", results, "-o", tmp_path / "fit.json", "--json")
        assert fit.code == 0, fit.err
        assert "skipped 1 torn record" in fit.err, n
        outcome = flops_fit(capsys, *mock_study_args(run))
        assert outcome.code == 0, (n, outcome.err)
        assert "ended in a torn record" in outcome.err and "set aside to" in outcome.err, n
        assert results.read_bytes() == before, n  # nothing trained, the tail set aside
        again = flops_fit(capsys, *mock_study_args(run))
        assert again.code == 0 and "torn" not in again.err  # reported once
    aside = sorted(run.glob("results.jsonl.torn-*"))
    assert len(aside) == 5 and {p.read_bytes() for p in aside} == {
        last[:n] for n in {1, 10, 17, len(last) // 2, len(last) - 1}
    }


# -- one writer ---------------------------------------------------------------------------


def test_a_second_run_in_the_same_directory_exits_2_naming_the_first(capsys, tmp_path):
    """Two `run`s of one directory at once: the second stops at once (exit 2) naming the
    holder's pid; then Ctrl-C stops the first (exit 130); no id was trained twice."""
    run = tmp_path / "run"
    slow = mock_study_args(run, "--set", "trainer.seconds_per_run=0.5")
    first = subprocess.Popen(
        [sys.executable, "-m", "flops_fit_core", *slow],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_as_from_a_terminal,
    )
    try:
        lock, results = run / "results.jsonl.lock", run / "results.jsonl"
        deadline = time.monotonic() + 60

        def training() -> bool:  # holds the lock, and a first result is in
            held = lock.exists() and f"pid {first.pid} " in lock.read_text()
            return held and results.exists() and results.read_bytes().count(b"\n") >= 1

        while not training():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        second = flops_fit(capsys, *mock_study_args(run))
        assert_one_line_error(second, f"in use by another flops-fit (pid {first.pid} ", code=2)
        os.killpg(first.pid, signal.SIGINT)
        _, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.communicate()
    assert first.returncode == 130, err
    assert "Traceback" not in err
    ids = [json.loads(line)["experiment_id"] for line in (run / "results.jsonl").open()]
    assert ids and len(ids) == len(set(ids))
    # the rerun finishes what the interrupted run left, training none of it again
    done = flops_fit(capsys, *mock_study_args(run, "--json"))
    assert done.code == 0, done.err
    assert done.json()["trained"] == done.json()["experiments"] - len(ids)


# -- inputs are never overwritten ---------------------------------------------------------


def test_fit_refuses_to_overwrite_its_input_or_a_file_that_is_not_a_fit(capsys, tmp_path):
    table = tmp_path / "fit.json"
    rows = [  # Chinchilla's law at 3 budgets, 5 sizes around each optimum
        {
            "params": n,
            "tokens": c / (6 * n),
            "loss": 1.69 + 406.4 / n**0.34 + 410.7 / (c / 6 / n) ** 0.28,
        }
        for c in (1e18, 1e19, 1e20)
        for n in ((c / 120) ** 0.5 * 4 ** (k / 2) for k in range(-2, 3))
    ]
    table.write_text(json.dumps(rows))
    before = table.read_bytes()
    outcome = flops_fit(capsys, "fit", table)  # default -o is fit.json beside it: itself
    assert_one_line_error(outcome, "is an input of this command")
    assert table.read_bytes() == before
    assert_one_line_error(flops_fit(capsys, "fit", table, "-o", table), "is an input")
    other = tmp_path / "notes.json"
    other.write_text('{"mine": true}')
    assert_one_line_error(flops_fit(capsys, "fit", table, "-o", other), "--force")
    assert other.read_text() == '{"mine": true}'
    assert flops_fit(capsys, "-q", "fit", table, "-o", other, "--force").code == 0
    assert json.loads(other.read_text())["fitter"]


def test_plan_refuses_a_lock_file_a_directory_and_an_empty_path(capsys, finished, tmp_path):
    run = _copy(finished, tmp_path)
    lock = run / "results.jsonl.lock"
    lock.write_text("pid 1 on host\n")
    assert_one_line_error(flops_fit(capsys, "plan", "--preset", "mock", "-o", lock), "--force")
    assert lock.read_text() == "pid 1 on host\n"
    assert_one_line_error(
        flops_fit(capsys, "plan", "--preset", "mock", "-o", run), "is a directory"
    )
    assert_one_line_error(flops_fit(capsys, "plan", "--preset", "mock", "-o", ""), "empty path")
    # a plan may be replaced by a plan
    assert flops_fit(capsys, "-q", "plan", "--preset", "mock", "-o", run / "plan.json").code == 0


# -- disk errors --------------------------------------------------------------------------


def _mount_tmpfs(path: Path, options: str) -> bool:
    """Mount a small tmpfs at `path` where this test may (root, mount allowed)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_read_only_run_directory_is_one_line_and_nothing_trains(capsys, tmp_path):
    disk = tmp_path / "ro"
    if _mount_tmpfs(disk, "size=4m,ro"):
        try:
            outcome = flops_fit(capsys, *mock_study_args(disk / "run"))
        finally:
            _umount(disk)
        assert_one_line_error(outcome, "read-only file system")
        return
    if os.geteuid() == 0:
        pytest.skip("cannot mount a read-only file system here, and root ignores chmod")
    disk.mkdir()
    disk.chmod(0o555)
    try:
        outcome = flops_fit(capsys, *mock_study_args(disk / "run"))
    finally:
        disk.chmod(0o755)
    assert_one_line_error(outcome, "permission denied")


def test_train_where_results_cannot_be_written_trains_nothing(capsys, finished, tmp_path):
    """The results file is checked before the first run trains: nothing trained and lost."""
    run = _copy(finished, tmp_path)
    (run / "results.jsonl").unlink()
    (run / "results.jsonl").mkdir()  # in the way of every append
    outcome = flops_fit(capsys, "train", run / "plan.json")
    assert_one_line_error(outcome, "results.jsonl: is a directory")
    assert not any((run / "results.jsonl").iterdir())


def test_a_full_disk_is_one_line_before_training_and_at_an_append(capsys, tmp_path, monkeypatch):
    disk = tmp_path / "small"
    if _mount_tmpfs(disk, "size=64k"):
        try:
            outcome = flops_fit(capsys, *mock_study_args(disk / "run"))
        finally:
            _umount(disk)
        # refused before anything trains: no room for a run's checkpoint and records
        assert_one_line_error(outcome, "MiB free on its disk", "free some space")
    # where no small disk can be mounted, the same write path meets a simulated ENOSPC
    real_fsync = os.fsync

    def full(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("results.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    outcome = flops_fit(capsys, *mock_study_args(tmp_path / "run"))
    assert_one_line_error(outcome, "results.jsonl: no space left on the device")


def test_a_disk_without_room_for_a_checkpoint_refuses_before_training(
    capsys, tmp_path, monkeypatch
):
    from flops_fit_core import training

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(training.shutil, "disk_usage", lambda p: usage._replace(free=1 << 20))
    run = tmp_path / "run"
    outcome = flops_fit(
        capsys, "-q", "run", "--out", run, "--set", "plot.names=[]", "--set", "planner.n_budgets=2"
    )
    assert_one_line_error(outcome, "MiB free on its disk", "free some space")
    assert not (run / "results.jsonl").exists() or not (run / "results.jsonl").read_bytes()


# -- leftovers and escapes ----------------------------------------------------------------


def test_temporary_files_of_a_killed_write_are_removed_by_the_next_run(capsys, finished, tmp_path):
    run = _copy(finished, tmp_path)
    leftovers = [run / ".config.toml.k1x2.tmp", run / ".plan.json.zz9.tmp"]
    for path in leftovers:
        path.write_text("half")
    outcome = flops_fit(capsys, *mock_study_args(run)[1:])  # not -q: the note is told
    assert outcome.code == 0, outcome.err
    assert not any(p.exists() for p in leftovers)
    assert "a temporary file of a write cut short" in outcome.err


def test_a_symlink_out_of_the_run_directory_is_not_read_into_the_report(capsys, finished, tmp_path):
    run = _copy(finished, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:do-not-embed\n")
    (run / "fits").mkdir(exist_ok=True)
    (run / "fits" / "x.failed").symlink_to(secret)
    outcome = flops_fit(capsys, "report", run)
    assert_one_line_error(outcome, "symbolic link out of", "x.failed")
    assert (
        not (run / "report.html").exists()
        or "do-not-embed" not in (run / "report.html").read_text()
    )


# -- malformed and oversized input --------------------------------------------------------


def _table(tmp_path, text: str) -> Path:
    path = tmp_path / "runs.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('[{"params": ' + "1" * 5000 + ', "tokens": 1e9, "loss": 3}]', "digits"),
        ('[{"params": 1' + "0" * 400 + ', "tokens": 1e9, "loss": 3}]', "params"),
    ],
    ids=["nested-100000", "5000-digits", "1e400-as-integer"],
)
def test_malformed_tables_are_usage_errors(capsys, tmp_path, text, needle):
    path = _table(tmp_path, text)
    before = snapshot(tmp_path)
    outcome = flops_fit(capsys, "fit", path, "-o", tmp_path / "out.json")
    assert_one_line_error(outcome, needle)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("planner.seed=" + "[" * 3000 + "]" * 3000, "nested too deeply"),
        ("planner.n_budgets=1e9", "n_budgets"),
        ("planner.n_budgets=100000", "n_budgets"),
        ("planner.span=1e308", "span"),
        ("planner.sizes_per_budget=100000", "sizes_per_budget"),
    ],
    ids=["set-3000-deep", "n_budgets-1e9", "n_budgets-100000", "span-1e308", "sizes-100000"],
)
@pytest.mark.parametrize("command", [["config", "validate"], ["plan", "--dry-run"]])
def test_unbounded_options_are_refused_at_once(capsys, item, needle, command):
    started = time.monotonic()
    assert_one_line_error(flops_fit(capsys, *command, "--set", item), needle)
    assert time.monotonic() - started < 30  # refused, not built (a bound, not a benchmark)


def test_a_plan_larger_than_max_experiments_is_refused_before_it_is_built(capsys):
    outcome = flops_fit(
        capsys,
        "plan",
        "--dry-run",
        "--set",
        "planner.n_budgets=1000",
        "--set",
        "planner.sizes_per_budget=1000",
    )
    assert_one_line_error(outcome, "1000000 experiments", "max_experiments")


# -- cancellation and failures from Python ------------------------------------------------


def _study(trainer, executor, specs):
    """The mock preset's study, training `specs` with `trainer` under `executor`."""
    import dataclasses

    from flops_fit_core import resolve_study
    from flops_fit_core.config import load_study_config

    study = resolve_study(load_study_config(preset="mock", overrides=["plot.names=[]"]))
    study = dataclasses.replace(study, trainer=trainer, executor=executor)
    return study.with_plan(SweepPlan(planner="fixed", experiments=specs))


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_a_python_cancel_stops_run_study_before_fitting_and_the_child_is_gone(tmp_path, executor):
    from flops_fit_core import run_study
    from flops_fit_core.executors import ProcessExecutor, SerialExecutor
    from flops_fit_core.testing import ChildProcessTrainer, cancel_when_started, tiny_specs

    chosen = SerialExecutor() if executor == "serial" else ProcessExecutor({"workers": 2})
    study = _study(ChildProcessTrainer({"seconds": 120}), chosen, tiny_specs(3))
    cancel = threading.Event()
    children = tmp_path / "children"
    cancel_when_started(cancel, children, pattern="*.pid")
    with pytest.raises(TrainingCancelled, match="rerun the same command to resume"):
        run_study(study, tmp_path, cancel=cancel)
    assert not (tmp_path / "fit.json").exists()
    pids = [int(p.read_text()) for p in children.glob("*.pid")]
    assert pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_study_whose_every_experiment_failed_exits_1_not_2(tmp_path):
    from flops_fit_core import run_study
    from flops_fit_core.executors import SerialExecutor
    from flops_fit_core.testing import EchoTrainer, tiny_specs

    study = _study(EchoTrainer(), SerialExecutor(), tiny_specs(3, fail=(0, 1, 2)))
    with pytest.raises(RunFailed, match=r"every experiment failed \(3 of 3\)") as caught:
        run_study(study, tmp_path)
    assert caught.value.exit_code == 1
    assert "asked to fail" in str(caught.value)
