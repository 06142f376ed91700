"""plan -> train -> fit -> plot, used by the CLI and the Python API.

A run directory holds one study: `config.toml` (resolved), `plan.json`, `results.jsonl`,
`checkpoints/`, `fit.json`, `figures/`. Every stage reruns idempotently: training skips every
experiment whose id already has an `ok` record, so a finished experiment is never trained twice
and an edited plan trains only what is new.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, get_args

import tomli_w
from pydantic import BaseModel, ValidationError

from . import tables
from .bases import Executor, Fitter, Planner, Plotter, Trainer
from .config import SECTIONS, StudyConfig
from .errors import InputError, UsageError
from .flops import FlopsConvention, ParamConvention
from .plugins import PluginHost, get_host
from .schemas import Conventions, ExperimentSpec, FitResult, Observations, RunResult, SweepPlan
from .store import LoadedResults, ResultsStore

__all__ = [
    "Reporter",
    "RunSummary",
    "Study",
    "TrainSummary",
    "fit_observations",
    "is_results_file",
    "load_observations",
    "pending_specs",
    "plot_fit",
    "read_fit",
    "read_observations",
    "read_plan",
    "requested_conventions",
    "resolve_study",
    "run_study",
    "train_plan",
    "write_atomic",
]

CONFIG_FILE, PLAN_FILE, RESULTS_FILE, FIT_FILE, FIGURES_DIR = (
    "config.toml",
    "plan.json",
    "results.jsonl",
    "fit.json",
    "figures",
)


class Reporter(Protocol):
    """What the pipeline tells the user; the CLI's implementation draws progress bars."""

    def message(self, text: str) -> None: ...
    def training_started(self, total: int, skipped: int) -> None: ...
    def run_progress(self, spec_id: str, fraction: float, message: str | None) -> None: ...
    def run_finished(self, result: RunResult) -> None: ...
    def training_finished(self) -> None: ...


class SilentReporter:
    """A reporter that says nothing (the Python API's default)."""

    def message(self, text: str) -> None: ...
    def training_started(self, total: int, skipped: int) -> None: ...
    def run_progress(self, spec_id: str, fraction: float, message: str | None) -> None: ...
    def run_finished(self, result: RunResult) -> None: ...
    def training_finished(self) -> None: ...


@dataclass
class Study:
    """A study config with every plugin resolved and its options validated."""

    config: StudyConfig
    planner: Planner
    trainer: Trainer
    executor: Executor
    fitter: Fitter
    plotters: list[Plotter]

    def resolved(self) -> dict[str, Any]:
        """The full config, every option's value included (what `config.toml` records)."""

        def section(plugin: Any) -> dict[str, Any]:
            return {"name": plugin.name, **plugin.config.model_dump(mode="json", exclude_none=True)}

        plot_options = self.plotters[0].config.model_dump(mode="json") if self.plotters else {}
        return {
            "schema_version": self.config.schema_version,
            "planner": section(self.planner),
            "trainer": section(self.trainer),
            "executor": section(self.executor),
            "fitter": section(self.fitter),
            "plot": {"names": [p.name for p in self.plotters], **plot_options},
        }


def resolve_study(config: StudyConfig, host: PluginHost | None = None) -> Study:
    """Look up every named plugin and validate its options; nothing runs yet."""
    host = host or get_host()
    built: dict[str, Any] = {}
    for section, kind in SECTIONS.items():
        options = dict(getattr(config, section))
        built[section] = host.create(kind, options.pop("name"), options)
    plot_options = dict(config.plot)
    names = plot_options.pop("names")
    plotters = [host.create("plotter", name, plot_options) for name in names]
    return Study(config=config, plotters=plotters, **built)


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file so a crash leaves the old or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; keep files as readable as others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_model(path: Path, model: type[BaseModel], what: str):
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(
            f"{path} is not a valid {what}: {loc + ': ' if loc else ''}{err['msg']}"
        ) from None


