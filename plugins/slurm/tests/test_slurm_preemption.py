"""Preemption: the `local` trainer's run in a job gets SIGUSR2 (Slurm's warning) mid-run;
submitit calls the task's `checkpoint()`, the run saves its checkpoint and stops, the task is
requeued, and the run resumes from its checkpoint to the final loss of an uninterrupted run
(CPU, fp32: bitwise). Once on submitit's local executor, once through the stand-in Slurm
(`scancel --signal=USR2`, then `scontrol requeue`). Slow: real training in two sessions
(`uv run pytest -m slow plugins/slurm`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from flops_fit_core import ExperimentSpec, ModelShape, RunResult, TrainerContext
from flops_fit_slurm import SlurmExecutor
from flops_fit_torch import LocalTrainer

pytestmark = pytest.mark.slow

SHAPE = ModelShape(d_model=32, n_layers=1, n_heads=2, d_ff=128, vocab_size=64, seq_len=32)
STEPS, BATCH = 1500, 4  # a few seconds: long enough to be interrupted mid-run


@pytest.fixture(scope="module")
def trainer_config(tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    return {
        "data": {"cache_dir": str(cache), "eval_tokens": 2048, "synthetic": {"words": 512}},
        "threads": 1,
        "eval_batch_size": 16,
        "precision": "fp32",
        "checkpoint_every_steps": 50,
    }


@pytest.fixture(scope="module")
def spec() -> ExperimentSpec:
    tokens = STEPS * BATCH * SHAPE.seq_len
    return ExperimentSpec(
        budget=float(tokens * SHAPE.flops_per_token),
        params=SHAPE.params_total,
        tokens=tokens,
        shape=SHAPE,
        learning_rate=0.5,
        batch_size=BATCH,
        schedule="cosine",
        seed=0,
    )


@pytest.fixture(scope="module")
def uninterrupted(trainer_config, spec, tmp_path_factory) -> RunResult:
    run = tmp_path_factory.mktemp("reference")
    context = TrainerContext(run_dir=run, checkpoint_dir=run / "checkpoints" / spec.id)
    return LocalTrainer(trainer_config).train(spec, context)


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def _preempted_run(config, trainer_config, spec, run_dir: Path, preempt) -> RunResult:
    """Train `spec` through the executor; `preempt(job_id)` once its first checkpoint exists."""
    delivered: list[RunResult] = []
    sweep = threading.Thread(
        target=SlurmExecutor(config).map,
        args=(LocalTrainer(trainer_config), [spec], delivered.append),
        kwargs={"run_dir": run_dir},
    )
    sweep.start()
    try:
        checkpoint = run_dir / "checkpoints" / spec.id / "checkpoint.pt"
        _wait_for(checkpoint.exists, 120, "the run's first checkpoint")
        (record,) = [json.loads(x) for x in (run_dir / "slurm" / "jobs.jsonl").open()]
        preempt(record["job_id"])
    finally:
        sweep.join(180)
    assert not sweep.is_alive()
    (result,) = delivered
    return result


def test_a_preempted_job_on_the_local_executor_resumes_to_the_same_loss(
    trainer_config, spec, uninterrupted, tmp_path
):
    def preempt(job_id: str) -> None:
        # the job's task: the one child of submitit's controller (the job id is its pid)
        children = Path(f"/proc/{job_id}/task/{job_id}/children")
        (task,) = _wait_for(lambda: children.read_text().split(), 30, "the task process")
        os.kill(int(task), signal.SIGUSR2)

    config = {"cluster": "local", "poll_s": 0.1, "state_check_s": 0.3}
    result = _preempted_run(config, trainer_config, spec, tmp_path, preempt)
    assert result.status == "ok", result.error
    assert result.details["sessions"] == 2, "the run was not interrupted and resumed"
    assert result.loss == uninterrupted.loss
    log = "".join(p.read_text() for p in (tmp_path / "slurm").glob("*_0_log.*"))
    assert "this job is preempted" in log and "Requeued job" in log


def test_a_preempted_array_task_is_requeued_by_slurm_and_resumes(
    fake_slurm, trainer_config, spec, uninterrupted, tmp_path
):
    def preempt(job_id: str) -> None:  # as Slurm warns a task it is about to preempt
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)

    config = {"poll_s": 0.1, "state_check_s": 0.3}
    result = _preempted_run(config, trainer_config, spec, tmp_path, preempt)
    assert result.status == "ok", result.error
    assert result.details["sessions"] == 2
    assert result.loss == uninterrupted.loss
    (job,) = fake_slurm.jobs().values()
    assert job["tasks"]["0"]["restarts"] == 1
    assert [["requeue", job["array_id"]]] == fake_slurm.calls("scontrol")
