"""The stages of a study, in order: plan -> train -> fit -> compare -> plot, for the CLI and
the Python API (`run_study`).

Every stage reruns idempotently (training skips every experiment that has an `ok` record, so
a finished experiment is never trained twice and an edited plan trains only what is new);
what each stage writes, and where, is `rundir`'s layout.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from . import text
from .bases import Fitter, Planner, Plotter
from .errors import (
    FitError,
    InputError,
    NothingToDraw,
    OutputError,
    PluginError,
    RunFailed,
)
from .files import write_atomic
from .fits import FitResult
from .observations import (
    Observations,
    StudyOutcome,
    load_observations,
    plan_order,
    read_observations,
    requested_conventions,
    results_notes,
)
from .plugins import get_host
from .rundir import (
    CONFIG_FILE,
    FIGURES_DIR,
    FIT_FILE,
    PLAN_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    compared_names,
    latest_runs,
    previous_config,
    remove_fits,
    write_comparison,
)
from .schemas import SweepPlan
from .store import ResultsStore
from .study import Reporter, SilentReporter, Study
from .training import TrainSummary, train_plan

__all__ = [
    "Drawn",
    "RunSummary",
    "draw_outcome",
    "fit",
    "fit_comparisons",
    "fit_observations",
    "run_study",
]


def fit_observations(observations: Observations, fitter: Fitter) -> FitResult:
    """The fit stage: `fitter.fit`, the one place the stages call a fitter (so `run`, the
    comparisons and `fit` fit alike)."""
    return fitter.fit(observations)


def fit(
    data: Observations | str | Path,
    fitter: str = "empirical",
    *,
    options: Mapping[str, Any] | None = None,
    mapping: Mapping[str, str] | None = None,
    group_tolerance: float | None = None,
) -> FitResult:
    """Fit scaling laws from a notebook: what `flops-fit fit FILE --fitter NAME` does.

    `data` is `Observations`, a results file, or a table of runs trained elsewhere (`.csv`,
    `.jsonl`, `.json`, `.parquet`; `mapping` names its columns and `group_tolerance` groups
    its runs into budgets, as `--map` and `--group-tolerance` do). `options` are the fitter's
    (`{"bootstrap": 200}`), validated as a config's `[fitter]` table is.
    """
    the_fitter = get_host().build("fitter", {**(options or {}), "name": fitter})
    if not isinstance(data, Observations):
        data = read_observations(
            Path(data),
            mapping=mapping,
            group_tolerance=group_tolerance,
            **requested_conventions(the_fitter),
        )
    return fit_observations(data, the_fitter)


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
    stale = sorted(set(previously) - {fitter.name for fitter in study.comparisons})
    for path in remove_fits(run_dir, stale):
        reporter.message(f"removed {path}: {path.stem!r} is no longer compared")
    fits, datasets, notes = [], [], []
    for fitter in study.comparisons:
        data = load_observations(
            run_dir / RESULTS_FILE, only_ids, **requested_conventions(fitter), **(selection or {})
        )
        try:
            fit = fit_observations(data, fitter)
        except (FitError, InputError) as exc:
            note = f"compared fitter {fitter.name!r} could not fit these results: {exc}"
            reporter.message(f"warning: {note}")
            write_comparison(run_dir, fitter.name, note)
            notes.append(note)
            continue
        write_comparison(run_dir, fitter.name, fit)
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
    def report_path(self) -> Path | None:
        """The HTML report's path, when the study's plotters wrote one (`report.html`)."""
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
            "report": str(self.report_path) if self.report_path else None,
            "rounds": [r.model_dump(mode="json") for r in self.plan.rounds],
            "stop": self.plan.stop.model_dump(mode="json") if self.plan.stop else None,
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
    info = study.trainer.info
    selection = {"digest": info.options_digest, "keep_other": keep_results}
    training = TrainSummary()
    todo = plan  # what this pass trains: the whole plan first, then each new round alone
    in_rounds = type(study.planner).next_round is not Planner.next_round
    while True:
        write_atomic(run_dir / PLAN_FILE, plan.model_dump_json(indent=2))
        if plan.rounds:
            reporter.message(round_line(plan))
        observations, fit = _train_and_fit(
            study, todo, plan, run_dir, training, selection, retry_failed, reporter, cancel, stage
        )
        if plan.stop is not None or not in_rounds:
            break
        ids = {s.id for s in plan.experiments}
        runs = latest_runs(run_dir / RESULTS_FILE, ids, **selection)
        proposed = study.planner.next_round(
            StudyOutcome(
                fits=(fit,),
                observations=(observations,),
                plan=plan,
                config=resolved,
                run_dir=run_dir,
                # in the plan's order, like the observations: not the order runs finished in
                runs=tuple(sorted(runs, key=plan_order)),
            )
        )
        if proposed is None:
            break
        _check_next_round(study.planner.name, plan, proposed)
        new = [s for s in proposed.experiments if s.id not in ids]
        for warning in proposed.warnings:
            if warning not in plan.warnings:
                reporter.message(f"plan warning: {warning}")
        plan = proposed
        if plan.stop is not None:
            write_atomic(run_dir / PLAN_FILE, plan.model_dump_json(indent=2))
            said = f"planner {study.planner.name!r} stopped"
            if not plan.stop.reached:  # a warning: -q still shows it
                said = f"warning: {said} short of its target"
            reporter.message(f"{said}: {plan.stop.note}")
            break
        # A run that failed in an earlier round of this run is not retried here: a rerun of
        # the study retries it (as any rerun does), and then replays the rounds from there.
        todo = plan.model_copy(update={"experiments": new, "rounds": [], "stop": None})
    write_atomic(run_dir / FIT_FILE, fit.model_dump_json(indent=2))
    only_ids = {s.id for s in plan.experiments}
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


def _train_and_fit(
    study: Study,
    todo: SweepPlan,
    plan: SweepPlan,
    run_dir: Path,
    training: TrainSummary,
    selection: Mapping[str, Any],
    retry_failed: bool,
    reporter: Reporter,
    cancel: threading.Event | None,
    stage: Callable[[str], None],
) -> tuple[Observations, FitResult]:
    """Train what `todo` lacks (adding the counts to `training`), then fit every result of
    `plan` (which holds `todo`)."""
    stage(f"training {len(todo.experiments)} experiments with {study.trainer.name!r}")
    this_round = train_plan(
        todo,
        study.trainer,
        study.executor,
        run_dir / RESULTS_FILE,
        retry_failed=retry_failed,
        keep_results=selection["keep_other"],
        reporter=reporter,
        cancel=cancel,
    )
    _add_counts(training, this_round)
    stage(f"fitting with {study.fitter.name!r}")
    only_ids = {s.id for s in plan.experiments}
    nothing_new = this_round.trained == 0 and (this_round.failed or this_round.failed_before)
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
    return observations, fit


def _add_counts(total: TrainSummary, one: TrainSummary) -> None:
    """Fold one round's training counts into the study's (each round trains its own
    experiments, so nothing is counted twice)."""
    total.trained += one.trained
    total.failed += one.failed
    total.skipped += one.skipped
    total.failed_before += one.failed_before
    total.errors.extend(one.errors)
    total.other_options += one.other_options
    total.kept_other = total.kept_other or one.kept_other


def _check_next_round(name: str, plan: SweepPlan, proposed: SweepPlan) -> None:
    """A planner's next round keeps every experiment so far and adds some, or says it stopped:
    anything else is a planner bug that would loop or lose runs, refused with one line."""
    before = [s.id for s in plan.experiments]
    after = {s.id for s in proposed.experiments}
    lost = [i for i in before if i not in after]
    if lost:
        raise PluginError(
            f"planner {name!r}: its next round drops {len(lost)} experiment(s) of the plan "
            f"(the first: {lost[0]}); a round may only add experiments"
        )
    if proposed.stop is None and len(after) == len(before):
        raise PluginError(f"planner {name!r}: its next round adds no experiment and does not stop")
    if proposed.stop is not None and len(after) != len(before):
        raise PluginError(
            f"planner {name!r}: its next round stops and adds {len(after) - len(before)} "
            "experiment(s) at once; a plan that stops adds none (they would never be trained)"
        )


def round_line(plan: SweepPlan) -> str:
    """One line on the plan's latest round: its number, what it adds, the runs and compute
    fitted so far and the width measured on them, and why (`PlanRound.note`)."""
    last = plan.rounds[-1]
    total = len(plan.experiments)
    parts = [f"round {last.index}: +{len(last.experiments)} runs ({total} in all)"]
    if last.compute is not None:
        parts.append(f"{last.compute:.3g} FLOPs fitted so far")
    if last.width is not None:
        expected = (
            f" -> {last.predicted_width:.3g} expected" if last.predicted_width is not None else ""
        )
        parts.append(f"width {last.width:.3g}{expected}")
    return ", ".join(parts) + f": {last.note}"
