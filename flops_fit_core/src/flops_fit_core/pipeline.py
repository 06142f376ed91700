"""plan -> train -> fit -> plot, used by the CLI and the Python API.

A run directory holds one study: `config.toml` (resolved), `plan.json`, `results.jsonl`,
`checkpoints/`, `fit.json` (the study's `[fitter]`), `fits/<name>.json` (the `[[compare]]`
fitters), `figures/` and `report.html`. Every stage reruns idempotently: training skips every
experiment whose id already has an `ok` record, so a finished experiment is never trained twice
and an edited plan trains only what is new.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import threading
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, get_args

import tomli_w
from pydantic import BaseModel, ValidationError

from . import tables, text
from .bases import Executor, Fitter, Planner, Plotter, Trainer
from .config import SECTIONS, StudyConfig
from .errors import (
    ConfigError,
    FitError,
    InputError,
    NothingToDraw,
    OutputError,
    RunFailed,
    TrainingCancelled,
    UsageError,
)
from .files import output_error, read_inside, remove_temp_files, write_atomic
from .flops import FlopsConvention, ParamConvention
from .interrupts import cancel_on_interrupt
from .plugins import PluginHost, get_host
from .schemas import (
    Conventions,
    ExperimentSpec,
    FitResult,
    Observations,
    RunResult,
    StudyOutcome,
    SweepPlan,
    TrainerInfo,
)
from .store import LoadedResults, ResultsStore

__all__ = [
    "Drawn",
    "Reporter",
    "RunSummary",
    "Study",
    "TrainSummary",
    "compared_names",
    "draw_outcome",
    "fit_comparisons",
    "fit_observations",
    "is_results_file",
    "latest_runs",
    "load_observations",
    "pending_specs",
    "previous_config",
    "read_fit",
    "read_observations",
    "read_outcome",
    "read_plan",
    "read_run_config",
    "requested_conventions",
    "resolve_study",
    "run_study",
    "train_plan",
    "write_atomic",
]

CONFIG_FILE, PLAN_FILE, RESULTS_FILE, FIT_FILE, FITS_DIR, FIGURES_DIR, REPORT_FILE = (
    "config.toml",
    "plan.json",
    "results.jsonl",
    "fit.json",
    "fits",  # the `[[compare]]` fitters' fits, `fits/<fitter>.json`
    "figures",
    "report.html",
)
#: `fits/<fitter><FAILED_SUFFIX>`: why a compared fitter could not fit the results.
FAILED_SUFFIX = ".failed"


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
    comparisons: list[Fitter] = field(default_factory=list)
    _plan: SweepPlan | None = field(default=None, repr=False)

    @property
    def plan(self) -> SweepPlan:
        """The sweep this study trains: its planner's plan, made on first use, or the plan it
        was given (`with_plan`: `flops-fit train` trains a plan file)."""
        if self._plan is None:
            self._plan = self.planner.plan()
        return self._plan

    def with_plan(self, plan: SweepPlan) -> Study:
        self._plan = plan
        return self

    def plugins(self) -> list[Any]:
        return [
            self.planner, self.trainer, self.executor, self.fitter, *self.comparisons,
            *self.plotters,
        ]  # fmt: skip

    def validate(self) -> None:
        """Every plugin's `validate_study` check; the first that fails raises `ConfigError`."""
        for plugin in self.plugins():
            plugin.validate_study(self)

    def resolved(self) -> dict[str, Any]:
        """The full config, every option's value included (what `config.toml` records)."""

        def section(plugin: Any) -> dict[str, Any]:
            return {"name": plugin.name, **plugin.config.model_dump(mode="json", exclude_none=True)}

        plot_options = self.plotters[0].config.model_dump(mode="json") if self.plotters else {}
        resolved = {
            "schema_version": self.config.schema_version,
            "planner": section(self.planner),
            "trainer": section(self.trainer),
            "executor": section(self.executor),
            "fitter": section(self.fitter),
            "plot": {"names": [p.name for p in self.plotters], **plot_options},
        }
        if self.comparisons:
            resolved["compare"] = [section(f) for f in self.comparisons]
        return resolved


