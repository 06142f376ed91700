"""Base classes of the things plugins register: planners, trainers, fitters, plotters, executors.

Each class carries `name` (what users type), `Config` (a strict pydantic model of its options)
and one job. Instances are built from a validated config, `Cls(config)`, so a configured trainer
is a plain picklable object that an executor can ship to a worker process.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import (
    PackageNotFoundError,
    entry_points,
    packages_distributions,
    version,
)
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from .errors import TrainingCancelled
from .fits import FitResult
from .flops import FlopsConvention, ParamConvention
from .observations import Observations, StudyOutcome
from .schemas import ExperimentSpec, PluginConfig, RunResult, SweepPlan, TrainerInfo, parse_model

__all__ = [
    "Executor",
    "Fitter",
    "FitterConfig",
    "Planner",
    "Plotter",
    "PlotterConfig",
    "PluginBase",
    "Trainer",
    "TrainerContext",
    "run_one",
]


@functools.cache
def _module_versions() -> dict[str, str]:
    """Top-level module -> version of the distribution that installs it."""
    found: dict[str, str] = {}
    for ep in entry_points(group="flops_fit"):  # editable installs list no modules otherwise
        if ep.dist is not None:
            found.setdefault(ep.value.split(".")[0].split(":")[0], ep.dist.version)
    for module, dists in packages_distributions().items():
        try:
            found.setdefault(module, version(dists[0]))
        except PackageNotFoundError:  # pragma: no cover - broken metadata
            continue
    return found


class _VersionFromDistribution:
    """`cls.version`: the version of the distribution that ships the class, looked up in any
    process (a worker process re-imports classes, so nothing set at registration survives)."""

    def __get__(self, obj: Any, cls: type) -> str:
        return _module_versions().get(cls.__module__.split(".")[0], "unknown")


class PluginBase:
    """What every registered class has: a `name`, a `Config` and a validated `config`."""

    kind: ClassVar[str] = "plugin"
    name: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    #: The version of the distribution that ships the class (a plugin may override it).
    version: ClassVar[str] = _VersionFromDistribution()  # type: ignore[assignment]

    def __init__(self, config: PluginConfig | Mapping[str, Any] | None = None):
        if isinstance(config, self.Config):
            self.config = config
        else:
            self.config = parse_model(self.Config, dict(config or {}), f"{self.kind} {self.name!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def validate_study(self, study: Any) -> None:
        """Check this plugin against the whole resolved study before anything trains.

        `study` is a `flops_fit_core.Study`: every plugin of the study, and `study.plan`, the
        sweep it will train (planned on first use). Raise `ConfigError` with one line for a
        combination that would fail every run (a planner vocabulary below the trainer's
        tokenizer, a schedule the trainer does not know). `config validate`, `plan`, `run`
        and `train` call it on every plugin of the study; the default checks nothing.
        """


class Planner(PluginBase):
    """Turns its config into a `SweepPlan`, in one go or in rounds.

    `plan()` gives the sweep, or its first round. A planner that plans in rounds also writes
    `next_round(outcome)`: `run` calls it after each round is trained and fitted, until it
    returns a plan with `stop` set.
    """

    kind = "planner"
    #: The fitter a study uses with this planner when its config names none (None: the
    #: study's usual default): a planner placed by a fit of the loss surface asks for one.
    fitter: ClassVar[str | None] = None

    def plan(self) -> SweepPlan:
        raise NotImplementedError

    def next_round(self, outcome: StudyOutcome) -> SweepPlan | None:
        """The plan with one more round, or with `stop` set; None: this planner has no rounds.

        `outcome` holds the plan so far (`outcome.plan`, every round), the study's fit of its
        results (`outcome.fit`, made by the study's fitter on `outcome.primary_observations`)
        and the latest record of each run (`outcome.runs`, failed ones included). The plan
        returned keeps every experiment of `outcome.plan` (their ids unchanged), adds the new
        round's experiments and a `PlanRound` naming them, or adds none and sets `stop` to say
        why it is done. It must depend on nothing but `outcome` and the config: a study
        interrupted in any round is resumed by replaying the rounds from its results, and
        must propose the same rounds again. The default, for one-round planners, is None.
        """
        return None


@dataclass
class TrainerContext:
    """What a trainer gets besides its spec: where to write, how to report, when to stop."""

    run_dir: Path
    checkpoint_dir: Path
    progress: Callable[[float, str | None], None] = field(
        default=lambda fraction, message=None: None
    )
    #: The sweep's cancel event (anything with `is_set()`): set by the first Ctrl-C or the
    #: Python API's cancel. A trainer checks it at least once per step, and when it is set
    #: saves what a resume needs and raises `TrainingCancelled` (`check_cancelled`).
    cancel_event: Any = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise `TrainingCancelled` if the run should stop now."""
        if self.cancel_event.is_set():
            raise TrainingCancelled("cancelled")


class Trainer(PluginBase):
    """Trains one `ExperimentSpec` and returns its `RunResult`."""

    kind = "trainer"
    #: Whether the same spec and seed give the same loss bit for bit (the contract checks it).
    deterministic: ClassVar[bool] = False

    def outcome_options(self) -> dict[str, Any]:
        """The options that can change a result: what a result records and is keyed by.

        A rerun whose trainer gives other outcome options does not reuse the results made
        under these. By default every option of the config; a trainer leaves out what only
        changes how fast or where it runs (threads, checkpoint cadence, a cache folder).
        """
        return self.config.model_dump(mode="json")

    @property
    def info(self) -> TrainerInfo:
        return TrainerInfo.made_by(self.name, self.version, self.outcome_options())

    def uses_gpu(self) -> bool:
        """Whether each run takes a GPU: cluster executors then ask for one per experiment
        (and size how many they keep in flight by the cluster's GPUs, not its CPUs)."""
        return False

    def runs_per_gpu(self, spec: ExperimentSpec) -> int:
        """How many runs like `spec` may share one GPU at once (each in its own process).

        A model too small to keep a GPU busy leaves it waiting on kernel launches; several
        such runs side by side multiply a sweep's throughput. Executors that place runs on
        GPUs (`process` with `workers_per_gpu = "auto"`) give each run 1/this of a GPU.
        """
        return 1

    def checkpoint_bytes(self, spec: ExperimentSpec) -> int:
        """About how many bytes a checkpoint of `spec` takes on disk (0: none is written).

        Training refuses to start on a disk without room for the largest one, so that no
        run is trained and then lost to a full disk.
        """
        return 0

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        raise NotImplementedError


def run_one(trainer: Trainer, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
    """Train one spec; any failure but cancellation becomes a `failed` result, never a crash."""
    started = time.time()
    try:
        result = trainer.train(spec, context)
        if not isinstance(result, RunResult) or result.experiment_id != spec.id:
            raise TypeError(
                f"trainer {trainer.name!r} returned {type(result).__name__}, "
                f"not a RunResult for {spec.id}"
            )
        return result
    except TrainingCancelled:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
        return RunResult.failure(
            spec,
            trainer.info,
            " ".join(f"{type(exc).__name__}: {exc}{where}".split()),  # one line
            wall_time_s=time.time() - started,
        )


class FitterConfig(PluginConfig):
    """Options every fitter understands: the conventions its data is counted under.

    They are consumed by the pipeline when it builds the `Observations` a fitter receives:
    results record N in both parameter conventions and C in both FLOPs conventions, so a fit
    can be made under either whatever the plan used. For a user's own table they state how
    its columns were counted (and, for `flops = "6n"`, let a missing N or D be derived as
    C / 6D or C / 6N). `None` means "as the data records it".
    """

    params: ParamConvention | None = Field(
        None, description="parameter count to fit under: total or non_embedding"
    )
    flops: FlopsConvention | None = Field(
        None, description="compute convention to fit under: exact or 6n (C = 6ND)"
    )


class Fitter(PluginBase):
    """Fits scaling laws to `Observations`."""

    kind = "fitter"
    Config = FitterConfig
    #: Whether `fit` models every run with the surface L(N, D) = E + A/N^alpha + B/D^beta and
    #: reports its parameters in `FitResult.parametric` (E, A, B, alpha, beta): what a planner
    #: that places runs by their information about that surface needs.
    fits_surface: ClassVar[bool] = False

    def fit(self, observations: Observations) -> FitResult:
        raise NotImplementedError


class PlotterConfig(PluginConfig):
    """Options every plotter understands (the `[plot]` section, shared by all its plotters)."""

    formats: tuple[str, ...] = ("png", "svg")
    dpi: int = 150
    #: Compute budgets (FLOPs) the study is meant to answer for: the scaling figures mark
    #: the extrapolation to them and the report predicts N*, D*, L* there.
    targets: tuple[float, ...] = ()

    @field_validator("targets", mode="before")
    @classmethod
    def _one_target(cls, value):
        if isinstance(value, bool) or (
            isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value)
        ):
            raise ValueError("targets must be compute budgets in FLOPs, not true/false")
        return (value,) if isinstance(value, str | int | float) else value

    @field_validator("targets")
    @classmethod
    def _positive_targets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        bad = [v for v in value if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"targets must be positive compute budgets (FLOPs), got {bad[0]}")
        return tuple(sorted(set(value)))


class Plotter(PluginBase):
    """Draws observations and a fit into files.

    `plot(observations, fit, out_dir)` is the one method a plotter must write. `draw(outcome,
    out_dir)` is what the pipeline calls: it hands over the whole `StudyOutcome` (every fit of
    the study, the plan, the config) and by default plots the study's own fit; a plotter that
    needs more (the report, a figure that wants the fit with a parametric law) overrides it.
    """

    kind = "plotter"
    Config = PlotterConfig

    def plot(self, observations: Observations, fit: FitResult, out_dir: Path) -> list[Path]:
        raise NotImplementedError

    def draw(self, outcome: StudyOutcome, out_dir: Path) -> list[Path]:
        """Plot a study's outcome; returns the files written."""
        return self.plot(outcome.primary_observations, outcome.fit, out_dir)


class Executor(PluginBase):
    """Runs a trainer over many specs, delivering each result to `on_result` as it arrives."""

    kind = "executor"

    def map(
        self,
        trainer: Trainer,
        specs: Iterable[ExperimentSpec],
        on_result: Callable[[RunResult], None],
        *,
        run_dir: Path,
        cancel: threading.Event | None = None,
        on_progress: Callable[[str, float, str | None], None] | None = None,
    ) -> None:
        """Train every spec; call `on_result` here, in the caller's thread, as each arrives.

        Stop starting new specs once `cancel` is set. `on_progress(spec_id, fraction, message)`
        relays a trainer's progress where the executor can.
        """
        raise NotImplementedError

    @staticmethod
    def context_for(
        spec: ExperimentSpec,
        run_dir: Path,
        cancel: Any,
        progress=None,
        *,
        checkpoint_root: Path | None = None,
    ) -> TrainerContext:
        """The context a trainer gets: its checkpoint folder is `<checkpoint_root>/<id>`, by
        default `checkpoints/<id>` in the run directory."""
        root = (
            Path(checkpoint_root) if checkpoint_root is not None else Path(run_dir) / "checkpoints"
        )
        ctx = TrainerContext(
            run_dir=Path(run_dir),
            checkpoint_dir=root / spec.id,
            cancel_event=cancel if cancel is not None else threading.Event(),
        )
        if progress is not None:
            ctx.progress = progress
        return ctx
