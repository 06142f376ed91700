"""The training stage: train what the results file does not hold yet.

Each result is appended as it arrives, under one writer's lock, with room on disk checked first.

Idempotent by construction: an experiment with an `ok` record (of these trainer options) is
never trained again, so a rerun after a crash, a Ctrl-C or an edited plan trains only what
is missing.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .bases import Executor, Trainer
from .errors import (
    OutputError,
    TrainingCancelled,
)
from .files import output_error, remove_temp_files
from .interrupts import cancel_on_interrupt
from .observations import (
    options_note,
    unknown_options_note,
)
from .rundir import (
    FIGURES_DIR,
    FITS_DIR,
    RESULTS_FILE,
)
from .schemas import ExperimentSpec, RunResult, SweepPlan
from .store import LoadedResults, ResultsStore
from .study import Reporter, SilentReporter

__all__ = [
    "TrainSummary",
    "check_room",
    "pending_specs",
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
