"""The `slurm` executor two ways: on submitit's local executor (`cluster = "local"`), and
through the real Slurm code path against the stand-in `sbatch`, `srun`, `sacct`, `scancel`
and `scontrol` on PATH (the `fake_slurm` fixture): the executor contract, a mock study equal
to `serial`'s, the generated sbatch script, packing, a node failure, a version mismatch, a
driver killed and re-attached, and Ctrl-C cancelling the array."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flops_fit_core import (
    THREADS_ENV,
    ClusterError,
    ConfigError,
    RunResult,
    Trainer,
    TrainingCancelled,
)
from flops_fit_core.cli import main
from flops_fit_core.testing import (
    VERSION_ENV,
    EchoTrainer,
    ExecutorContract,
    OtherVersionTrainer,
    tiny_specs,
)
from flops_fit_slurm import SlurmExecutor

DATA = Path(__file__).parent / "data"
FLOPS_FIT = Path(sys.executable).parent / "flops-fit"
#: Polling fast enough for tests (a real cluster wants the defaults: 2 s and 60 s).
FAST = {"poll_s": 0.1, "state_check_s": 0.5}
FAST_SETS = ("--set", "executor.poll_s=0.1", "--set", "executor.state_check_s=0.5")
#: A shrunk mock study: 3 budgets x 3 sizes, no figures, no compare fits.
SHRUNK = (
    "--set",
    "planner.n_budgets=3",
    "--set",
    "planner.sizes_per_budget=3",
    "--set",
    "plot.names=[]",
)


@pytest.mark.slow
class TestSlurmExecutorLocal(ExecutorContract):
    """submitit's local executor: the same jobs as processes on this machine (slow: the
    default run covers this path with a whole study, below)."""

    @pytest.fixture
    def plugin(self):
        return SlurmExecutor

    @pytest.fixture
    def plugin_config(self):
        return {"cluster": "local", **FAST}


class TestSlurmExecutorStandIn(ExecutorContract):
    """The Slurm code path: sbatch, sacct and scancel (stand-ins on PATH)."""

    @pytest.fixture(autouse=True)
    def _slurm(self, fake_slurm):
        pass

    @pytest.fixture
    def plugin(self):
        return SlurmExecutor

    @pytest.fixture
    def plugin_config(self):
        return {**FAST, "array_parallelism": 2}


def flops_fit(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "results.jsonl"
    return [json.loads(line) for line in path.open()] if path.exists() else []


def _losses(run_dir: Path) -> dict[str, float]:
    return {r["experiment_id"]: r["loss"] for r in _records(run_dir) if r["status"] == "ok"}


@pytest.fixture(scope="module")
def serial_study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "run"
    assert main(["-q", "run", "--preset", "mock", *SHRUNK, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "cluster",
    # on the stand-in Slurm, whole studies run in the re-attach and Ctrl-C tests below
    ["local", pytest.param("slurm", marks=pytest.mark.slow)],
)
def test_a_mock_study_through_slurm_equals_the_serial_one(
    request, capsys, tmp_path, serial_study, cluster
):
    if cluster == "slurm":
        request.getfixturevalue("fake_slurm")
    out = tmp_path / "run"
    args = ["-q", "run", "--preset", "mock", *SHRUNK, "--out", out, "--executor", "slurm"]
    args += [*FAST_SETS, "--set", f"executor.cluster={cluster}"]
    code, err = flops_fit(capsys, *args)
    assert code == 0, err
    assert _losses(out) == _losses(serial_study) and len(_losses(out)) == 9
    assert len(_records(out)) == 9  # one record per experiment
    fits = [json.loads((d / "fit.json").read_text()) for d in (serial_study, out)]
    assert fits[0]["laws"] == fits[1]["laws"]


def test_the_sbatch_script_of_a_gpu_config(fake_slurm, tmp_path):
    """One array for the sweep: partition, account, QOS, one GPU per task (gres), CPUs,
    memory, time, the array's size and parallelism, extra lines and the setup."""
    config = {
        **FAST,
        "partition": "gpu",
        "account": "scaling-lab",
        "qos": "high",
        "gpus_per_node": 1,
        "cpus_per_task": 8,
        "mem": "64G",
        "time": 240,
        "array_parallelism": 4,
        "sbatch_lines": ["--constraint=a100", "--exclusive"],
        "setup": ["module load cuda/12.4"],
    }
    delivered: list[RunResult] = []
    specs = tiny_specs(6)
    SlurmExecutor(config).map(EchoTrainer(), specs, delivered.append, run_dir=tmp_path)
    assert sorted(r.experiment_id for r in delivered) == sorted(s.id for s in specs)
    (submitted,) = fake_slurm.calls("sbatch")
    (array_id,) = fake_slurm.jobs()
    folder = tmp_path.resolve() / "slurm"
    script = (folder / f"{array_id}_submission.sh").read_text()
    assert Path(submitted[-1]).resolve().read_text() == script
    script = script.replace(str(folder), "{folder}").replace(sys.executable, "{python}")
    assert script == (DATA / "gpu_array.sbatch").read_text()