def read_plan(path: Path) -> SweepPlan:
    return _read_model(path, SweepPlan, "plan")


def read_fit(path: Path) -> FitResult:
    return _read_model(path, FitResult, "fit")


def pending_specs(
    plan: SweepPlan, loaded: LoadedResults, retry_failed: bool
) -> list[ExperimentSpec]:
    """The plan's experiments that still need training: no `ok` record, and failed ones only
    when `retry_failed`."""
    statuses = loaded.statuses()
    return [
        spec
        for spec in plan.experiments
        if (status := statuses.get(spec.id)) is None or (status == "failed" and retry_failed)
    ]


@dataclass
class TrainSummary:
    trained: int = 0
    failed: int = 0
    skipped: int = 0
    failed_before: int = 0  # failed records left alone (no --retry-failed)
    errors: list[str] = field(default_factory=list)


def train_plan(
    plan: SweepPlan,
    trainer: Trainer,
    executor: Executor,
    results_path: Path,
    *,
    retry_failed: bool = False,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
) -> TrainSummary:
    """Train what the results file does not hold yet, appending each result as it arrives."""
    reporter = reporter or SilentReporter()
    store = ResultsStore(results_path)
    loaded = store.load()
    for number in loaded.torn_lines:
        reporter.message(
            f"warning: {results_path}:{number} is a torn record (a write cut short by a "
            "crash); skipped: an experiment with no other result is trained again"
        )
    todo = pending_specs(plan, loaded, retry_failed)
    statuses = loaded.statuses()
    summary = TrainSummary(skipped=len(plan.experiments) - len(todo))
    summary.failed_before = sum(
        1 for s in plan.experiments if not retry_failed and statuses.get(s.id) == "failed"
    )
    reporter.training_started(total=len(todo), skipped=summary.skipped)

    def on_result(result: RunResult) -> None:
        store.append(result)
        if result.status == "ok":
            summary.trained += 1
        else:
            summary.failed += 1
            summary.errors.append(f"{result.experiment_id}: {result.error}")
        reporter.run_finished(result)

    try:
        if todo:
            executor.map(
                trainer,
                todo,
                on_result,
                run_dir=Path(results_path).parent,
                cancel=cancel,
                on_progress=reporter.run_progress,
            )
    finally:
        reporter.training_finished()
    return summary


def requested_conventions(fitter: Any) -> dict[str, str | None]:
    """The conventions a fitter asks its data to be counted under: `{"params", "flops"}`.

    Read from the fitter's config by name (`FitterConfig.params`, `.flops`), not by type: a
    third-party fitter's config need not subclass `FitterConfig`. A value that is not a known
    convention belongs to some other meaning of that option and is ignored; `None` means "as
    the data records it".
    """
    config = getattr(fitter, "config", None)
    wanted = {"params": get_args(ParamConvention), "flops": get_args(FlopsConvention)}
    return {
        key: value if (value := getattr(config, key, None)) in choices else None
        for key, choices in wanted.items()
    }


def load_observations(
    results_path: Path,
    only_ids: set[str] | None = None,
    *,
    params: ParamConvention | None = None,
    flops: FlopsConvention | None = None,
) -> Observations:
    """The `ok` results of a results file (optionally only those of a plan) as observations.

    `params` and `flops` recount N and C under another convention than the results were
    planned in (`Observations.from_results`); `None` keeps the recorded one.
    """
    if not Path(results_path).exists():
        raise InputError(f"results file not found: {results_path}")
    ok = ResultsStore(results_path).load().ok(only_ids)
    if not ok:
        raise InputError(f"{results_path}: no successful results to fit")
    conventions = None
    if params is not None or flops is not None:
        recorded = ok[0].spec.conventions
        conventions = Conventions(params=params or recorded.params, flops=flops or recorded.flops)
    return Observations.from_results(ok, source=str(results_path), conventions=conventions)


