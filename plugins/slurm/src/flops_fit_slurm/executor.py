"""`SlurmExecutor`: the sweep as one Slurm job array (through submitit), resumable by
re-attaching to it.

The driver submits every experiment at once as one array (`--array=0-N%array_parallelism`:
Slurm keeps that many running), writes the job ids to the run directory's ledger, then
polls submitit's result files and hands each result to `on_result` as its task ends, in
completion order. Only the driver appends to `results.jsonl`.

- Preemption and time limits: Slurm warns a task with SIGUSR2; submitit calls the task's
  `checkpoint()`, the runs save their checkpoint and stop, and the task is requeued; the
  requeued task resumes each run from its checkpoint (`TrainTask`).
- A job that ended without a result (node failure, out of memory, cancelled by an admin) is
  submitted again, up to `infra_retries` times, then recorded as `failed` (cause
  `worker_died`: a rerun tries again). A trainer's own exception is a `failed` result, never
  a retry.
- Re-attaching: a driver killed (or its terminal closed) leaves the array running. The next
  `flops-fit train` reads the ledger, collects what finished meanwhile, waits for what is
  queued or running, and submits only what has no live job.
- Cancelling (Ctrl-C, or the Python API's event): the tasks not started yet are cancelled at
  once, the runs in flight see the shared `CancelFlag`, checkpoint and stop (up to `grace_s`),
  then whatever is left is `scancel`-ed. Nothing more is delivered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from flops_fit_core import (
    CancelFlag,
    ClusterError,
    Executor,
    ExperimentSpec,
    RunResult,
    Trainer,
    WorkerReply,
    check_versions,
    shared_folder,
)

from .clusters import ACTIVE_STATES, Cluster, last_line, make_cluster
from .config import SlurmConfig
from .ledger import JobRecord, Ledger

__all__ = ["SlurmExecutor"]

ProgressFn = Callable[[str, float, str | None], None]


@dataclass
class _Job:
    """A job the driver waits for."""

    record: JobRecord
    specs: list[ExperimentSpec]
    #: Set by an earlier driver: its state is looked up before it is trusted to be alive.
    reattached: bool = False
    #: State looks in a row that saw the job ended with no result file.
    ended_looks: int = 0
    state: str = "UNKNOWN"

    @property
    def job_id(self) -> str:
        return self.record.job_id


class SlurmExecutor(Executor):
    """Trains the sweep as a Slurm job array (or as local processes with `cluster = "local"`).

    The environment (Python, flops-fit, the trainer) must be installed where the nodes find
    it (`python`, `setup`), and the run directory (or `folder` and `checkpoint_dir`) must be
    on a filesystem every node reaches.
    """

    name = "slurm"
    Config = SlurmConfig
    config: SlurmConfig

    def map(
        self,
        trainer: Trainer,
        specs: Iterable[ExperimentSpec],
        on_result: Callable[[RunResult], None],
        *,
        run_dir: Path,
        cancel: threading.Event | None = None,
        on_progress: ProgressFn | None = None,
    ) -> None:
        wanted = {spec.id: spec for spec in specs}
        cancel = cancel if cancel is not None else threading.Event()
        if not wanted or cancel.is_set():
            return
        _Sweep(self.config, trainer, Path(run_dir).resolve(), on_result, on_progress).run(
            wanted, cancel
        )


class _Sweep:
    """One `map` call: submit or re-attach, then collect until every experiment has an end."""

    def __init__(
        self, config: SlurmConfig, trainer: Trainer, run_dir: Path, on_result, on_progress
    ):
        self.config, self.trainer, self.run_dir = config, trainer, run_dir
        self.on_result, self.on_progress = on_result, on_progress
        self.folder = shared_folder(run_dir, config.folder or "slurm", "executor.folder")
        self.checkpoint_root = shared_folder(
            run_dir, config.checkpoint_dir, "executor.checkpoint_dir"
        )
        # One flag per run directory, at a fixed place: jobs an earlier driver submitted
        # (re-attached here) carry its path too.
        self.flag = CancelFlag(self.folder / "cancel")
        self.ledger = Ledger(run_dir)
        self.digest = trainer.info.options_digest
        self.jobs: dict[str, _Job] = {}
        self.queue: list[tuple[ExperimentSpec, int]] = []  # (spec, attempt) not yet submitted
        self.delivered: set[str] = set()
        self.checked = False

    # -- the sweep ----------------------------------------------------------------------------

    def run(self, wanted: dict[str, ExperimentSpec], cancel: threading.Event) -> None:
        """Train `wanted` (by spec id)."""
        from ._job import TrainTask  # imports submitit

        self.folder.mkdir(parents=True, exist_ok=True)
        self.flag.clear()
        self.cluster: Cluster = make_cluster(
            self.config, self.folder, gpus_per_task(self.config, self.trainer)
        )
        self.task = TrainTask(
            self.trainer,
            self.run_dir,
            self.checkpoint_root,
            self.flag,
            max(1, self.config.cpus_per_task // self.config.experiments_per_task),
        )
        self.wanted = wanted
        attached = self._reattach()
        self.queue = [(spec, 0) for spec in wanted.values() if spec.id not in attached]
        stopped_by: BaseException | None = None
        try:
            if attached:
                self._collect_ready()  # what finished while no driver ran
                self._say_reattached()
            self._loop(cancel)
        except BaseException as exc:
            stopped_by = exc
            raise
        finally:
            if self.jobs or stopped_by is not None or cancel.is_set():
                self._stop(at_once=isinstance(stopped_by, KeyboardInterrupt))
            self.flag.clear()

    def _loop(self, cancel: threading.Event) -> None:
        config = self.config
        last_look = float("-inf")
        while (self.queue or self.jobs) and not cancel.is_set():
            self._submit()
            self._collect_ready()
            if time.monotonic() - last_look >= config.state_check_every_s() and self.jobs:
                last_look = time.monotonic()
                self._look()
            if self.jobs or self.queue:
                cancel.wait(config.poll_every_s())

    def _submit(self) -> None:
        """Submit the queue (all of it on Slurm; up to the free slots where there is no queue),
        packed `experiments_per_task` to a job, and write the jobs to the ledger first."""
        room = len(self.queue)
        if self.cluster.capacity is not None:
            alive = sum(len(job.specs) for job in self.jobs.values())
            room = max(0, self.cluster.capacity * self.config.experiments_per_task - alive)
        if not room:
            return
        batch, self.queue = self.queue[:room], self.queue[room:]
        per = self.config.experiments_per_task
        # a retry goes out with the retries of its attempt: groups never mix attempts
        groups: list[tuple[list[ExperimentSpec], int]] = []
        for attempt in sorted({a for _, a in batch}):
            specs = [s for s, a in batch if a == attempt]
            groups += [(specs[i : i + per], attempt) for i in range(0, len(specs), per)]
        ids = self.cluster.submit(self.task, [g for g, _ in groups])
        records = [
            JobRecord(
                job_id=job_id,
                cluster=self.cluster.name,
                folder=str(self.folder),
                experiments=[s.id for s in group],
                trainer=self.trainer.name,
                options_digest=self.digest,
                attempt=attempt,
            )
            for job_id, (group, attempt) in zip(ids, groups, strict=True)
        ]
        self.ledger.append(records)
        for record, (group, _) in zip(records, groups, strict=True):
            self.jobs[record.job_id] = _Job(record, group)
            for spec in group:
                self._progress(spec, f"queued as job {record.job_id}")

    def _reattach(self) -> set[str]:
        """Wait for the jobs an earlier driver submitted for these experiments (the latest job
        of each), where they were made for this cluster, folder and trainer options; return
        the ids of the experiments they cover."""
        latest: dict[str, JobRecord] = {}
        ended: set[str] = set()
        for record in self.ledger.read():
            if record.ended is not None:
                ended.add(record.job_id)
                continue
            for spec_id in record.experiments:
                latest[spec_id] = record
        attached: set[str] = set()
        stale: list[JobRecord] = []
        for record in {id(r): r for r in latest.values()}.values():
            if record.job_id in ended:
                continue
            mine = [
                self.wanted[i]
                for i in record.experiments
                if i in self.wanted and latest[i] is record and i not in attached
            ]
            if not mine or record.cluster != self.cluster.name:
                continue
            if Path(record.folder) != self.folder:
                continue
            if (record.trainer, record.options_digest) != (self.trainer.name, self.digest):
                stale.append(record)
                continue
            self.jobs[record.job_id] = _Job(record, mine, reattached=True)
            attached.update(spec.id for spec in mine)
        if stale:
            self._supersede(stale)
        return attached

    def _supersede(self, stale: list[JobRecord]) -> None:
        """Jobs an earlier driver submitted for these experiments under other trainer options
        would train them into the same checkpoint folders: cancel them before training anew."""
        self.cluster.cancel([record.job_id for record in stale])
        self.ledger.append([dataclasses.replace(r, ended="superseded") for r in stale])
        arrays = sorted({record.job_id.split("_")[0] for record in stale})
        print(
            f"cancelled {self.cluster.name} job{'' if len(arrays) == 1 else 's'} "
            f"{', '.join(arrays)} of an earlier run: made with other trainer options",
            file=sys.stderr,
        )

    def _say_reattached(self) -> None:
        waiting = sum(len(job.specs) for job in self.jobs.values())
        if not waiting and not self.delivered:
            return
        arrays = sorted({job_id.split("_")[0] for job_id in self.jobs})
        print(
            f"re-attached to {self.cluster.name} job{'' if len(arrays) == 1 else 's'} "
            f"{', '.join(arrays) or '(none left)'} of an earlier run: {len(self.delivered)} "
            f"result{'' if len(self.delivered) == 1 else 's'} collected, {waiting} "
            f"experiment{'' if waiting == 1 else 's'} queued or running there",
            file=sys.stderr,
        )

    # -- results and deaths -------------------------------------------------------------------

    def _collect_ready(self) -> None:
        for job in list(self.jobs.values()):
            if self.cluster.result_path(job.job_id).exists():
                self._collect(job)

    def _collect(self, job: _Job) -> None:
        from submitit.core.utils import pickle_load

        try:
            outcome, value = pickle_load(self.cluster.result_path(job.job_id))
        except (EOFError, OSError, ValueError):
            return  # still being written: the next poll reads it
        del self.jobs[job.job_id]
        if outcome != "success":
            self._job_error(job, str(value))
            return
        replies: list[WorkerReply] = value
        for reply in replies:
            if not self.checked and reply.versions:
                check_versions(self.trainer, reply)
                self.checked = True
            result = reply.result
            if result is None or result.experiment_id not in self.wanted:
                continue  # cancelled (it checkpointed), or not asked for this time
            if result.experiment_id not in self.delivered:
                self.delivered.add(result.experiment_id)
                self.on_result(result)
        self._ended(job, "collected")
        stopped = [spec for spec in job.specs if spec.id not in self.delivered]
        if stopped and job.reattached:
            # stopped by an earlier driver's cancel: it resumes in a new job
            self.queue += [(spec, job.record.attempt) for spec in stopped]
        elif stopped:
            # stopped though this sweep was not cancelled: a retry, so it cannot loop
            self._retry_or_fail(job, stopped, "stopped at a checkpoint with no result")

    def _job_error(self, job: _Job, trace: str) -> None:
        """The job raised outside the trainer: a time limit hit too often is a failure of
        its runs; anything else (flops-fit missing on the node) stops the sweep."""
        self._ended(job, "error")
        if "UncompletedJobError" in trace and "timed-out too many times" in trace:
            for spec in job.specs:
                self._fail(
                    spec,
                    f"Slurm job {job.job_id} reached its time limit ({self.config.time} min) "
                    f"{self.config.max_timeouts + 1} times; raise executor.time or "
                    "executor.max_timeouts; a rerun resumes it from its checkpoint",
                )
            return
        raise ClusterError(
            f"executor 'slurm': job {job.job_id} failed on its node outside the trainer "
            f"({last_line(trace)}): is flops-fit with this trainer installed where the nodes "
            f"run {self.config.python or sys.executable}? (log: "
            f"{self.cluster.log_path(job.job_id)})"
        )

    def _look(self) -> None:
        """Ask the cluster for the jobs' states: a job seen ended on two looks in a row with
        no result file died (a result may take a moment to show on a shared filesystem)."""
        states = self.cluster.states(list(self.jobs))
        if states is None:
            return  # no answer this time: nothing learned
        for job_id, state in states.items():
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if state != job.state and state in ("RUNNING", "REQUEUED", "PREEMPTED"):
                where = self.cluster.where(job_id)
                for spec in job.specs:
                    self._progress(
                        spec, f"job {job_id} {state.lower()}{f' on {where}' if where else ''}"
                    )
            job.state = state
            ended = state not in ACTIVE_STATES or (job.reattached and state == "UNKNOWN")
            if not ended:
                job.ended_looks = 0
                continue
            if self.cluster.result_path(job_id).exists():
                continue  # collected at the next poll
            job.ended_looks += 1
            if job.ended_looks >= 2:
                del self.jobs[job_id]
                self._died(job, state)

    def _died(self, job: _Job, state: str) -> None:
        self._ended(job, f"died: {state}")
        left = [spec for spec in job.specs if spec.id not in self.delivered]
        self._retry_or_fail(job, left, f"ended {state} with no result")

    def _retry_or_fail(self, job: _Job, specs: list[ExperimentSpec], what: str) -> None:
        """Submit `specs` again, from their checkpoints, up to `infra_retries` times; then
        record them as failed with cause `worker_died` (a plain rerun tries again)."""
        attempt = job.record.attempt
        for spec in specs:
            if attempt < self.config.infra_retries:
                self.queue.append((spec, attempt + 1))
                self._progress(
                    spec,
                    f"job {job.job_id} {what}; submitting it again "
                    f"({attempt + 1} of {self.config.infra_retries})",
                )
                continue
            tries = attempt + 1
            self._fail(
                spec,
                f"its {self.cluster.name} job {what} ({job.job_id}) on each of {tries} "
                f"{'try' if tries == 1 else 'tries'}; a rerun tries again "
                f"(log: {self.cluster.log_path(job.job_id)})",
            )

    def _ended(self, job: _Job, how: str) -> None:
        """Note in the ledger that this job is done with, so no later run re-attaches to it."""
        self.ledger.append([dataclasses.replace(job.record, ended=how)])

    def _fail(self, spec: ExperimentSpec, error: str) -> None:
        self.delivered.add(spec.id)
        self.on_result(RunResult.failure(spec, self.trainer.info, error, cause="worker_died"))

    # -- stopping -----------------------------------------------------------------------------

    def _stop(self, *, at_once: bool) -> None:
        """Tasks not started are cancelled now; the runs in flight checkpoint and stop (up to
        `grace_s`; a second Ctrl-C skips the wait); then whatever is left is cancelled."""
        self.queue.clear()
        jobs = list(self.jobs)
        if not jobs:
            return
        self.flag.set()
        self.cluster.cancel(jobs, pending_only=True)
        if not at_once and self.config.grace_s > 0:
            deadline = time.monotonic() + self.config.grace_s
            alive = list(jobs)
            every = min(self.config.state_check_every_s(), 5.0)  # sacct, not every poll
            looked = float("-inf")
            with contextlib.suppress(KeyboardInterrupt):
                while alive and time.monotonic() < deadline:
                    alive = [j for j in alive if not self.cluster.result_path(j).exists()]
                    if alive and time.monotonic() - looked >= every:
                        looked = time.monotonic()
                        states = self.cluster.states(alive)
                        if states is not None:
                            alive = [j for j in alive if states.get(j) in ACTIVE_STATES]
                    time.sleep(min(self.config.poll_every_s(), 0.5))
        # what finished meanwhile stays in its result file: the next run collects it
        left = [j for j in jobs if not self.cluster.result_path(j).exists()]
        if left:
            self.cluster.cancel(left)
            self.ledger.append(
                [dataclasses.replace(self.jobs[j].record, ended="cancelled") for j in left]
            )
        self.jobs.clear()

    def _progress(self, spec: ExperimentSpec, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(spec.id, 0.0, message)


def gpus_per_task(config: SlurmConfig, trainer: Trainer) -> int:
    """GPUs each task asks for: as configured, else one if the trainer uses a GPU."""
    if config.gpus_per_node is not None:
        return config.gpus_per_node
    return 1 if trainer.uses_gpu() else 0
