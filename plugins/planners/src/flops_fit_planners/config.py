"""The isoflop planner's options, validated up front so an impossible sweep never starts.

Two pairs of options are alternatives: explicit `budgets` or the range `min_flops`/`max_flops`/
`n_budgets`, and the Chinchilla rule `tokens_per_param` or an explicit prior
`prior_coefficient`/`prior_exponent`. The unused side of each pair is `None` after validation
(its defaults are filled in only when it is the side in use), so `model_dump(exclude_none=True)`
— what a run directory's `config.toml` records — reads back to the same config, and setting both
sides is an error instead of one of them being silently ignored.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from flops_fit_core import Conventions, PluginConfig

__all__ = ["DEFAULT_HARDWARE", "AdaptiveConfig", "IsoFlopConfig", "LrSchedule", "ModelOptions"]

#: Sustained FLOP/s of a few reference machines, for the plan's wall-time estimates.
#: 40% MFU of the dense bf16 peak: A100 312 TFLOP/s, H100 SXM 989 TFLOP/s.
DEFAULT_HARDWARE: dict[str, float] = {
    "cpu-2-cores": 2e10,
    "a100-40%-mfu": 1.25e14,
    "h100-40%-mfu": 3.96e14,
}

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]

#: Upper bounds of the counts, checked by `config validate` before anything is planned: far
#: beyond any real sweep, low enough that a typo cannot make the planner build for minutes.
MAX_BUDGETS = 1000
MAX_SIZES_PER_BUDGET = 1000
MAX_SPAN = 1e4
#: The default `max_experiments`: a plan larger than this is refused before it is built.
MAX_EXPERIMENTS = 100_000

_BUDGET_RANGE_DEFAULTS: dict[str, Any] = {"min_flops": 1e18, "max_flops": 1e21, "n_budgets": 5}
_CHINCHILLA_TOKENS_PER_PARAM = 20.0


class LrSchedule(PluginConfig):
    """Learning rate as a power law in N: lr = base_lr * (N / base_size) ** (-lr_power).

    `lr_power` 0 (the default) gives every run `base_lr`; a positive power shrinks the rate of
    larger models, as standard parametrisations need.
    """

    base_lr: Positive = 2e-3
    base_size: Positive = 1e8
    lr_power: Finite = 0.0


class ModelOptions(PluginConfig):
    """What every planner of this package shares: the prior optimum the sizes are placed
    around, the shape search space, and how each run trains (learning rate, batch, schedule).

    The prior is N0(C) = sqrt(C / (6 tokens_per_param)) [tokens_per_param 20.0, Chinchilla] or
    `prior_coefficient` * C ** `prior_exponent`.
    """

    tokens_per_param: Positive | None = None
    prior_coefficient: Positive | None = None
    prior_exponent: Annotated[float, Field(gt=0, le=1)] | None = None

    vocab_size: Annotated[int, Field(ge=1, le=10_000_000)] = 32000
    seq_len: Annotated[int, Field(ge=1, le=10_000_000)] = 2048
    d_model_multiple: Annotated[int, Field(ge=1, le=65536)] = 64
    min_layers: Annotated[int, Field(ge=1, le=4096)] = 2
    max_layers: Annotated[int, Field(ge=1, le=4096)] = 64
    head_options: Annotated[
        tuple[Annotated[int, Field(ge=1, le=65536)], ...], Field(max_length=64)
    ] = (4, 8, 16, 32, 64)
    head_dim: Annotated[int, Field(ge=1, le=65536)] = 64
    #: Every head's size (d_model / n_heads) is a multiple of this: 2 for a trainer whose
    #: rotary positions rotate pairs of dimensions (the `local` trainer), 1 for no constraint.
    head_dim_multiple: Annotated[int, Field(ge=1)] = 1
    ffn_ratio: Annotated[float, Field(gt=0, le=64, allow_inf_nan=False)] = 4.0
    aspect_ratio: Annotated[float, Field(gt=0, le=1e4, allow_inf_nan=False)] = 64.0
    param_tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.05

    conventions: Conventions = Conventions()
    lr_schedule: LrSchedule = LrSchedule()
    batch_size: Annotated[int, Field(ge=1, le=100_000_000)] = 32
    schedule: Annotated[str, Field(min_length=1)] = "cosine"
    seed: int = 0
    dataset_tokens: Annotated[int, Field(ge=1)] | None = None
    hardware: dict[str, Positive] = Field(default_factory=lambda: dict(DEFAULT_HARDWARE))

    @model_validator(mode="before")
    @classmethod
    def _fill_prior_default(cls, data: Any) -> Any:
        """Chinchilla's 20 tokens per parameter, unless an explicit prior is given."""
        if not isinstance(data, dict):
            return data
        explicit_prior = ("prior_coefficient", "prior_exponent")
        if all(data.get(k) is None for k in (*explicit_prior, "tokens_per_param")):
            data = {**data, "tokens_per_param": _CHINCHILLA_TOKENS_PER_PARAM}
        return data

    @model_validator(mode="after")
    def _check_model_options(self) -> ModelOptions:
        given = [k for k in ("prior_coefficient", "prior_exponent") if getattr(self, k) is not None]
        if len(given) == 1:
            raise ValueError("give prior_coefficient and prior_exponent together (N0 = k C^a)")
        if given and self.tokens_per_param is not None:
            raise ValueError(
                "give either tokens_per_param or prior_coefficient/prior_exponent, not both"
            )
        if self.min_layers > self.max_layers:
            raise ValueError(
                f"min_layers ({self.min_layers}) exceeds max_layers ({self.max_layers})"
            )
        if not self.head_options:
            raise ValueError("head_options is empty")
        if len(set(self.head_options)) != len(self.head_options):
            raise ValueError(f"head_options has duplicates: {list(self.head_options)}")
        return self


