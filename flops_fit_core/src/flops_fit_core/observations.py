"""What a fitter sees: the observations of a study's runs (or a user's table) and a study's outcome.

`Observations` and `StudyOutcome` are plain numpy containers, not pydantic contracts: they are
built in memory from results or tables and never written as such. This module also holds the
one rule for the conventions a fitter's data is counted under (`requested_conventions`) and the
readers that turn a results file or a table into observations.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np

from .errors import (
    InputError,
    UsageError,
)
from .fits import FitResult
from .flops import FlopsConvention, ParamConvention
from .schemas import Conventions, RunResult, SweepPlan, TrainerInfo
from .store import LoadedResults, ResultsStore

__all__ = [
    "ANYTIME",
    "Observations",
    "StudyOutcome",
    "is_results_file",
    "load_observations",
    "observations_for",
    "options_note",
    "read_observations",
    "requested_conventions",
    "results_notes",
    "unknown_options_note",
]


#: The schedule name of a curve whose every point is what a run trained to that many tokens
#: reaches: the mock's law along a run, or checkpoints that are each a cooled-down branch. A
#: curve under any other schedule (a cosine's middle is above what a run of that length ends at)
#: is trusted only near its end.
ANYTIME = "anytime"


@dataclass(frozen=True)
class Observations:
    """What fitters and plotters read: one row per finished run, as numpy arrays.

    Built from `RunResult`s (`from_results`) or from a user's own table (`tables.read_table`).
    Rows are grouped by `budget`, the planned compute a run belongs to — never by rounding its
    measured compute. A table whose compute lies on no budget grid has none: `budget` is None,
    `no_budgets` says why, and a fitter that needs budgets calls `require_budgets` (`robust`
    fits every run without them).
    """

    budget: np.ndarray | None
    params: np.ndarray
    tokens: np.ndarray
    compute: np.ndarray
    loss: np.ndarray
    ids: tuple[str, ...]
    conventions: Conventions = field(default_factory=Conventions)
    source: str = ""
    curves: tuple[Sequence[tuple[float, float]] | None, ...] = field(default=())
    #: Each run's learning-rate schedule as its trainer recorded it (`cosine`, `wsd`,
    #: `constant`, ...; `ANYTIME` when every point of its curve is what a run trained to that
    #: length reaches; None when unknown, as in a user's table). A curve fitter reads it to
    #: tell a checkpoint a run ended at from one taken mid-schedule. Empty: all unknown.
    schedules: tuple[str | None, ...] = field(default=())
    #: What reading the data noticed but did not refuse (dropped duplicate rows, a derived
    #: column); every fitter copies these into its `FitResult.warnings`.
    warnings: tuple[str, ...] = field(default=())
    #: P when the budgets were formed by grouping runs whose C lie within P% of each other
    #: (`grouping.group_by_tolerance`, `--group-tolerance P`); fits record it (`record`).
    group_tolerance: float | None = None
    #: Why `budget` is None, in a few words (what `require_budgets` tells the user).
    no_budgets: str = ""

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("budget", "params", "tokens", "compute", "loss"):
            if name == "budget" and self.budget is None:
                continue
            arr = np.asarray(getattr(self, name), dtype=float)
            object.__setattr__(self, name, arr)
            if arr.shape != (n,):
                raise InputError(
                    f"{self.source or 'observations'}: column {name!r} has "
                    f"{arr.shape} rows, expected {n}"
                )
            bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
            if bad.size:
                rows = ", ".join(self.ids[i] for i in bad[:5]) + (" ..." if bad.size > 5 else "")
                raise InputError(
                    f"{self.source or 'observations'}: column {name!r} must be "
                    f"finite and positive; bad rows: {rows}"
                )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_budgets(self) -> bool:
        """Whether each row belongs to a budget (False for a table off any budget grid)."""
        return self.budget is not None

    @property
    def budgets(self) -> np.ndarray:
        """The distinct planned budgets, ascending (none when the rows have no budgets)."""
        return np.empty(0) if self.budget is None else np.unique(self.budget)

    def require_budgets(self, who: str) -> None:
        """Raise `InputError` naming both remedies when the rows have no budgets.

        `who` is what needs them, e.g. "the quadratic fitter".
        """
        if self.budget is not None:
            return
        why = self.no_budgets or "these runs have none"
        raise InputError(
            f"{self.source or 'observations'}: {who} needs each run's compute budget, but {why}; "
            f"name a budget column with --map budget=COLUMN, or group runs whose C lie within "
            f"P% of each other with --group-tolerance P (or fit every run with --fitter robust)"
        )

    def take(self, rows: Sequence[int] | np.ndarray) -> Observations:
        """These observations with only `rows`, in that order (every column alike)."""
        index = np.asarray(rows, dtype=np.int64)
        columns = ("budget", "params", "tokens", "compute", "loss")
        picked = {k: None if getattr(self, k) is None else getattr(self, k)[index] for k in columns}
        curves = tuple(self.curves[i] for i in index) if self.curves else ()
        schedules = tuple(self.schedules[i] for i in index) if self.schedules else ()
        return dataclasses.replace(
            self,
            **picked,
            ids=tuple(self.ids[i] for i in index),
            curves=curves,
            schedules=schedules,
        )

    def schedule_of(self, row: int) -> str | None:
        """Row `row`'s learning-rate schedule (`schedules`), None when unknown."""
        return self.schedules[row] if row < len(self.schedules) else None

    def in_plan_order(self) -> Observations:
        """The rows sorted by (budget, N, id), as a plan lists its runs: what is computed from
        them comes out the same to the last bit whatever order the runs finished in."""
        budget = self.budget if self.budget is not None else np.zeros(len(self))
        return self.take(
            sorted(range(len(self)), key=lambda i: (budget[i], self.params[i], self.ids[i]))
        )

    def record(self) -> dict[str, Any]:
        """What a fit of these rows records in its `settings` about how they were read:
        `{"group_tolerance": P}` when budgets were formed by `--group-tolerance P`, else {}."""
        return {} if self.group_tolerance is None else {"group_tolerance": self.group_tolerance}

    def groups(self) -> list[tuple[float, np.ndarray]]:
        """(budget, row indices sorted by N) for each planned budget, ascending.

        Rows without budgets are an `InputError` (`require_budgets`).
        """
        self.require_budgets("grouping runs by budget")
        out = []
        for b in self.budgets:
            idx = np.flatnonzero(self.budget == b)
            out.append((float(b), idx[np.argsort(self.params[idx], kind="stable")]))
        return out

    @classmethod
    def from_results(
        cls,
        results: Iterable[RunResult],
        source: str = "results",
        conventions: Conventions | None = None,
    ) -> Observations:
        """The `ok` results as observations, counted under `conventions`.

        With `None` (or the results' own conventions), N and C are what the results recorded.
        Otherwise N is recounted from each run's shape in `conventions.params` and C is the
        run's compute in `conventions.flops`: `flops_exact`, or 6 N D with N in the chosen
        parameter convention (what `flops_6n` records when that is the spec's). Runs stay
        grouped by the budget they were planned for, but when C changes, a group's `budget`
        becomes the geometric mean of its runs' recounted compute, so the laws are fitted
        against compute in the chosen convention and `predict(C)` answers in it.
        """
        ok = [r for r in results if r.status == "ok"]
        recorded = {r.spec.conventions for r in ok}
        if len(recorded) > 1:
            raise InputError(f"{source}: results mix conventions {sorted(map(str, recorded))}")
        own = recorded.pop() if recorded else Conventions()
        tokens = np.array([r.tokens_trained or r.spec.tokens for r in ok], dtype=float)
        planned = np.array([r.spec.budget for r in ok], dtype=float)
        if conventions is None or conventions == own:
            conventions = own
            params = np.array([r.spec.params for r in ok], dtype=float)
            compute = np.array([r.flops for r in ok], dtype=float)
            budget = planned
        else:
            params = np.array([r.spec.shape.params(conventions.params) for r in ok], dtype=float)
            if conventions.flops == "exact":  # recorded, else counted from the shape
                per_token = np.array([r.spec.shape.flops_per_token for r in ok], dtype=float)
                recorded_c = np.array([r.flops_exact for r in ok], dtype=float)
            else:  # flops_6n counts 6N in the spec's parameter convention
                per_token = 6.0 * params
                same = conventions.params == own.params
                recorded_c = np.array([r.flops_6n if same else 0.0 for r in ok], dtype=float)
            compute = np.where(recorded_c > 0, recorded_c, tokens * per_token)
            recounted = conventions.flops != own.flops or (
                conventions.flops == "6n" and conventions.params != own.params
            )
            budget = _geometric_means(planned, compute) if recounted else planned
        return cls(
            budget=budget,
            params=params,
            tokens=tokens,
            compute=compute,
            loss=np.array([r.loss for r in ok]),
            ids=tuple(r.experiment_id for r in ok),
            conventions=conventions,
            source=source,
            curves=tuple(r.curve for r in ok),
            schedules=tuple(_schedule(r) for r in ok),
        )