def resolve_study(config: StudyConfig, host: PluginHost | None = None) -> Study:
    """Look up every named plugin and validate its options; nothing runs yet."""
    host = host or get_host()
    built: dict[str, Any] = {}
    for section, kind in SECTIONS.items():
        options = dict(getattr(config, section))
        try:
            built[section] = host.create(kind, options.pop("name"), options)
        except ConfigError as exc:
            if section == "fitter" and (hint := _compared_option_hint(config, options, host)):
                raise ConfigError(f"{exc}; {hint}") from None
            raise
    plot_options = dict(config.plot)
    names = plot_options.pop("names")
    plotters = [host.create("plotter", name, plot_options) for name in names]
    comparisons = []
    for table in config.compare:
        options = dict(table)
        comparisons.append(host.create("fitter", options.pop("name"), options))
    return Study(config=config, plotters=plotters, comparisons=comparisons, **built)


def _compared_option_hint(
    config: StudyConfig, options: Mapping[str, Any], host: PluginHost
) -> str | None:
    """For a `[fitter]` option its fitter does not know but a compared fitter does: how to
    set it there (`--set fitter.bootstrap=200` on a study that compares `robust`)."""
    for table in config.compare:
        try:
            known = host.get("fitter", table["name"]).Config.model_fields
        except UsageError:
            continue
        keys = [key for key in options if key in known]
        if keys:
            name = table["name"]
            return f"the compared {name!r} takes it: --set compare.{name}.{keys[0]}=..."
    return None


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
    plan: SweepPlan,
    loaded: LoadedResults,
    retry_failed: bool,
    *,
    digest: str | None = None,
    keep_other: bool = False,
) -> list[ExperimentSpec]:
    """The plan's experiments that still need training: no `ok` record (of the trainer
    options `digest`, or of any options with `keep_other`), failed ones whose machine failed
    them (`RunResult.retried_on_rerun`), and the other failed ones only when `retry_failed`."""
    statuses = loaded.statuses(digest, keep_other)
    infra = loaded.retried_on_rerun(digest, keep_other)
    return [
        spec
        for spec in plan.experiments
        if (status := statuses.get(spec.id)) is None
        or (status == "failed" and (retry_failed or spec.id in infra))
    ]


@dataclass
class TrainSummary:
    trained: int = 0
    failed: int = 0
    skipped: int = 0
    failed_before: int = 0  # failed records left alone (no --retry-failed)
    errors: list[str] = field(default_factory=list)
    #: experiments whose only results were made under other trainer options: trained again,
    #: or (`keep_results`) kept
    other_options: int = 0
    kept_other: bool = False


def options_note(
    loaded: LoadedResults, info: TrainerInfo, ids: set[str], *, kept: bool
) -> str | None:
    """One line on the results of `ids` made under other trainer options than `info`'s:
    `72 results were trained with other trainer options (seed 0 -> 7); training them again`.
    None when every result matches."""
    other = loaded.other_options(info.options_digest, ids) if info.options_digest else {}
    if not other:
        return None
    changes: dict[str, int] = {}
    for result in other.values():
        change = info.differences(result.trainer)
        changes[change] = changes.get(change, 0) + 1
    said = "; ".join(sorted(changes, key=changes.get, reverse=True)[:2])
    n = len(other)
    were = "result was" if n == 1 else "results were"
    then = "kept (--keep-results)" if kept else "training them again"
    return f"{n} {were} trained with other trainer options ({said}); {then}"


