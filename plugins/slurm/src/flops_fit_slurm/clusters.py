"""The two places a `slurm` sweep runs, behind one small interface, both through submitit.

- `SlurmCluster`: `sbatch` (the whole sweep as one job array, `--array=0-N%P`), `sacct` for
  the jobs' states, `scancel` to stop them. The driver needs those commands (and `srun`) on
  its PATH: it runs on a login node.
- `LocalCluster`: submitit's local executor, the same jobs as processes on this machine (a
  stand-in for a cluster, for trying a config). It has no queue, so the sweep keeps at most
  `array_parallelism` jobs alive and submits the next as one ends.

Either way a job trains a group of experiments (a `TrainTask`) and leaves its replies in
submitit's result pickle, where the driver reads them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from flops_fit_core import ClusterError, ExperimentSpec

from .config import SlurmConfig

__all__ = [
    "ACTIVE_STATES",
    "Cluster",
    "LocalCluster",
    "SlurmCluster",
    "last_line",
    "make_cluster",
]

#: Slurm states of a job that has not ended (it may still write its result). Any other state
#: (COMPLETED, FAILED, CANCELLED, NODE_FAIL, OUT_OF_MEMORY, TIMEOUT, ...) has ended.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
        "PREEMPTED",  # requeued after a preemption: it runs again
        "READY",
        "UNKNOWN",  # not in the accounting yet (just submitted)
    }
)

#: Slurm warns a task this many seconds before it is preempted or timed out (sbatch
#: --signal=USR2@90): the runs checkpoint in that time.
SIGNAL_DELAY_S = 90


def last_line(text: str) -> str:
    """The last non-empty line of a command's stderr or a traceback: where the error is."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


class Cluster:
    """Submits `TrainTask`s, reports their jobs' states and cancels them."""

    name: str
    #: Most jobs alive at once, where the cluster has no queue to hold the rest (None: all
    #: are submitted at once and the scheduler throttles them).
    capacity: int | None = None

    def __init__(self, config: SlurmConfig, folder: Path, gpus: int):
        self.config, self.folder, self.gpus = config, folder, gpus
        self.executor = self._executor()

    def _executor(self) -> Any:
        raise NotImplementedError

    def submit(self, task: Any, groups: list[list[ExperimentSpec]]) -> list[str]:
        """Submit one job per group; return their job ids, in order."""
        import submitit

        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):  # submitit prints sbatch's stderr
                jobs = self.executor.map_array(task, groups)
        except (submitit.core.utils.FailedJobError, OSError) as exc:
            raise ClusterError(
                f"executor 'slurm': the cluster refused the jobs ({last_line(str(exc))})"
            ) from None
        return [job.job_id for job in jobs]

    def result_path(self, job_id: str) -> Path:
        from submitit.core.utils import JobPaths

        return JobPaths(self.folder, job_id=job_id, task_id=0).result_pickle

    def log_path(self, job_id: str) -> Path:
        from submitit.core.utils import JobPaths

        return JobPaths(self.folder, job_id=job_id, task_id=0).stderr

    def states(self, job_ids: list[str]) -> dict[str, str] | None:
        """The state of each job: a word from Slurm's vocabulary (`UNKNOWN` if unknown), or
        None if the cluster could not be asked this time."""
        raise NotImplementedError

    def where(self, job_id: str) -> str:
        """The node a job runs on, if known."""
        return ""

    def cancel(self, job_ids: list[str], *, pending_only: bool = False) -> None:
        raise NotImplementedError