def is_results_file(path: Path) -> bool:
    """Whether `path` is a flops-fit results file: its first record has `experiment_id` and
    `spec`. Anything else (a CSV, a user's JSON lines) is a table for `tables.read_table`.

    Lines that are not JSON are passed over: a crash during the very first append leaves a
    torn first record, and the results store, not this guess, should report it.
    """
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".json"):
        return False
    try:
        with path.open("rb") as fh:
            for line in itertools.islice(fh, 100):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                return isinstance(record, dict) and {"experiment_id", "spec"} <= set(record)
    except OSError:
        return False
    return False


def read_observations(
    path: Path,
    *,
    mapping: Mapping[str, str] | None = None,
    params: ParamConvention | None = None,
    flops: FlopsConvention | None = None,
) -> Observations:
    """Observations from our own `results.jsonl` or from a user's table (`tables`).

    A table is counted under `params`/`flops`, defaulting to `tables.DEFAULT_CONVENTIONS`
    (total parameters, C = 6ND); `mapping` names its columns. A mapping given for a results
    file is a `UsageError`: its fields are not columns.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"results file not found: {path}")
    if is_results_file(path):
        if mapping:
            raise UsageError(
                f"--map is for tables; {path} is a flops-fit results file, whose fields are fixed"
            )
        return load_observations(path, params=params, flops=flops)
    default = tables.DEFAULT_CONVENTIONS
    conventions = Conventions(params=params or default.params, flops=flops or default.flops)
    return tables.read_table(path, mapping, conventions)


def fit_observations(observations: Observations, fitter: Fitter) -> FitResult:
    return fitter.fit(observations)


def plot_fit(
    observations: Observations, fit: FitResult, plotters: list[Plotter], out_dir: Path
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for plotter in plotters:
        files.extend(plotter.plot(observations, fit, out_dir))
    return files


@dataclass
class RunSummary:
    run_dir: Path
    plan: SweepPlan
    training: TrainSummary
    fit: FitResult
    figures: list[Path]

    def as_dict(self, target: float | None = None) -> dict[str, Any]:
        largest = max(self.plan.budgets)
        predictions = [self.fit.predict(largest).model_dump(mode="json")]
        if target is not None:
            predictions.append(self.fit.predict(target).model_dump(mode="json"))
        return {
            "run_dir": str(self.run_dir),
            "experiments": len(self.plan.experiments),
            "trained": self.training.trained,
            "skipped": self.training.skipped,
            "failed": self.training.failed + self.training.failed_before,
            "fit": self.fit.model_dump(mode="json"),
            "predictions": predictions,
            "figures": [str(p) for p in self.figures],
        }


def run_study(
    study: Study,
    run_dir: Path,
    *,
    retry_failed: bool = False,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RunSummary:
    """The whole study in `run_dir`: plan, train what is missing, fit, plot."""
    reporter = reporter or SilentReporter()
    stage = on_stage or reporter.message
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stage("planning")
    plan = study.planner.plan()
    for warning in plan.warnings:
        reporter.message(f"plan warning: {warning}")
    write_atomic(run_dir / CONFIG_FILE, tomli_w.dumps(study.resolved()))
    write_atomic(run_dir / PLAN_FILE, plan.model_dump_json(indent=2))
    stage(f"training {len(plan.experiments)} experiments with {study.trainer.name!r}")
    training = train_plan(
        plan,
        study.trainer,
        study.executor,
        run_dir / RESULTS_FILE,
        retry_failed=retry_failed,
        reporter=reporter,
        cancel=cancel,
    )
    stage(f"fitting with {study.fitter.name!r}")
    observations = load_observations(
        run_dir / RESULTS_FILE,
        {s.id for s in plan.experiments},
        **requested_conventions(study.fitter),
    )
    fit = fit_observations(observations, study.fitter)
    write_atomic(run_dir / FIT_FILE, fit.model_dump_json(indent=2))
    stage("plotting")
    figures = plot_fit(observations, fit, study.plotters, run_dir / FIGURES_DIR)
    return RunSummary(run_dir, plan, training, fit, figures)
