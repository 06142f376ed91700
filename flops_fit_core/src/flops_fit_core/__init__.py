"""flops-fit core: data contracts, hookspecs, plugin host, config, results store, pipeline, CLI.

Plugin authors need only what this module exports: the base classes to subclass, the schemas to
return, `hookimpl` to mark the register hooks, and the errors to raise.
"""

from importlib.metadata import PackageNotFoundError, version

from .bases import (
    Executor,
    Fitter,
    FitterConfig,
    Planner,
    Plotter,
    PlotterConfig,
    PluginBase,
    Trainer,
    TrainerContext,
    run_one,
)
from .cluster import (
    CancelFlag,
    WorkerReply,
    check_versions,
    in_flight_for,
    shared_folder,
    train_on_worker,
)
from .config import DEFAULT_PLOTS, apply_overrides, load_study_config
from .errors import (
    ClusterError,
    ConfigError,
    FitError,
    FlopsFitError,
    InputError,
    NothingToDraw,
    OutputError,
    PluginError,
    RunFailed,
    StudyLocked,
    TrainingCancelled,
    TrainingError,
    UnknownPluginError,
    UsageError,
)
from .executors import MAX_RUNS_PER_GPU, THREADS_ENV, WORKERS_ENV, visible_gpus
from .files import write_atomic
from .fits import Estimate, FitResult, Optimum, PowerLaw, Prediction
from .flops import FlopsConvention, ParamConvention, flops_per_token, params_count
from .hookspecs import HOOK_API_VERSION, hookimpl
from .observations import ANYTIME, Observations, StudyOutcome, read_observations
from .pipeline import fit, run_study
from .plugins import KINDS, PluginHost, get_host
from .rundir import REPORT_FILE, read_fit, read_outcome
from .schemas import (
    SCHEMA_VERSION,
    Conventions,
    ExperimentSpec,
    ModelShape,
    PlanRound,
    PlanStop,
    PluginConfig,
    RunResult,
    SweepPlan,
    TrainerInfo,
    parse_model,
)
from .store import ResultsStore
from .study import resolve_study
from .text import (
    computes,
    fit_report,
    flops_convention,
    format_estimate,
    format_headline,
    format_interval,
    format_law,
    format_number_tex,
    predictions,
    role,
)

try:
    __version__ = version("flops-fit-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ANYTIME",
    "DEFAULT_PLOTS",
    "HOOK_API_VERSION",
    "KINDS",
    "MAX_RUNS_PER_GPU",
    "REPORT_FILE",
    "SCHEMA_VERSION",
    "THREADS_ENV",
    "WORKERS_ENV",
    "CancelFlag",
    "ClusterError",
    "ConfigError",
    "Conventions",
    "Estimate",
    "Executor",
    "ExperimentSpec",
    "FitError",
    "FitResult",
    "Fitter",
    "FitterConfig",
    "FlopsConvention",
    "FlopsFitError",
    "InputError",
    "ModelShape",
    "NothingToDraw",
    "Observations",
    "Optimum",
    "OutputError",
    "ParamConvention",
    "PlanRound",
    "PlanStop",
    "Planner",
    "Plotter",
    "PlotterConfig",
    "PluginBase",
    "PluginConfig",
    "PluginError",
    "PluginHost",
    "PowerLaw",
    "Prediction",
    "ResultsStore",
    "RunFailed",
    "RunResult",
    "StudyLocked",
    "StudyOutcome",
    "SweepPlan",
    "Trainer",
    "TrainerContext",
    "TrainerInfo",
    "TrainingCancelled",
    "TrainingError",
    "UnknownPluginError",
    "UsageError",
    "WorkerReply",
    "__version__",
    "apply_overrides",
    "check_versions",
    "computes",
    "fit",
    "fit_report",
    "flops_convention",
    "flops_per_token",
    "format_estimate",
    "format_headline",
    "format_interval",
    "format_law",
    "format_number_tex",
    "get_host",
    "hookimpl",
    "in_flight_for",
    "load_study_config",
    "params_count",
    "parse_model",
    "predictions",
    "read_fit",
    "read_observations",
    "read_outcome",
    "resolve_study",
    "role",
    "run_one",
    "run_study",
    "shared_folder",
    "train_on_worker",
    "visible_gpus",
    "write_atomic",
]
