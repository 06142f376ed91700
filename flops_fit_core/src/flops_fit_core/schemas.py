"""The data contracts of planning and training: pydantic models, all `extra="forbid"`.

A plan (`SweepPlan`) is a list of `ExperimentSpec`s; training turns each into a `RunResult`
(stamped with the `TrainerInfo` of the options it was trained under). What a fitter makes of
the results is in `fits` (`FitResult`, `PowerLaw`, ...). Files on disk carry a
`schema_version`. Every spec and result records the parameter and FLOP conventions it was made
under (`Conventions`), so numbers from two conventions are never silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from . import flops as _flops
from .errors import ConfigError

__all__ = [
    "INFRA_CAUSES",
    "SCHEMA_VERSION",
    "Conventions",
    "ExperimentSpec",
    "FailureCause",
    "ModelShape",
    "PlanRound",
    "PlanStop",
    "PluginConfig",
    "RunResult",
    "SchemaVersion",
    "StrictModel",
    "SweepPlan",
    "TrainerInfo",
    "options_digest",
    "parse_model",
]

SCHEMA_VERSION = 1


def _known_schema(version: int) -> int:
    if version != SCHEMA_VERSION:
        by = "a newer version" if version > SCHEMA_VERSION else "another version"
        raise ValueError(
            f"{version} is not the version this flops-fit reads ({SCHEMA_VERSION}): written by "
            f"{by} of flops-fit, or edited"
        )
    return version


#: The `schema_version` a file on disk carries: a file of another version is refused, never
#: read as if it were this one's.
SchemaVersion = Annotated[int, AfterValidator(_known_schema)]
M = TypeVar("M", bound=BaseModel)

#: Why a run failed. `trainer_error`: the trainer raised (a bad learning rate, a model that
#: does not fit in memory): deterministic, so a rerun leaves it alone unless `--retry-failed`.
#: `worker_died`: the process training it was killed from outside (out of memory, preempted,
#: `kill -9`) `infra_retries` times: an infrastructure fault, so a rerun trains it again.
FailureCause = Literal["trainer_error", "worker_died"]
#: The causes a plain rerun retries: faults of the machine, not of the experiment.
INFRA_CAUSES: frozenset[str] = frozenset({"worker_died"})


class StrictModel(BaseModel):
    """Base of every flops-fit model: unknown keys are errors, never silent no-ops."""

    model_config = ConfigDict(extra="forbid")


class PluginConfig(StrictModel):
    """Base of every plugin's `Config`: strict and immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _describe_error(err: dict[str, Any], model: type[BaseModel]) -> str:
    # An empty key is shown as '' (not as nothing, which would read as the top level).
    loc = ".".join(str(p) or "''" for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        top = len(err["loc"]) == 1
        known = ", ".join(sorted(model.model_fields)) if top else ""
        key = repr(str(err["loc"][0])) if top else repr(loc)
        return f"unknown key {key}" + (f" (known: {known})" if known else "")
    if err["type"] == "missing":
        return f"missing key {loc!r}"
    message = err["msg"].removeprefix("Value error, ")
    return message if not err["loc"] else f"{loc}: {message}"


def parse_model(model: type[M], data: Any, where: str) -> M:
    """Validate `data` as `model`, turning pydantic's report into one ConfigError line.

    `where` names what is being validated (`"trainer 'mock'"`, `"plan.json"`) so the message
    says what was wanted.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = _describe_error(errors[0], model)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{where}: {first}{more}") from None


class Conventions(StrictModel):
    """How N and C were counted: `params` in {total, non_embedding}, `flops` in {exact, 6n}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: _flops.ParamConvention = "total"
    flops: _flops.FlopsConvention = "exact"


class ModelShape(StrictModel):
    """A decoder-only transformer's shape; parameters and FLOPs derive from it (see `flops`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    d_model: PositiveInt
    n_layers: PositiveInt
    n_heads: PositiveInt
    d_ff: PositiveInt
    vocab_size: PositiveInt
    seq_len: PositiveInt

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelShape:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        return self

    @property
    def params_total(self) -> int:
        return _flops.params_total(self.d_model, self.n_layers, self.d_ff, self.vocab_size)

    @property
    def params_non_embedding(self) -> int:
        return _flops.params_non_embedding(self.d_model, self.n_layers, self.d_ff)

    def params(self, convention: _flops.ParamConvention = "total") -> int:
        return _flops.params_count(
            self.d_model, self.n_layers, self.d_ff, self.vocab_size, convention
        )

    @property
    def flops_per_token(self) -> int:
        """Exact forward+backward FLOPs per token (Chinchilla appendix F)."""
        return _flops.flops_per_token_exact(
            self.d_model, self.n_layers, self.n_heads, self.d_ff, self.vocab_size, self.seq_len
        )

    def flops_per_token_in(self, conventions: Conventions) -> int:
        return _flops.flops_per_token(
            self.d_model,
            self.n_layers,
            self.n_heads,
            self.d_ff,
            self.vocab_size,
            self.seq_len,
            conventions.flops,
            conventions.params,
        )


def _spec_digest(spec: ExperimentSpec) -> str:
    """Short hash of a spec's training-relevant fields, in a fixed order.

    The fields are listed explicitly (a new spec field must be added here on purpose) and
    formatted by Python's own `json`, whose float repr never changes, so an id computed today
    matches the one a later version computes and resume never retrains a finished run.
    """
    sh, conv = spec.shape, spec.conventions
    fields = [
        spec.budget,
        spec.params,
        spec.tokens,
        [sh.d_model, sh.n_layers, sh.n_heads, sh.d_ff, sh.vocab_size, sh.seq_len],
        spec.learning_rate,
        spec.batch_size,
        spec.schedule,
        spec.seed,
        [conv.params, conv.flops],
        spec.extras,
    ]
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class ExperimentSpec(StrictModel):
    """One planned training run.

    `id` is a short hash of the canonical JSON of every other field, never a counter: a plan
    edited later keeps the ids of its unchanged experiments, so resuming never trains a run
    twice. `params` is N in `conventions.params` and must match `shape`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    budget: float = Field(gt=0, description="the planned compute C this run belongs to")
    params: PositiveInt
    tokens: PositiveInt
    shape: ModelShape
    learning_rate: float = Field(gt=0)
    batch_size: PositiveInt
    schedule: str = "cosine"
    seed: int = 0
    conventions: Conventions = Conventions()
    extras: dict[str, Any] = Field(default_factory=dict)

    # Set once the id is checked: pydantic re-runs after-validators when a validated instance
    # is placed in a field (pydantic #12085), and hashing every spec twice is not free.
    _verified: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> ExperimentSpec:
        if self._verified:
            return self
        if not math.isfinite(self.budget) or not math.isfinite(self.learning_rate):
            raise ValueError("budget and learning_rate must be finite")
        real = self.shape.params(self.conventions.params)
        if self.params != real:
            raise ValueError(
                f"params {self.params} does not match the shape's {real} "
                f"({self.conventions.params} convention)"
            )
        if self.id and info.context and info.context.get("trusted_ids"):
            # Records flops-fit wrote itself (results.jsonl): the id was checked when the spec
            # was planned; resume compares each record's spec with the plan's instead.
            self._verified = True
            return self
        digest = _spec_digest(self)
        if self.id and self.id != digest:
            raise ValueError(f"id {self.id!r} does not match the spec's content ({digest!r})")
        object.__setattr__(self, "id", digest)
        self._verified = True
        return self

    @property
    def flops_per_token(self) -> int:
        return self.shape.flops_per_token_in(self.conventions)

    @property
    def flops(self) -> float:
        """Planned compute of this run under its conventions: tokens x FLOPs per token."""
        return float(self.tokens) * self.flops_per_token


class PlanRound(StrictModel):
    """One round of a planner that plans in rounds (`Planner.next_round`): the experiments it
    added, why, and what the fit of the earlier rounds measured when it was proposed."""

    index: PositiveInt
    experiments: list[str]
    #: What the round adds and why, in one line (the CLI prints it as the round starts).
    note: str
    #: The width of the planner's target interval measured on the earlier rounds' fit, and
    #: the FLOPs of the runs it was fitted to (None for the first round: nothing was fitted).
    width: float | None = None
    compute: float | None = None
    #: The width the planner expected once this round is trained, where it predicts one.
    predicted_width: float | None = None


class PlanStop(StrictModel):
    """Why a planner that plans in rounds proposed no more: the target was met, or a cap."""

    note: str
    reached: bool
    width: float | None = None
    compute: float | None = None


class SweepPlan(StrictModel):
    """A planner's output: experiments plus what they will cost and what looks wrong.

    A planner that plans in rounds records each in `rounds` (every experiment in exactly one)
    and, once it proposes no more, why in `stop`; a one-round planner leaves both empty.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    planner: str
    config: dict[str, Any] = Field(default_factory=dict)
    conventions: Conventions = Conventions()
    experiments: list[ExperimentSpec]
    estimates: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    rounds: list[PlanRound] = Field(default_factory=list)
    stop: PlanStop | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> SweepPlan:
        seen: set[str] = set()
        for spec in self.experiments:
            if spec.id in seen:
                raise ValueError(f"experiment {spec.id} appears twice in the plan")
            seen.add(spec.id)
        if self.rounds:
            listed = [i for r in self.rounds for i in r.experiments]
            if sorted(listed) != sorted(seen):
                raise ValueError("the rounds must list every experiment of the plan exactly once")
            if [r.index for r in self.rounds] != list(range(1, len(self.rounds) + 1)):
                raise ValueError("the rounds must be numbered 1, 2, ... in order")
        return self

    def round_of(self) -> dict[str, int]:
        """experiment id -> the round that added it (every experiment is round 1 of a
        one-round plan)."""
        if not self.rounds:
            return {s.id: 1 for s in self.experiments}
        return {i: r.index for r in self.rounds for i in r.experiments}

    @property
    def budgets(self) -> list[float]:
        return sorted({s.budget for s in self.experiments})


def options_digest(name: str, options: dict[str, Any]) -> str:
    """A short, stable digest of a trainer's name and outcome options (sorted JSON)."""
    text = json.dumps([name, options], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class TrainerInfo(StrictModel):
    """Which trainer produced a result, and under which options.

    `options` are the trainer's outcome options (`Trainer.outcome_options`), `options_digest`
    their digest: a rerun under other options does not reuse the result. Both are None in
    results written before they were recorded: their options are unknown.
    """

    name: str
    version: str = "unknown"
    options: dict[str, Any] | None = None
    options_digest: str | None = None

    @classmethod
    def made_by(cls, name: str, version: str, options: dict[str, Any]) -> TrainerInfo:
        digest = options_digest(name, options)
        return cls(name=name, version=version, options=options, options_digest=digest)

    def differences(self, other: TrainerInfo, limit: int = 3) -> str:
        """How `other`'s options become these, in a few words: `seed 0 -> 7`."""
        if other.options is None:
            return "options unknown"
        if other.name != self.name:
            return f"trainer {other.name} -> {self.name}"
        mine, theirs = _flatten(self.options or {}), _flatten(other.options)
        changed = [
            f"{key} {_word(theirs.get(key))} -> {_word(mine.get(key))}"
            for key in sorted(mine.keys() | theirs.keys())
            if mine.get(key, _MISSING) != theirs.get(key, _MISSING)
        ]
        more = f", and {len(changed) - limit} more" if len(changed) > limit else ""
        return ", ".join(changed[:limit]) + more


_MISSING = object()


def _flatten(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"optimizer": {"lr": 1e-3}}` -> `{"optimizer.lr": 1e-3}`."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _word(value: Any) -> str:
    if value is None:
        return "(unset)"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _now() -> datetime:
    return datetime.now(UTC)


class RunResult(StrictModel):
    """One training run's outcome; one line of `results.jsonl`.

    `flops` is the counted compute under the spec's conventions; `flops_exact` and `flops_6n`
    are both recorded so a fit can switch convention without retraining.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    experiment_id: str
    spec: ExperimentSpec
    status: Literal["ok", "failed"]
    loss: float | None = None
    train_loss: float | None = None
    tokens_trained: int = 0
    flops: float = 0.0
    flops_exact: float = 0.0
    flops_6n: float = 0.0
    wall_time_s: float = 0.0
    device: str = "cpu"
    trainer: TrainerInfo
    curve: list[tuple[float, float]] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    #: What the trainer resolved for this run (precision, threads, steps, data, tokenizer, ...).
    details: dict[str, Any] = Field(default_factory=dict)
    #: Things that did not go as planned but did not fail the run (data repeated, say).
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None
    #: Why a failed run failed (None for ok runs, and for failures recorded before causes).
    cause: FailureCause | None = None
    started_at: datetime = Field(default_factory=_now)
    finished_at: datetime = Field(default_factory=_now)

    @model_validator(mode="after")
    def _check(self) -> RunResult:
        if self.experiment_id != self.spec.id:
            raise ValueError(f"experiment_id {self.experiment_id} != spec id {self.spec.id}")
        if self.status == "ok" and (self.loss is None or not math.isfinite(self.loss)):
            raise ValueError("an ok result needs a finite loss")
        if self.status == "failed" and not self.error:
            raise ValueError("a failed result needs an error message")
        if self.status == "ok" and self.cause is not None:
            raise ValueError("an ok result has no failure cause")
        return self

    @property
    def retried_on_rerun(self) -> bool:
        """Whether a plain rerun trains this experiment again: it failed for a fault of the
        machine (`INFRA_CAUSES`), not of the experiment."""
        return self.status == "failed" and self.cause in INFRA_CAUSES

    @classmethod
    def success(
        cls,
        spec: ExperimentSpec,
        trainer: TrainerInfo,
        *,
        loss: float,
        tokens_trained: int,
        **fields: Any,
    ) -> RunResult:
        """An `ok` result whose compute figures are counted from the tokens actually trained."""
        shape = spec.shape
        exact = float(tokens_trained) * shape.flops_per_token
        six_n = float(tokens_trained) * 6 * spec.params
        counted = exact if spec.conventions.flops == "exact" else six_n
        return cls(
            experiment_id=spec.id,
            spec=spec,
            status="ok",
            loss=loss,
            tokens_trained=tokens_trained,
            flops=counted,
            flops_exact=exact,
            flops_6n=six_n,
            trainer=trainer,
            **fields,
        )

    @classmethod
    def failure(
        cls,
        spec: ExperimentSpec,
        trainer: TrainerInfo,
        error: str,
        cause: FailureCause = "trainer_error",
        **fields: Any,
    ):
        """A `failed` result: kept for the record; retried by a plain rerun only when its
        `cause` is an infrastructure fault, otherwise only with --retry-failed."""
        return cls(
            experiment_id=spec.id,
            spec=spec,
            status="failed",
            error=error,
            cause=cause,
            trainer=trainer,
            **fields,
        )