class ThreadsSeen(Trainer):
    """Records the thread budget and the process each run got."""

    name = "threads-seen"

    def train(self, spec, context):
        time.sleep(0.3)
        seen = f"threads={os.environ.get(THREADS_ENV)} pid={os.getpid()}"
        return RunResult.success(spec, self.info, loss=1.0, tokens_trained=spec.tokens, device=seen)


def test_small_cpu_runs_are_packed_with_a_thread_budget_each(fake_slurm, tmp_path):
    """4 CPUs per task, 2 experiments per task: 3 array tasks for 5 experiments, each run in
    its own process with 2 threads, two at a time."""
    config = {**FAST, "cpus_per_task": 4, "experiments_per_task": 2}
    delivered: list[RunResult] = []
    SlurmExecutor(config).map(ThreadsSeen(), tiny_specs(5), delivered.append, run_dir=tmp_path)
    assert len(delivered) == 5 and all(r.status == "ok" for r in delivered)
    assert {r.device.split()[0] for r in delivered} == {"threads=2"}
    assert len({r.device.split()[1] for r in delivered}) == 5  # a process each
    (job,) = fake_slurm.jobs().values()
    assert len(job["tasks"]) == 3


def test_packing_more_experiments_than_cpus_is_refused():
    with pytest.raises(ConfigError, match="experiments_per_task"):
        SlurmExecutor({"cpus_per_task": 2, "experiments_per_task": 4})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--partition=debug", "set --partition with 'partition'"),
        ("constraint=a100", "is not '--key=value' or '--flag'"),
    ],
)
def test_sbatch_lines_are_checked(line, message):
    with pytest.raises(ConfigError, match=message):
        SlurmExecutor({"sbatch_lines": [line]})


def test_a_folder_that_leaves_the_run_directory_is_refused(capsys, fake_slurm, tmp_path):
    args = ["-q", "run", "--preset", "mock", *SHRUNK, "--out", tmp_path / "r"]
    code, err = flops_fit(capsys, *args, "--executor", "slurm", "--set", "executor.folder=../x")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "executor.folder: '../x' leads out of the run directory" in line
    assert not fake_slurm.calls("sbatch") and not (tmp_path / "x").exists()


def test_no_slurm_on_path_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    args = ["-q", "run", "--preset", "mock", *SHRUNK, "--out", tmp_path / "r"]
    code, err = flops_fit(capsys, *args, "--executor", "slurm")
    assert code == 1
    (line,) = err.strip().splitlines()
    assert "sbatch, srun, sacct, scancel not found on PATH" in line
    assert "executor.cluster = 'local'" in line


def test_a_submission_sbatch_refuses_is_one_line(capsys, fake_slurm, tmp_path):
    args = ["-q", "run", "--preset", "mock", *SHRUNK, "--out", tmp_path / "r"]
    args += ["--executor", "slurm", "--set", "executor.partition=nonexistent"]
    code, err = flops_fit(capsys, *args)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert "the cluster refused the jobs" in line and "Invalid partition name" in line
    assert _records(tmp_path / "r") == []


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def test_a_node_failure_resubmits_the_experiment_from_its_checkpoint(fake_slurm, tmp_path):
    """A task whose node fails ends NODE_FAIL with no result: its experiment is submitted
    again (a second sbatch), and the sweep ends with exactly one ok result per experiment."""
    specs = tiny_specs(3)
    delivered: list[RunResult] = []
    executor = SlurmExecutor({**FAST, "array_parallelism": 3})
    sweep = threading.Thread(
        target=executor.map,
        args=(EchoTrainer({"delay_s": 4}), specs, delivered.append),
        kwargs={"run_dir": tmp_path},
    )
    sweep.start()
    try:
        running = _wait_for(lambda: fake_slurm.tasks("RUNNING"), 60, "a running task")
        time.sleep(0.5)
        fake_slurm.run("node-fail", running[0])
    finally:
        sweep.join(120)
    assert not sweep.is_alive()
    assert sorted(r.experiment_id for r in delivered) == sorted(s.id for s in specs)
    assert all(r.status == "ok" for r in delivered)
    assert len(fake_slurm.calls("sbatch")) == 2
    assert fake_slurm.tasks("NODE_FAIL") == [running[0]]


