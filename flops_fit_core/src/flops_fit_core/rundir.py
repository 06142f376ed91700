"""The run directory: its layout, and reading back what a study wrote into it.

A run directory holds one study: `config.toml` (resolved), `plan.json`, `results.jsonl`,
`checkpoints/`, `fit.json` (the study's `[fitter]`), `fits/<name>.json` (the `[[compare]]`
fitters) and `fits/<name>.failed` (why one could not fit), `figures/` and `report.html`. Every
file is written whole with `files.write_atomic`; this module is where their names and the
rules for reading them live, for `run`, `report` and the Python API alike.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import (
    InputError,
    UsageError,
)
from .files import read_inside, read_text, write_atomic
from .fits import FitResult
from .observations import (
    StudyOutcome,
    is_results_file,
    load_observations,
    observations_for,
    results_notes,
)
from .plugins import get_host
from .schemas import RunResult, SweepPlan, TrainerInfo
from .store import ResultsStore

__all__ = [
    "CONFIG_FILE",
    "FAILED_SUFFIX",
    "FIGURES_DIR",
    "FITS_DIR",
    "FIT_FILE",
    "PLAN_FILE",
    "REPORT_FILE",
    "RESULTS_FILE",
    "compared_names",
    "configured_trainer",
    "latest_runs",
    "previous_config",
    "read_fit",
    "read_outcome",
    "read_plan",
    "read_run_config",
    "remove_fits",
    "write_comparison",
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


def _read_model(path: Path, model: type[BaseModel], what: str):
    path = Path(path)
    text = read_text(path, what)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(
            f"{path} is not a valid {what}: {loc + ': ' if loc else ''}"
            f"{err['msg'].removeprefix('Value error, ')}"
        ) from None


def read_plan(path: Path) -> SweepPlan:
    return _read_model(path, SweepPlan, "plan")


def read_fit(path: Path) -> FitResult:
    return _read_model(path, FitResult, "fit")


def compared_names(config: Mapping[str, Any] | None) -> set[str]:
    """The fitters a resolved study config (`config.toml`) had `run` fit into `fits/`."""
    tables = (config or {}).get("compare", [])
    return {t["name"] for t in tables if isinstance(t, dict) and isinstance(t.get("name"), str)}


def read_run_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config (`config.toml`) of a run directory; None when there is none."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        return None
    text = read_text(path, "config")
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more digits than Python reads
        raise InputError(f"cannot read {path}: {exc}") from None


def previous_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config an earlier `run` left in `run_dir`, if it can be read (a broken
    one is about to be overwritten: it only means no earlier comparisons are known)."""
    try:
        return read_run_config(run_dir)
    except InputError:
        return None


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
            data = observations_for(fit, source, mapping=mapping, group_tolerance=group_tolerance)
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
    table = (config or {}).get("trainer")
    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        return None
    try:
        return get_host().build("trainer", table).info
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


def remove_fits(run_dir: Path, names: Iterable[str]) -> list[Path]:
    """Remove `fits/<name>.json` and `fits/<name>.failed` of each of `names` (fitters no longer
    compared, so `flops-fit report` never shows a stale fit); the paths removed."""
    removed = []
    for name in names:
        for path in _comparison_files(run_dir, name):
            if path.exists():
                path.unlink()
                removed.append(path)
    return removed


def write_comparison(run_dir: Path, name: str, outcome: FitResult | str) -> None:
    """Record a compared fitter's outcome in `fits/`: its fit as `<name>.json`, or why it could
    not fit as `<name>.failed` (a one-line note the report shows); the other file goes."""
    fit_path, failed_path = _comparison_files(run_dir, name)
    if isinstance(outcome, str):
        fit_path.unlink(missing_ok=True)
        write_atomic(failed_path, outcome + "\n")
    else:
        failed_path.unlink(missing_ok=True)
        write_atomic(fit_path, outcome.model_dump_json(indent=2))


def _comparison_files(run_dir: Path, name: str) -> tuple[Path, Path]:
    folder = Path(run_dir) / FITS_DIR
    return folder / f"{name}.json", folder / f"{name}{FAILED_SUFFIX}"