def results_notes(results_path: Path, info: TrainerInfo, ids: set[str] | None) -> list[str]:
    """What a report must say about the options of the results it shows, given the trainer
    its config describes: results kept from other options, results of unknown options."""
    loaded = ResultsStore(results_path).load()
    notes = []
    if info.options_digest and (other := loaded.other_options(info.options_digest, ids)):
        n = len(other)
        change = "; ".join(sorted({info.differences(r.trainer) for r in other.values()})[:2])
        notes.append(
            f"{n} of these results were trained with other trainer options than the config "
            f"records (results -> config: {change}), kept with --keep-results"
        )
    if note := unknown_options_note(loaded, ids):
        notes.append(note)
    return notes


def unknown_options_note(loaded: LoadedResults, ids: set[str] | None) -> str | None:
    """One line on results written before trainer options were recorded."""
    n = loaded.unknown_options(ids)
    if not n:
        return None
    were = "result was" if n == 1 else "results were"
    return f"{n} {were} written before flops-fit recorded trainer options: options unknown"


def train_plan(
    plan: SweepPlan,
    trainer: Trainer,
    executor: Executor,
    results_path: Path,
    *,
    retry_failed: bool = False,
    keep_results: bool = False,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
) -> TrainSummary:
    """Train what the results file does not hold yet, appending each result as it arrives.

    A result made under other trainer options (`Trainer.outcome_options`) does not satisfy
    its experiment, which is trained again and said so, unless `keep_results`. Each result is
    stamped with the trainer's options as the driver sees them, whatever the trainer wrote.
    """
    reporter = reporter or SilentReporter()
    store = ResultsStore(results_path)
    with store.writer():
        return _train_locked(
            plan, trainer, executor, store, retry_failed, keep_results, reporter, cancel
        )


def _train_locked(
    plan: SweepPlan,
    trainer: Trainer,
    executor: Executor,
    store: ResultsStore,
    retry_failed: bool,
    keep_results: bool,
    reporter: Reporter,
    cancel: threading.Event | None,
) -> TrainSummary:
    results_path = store.path
    run_dir = results_path.parent
    for leftover in remove_temp_files(_write_folders(run_dir)):
        reporter.message(f"removed {leftover}: a temporary file of a write cut short")
    if (aside := store.heal()) is not None:
        reporter.message(
            f"warning: {results_path} ended in a torn record (a write cut short by a crash or "
            f"a full disk): set aside to {aside.name} and the file truncated to its last "
            "complete record; an experiment with no other result is trained again"
        )
    loaded = store.load()
    for number in loaded.torn_lines:
        reporter.message(
            f"warning: {results_path}:{number} is a torn record (a write cut short by a "
            "crash); skipped: an experiment with no other result is trained again"
        )
    info = trainer.info
    digest = info.options_digest
    ids = {s.id for s in plan.experiments}
    todo = pending_specs(plan, loaded, retry_failed, digest=digest, keep_other=keep_results)
    statuses = loaded.statuses(digest, keep_results)
    infra = loaded.retried_on_rerun(digest, keep_results) & ids
    summary = TrainSummary(skipped=len(plan.experiments) - len(todo), kept_other=keep_results)
    summary.failed_before = sum(
        1
        for s in plan.experiments
        if not retry_failed and statuses.get(s.id) == "failed" and s.id not in infra
    )
    summary.other_options = len(loaded.other_options(digest, ids)) if digest else 0
    notes = [
        options_note(loaded, info, ids, kept=keep_results),
        unknown_options_note(loaded, ids),
    ]
    if infra:
        n = len(infra)
        notes.append(
            f"{n} experiment{'' if n == 1 else 's'} failed earlier because the worker died "
            "(killed, out of memory): training again"
        )
    for note in notes:
        if note:
            reporter.message(note)
    cancel = cancel if cancel is not None else threading.Event()
    if todo and not cancel.is_set():
        check_room(run_dir, trainer, todo)
    reporter.training_started(total=len(todo), skipped=summary.skipped)

    def on_result(result: RunResult) -> None:
        result = result.model_copy(update={"trainer": info})
        store.append(result)
        if result.status == "ok":
            summary.trained += 1
        else:
            summary.failed += 1
            summary.errors.append(f"{result.experiment_id}: {result.error}")
        reporter.run_finished(result)

    def said_stop() -> None:
        reporter.message(
            "stopping: the runs in flight checkpoint and stop at their next step (Ctrl-C "
            "again to stop at once)"
        )

    try:
        if todo and not cancel.is_set():
            with cancel_on_interrupt(cancel, said_stop):
                executor.map(
                    trainer,
                    todo,
                    on_result,
                    run_dir=run_dir,
                    cancel=cancel,
                    on_progress=reporter.run_progress,
                )
    finally:
        reporter.training_finished()
    if cancel.is_set():
        left = len(todo) - summary.trained - summary.failed
        raise TrainingCancelled(
            f"{left} of {len(todo)} experiments not trained yet (the runs in flight stopped "
            f"at a checkpoint); finished results are saved in {results_path}; rerun the same "
            "command to resume"
        )
    return summary