@pytest.mark.slow
def test_a_job_that_keeps_dying_is_failed_after_its_retries(fake_slurm, tmp_path):
    spec = tiny_specs(1)[0]
    delivered: list[RunResult] = []
    executor = SlurmExecutor({**FAST, "infra_retries": 1})
    sweep = threading.Thread(
        target=executor.map,
        args=(EchoTrainer({"delay_s": 30}), [spec], delivered.append),
        kwargs={"run_dir": tmp_path},
    )
    sweep.start()
    try:
        for n in (1, 2):
            _wait_for(lambda n=n: len(fake_slurm.calls("sbatch")) == n, 60, f"submission {n}")
            task = _wait_for(lambda: fake_slurm.tasks("RUNNING"), 60, "a running task")[0]
            fake_slurm.run("node-fail", task)
    finally:
        sweep.join(60)
    assert not sweep.is_alive()
    assert [(r.status, r.cause) for r in delivered] == [("failed", "worker_died")]
    assert "NODE_FAIL" in delivered[0].error and "on each of 2 tries" in delivered[0].error


class GivesUp(Trainer):
    """Stops as a cancelled run does, though nothing cancelled it."""

    name = "gives-up"

    def train(self, spec, context):
        raise TrainingCancelled("stopped by itself")


def test_a_run_that_stops_by_itself_is_retried_then_failed_never_looped(fake_slurm, tmp_path):
    delivered: list[RunResult] = []
    executor = SlurmExecutor({**FAST, "infra_retries": 1})
    executor.map(GivesUp(), tiny_specs(1), delivered.append, run_dir=tmp_path)
    assert [(r.status, r.cause) for r in delivered] == [("failed", "worker_died")]
    assert "stopped at a checkpoint with no result" in delivered[0].error
    assert "on each of 2 tries" in delivered[0].error
    assert len(fake_slurm.calls("sbatch")) == 2


def test_jobs_with_another_trainer_version_stop_the_sweep_in_one_line(
    fake_slurm, tmp_path, monkeypatch
):
    monkeypatch.setenv(VERSION_ENV, "9.9.9")  # what the nodes have installed
    delivered: list[RunResult] = []
    with pytest.raises(ClusterError) as caught:
        SlurmExecutor(FAST).map(
            OtherVersionTrainer(), tiny_specs(3), delivered.append, run_dir=tmp_path
        )
    message = str(caught.value)
    assert "trainer other-version 9.9.9" in message and "\n" not in message
    assert delivered == [], "a result from a mismatched node reached the store"
    _wait_for(
        lambda: not fake_slurm.tasks("RUNNING") and not fake_slurm.tasks("PENDING"),
        10,
        "every task to end",
    )


# --- a driver in its own process: `flops-fit train PLAN` ------------------------------------

#: The mock preset planned at 2 budgets x 3 sizes: 6 experiments.
SMALL_PLAN = ("--set", "planner.n_budgets=2", "--set", "planner.sizes_per_budget=3")


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """The plan, and its losses trained by `serial`."""
    folder = tmp_path_factory.mktemp("small")
    plan = folder / "plan.json"
    assert main(["-q", "plan", "--preset", "mock", *SMALL_PLAN, "-o", str(plan)]) == 0
    serial = folder / "serial.jsonl"
    args = ["-q", "train", str(plan), "--preset", "mock", "--results", str(serial)]
    assert main(args) == 0
    losses = {r["experiment_id"]: r["loss"] for r in map(json.loads, serial.open())}
    assert len(losses) == 6
    return plan, losses


def _train_args(plan: Path, run: Path, *extra: str) -> list[str]:
    return [
        "train", str(plan), "--preset", "mock", "--results", str(run / "results.jsonl"),
        "--executor", "slurm", *FAST_SETS, "--set", "executor.array_parallelism=2", *extra,
    ]  # fmt: skip


