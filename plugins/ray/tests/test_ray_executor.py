"""The `ray` executor against a real local Ray cluster (the `ray_cluster` fixture): the executor
contract, a mock study equal to `serial`'s, the in-flight cap, a trainer's failure tried once,
a cancel mid-sweep, a version mismatch, and a driver process stopped by Ctrl-C or SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from flops_fit_core import ClusterError, ConfigError, RunResult, Trainer, TrainingError
from flops_fit_core.cli import main
from flops_fit_core.testing import (
    VERSION_ENV,
    ChildProcessTrainer,
    ExecutorContract,
    OtherVersionTrainer,
    cancel_when_started,
    tiny_specs,
)
from flops_fit_ray import RayExecutor

#: A shrunk mock study: 3 budgets x 3 sizes, no figures, no compare fits.
SHRUNK = (
    "--set",
    "planner.n_budgets=3",
    "--set",
    "planner.sizes_per_budget=3",
    "--set",
    "plot.names=[]",
)
FLOPS_FIT = Path(sys.executable).parent / "flops-fit"


@pytest.fixture(autouse=True)
def _cluster(ray_cluster):
    """Every test here runs against the module's cluster."""


class TestRayExecutor(ExecutorContract):
    @pytest.fixture
    def plugin(self):
        return RayExecutor

    @pytest.fixture
    def plugin_config(self):
        return {"grace_s": 30}