class IsoFlopConfig(ModelOptions):
    """Options of the `isoflop` planner (a grid of budgets x model sizes around a prior optimum).

    Budgets: `budgets` (explicit) or `min_flops` [1e18] .. `max_flops` [1e21] in `n_budgets` [5]
    log-spaced steps, both ends included. Sizes: `sizes_per_budget` [7] targets from N0/`span` to
    N0*`span` [8.0], log-spaced around the prior optimum N0(C) (`ModelOptions`).
    """

    budgets: Annotated[tuple[Positive, ...], Field(max_length=MAX_BUDGETS)] | None = None
    min_flops: Positive | None = None
    max_flops: Positive | None = None
    n_budgets: Annotated[int, Field(ge=2, le=MAX_BUDGETS)] | None = None

    sizes_per_budget: Annotated[int, Field(ge=1, le=MAX_SIZES_PER_BUDGET)] = 7
    span: Annotated[float, Field(gt=1, le=MAX_SPAN, allow_inf_nan=False)] = 8.0
    max_experiments: Annotated[int, Field(ge=1, le=10_000_000)] = MAX_EXPERIMENTS

    @model_validator(mode="before")
    @classmethod
    def _fill_budget_defaults(cls, data: Any) -> Any:
        """Fill the defaults of the budget range when no explicit budgets are given."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("budgets") is None:
            for key, default in _BUDGET_RANGE_DEFAULTS.items():
                if data.get(key) is None:
                    data[key] = default
        return data

    @model_validator(mode="after")
    def _check(self) -> IsoFlopConfig:
        if self.budgets is not None:
            clash = [k for k in _BUDGET_RANGE_DEFAULTS if getattr(self, k) is not None]
            if clash:
                raise ValueError(
                    f"give either budgets or min_flops/max_flops/n_budgets, not both "
                    f"(also set: {', '.join(clash)})"
                )
            if not self.budgets:
                raise ValueError("budgets is empty")
            if len(set(self.budgets)) != len(self.budgets):
                raise ValueError(f"budgets has duplicates: {list(self.budgets)}")
        elif not self.min_flops < self.max_flops:
            raise ValueError(
                f"min_flops ({self.min_flops:g}) must be below max_flops "
                f"({self.max_flops:g}); for one budget use budgets = [C]"
            )
        n_budgets = len(self.budgets) if self.budgets is not None else self.n_budgets
        planned = n_budgets * self.sizes_per_budget
        if planned > self.max_experiments:
            raise ValueError(
                f"{n_budgets} budgets x {self.sizes_per_budget} sizes is {planned} experiments, "
                f"more than max_experiments = {self.max_experiments}; plan fewer, or raise "
                "max_experiments"
            )
        return self


class AdaptiveConfig(ModelOptions):
    """Options of the `adaptive` planner: the budget ladder, the target and the caps, the
    first round, and the blocks later rounds are made of (plus `ModelOptions`)."""

    min_flops: Positive = Field(1e18, description="the cheapest budget of the ladder (FLOPs)")
    max_flops: Positive = Field(
        1e21, description="the largest budget: its optimum is bracketed before stopping"
    )
    budgets_per_decade: Annotated[int, Field(ge=1, le=20)] = Field(
        3, description="steps per decade of the budget ladder runs are placed on"
    )
    target: Literal["n_exponent", "n_opt"] = Field(
        "n_exponent",
        description="n_exponent: the width of the interval on the exponent of N*(C); "
        "n_opt: the relative width (hi - lo) / N* of N* at target_compute",
    )
    target_width: Positive = Field(0.1, description="stop once the target's width is this or less")
    target_compute: Positive | None = Field(
        None, description="for target = n_opt: the compute C of N* (default: max_flops)"
    )
    max_compute: Positive | None = Field(
        None, description="stop before the planned runs' FLOPs would exceed this"
    )
    max_rounds: Annotated[int, Field(ge=1, le=100)] = Field(
        10, description="stop after this many rounds"
    )
    first_budgets: Annotated[int, Field(ge=1, le=100)] = Field(
        3, description="round 1: this many of the cheapest budgets of the ladder"
    )
    first_sizes: Annotated[int, Field(ge=2, le=50)] = Field(
        5, description="round 1: sizes per budget"
    )
    first_span: Annotated[float, Field(gt=1, le=1e4, allow_inf_nan=False)] = Field(
        16.0, description="round 1: sizes from N0/first_span to N0*first_span (N0: the prior)"
    )
    block_sizes: Annotated[int, Field(ge=1, le=20)] = Field(
        3, description="later rounds: sizes per block (one budget each)"
    )
    block_spans: Annotated[
        tuple[Annotated[float, Field(gt=1, le=1e4, allow_inf_nan=False)], ...],
        Field(min_length=1, max_length=20),
    ] = Field(
        (2.0, 4.0, 8.0, 16.0),
        description="the windows a block may span around the fitted N*(C): N*/w .. N*·w",
    )
    top_span: Annotated[float, Field(gt=1, le=1e4, allow_inf_nan=False)] = Field(
        4.0, description="the runs at max_flops: N*/top_span, N*, N*·top_span"
    )
    blocks_per_round: Annotated[int, Field(ge=1, le=100)] = Field(
        6, description="the most blocks one round adds"
    )

    @model_validator(mode="after")
    def _check_adaptive(self) -> AdaptiveConfig:
        if not self.min_flops < self.max_flops:
            raise ValueError(
                f"min_flops ({self.min_flops:g}) must be below max_flops ({self.max_flops:g})"
            )
        if self.target_compute is not None and self.target != "n_opt":
            raise ValueError("target_compute is for target = 'n_opt'")
        if len(set(self.block_spans)) != len(self.block_spans):
            raise ValueError(f"block_spans has duplicates: {list(self.block_spans)}")
        ladder = self.ladder_size
        if ladder > MAX_BUDGETS:
            raise ValueError(
                f"min_flops to max_flops at {self.budgets_per_decade} budgets per decade is a "
                f"ladder of {ladder} budgets, more than {MAX_BUDGETS}; narrow the range"
            )
        if self.first_budgets > ladder:
            raise ValueError(
                f"first_budgets ({self.first_budgets}) exceeds the {ladder} budgets of the "
                "ladder; lower it or raise budgets_per_decade"
            )
        return self

    @property
    def ladder_size(self) -> int:
        """How many budgets the ladder has: `budgets_per_decade` steps a decade, both ends."""
        decades = math.log10(self.max_flops) - math.log10(self.min_flops)
        return max(2, math.ceil(decades * self.budgets_per_decade - 1e-9) + 1)