def _schedule(result: RunResult) -> str | None:
    """The schedule a run's curve was made under: what its trainer recorded in `details`
    (`ANYTIME` for the mock's law), else the one its spec asked for."""
    recorded = result.details.get("schedule")
    return recorded if isinstance(recorded, str) else result.spec.schedule


def _geometric_means(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each row's group's geometric mean of `values` (groups are equal entries of `groups`)."""
    out = np.empty_like(values, dtype=float)
    for key in np.unique(groups):
        rows = groups == key
        out[rows] = np.exp(np.mean(np.log(values[rows])))
    return out


@dataclass(frozen=True)
class StudyOutcome:
    """Everything a study produced that a plotter or the report may show.

    `fits` holds the study's fitter first (the one `fit.json` records and the headline quotes)
    and then the fitters run beside it for comparison; `observations[i]` is the data `fits[i]`
    was fitted to (fitters may count N and C under different conventions). `plan`, `config`
    (the resolved study config) and `run_dir` are known when the outcome comes from a run
    directory, and `None` when a user plots a fit of their own table.
    """

    fits: tuple[FitResult, ...]
    observations: tuple[Observations, ...]
    plan: SweepPlan | None = None
    config: dict[str, Any] | None = None
    run_dir: Any = None  # pathlib.Path; Any keeps this module free of filesystem types
    #: What the study noticed on the way that a reader should see (a compared fitter that
    #: could not fit the data).
    notes: tuple[str, ...] = ()
    #: The latest record of each run (failed ones included), when the data is a results file.
    runs: tuple[RunResult, ...] = ()
    #: Files the study's plotters have written so far for this outcome (same options), so a
    #: later plotter (the report embeds every figure) can reuse them instead of redrawing.
    drawn: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.fits:
            raise InputError("a study outcome needs at least one fit")
        if len(self.fits) != len(self.observations):
            raise ValueError(
                f"{len(self.fits)} fits but {len(self.observations)} sets of observations"
            )

    @property
    def fit(self) -> FitResult:
        """The study's own fit (its `[fitter]`), the one headlines quote."""
        return self.fits[0]

    @property
    def primary_observations(self) -> Observations:
        return self.observations[0]

    @classmethod
    def single(cls, observations: Observations, fit: FitResult) -> StudyOutcome:
        """An outcome of one fit and its data (what `Plotter.plot` receives)."""
        return cls(fits=(fit,), observations=(observations,))


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


def plan_order(result: RunResult) -> tuple[float, int, str]:
    """Sort key of results in the order a plan lists its runs: by budget, then size."""
    return (result.spec.budget, result.spec.params, result.experiment_id)


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
    # In the plan's order, not the order results arrived in: a fit (its bootstrap resamples
    # rows by index) must not depend on which worker finished first.
    ok.sort(key=plan_order)
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
    percentage) groups its runs into budgets by C (`grouping.group_by_tolerance`). A mapping or
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
    from . import tables  # tables build Observations: imported here, not at the top

    default = tables.DEFAULT_CONVENTIONS
    conventions = Conventions(params=params or default.params, flops=flops or default.flops)
    return tables.read_table(path, mapping, conventions, group_tolerance)


def observations_for(
    fit: FitResult,
    path: Path,
    *,
    mapping: Mapping[str, str] | None = None,
    group_tolerance: float | None = None,
) -> Observations:
    """The observations of `path` as `fit` was made from them: counted under its conventions,
    and a table's runs grouped into budgets as the fit recorded (`settings.group_tolerance`)
    unless `group_tolerance` says otherwise."""
    if group_tolerance is None and not is_results_file(path):
        group_tolerance = fit.settings.get("group_tolerance")
    return read_observations(
        path,
        mapping=mapping,
        params=fit.conventions.params,
        flops=fit.conventions.flops,
        group_tolerance=group_tolerance,
    )