def flops_fit(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").open()]


def _losses(run_dir: Path) -> dict[str, float]:
    return {r["experiment_id"]: r["loss"] for r in _records(run_dir) if r["status"] == "ok"}


def test_a_mock_study_through_ray_equals_the_serial_one(capsys, tmp_path):
    serial, on_ray = tmp_path / "serial", tmp_path / "ray"
    base = ["-q", "run", "--preset", "mock", *SHRUNK]
    assert flops_fit(capsys, *base, "--out", serial)[0] == 0
    code, err = flops_fit(capsys, *base, "--out", on_ray, "--executor", "ray")
    assert code == 0, err
    assert _losses(on_ray) == _losses(serial) and len(_losses(serial)) == 9
    assert len(_records(on_ray)) == 9  # one record per experiment
    fits = [json.loads((d / "fit.json").read_text()) for d in (serial, on_ray)]
    assert fits[0]["laws"] == fits[1]["laws"]
    devices = {r["device"] for r in _records(on_ray)}
    assert devices == {"mock"}


class Timed(Trainer):
    """Sleeps, recording when each run started and ended (in `run_dir/times/`)."""

    name = "timed"

    def train(self, spec, context):
        start = time.time()
        time.sleep(0.6)
        folder = Path(context.run_dir) / "times"
        folder.mkdir(exist_ok=True)
        (folder / spec.id).write_text(json.dumps([start, time.time(), os.getpid()]))
        return RunResult.success(spec, self.info, loss=1.0, tokens_trained=spec.tokens)


def _most_at_once(folder: Path) -> int:
    spans = [json.loads(p.read_text()) for p in folder.iterdir()]
    return max(sum(1 for s, e, _ in spans if s <= start < e) for start, _, _ in spans)


@pytest.mark.parametrize(("cap", "expected"), [(1, 1), (None, 2)])
def test_max_in_flight_caps_the_experiments_submitted_at_once(tmp_path, cap, expected):
    """With 2 CPUs, the default cap (slots + 2) runs 2 at once; `max_in_flight = 1`, one."""
    options = {} if cap is None else {"max_in_flight": cap}
    delivered = []
    RayExecutor(options).map(Timed(), tiny_specs(4), delivered.append, run_dir=tmp_path)
    assert sorted(r.experiment_id for r in delivered) == sorted(s.id for s in tiny_specs(4))
    assert _most_at_once(tmp_path / "times") == expected


class RaisesOnce(Trainer):
    """Raises for every spec, recording each try in `run_dir/tries/<id>`."""

    name = "raises"

    def train(self, spec, context):
        folder = Path(context.run_dir) / "tries"
        folder.mkdir(exist_ok=True)
        with (folder / spec.id).open("a") as out:
            out.write("try\n")
        raise TrainingError("the trainer's own bug")


def test_a_trainer_that_raises_gives_one_failed_result_tried_once(tmp_path):
    spec = tiny_specs(1)[0]
    delivered = []
    RayExecutor({"infra_retries": 3}).map(RaisesOnce(), [spec], delivered.append, run_dir=tmp_path)
    assert [(r.status, r.cause) for r in delivered] == [("failed", "trainer_error")]
    assert "the trainer's own bug" in delivered[0].error
    assert (tmp_path / "tries" / spec.id).read_text() == "try\n"


def test_a_cancel_mid_sweep_delivers_nothing_more_and_stops_every_run(tmp_path):
    """Two runs in flight, two queued: a cancel stops the two (each kills its child) and
    `map` returns within the grace period without delivering anything or starting more."""
    cancel = threading.Event()
    children = tmp_path / "children"
    cancel_when_started(cancel, children, count=2, pattern="*.pid", timeout=60)
    delivered = []
    started = time.monotonic()
    RayExecutor({"grace_s": 20}).map(
        ChildProcessTrainer({"seconds": 120}),
        tiny_specs(4),
        delivered.append,
        run_dir=tmp_path,
        cancel=cancel,
    )
    assert delivered == []
    assert time.monotonic() - started < 60
    pids = [int(p.read_text()) for p in children.glob("*.pid")]
    assert len(pids) == 2, "the queued runs started after the cancel"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not list((tmp_path / "checkpoints").glob(".cancel-*")), "the flag was left behind"


class Stubborn(Trainer):
    """Sleeps without ever looking at the cancel event (a trainer stuck in a collective)."""

    name = "stubborn"

    def train(self, spec, context):
        folder = Path(context.run_dir) / "started"
        folder.mkdir(exist_ok=True)
        (folder / spec.id).write_text(str(os.getpid()))
        time.sleep(120)
        return RunResult.success(spec, self.info, loss=1.0, tokens_trained=spec.tokens)


def test_a_run_that_ignores_the_cancel_is_force_cancelled_after_the_grace(tmp_path):
    cancel = threading.Event()
    started = tmp_path / "started"
    cancel_when_started(cancel, started, timeout=60)
    delivered = []
    began = time.monotonic()
    RayExecutor({"grace_s": 1}).map(
        Stubborn(), tiny_specs(1), delivered.append, run_dir=tmp_path, cancel=cancel
    )
    assert delivered == [] and time.monotonic() - began < 60
    (pid,) = [int(p.read_text()) for p in started.glob("*")]
    _wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the stuck worker to be killed")


def test_workers_with_another_trainer_version_stop_the_sweep_in_one_line(tmp_path):
    executor = RayExecutor({"runtime_env": {"env_vars": {VERSION_ENV: "9.9.9"}}})
    delivered = []
    with pytest.raises(ClusterError) as caught:
        executor.map(OtherVersionTrainer(), tiny_specs(3), delivered.append, run_dir=tmp_path)
    message = str(caught.value)
    assert "trainer other-version 9.9.9" in message and "\n" not in message
    assert delivered == [], "a result from a mismatched worker reached the store"


def test_runtime_env_takes_env_vars_only():
    with pytest.raises(ConfigError, match="env_vars only, not 'pip'"):
        RayExecutor({"runtime_env": {"pip": ["torch"]}})


def test_an_unreachable_head_is_one_line_within_seconds(tmp_path):
    """Ray itself retries a dead address for minutes; the driver says so at once."""
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        args = [str(FLOPS_FIT), "-q", "run", "--preset", "mock", "--out", str(tmp_path / "r")]
        args += ["--executor", "ray", "--set", f"executor.address=127.0.0.1:{port}"]
        started = time.monotonic()
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert f"cannot reach the Ray head at 127.0.0.1:{port}" in line
    assert (
        not (tmp_path / "r" / "results.jsonl").exists()
        or not (tmp_path / "r" / "results.jsonl").read_text()
    )


# --- a driver in its own process ------------------------------------------------------------


def _job_workers(marker: str) -> list[int]:
    """The pids of processes whose environment carries `marker` (the job's Ray workers)."""
    found = []
    needle = f"FLOPS_FIT_TEST_JOB={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _driver(address: str, out: Path, marker: str, *extra: str) -> subprocess.Popen:
    args = [str(FLOPS_FIT), "-q", "run", "--preset", "mock", *SHRUNK, "--out", str(out)]
    args += ["--executor", "ray", "--set", f"executor.address={address}"]
    args += ["--set", f"executor.runtime_env.env_vars.FLOPS_FIT_TEST_JOB={marker}", *extra]
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: the signals go to it alone
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def _gone(pids: list[int]) -> bool:
    return all(not Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_driver_stopped_by_ctrl_c_exits_within_10_s_leaving_no_worker(ray_cluster, tmp_path):
    marker = uuid.uuid4().hex
    driver = _driver(ray_cluster, tmp_path / "run", marker, "--set", "trainer.seconds_per_run=60")
    try:
        workers = _wait_for(lambda: _job_workers(marker), 60, "the job's workers")
        time.sleep(0.5)  # the runs are under way
        driver.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        _, err = driver.communicate(timeout=10)
        assert time.monotonic() - stopped < 10
        assert driver.returncode == 130, err
        assert "rerun the same command to resume" in err
        _wait_for(lambda: _gone(workers) and not _job_workers(marker), 10, "workers to exit")
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


@pytest.mark.slow
def test_a_driver_killed_and_rerun_resumes_without_duplicates(ray_cluster, tmp_path):
    """SIGKILL the driver once some results are in; the rerun trains only the rest."""
    marker, run = uuid.uuid4().hex, tmp_path / "run"
    slow = ("--set", "trainer.seconds_per_run=1.5")
    driver = _driver(ray_cluster, run, marker, *slow)
    try:
        results = run / "results.jsonl"
        _wait_for(lambda: results.exists() and len(_records(run)) >= 2, 120, "two results")
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    before = {r["experiment_id"] for r in _records(run)}
    assert 2 <= len(before) < 9
    again = _driver(ray_cluster, run, uuid.uuid4().hex, *slow)
    _, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    ids = [r["experiment_id"] for r in _records(run)]
    assert len(ids) == len(set(ids)) == 9, "a result was duplicated or lost"
    assert before <= set(ids)