def _driver(plan: Path, run: Path, *extra: str) -> subprocess.Popen:
    run.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(FLOPS_FIT), *_train_args(plan, run, *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: the signals go to it alone
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _stop(driver: subprocess.Popen) -> None:
    if driver.poll() is None:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()


def _kill_when(driver: subprocess.Popen, predicate, what: str) -> None:
    """SIGKILL the driver's process group once `predicate()` holds, as a lost login session
    or a `kill -9` would stop it."""
    try:
        _wait_for(predicate, 120, what)
    finally:
        _stop(driver)


def test_a_driver_killed_and_rerun_reattaches_to_its_array(
    capsys, fake_slurm, tmp_path, small_plan
):
    """SIGKILL the driver once two results are in: the array runs on without it; the rerun
    collects what finished meanwhile, waits for the rest and submits nothing again."""
    plan, serial = small_plan
    run = tmp_path / "run"
    slow = ("--set", "trainer.seconds_per_run=1.0")
    driver = _driver(plan, run, *slow)
    _kill_when(driver, lambda: len(_records(run)) >= 2, "two results")
    before = {r["experiment_id"] for r in _records(run)}
    assert 2 <= len(before) < 6
    # the array goes on without its driver: wait for one more task to end
    done = len(fake_slurm.tasks("COMPLETED"))
    _wait_for(lambda: len(fake_slurm.tasks("COMPLETED")) > done, 60, "a task to end")
    assert fake_slurm.tasks("RUNNING") or fake_slurm.tasks("PENDING"), "nothing left to wait for"
    code, err = flops_fit(capsys, *_train_args(plan, run, *slow))
    assert code == 0, err
    assert "re-attached to slurm job" in err
    assert len(fake_slurm.calls("sbatch")) == 1, "the rerun submitted again"
    ids = [r["experiment_id"] for r in _records(run)]
    assert len(ids) == len(set(ids)) == 6, "a result was duplicated or lost"
    assert _losses(run) == serial


def test_ctrl_c_cancels_the_array_and_a_rerun_resumes(capsys, fake_slurm, tmp_path, small_plan):
    """The first Ctrl-C: the tasks not started are scancel-ed at once, the two in flight stop
    at their next check; the driver exits 130 within seconds leaving no task running. The
    rerun submits what is left, once."""
    plan, serial = small_plan
    run = tmp_path / "run"
    driver = _driver(plan, run, "--set", "trainer.seconds_per_run=60")
    try:
        _wait_for(lambda: len(fake_slurm.tasks("RUNNING")) == 2, 60, "two running tasks")
        time.sleep(1.0)  # the runs are under way
        driver.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        _, err = driver.communicate(timeout=30)
        assert time.monotonic() - stopped < 15
        assert driver.returncode == 130, err
        assert "rerun the same command to resume" in err
    finally:
        _stop(driver)
    (array_id,) = fake_slurm.jobs()
    assert ["--state=PENDING", array_id] in fake_slurm.calls("scancel")
    _wait_for(lambda: not fake_slurm.tasks("RUNNING"), 10, "the tasks to end")
    assert not fake_slurm.tasks("PENDING")
    assert _records(run) == []
    code, err = flops_fit(capsys, "-q", *_train_args(plan, run))
    assert code == 0, err
    calls = fake_slurm.calls("sbatch")
    assert len(calls) == 2  # the rest, once: the cancelled array is not waited for
    arrays = sorted(fake_slurm.jobs().values(), key=lambda job: int(job["array_id"]))
    assert len(arrays[1]["tasks"]) == 6  # the two stopped runs resume with the rest
    assert _losses(run) == serial


@pytest.mark.slow
def test_a_rerun_with_other_trainer_options_cancels_the_old_array(
    capsys, fake_slurm, tmp_path, small_plan
):
    """Jobs of an earlier driver that train under other options would write the same
    checkpoint folders: the rerun cancels them and trains anew."""
    plan, _ = small_plan
    run = tmp_path / "run"
    driver = _driver(plan, run, "--set", "trainer.seconds_per_run=60")
    _kill_when(driver, lambda: len(fake_slurm.tasks("RUNNING")) == 2, "two running tasks")
    (old,) = fake_slurm.jobs()
    code, err = flops_fit(capsys, *_train_args(plan, run, "--set", "trainer.noise=0.01"))
    assert code == 0, err
    assert f"cancelled slurm job {old} of an earlier run: made with other trainer options" in err
    assert [old] in fake_slurm.calls("scancel")
    assert len(fake_slurm.calls("sbatch")) == 2
    assert all(t["state"] == "CANCELLED" for t in fake_slurm.jobs()[old]["tasks"].values())
    assert len(_losses(run)) == 6


@pytest.mark.slow
def test_a_local_driver_killed_with_its_jobs_resumes_without_duplicates(
    capsys, tmp_path, small_plan
):
    """`cluster = "local"`: the jobs are the driver's children, so a SIGKILL of its process
    group takes them along; the rerun collects what they finished, finds the rest dead (their
    controllers gone) and trains it again, each experiment once."""
    plan, serial = small_plan
    run = tmp_path / "run"
    local = ("--set", "executor.cluster=local", "--set", "trainer.seconds_per_run=1.0")
    driver = _driver(plan, run, *local)
    _kill_when(driver, lambda: len(_records(run)) >= 2, "two results")
    code, err = flops_fit(capsys, *_train_args(plan, run, *local))
    assert code == 0, err
    ids = [r["experiment_id"] for r in _records(run)]
    assert len(ids) == len(set(ids)) == 6, "a result was duplicated or lost"
    assert _losses(run) == serial