class SlurmCluster(Cluster):
    name = "slurm"

    def _executor(self) -> Any:
        import submitit

        missing = [c for c in ("sbatch", "srun", "sacct", "scancel") if not shutil.which(c)]
        if missing:
            raise ClusterError(
                f"executor 'slurm': {', '.join(missing)} not found on PATH: run the sweep "
                "from a Slurm login node, or set executor.cluster = 'local' to try it here"
            )
        config = self.config
        executor = submitit.SlurmExecutor(
            folder=self.folder, max_num_timeout=config.max_timeouts, python=config.python
        )
        parameters: dict[str, Any] = {
            "job_name": config.job_name,
            "time": config.time,
            "cpus_per_task": config.cpus_per_task,
            "array_parallelism": config.array_parallelism,
            "signal_delay_s": SIGNAL_DELAY_S,
        }
        for key in ("partition", "account", "qos", "mem"):
            if getattr(config, key) is not None:
                parameters[key] = getattr(config, key)
        if self.gpus:
            parameters["gres"] = f"gpu:{self.gpus}"
        if config.setup:
            parameters["setup"] = list(config.setup)
        if config.sbatch_lines:
            parameters["additional_parameters"] = config.additional_parameters()
        executor.update_parameters(**parameters)
        return executor

    def states(self, job_ids: list[str]) -> dict[str, str] | None:
        """One `sacct` call for every array (parsed as submitit parses it); None when sacct
        fails, which says nothing about the jobs (a busy controller is no dead job)."""
        from submitit.slurm.slurm import SlurmInfoWatcher

        arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
        command = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"]
        for array in arrays:
            command += ["-j", array]
        try:
            output = subprocess.run(command, capture_output=True, timeout=120, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        self._info = SlurmInfoWatcher().read_info(output)
        return {
            job_id: (self._info.get(job_id, {}).get("State", "").split() or ["UNKNOWN"])[0]
            for job_id in job_ids
        }

    def where(self, job_id: str) -> str:
        node = getattr(self, "_info", {}).get(job_id, {}).get("NodeList", "")
        return "" if node in ("", "None assigned") else node

    def cancel(self, job_ids: list[str], *, pending_only: bool = False) -> None:
        """`scancel` each array (and lone job) once; with `pending_only`, only the tasks that
        have not started."""
        arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
        if not arrays:
            return
        command = ["scancel", *(["--state=PENDING"] if pending_only else []), *arrays]
        try:
            subprocess.run(command, capture_output=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            print(
                f"warning: executor 'slurm': `{' '.join(command)}` failed "
                f"({last_line(stderr.decode(errors='replace')) if stderr else exc}); "
                "cancel those jobs by hand",
                file=sys.stderr,
            )


class LocalCluster(Cluster):
    name = "local"

    def _executor(self) -> Any:
        import submitit

        config = self.config
        self.capacity = config.array_parallelism
        executor = submitit.LocalExecutor(
            folder=self.folder, max_num_timeout=config.max_timeouts, python=config.python
        )
        parameters: dict[str, Any] = {
            "timeout_min": config.time,
            "signal_delay_s": min(SIGNAL_DELAY_S, config.time * 30),
        }
        if self.gpus:
            parameters["gpus_per_node"] = self.gpus
        if config.setup:
            parameters["setup"] = list(config.setup)
        executor.update_parameters(**parameters)
        self._jobs: dict[str, Any] = {}
        return executor

    def submit(self, task: Any, groups: list[list[ExperimentSpec]]) -> list[str]:
        ids = []
        for group in groups:  # one job each: the local executor makes no arrays
            ids.extend(super().submit(task, [group]))
        return ids

    def _job(self, job_id: str):
        """The job, also one this driver did not start (a re-attached one: by its pid)."""
        if job_id not in self._jobs:
            from submitit.local.local import _PROCESSES, LocalJob

            self._jobs[job_id] = LocalJob(self.folder, job_id, process=_PROCESSES.get(job_id))
        return self._jobs[job_id]

    def states(self, job_ids: list[str]) -> dict[str, str]:
        states = {}
        for job_id in job_ids:
            job = self._job(job_id)
            if job._process is not None:
                code = job._process.poll()
                ended = "COMPLETED" if code == 0 else "FAILED"
                states[job_id] = "RUNNING" if code is None else ended
            else:  # started by an earlier driver: alive while its controller is
                states[job_id] = "RUNNING" if _controller_alive(job_id) else "COMPLETED"
        return states

    def cancel(self, job_ids: list[str], *, pending_only: bool = False) -> None:
        if pending_only:
            return  # nothing waits in a queue here
        for job_id in job_ids:
            job = self._job(job_id)
            if job._process is not None:
                job.cancel()
            elif _controller_alive(job_id):
                with contextlib.suppress(OSError):
                    os.kill(int(job_id), 2)


def _controller_alive(job_id: str) -> bool:
    """Whether the local job's controller (its pid is the job id) still runs: that pid, and
    still submitit's controller (pids are reused)."""
    try:
        command = Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"submitit.local._local" in command


def make_cluster(config: SlurmConfig, folder: Path, gpus: int) -> Cluster:
    return (SlurmCluster if config.cluster == "slurm" else LocalCluster)(config, folder, gpus)
