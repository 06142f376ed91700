"""The `[executor]` options of `slurm`: what each array task asks Slurm for, and how the sweep
is packed, polled, retried and stopped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from flops_fit_core import PluginConfig

__all__ = ["SlurmConfig"]

#: `--key=value` or `--flag`, as in an `#SBATCH` line.
_SBATCH_LINE = re.compile(r"^--(?P<key>[a-z][a-z0-9-]*)(=(?P<value>.+))?$")

#: Options this config sets itself; an `sbatch_lines` entry may not set them a second time.
_OWN_OPTIONS = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "gpus-per-node": "gpus_per_node",
    "cpus-per-task": "cpus_per_task",
    "mem": "mem",
    "time": "time",
    "array": "array_parallelism",
    "output": "folder",
    "error": "folder",
    "job-name": "job_name",
}


class SlurmConfig(PluginConfig):
    cluster: Literal["slurm", "local"] = Field(
        "slurm",
        description="'slurm' (sbatch, sacct, scancel on PATH) or 'local' (submitit's local "
        "executor: the same jobs as processes on this machine)",
    )
    partition: str | None = Field(None, min_length=1, description="sbatch --partition")
    account: str | None = Field(None, min_length=1, description="sbatch --account")
    qos: str | None = Field(None, min_length=1, description="sbatch --qos")
    job_name: str = Field("flops-fit", min_length=1, description="sbatch --job-name")
    gpus_per_node: int | None = Field(
        None,
        ge=0,
        le=64,
        description="GPUs per task, as sbatch --gres=gpu:N (default 1 if the trainer uses one)",
    )
    cpus_per_task: int = Field(1, ge=1, le=1024, description="CPUs per array task")
    mem: str | None = Field(
        None, pattern=r"^[0-9]+[KMGT]?$", description="sbatch --mem per task, e.g. '16G'"
    )
    time: int = Field(
        60, ge=1, le=60 * 24 * 365, description="minutes per task before Slurm times it out"
    )
    sbatch_lines: list[str] = Field(
        default_factory=list,
        description="more sbatch options, each '--key=value' or '--flag'",
    )
    setup: list[str] = Field(
        default_factory=list,
        description="shell lines each task runs before Python (module load, source a venv)",
    )
    python: str | None = Field(
        None,
        min_length=1,
        description="the Python command on the nodes (default: this driver's interpreter, "
        "which every node must reach at the same path)",
    )
    array_parallelism: int = Field(
        256,
        ge=1,
        le=100_000,
        description="array tasks Slurm runs at once (--array=...%N); with cluster = 'local', "
        "jobs alive at once",
    )
    experiments_per_task: int = Field(
        1,
        ge=1,
        le=256,
        description="experiments one task trains side by side, each on cpus_per_task / this "
        "many threads (packs small CPU runs; keep 1 for GPU runs)",
    )
    folder: Path | None = Field(
        None,
        description="where job scripts, logs and pickles go, on a filesystem every node "
        "reaches (default: slurm/ in the run directory; a relative path is in it)",
    )
    checkpoint_dir: Path | None = Field(
        None,
        description="a folder every node reaches (default: checkpoints/ in the run "
        "directory, which must then be on a shared filesystem; a relative path is in it)",
    )
    infra_retries: int = Field(
        2,
        ge=0,
        le=100,
        description="times an experiment whose job died (node failure, out of memory, "
        "cancelled by an admin) is submitted again, from its checkpoint",
    )
    max_timeouts: int = Field(
        3,
        ge=0,
        le=100,
        description="times a task that reached its time limit is requeued from its checkpoint",
    )
    poll_s: float | None = Field(
        None,
        gt=0,
        le=600,
        description="seconds between looks for result files (default: 2 on Slurm, where "
        "they are on a shared filesystem; 0.2 with cluster = 'local')",
    )
    state_check_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="seconds between two looks at the jobs' states, to find jobs that died "
        "(default: 60 on Slurm, one sacct call for all; 1 with cluster = 'local')",
    )
    grace_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="after a cancel, seconds the runs in flight get to checkpoint and stop "
        "before their jobs are scancel-ed",
    )

    @field_validator("sbatch_lines")
    @classmethod
    def _sbatch_options(cls, lines: list[str]) -> list[str]:
        for line in lines:
            match = _SBATCH_LINE.match(line.strip())
            if match is None:
                raise ValueError(f"sbatch_lines: {line!r} is not '--key=value' or '--flag'")
            own = _OWN_OPTIONS.get(match["key"])
            if own is not None:
                raise ValueError(f"sbatch_lines: set --{match['key']} with {own!r} instead")
        return lines

    @model_validator(mode="after")
    def _packing_fits(self):
        if self.experiments_per_task > self.cpus_per_task:
            raise ValueError(
                f"experiments_per_task ({self.experiments_per_task}) exceeds cpus_per_task "
                f"({self.cpus_per_task}): each packed experiment needs at least one CPU"
            )
        return self

    def poll_every_s(self) -> float:
        return self.poll_s or (2.0 if self.cluster == "slurm" else 0.2)

    def state_check_every_s(self) -> float:
        return self.state_check_s or (60.0 if self.cluster == "slurm" else 1.0)

    def additional_parameters(self) -> dict[str, str | bool]:
        """`sbatch_lines` as submitit's `additional_parameters`."""
        extra: dict[str, str | bool] = {}
        for line in self.sbatch_lines:
            match = _SBATCH_LINE.match(line.strip())
            assert match is not None  # checked by the validator
            extra[match["key"]] = match["value"] if match["value"] is not None else True
        return extra
