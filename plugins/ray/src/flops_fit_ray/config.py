"""The `[executor]` options of `ray`: where the cluster is and what each experiment takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from flops_fit_core import PluginConfig

__all__ = ["RayConfig", "RuntimeEnv"]


class RuntimeEnv(PluginConfig):
    """Environment variables for every task, and nothing else: Ray's `pip`, `conda` or
    `working_dir` would install a second environment at run time. flops-fit, the trainer and
    their dependencies must already be installed on every node, at the driver's versions."""

    env_vars: dict[str, str] = Field(
        default_factory=dict, description="variables set in every task's worker"
    )

    @model_validator(mode="before")
    @classmethod
    def _only_env_vars(cls, value: Any) -> Any:
        if isinstance(value, dict):
            other = sorted(set(value) - {"env_vars"})
            if other:
                raise ValueError(
                    f"runtime_env takes env_vars only, not {other[0]!r}: install flops-fit "
                    "and the trainer on every node of the cluster instead"
                )
        return value


class RayConfig(PluginConfig):
    address: str | None = Field(
        None,
        min_length=1,
        description="'auto' (the cluster this machine is a node of), 'ray://HOST:10001' "
        "(Ray Client) or a head's HOST:6379; unset: the Ray this process already joined, "
        "else a local Ray started (and stopped) for the sweep",
    )
    num_cpus: float | None = Field(
        None, gt=0, le=1024, description="CPUs per experiment (default 1): its thread budget"
    )
    num_gpus: float | None = Field(
        None, ge=0, le=64, description="GPUs per experiment (default 1 if the trainer uses one)"
    )
    memory: int | None = Field(
        None, gt=0, description="bytes of memory Ray reserves per experiment"
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="custom Ray resources per experiment"
    )
    runtime_env: RuntimeEnv = Field(default_factory=RuntimeEnv)
    max_in_flight: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="experiments submitted at once (default: the cluster's slots + 2)",
    )
    infra_retries: int = Field(
        2,
        ge=0,
        le=100,
        description="times an experiment whose worker or node died is tried again",
    )
    checkpoint_dir: Path | None = Field(
        None,
        description="a folder every node reaches (default: checkpoints/ in the run "
        "directory, which must then be on a shared filesystem)",
    )
    grace_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="after a cancel, seconds the runs in flight get to checkpoint and stop "
        "before their tasks are killed",
    )
