"""plan -> train -> fit -> plot, used by the CLI and the Python API.

A run directory holds one study: `config.toml` (resolved), `plan.json`, `results.jsonl`,
`checkpoints/`, `fit.json` (the study's `[fitter]`), `fits/<name>.json` (the `[[compare]]`
fitters), `figures/` and `report.html`. Every stage reruns idempotently: training skips every
experiment whose id already has an `ok` record, so a finished experiment is never trained twice
and an edited plan trains only what is new.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from . import text
from .bases import Executor, Fitter, Plotter, Trainer
from .errors import (
    FitError,
    InputError,
    NothingToDraw,
    OutputError,
    RunFailed,
    TrainingCancelled,
)
from .files import output_error, remove_temp_files, write_atomic
from .interrupts import cancel_on_interrupt
from .observations import (
    Observations,
    StudyOutcome,
    load_observations,
    options_note,
    requested_conventions,
    results_notes,
    unknown_options_note,
)
from .rundir import (
    CONFIG_FILE,
    FAILED_SUFFIX,
    FIGURES_DIR,
    FIT_FILE,
    FITS_DIR,
    PLAN_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    compared_names,
    latest_runs,
    previous_config,
)
from .schemas import (
    ExperimentSpec,
    FitResult,
    RunResult,
    SweepPlan,
)
from .store import LoadedResults, ResultsStore
from .study import Reporter, SilentReporter, Study

__all__ = [
    "Drawn",
    "RunSummary",
    "TrainSummary",
    "check_room",
    "draw_outcome",
    "fit_comparisons",
    "fit_observations",
    "pending_specs",
    "run_study",
    "train_plan",
]


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