def _write_folders(run_dir: Path) -> list[Path]:
    """The folders of a run directory whose files are written atomically."""
    checkpoints = run_dir / "checkpoints"
    folders = [run_dir, run_dir / FITS_DIR, run_dir / FIGURES_DIR]
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        folders.extend(p for p in checkpoints.iterdir() if p.is_dir() and not p.is_symlink())
    return folders


#: Room left for the results file and logs beside the checkpoints (bytes).
_SLACK_BYTES = 8 << 20


def check_room(run_dir: Path, trainer: Trainer, todo: Sequence[ExperimentSpec]) -> None:
    """Refuse (`OutputError`) to start training where its work could not be kept: a run
    directory or results file that cannot be written, or a disk without room for the
    largest checkpoint (`Trainer.checkpoint_bytes`, twice: an atomic write holds the old and
    the new one) and the records."""
    results = run_dir / RESULTS_FILE
    try:
        with open(results, "ab"):
            pass
    except OSError as exc:
        raise output_error(exc, results) from None
    need = 2 * max(int(trainer.checkpoint_bytes(spec)) for spec in todo) + _SLACK_BYTES
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return
    if free < need:
        raise OutputError(
            f"cannot train into {run_dir}: {free / 2**20:.0f} MiB free on its disk, and a run "
            f"needs about {need / 2**20:.0f} MiB (its checkpoint and results); free some "
            "space and run again"
        )


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
    digest: str | None = None,
    keep_other: bool = False,
) -> Observations:
    """The `ok` results of a results file (optionally only those of a plan) as observations.

    `params` and `flops` recount N and C under another convention than the results were
    planned in (`Observations.from_results`); `None` keeps the recorded one. `digest` takes
    only results of those trainer options (and, with `keep_other`, of others where an
    experiment has no other result); without it, each experiment's latest result, and a
    warning when they were trained under different options.
    """
    if not Path(results_path).exists():
        raise InputError(f"results file not found: {results_path}")
    ok = ResultsStore(results_path).load().ok(only_ids, digest, keep_other)
    if not ok:
        raise InputError(f"{results_path}: no successful results to fit")
    conventions = None
    if params is not None or flops is not None:
        recorded = ok[0].spec.conventions
        conventions = Conventions(params=params or recorded.params, flops=flops or recorded.flops)
    observations = Observations.from_results(ok, source=str(results_path), conventions=conventions)
    digests = {r.trainer.options_digest for r in ok} - {None}
    if len(digests) > 1:
        warning = (
            f"{results_path}: these results were trained under {len(digests)} different sets "
            "of trainer options"
        )
        observations = dataclasses.replace(observations, warnings=(*observations.warnings, warning))
    return observations


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
                except (ValueError, RecursionError):
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
    group_tolerance: float | None = None,
) -> Observations:
    """Observations from our own `results.jsonl` or from a user's table (`tables`).

    A table is counted under `params`/`flops`, defaulting to `tables.DEFAULT_CONVENTIONS`
    (total parameters, C = 6ND); `mapping` names its columns; `group_tolerance` (a
    percentage) groups its runs into budgets by C (`tables.group_by_tolerance`). A mapping or
    a tolerance given for a results file is a `UsageError`: its budgets are the plan's.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"results file not found: {path}")
    if is_results_file(path):
        if mapping:
            raise UsageError(
                f"--map is for tables; {path} is a flops-fit results file, whose fields are fixed"
            )
        if group_tolerance is not None:
            raise UsageError(
                f"--group-tolerance is for tables; {path} is a flops-fit results file, whose "
                "runs keep the budgets they were planned for"
            )
        return load_observations(path, params=params, flops=flops)
    default = tables.DEFAULT_CONVENTIONS
    conventions = Conventions(params=params or default.params, flops=flops or default.flops)
    return tables.read_table(path, mapping, conventions, group_tolerance)


def fit_observations(observations: Observations, fitter: Fitter) -> FitResult:
    return fitter.fit(observations)


@dataclass
class Drawn:
    """What `draw_outcome` wrote, and the figures it skipped with the reason for each."""

    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def draw_outcome(
    outcome: StudyOutcome,
    plotters: list[Plotter],
    out_dir: Path,
    *,
    skip_empty: bool = False,
    never_fail: bool = False,
    reporter: Reporter | None = None,
) -> Drawn:
    """Each plotter's files for a study's outcome.

    A plotter with nothing to show for this outcome (`NothingToDraw`: no loss curves, no
    parametric law) is an error when it was asked for by name; with `skip_empty` (a config's
    list of figures) it is skipped. With `never_fail` (`run`, after the study is trained and
    fitted) no figure fails the study: one that cannot be drawn for any reason is skipped
    too. A skipped figure's files from an earlier run are removed, and the reason is told to
    `reporter`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = Drawn()
    for plotter in plotters:
        try:
            outcome = dataclasses.replace(outcome, drawn=tuple(drawn.files))
            drawn.files.extend(plotter.draw(outcome, out_dir))
        except Exception as exc:
            empty = isinstance(exc, NothingToDraw)
            if not (never_fail or (skip_empty and empty)):
                raise
            drawn.skipped[plotter.name] = reason = (
                str(exc).splitlines()[0] if str(exc) else repr(exc)
            )
            for fmt in getattr(plotter.config, "formats", ()):
                (out_dir / f"{plotter.name}.{fmt}").unlink(missing_ok=True)
            if reporter is not None:
                verb = "skipped" if empty else "not drawn"
                reporter.message(f"figure {plotter.name!r} {verb}: {reason}")
    return drawn


