"""Options of the `local` trainer, validated before anything trains (no torch import here).

The experiment itself (shape, tokens, peak learning rate, batch size, schedule name, seed)
comes from the plan's `ExperimentSpec`; these options say how to train it: the model's
parametrization, the optimizer, the schedule's shape, the data, the device and numerics, and
how often to evaluate, log and checkpoint.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from flops_fit_core import PluginConfig

from .data.config import DataConfig

__all__ = ["LocalConfig", "ModelConfig"]

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


#: The model options only u-muP reads (see `model`); under "sp" they must keep their defaults.
UMUP_ONLY = ("attn_mult", "readout_mult", "residual_attn_ratio", "residual_mult")


class ModelConfig(PluginConfig):
    """The GPT's parametrization: u-muP (default) with its hyperparameters, or standard."""

    parametrization: Literal["umup", "sp"] = "umup"
    attn_mult: Positive = 1.0
    residual_mult: Positive = 1.0
    residual_attn_ratio: Positive = 1.0
    readout_mult: Positive = 1.0
    norm_eps: Positive = 1e-6

    @model_validator(mode="after")
    def _umup_only(self) -> ModelConfig:
        """u-muP's multipliers mean nothing under standard parametrization: an error there."""
        if self.parametrization == "sp":
            fields = type(self).model_fields
            changed = [
                name
                for name in UMUP_ONLY
                if getattr(self, name) != fields[name].get_default(call_default_factory=True)
            ]
            if changed:
                one = len(changed) == 1
                raise ValueError(
                    f"{', '.join(changed)} only appl{'ies' if one else 'y'} to parametrization "
                    f"= 'umup' (standard parametrization ignores {'it' if one else 'them'}); "
                    f"remove {'it' if one else 'them'} or use parametrization = 'umup'"
                )
        return self


class OptimizerConfig(PluginConfig):
    """AdamW, with weight decay on matrices only, and gradient clipping (0 = none)."""

    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.95
    eps: Positive = 1e-8
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.1
    grad_clip: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0


class ScheduleConfig(PluginConfig):
    """The shape of the learning-rate schedule the spec names (cosine, wsd or constant).

    `warmup` and `decay` are shares of the run's own steps; `final_ratio` is where cosine and
    WSD end, as a share of the peak.
    """

    warmup: Fraction = 0.05
    final_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    decay: Annotated[float, Field(gt=0, le=1)] = 0.2


class LocalConfig(PluginConfig):
    """Options of the `local` trainer (`[trainer]` with `name = "local"`)."""

    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    data: DataConfig = DataConfig()
    micro_batch_size: Annotated[int, Field(ge=1)] | None = Field(
        None, description="sequences per forward pass; the spec's batch is accumulated"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 on CUDA, on a CPU with native bf16 if a short check agrees "
        "with fp32 within 0.01 nats, else fp32",
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    threads: Annotated[int, Field(ge=1)] | None = Field(
        None, description="CPU threads; default: this process's share of the free cores"
    )
    compile: bool | None = Field(None, description="torch.compile; default on for CUDA only")
    eval_batch_size: Annotated[int, Field(ge=1)] = 64
    curve_points: Annotated[int, Field(ge=0, le=1000)] = Field(
        0, description="0 = no loss curve; else that many held-out evaluations, log-spaced"
    )
    checkpoint_interval_s: Positive = Field(
        300.0, description="seconds between checkpoints (one is always written at the end)"
    )
    checkpoint_every_steps: Annotated[int, Field(ge=1)] | None = None
    log_every_steps: Annotated[int, Field(ge=1)] = 10

    def training_fields(self) -> dict:
        """The options that change what a run computes: results and checkpoints are keyed by them.

        Left out: what only changes speed or bookkeeping (checkpoint and log cadence, where the
        token cache lives) and `threads`, which changes a loss only in its last bits (the order
        of floating-point sums): a checkpoint hash adds the resolved thread count, so a resume
        stays bitwise exact, but a study rerun on another machine keeps its results.
        """
        return self.model_dump(
            mode="json",
            exclude={
                "threads": True,
                "checkpoint_interval_s": True,
                "checkpoint_every_steps": True,
                "log_every_steps": True,
                "data": {"cache_dir"},
            },
        )