def compared_names(config: Mapping[str, Any] | None) -> set[str]:
    """The fitters a resolved study config (`config.toml`) had `run` fit into `fits/`."""
    tables = (config or {}).get("compare", [])
    return {t["name"] for t in tables if isinstance(t, dict) and isinstance(t.get("name"), str)}


def read_run_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config (`config.toml`) of a run directory; None when there is none."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


def previous_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config an earlier `run` left in `run_dir`, if it can be read (a broken
    one is about to be overwritten: it only means no earlier comparisons are known)."""
    try:
        return read_run_config(run_dir)
    except InputError:
        return None


def fit_comparisons(
    study: Study,
    run_dir: Path,
    only_ids: set[str],
    reporter: Reporter,
    previously: set[str] = frozenset(),
    selection: Mapping[str, Any] | None = None,
) -> tuple[list[FitResult], list[Observations], list[str]]:
    """Fit each `[[compare]]` fitter and write `fits/<name>.json`.

    The fits an earlier `run` of this directory wrote for fitters no longer compared (or now
    the study's own) are removed, with a message, so `flops-fit report` never shows a stale
    fit beside the new ones; a fit a user put in `fits/` by hand is left alone. A comparison
    that cannot fit this data (`FitError`, `InputError`: too few budgets or runs for it) does
    not fail the study, whose answer is its own fitter's: the reason is reported, kept in
    `fits/<name>.failed` for the report, and listed there.
    `selection` (`digest`, `keep_other`) picks the results as in `load_observations`.
    """
    fits_dir = run_dir / FITS_DIR
    for name in sorted(set(previously) - {fitter.name for fitter in study.comparisons}):
        for stale in (fits_dir / f"{name}.json", fits_dir / f"{name}{FAILED_SUFFIX}"):
            if stale.exists():
                stale.unlink()
                reporter.message(f"removed {stale}: {name!r} is no longer compared")
    fits, datasets, notes = [], [], []
    for fitter in study.comparisons:
        path = fits_dir / f"{fitter.name}.json"
        failed = fits_dir / f"{fitter.name}{FAILED_SUFFIX}"
        data = load_observations(
            run_dir / RESULTS_FILE, only_ids, **requested_conventions(fitter), **(selection or {})
        )
        try:
            fit = fit_observations(data, fitter)
        except (FitError, InputError) as exc:
            path.unlink(missing_ok=True)
            note = f"compared fitter {fitter.name!r} could not fit these results: {exc}"
            reporter.message(f"warning: {note}")
            write_atomic(failed, note + "\n")
            notes.append(note)
            continue
        failed.unlink(missing_ok=True)
        write_atomic(path, fit.model_dump_json(indent=2))
        fits.append(fit)
        datasets.append(data)
    return fits, datasets, notes


@dataclass
class RunSummary:
    run_dir: Path
    plan: SweepPlan
    training: TrainSummary
    fit: FitResult
    figures: list[Path]
    outcome: StudyOutcome | None = None
    skipped_figures: dict[str, str] = field(default_factory=dict)

    @property
    def report(self) -> Path | None:
        """The HTML report, when the study's plotters wrote one."""
        return next((p for p in self.figures if p.name == REPORT_FILE), None)

    def headline_computes(self, targets: Sequence[float] = ()) -> list[float]:
        """The budgets the headline answers for: the largest planned one, then the targets."""
        return text.computes(self.plan.budgets, targets)

    def as_dict(self, targets: Sequence[float] = ()) -> dict[str, Any]:
        predictions = [
            self.fit.predict(c).model_dump(mode="json") for c in self.headline_computes(targets)
        ]
        compared = self.outcome.fits[1:] if self.outcome else ()
        return {
            "run_dir": str(self.run_dir),
            "experiments": len(self.plan.experiments),
            "trained": self.training.trained,
            "skipped": self.training.skipped,
            "failed": self.training.failed + self.training.failed_before,
            "fit": self.fit.model_dump(mode="json"),
            "compared": [f.model_dump(mode="json") for f in compared],
            "predictions": predictions,
            "figures": [str(p) for p in self.figures],
            "skipped_figures": self.skipped_figures,
            "report": str(self.report) if self.report else None,
        }


def run_study(
    study: Study,
    run_dir: Path,
    *,
    retry_failed: bool = False,
    keep_results: bool = False,
    reporter: Reporter | None = None,
    cancel: threading.Event | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RunSummary:
    """The whole study in `run_dir`: plan, train what is missing, fit, compare, plot, report.

    Results made under other trainer options are trained again, or kept with `keep_results`
    (the outcome then notes it, so the report says its results differ from `config.toml`).
    """
    reporter = reporter or SilentReporter()
    stage = on_stage or reporter.message
    run_dir = Path(run_dir)
    stage("planning")
    plan = study.plan
    study.validate()
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"cannot use {run_dir} as a run directory: it is a file")
    with ResultsStore(run_dir / RESULTS_FILE).writer():
        return _run_locked(
            study, plan, run_dir, retry_failed, keep_results, reporter, cancel, stage
        )


def _run_locked(
    study: Study,
    plan: SweepPlan,
    run_dir: Path,
    retry_failed: bool,
    keep_results: bool,
    reporter: Reporter,
    cancel: threading.Event | None,
    stage: Callable[[str], None],
) -> RunSummary:
    for warning in plan.warnings:
        reporter.message(f"plan warning: {warning}")
    resolved = study.resolved()
    previously = compared_names(previous_config(run_dir))
    write_atomic(run_dir / CONFIG_FILE, tomli_w.dumps(resolved))
    write_atomic(run_dir / PLAN_FILE, plan.model_dump_json(indent=2))
    stage(f"training {len(plan.experiments)} experiments with {study.trainer.name!r}")
    training = train_plan(
        plan,
        study.trainer,
        study.executor,
        run_dir / RESULTS_FILE,
        retry_failed=retry_failed,
        keep_results=keep_results,
        reporter=reporter,
        cancel=cancel,
    )
    stage(f"fitting with {study.fitter.name!r}")
    only_ids = {s.id for s in plan.experiments}
    info = study.trainer.info
    selection = {"digest": info.options_digest, "keep_other": keep_results}
    nothing_new = training.trained == 0 and (training.failed or training.failed_before)
    if nothing_new and not ResultsStore(run_dir / RESULTS_FILE).load().ok(only_ids, **selection):
        failed = training.failed + training.failed_before
        first = training.errors[0] if training.errors else ""
        raise RunFailed(
            f"every experiment failed ({failed} of {len(plan.experiments)}), nothing to fit"
            + (f"; the first: {first}" if first else "")
            + f" (see {run_dir / RESULTS_FILE})"
        )
    observations = load_observations(
        run_dir / RESULTS_FILE, only_ids, **requested_conventions(study.fitter), **selection
    )
    try:
        fit = fit_observations(observations, study.fitter)
    except BaseException:
        # No fit.json from an earlier run may outlive a fit of these results that failed.
        (run_dir / FIT_FILE).unlink(missing_ok=True)
        raise
    write_atomic(run_dir / FIT_FILE, fit.model_dump_json(indent=2))
    if study.comparisons:
        stage("comparing with " + ", ".join(repr(f.name) for f in study.comparisons))
    more_fits, more_data, notes = fit_comparisons(
        study, run_dir, only_ids, reporter, previously, selection
    )
    notes = [*results_notes(run_dir / RESULTS_FILE, info, only_ids), *notes]
    fits, datasets = [fit, *more_fits], [observations, *more_data]
    outcome = StudyOutcome(
        fits=tuple(fits),
        observations=tuple(datasets),
        plan=plan,
        config=resolved,
        run_dir=run_dir,
        notes=tuple(notes),
        runs=latest_runs(run_dir / RESULTS_FILE, only_ids, **selection),
    )
    stage("plotting")
    drawn = draw_outcome(
        outcome, study.plotters, run_dir / FIGURES_DIR, never_fail=True, reporter=reporter
    )
    return RunSummary(run_dir, plan, training, fit, drawn.files, outcome, drawn.skipped)


def read_outcome(
    run_dir: Path,
    *,
    results: Path | None = None,
    mapping: Mapping[str, str] | None = None,
    group_tolerance: float | None = None,
) -> StudyOutcome:
    """A run directory's outcome, for `flops-fit report`.

    `fit.json`, then `fits/*.json` by name, each with the results counted under that fit's
    conventions; the plan and resolved config when present. `results` (a results file or a
    user's table, with `mapping` naming its columns) replaces the directory's
    `results.jsonl`, so a fit of data trained elsewhere gets a report too. A table is grouped
    into budgets as each fit recorded (`settings.group_tolerance`), or by `group_tolerance`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory not found: {run_dir}")
    primary = run_dir / FIT_FILE
    if not primary.exists():
        raise InputError(
            f"{run_dir} has no {FIT_FILE}: run `flops-fit run`, or `flops-fit fit RESULTS "
            f"-o {primary}`, first"
        )
    config = read_run_config(run_dir)
    if mapping and results is None:
        raise UsageError("--map names the columns of a table given with --results")
    if group_tolerance is not None and results is None:
        raise UsageError("--group-tolerance groups the runs of a table given with --results")
    # The study's comparisons in its config's order, then any fit added by hand, by name.
    order = [t.get("name") for t in (config or {}).get("compare", []) if isinstance(t, dict)]
    rank = {name: i for i, name in enumerate(order)}

    def by_config(path: Path) -> tuple[int, str]:
        stem = path.name.removesuffix(path.suffix)
        return rank.get(stem, len(rank)), stem

    fits_dir = run_dir / FITS_DIR
    paths = [primary, *sorted(fits_dir.glob("*.json"), key=by_config)]
    notes = []
    for path in sorted(fits_dir.glob(f"*{FAILED_SUFFIX}"), key=by_config):
        notes.append(read_inside(run_dir, path, "note").strip())
    source = Path(results) if results is not None else run_dir / RESULTS_FILE
    if results is None and not source.exists():
        raise InputError(
            f"{run_dir} has no {RESULTS_FILE}: give the runs the fits were made from with "
            "--results FILE"
        )
    for path in (*paths, run_dir / PLAN_FILE, run_dir / CONFIG_FILE, source):
        if path.is_symlink() and Path(path).parent.resolve().is_relative_to(run_dir.resolve()):
            read_inside(run_dir, path, "file")  # refuses a link out of the run directory
    plan = read_plan(run_dir / PLAN_FILE) if (run_dir / PLAN_FILE).exists() else None
    only_ids = {s.id for s in plan.experiments} if plan is not None and results is None else None
    selection: dict[str, Any] = {}
    if is_results_file(source) and (info := configured_trainer(config)) is not None:
        selection = {"digest": info.options_digest, "keep_other": True}
        notes = [*results_notes(source, info, only_ids), *notes]
    fits, datasets = [], []
    for path in paths:
        fit = read_fit(path)
        conv = fit.conventions
        if results is None:
            data = load_observations(
                source, only_ids, params=conv.params, flops=conv.flops, **selection
            )
        else:
            tolerance = group_tolerance
            if tolerance is None and not is_results_file(source):
                tolerance = fit.settings.get("group_tolerance")
            data = read_observations(
                source,
                mapping=mapping,
                params=conv.params,
                flops=conv.flops,
                group_tolerance=tolerance,
            )
        fits.append(fit)
        datasets.append(data)
    runs = latest_runs(source, only_ids, **selection) if is_results_file(source) else ()
    return StudyOutcome(
        fits=tuple(fits),
        observations=tuple(datasets),
        plan=plan,
        config=config,
        run_dir=run_dir,
        notes=tuple(notes),
        runs=runs,
    )


def configured_trainer(config: Mapping[str, Any] | None) -> TrainerInfo | None:
    """The trainer options a resolved config (`config.toml`) describes; None when its trainer
    cannot be built here (not installed, or options this version does not know)."""
    table = dict((config or {}).get("trainer") or {})
    name = table.pop("name", None)
    if not isinstance(name, str):
        return None
    try:
        return get_host().create("trainer", name, table).info
    except UsageError:
        return None


def latest_runs(
    results_path: Path,
    only_ids: set[str] | None = None,
    *,
    digest: str | None = None,
    keep_other: bool = False,
) -> tuple[RunResult, ...]:
    """Each experiment's latest record (its last `ok` one, else its last failure), in the
    order the file first saw them; optionally only those of a plan, and of the trainer
    options `digest` (as `load_observations`)."""
    latest = ResultsStore(results_path).load().latest(digest, keep_other)
    return tuple(r for k, r in latest.items() if only_ids is None or k in only_ids)
