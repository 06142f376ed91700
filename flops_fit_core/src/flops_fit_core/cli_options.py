"""What the `flops-fit` commands share: their common options, and how each reads its config."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from . import pipeline, rundir, tables
from .bases import PlotterConfig
from .config import DEFAULT_PRESET, SECTIONS, StudyConfig, load_study_config
from .errors import ConfigError
from .progress import ConsoleReporter
from .schemas import parse_model
from .study import Study, resolve_study

__all__ = [
    "State",
    "add_targets",
    "config_options",
    "count",
    "echo_json",
    "force_option",
    "group_tolerance_option",
    "is_json_of",
    "map_option",
    "plugin_shortcuts",
    "positive_float",
    "prediction_line",
    "read_study_config",
    "report_line",
    "resolve",
    "target_option",
]


class State:
    def __init__(self, quiet: bool, verbose: bool):
        self.quiet, self.verbose = quiet, verbose
        self.reporter = ConsoleReporter(quiet=quiet, verbose=verbose)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def positive_float(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a positive number of FLOPs, got {value}")
    return value


def _positive_floats(ctx, param, values):
    for value in values:
        positive_float(ctx, param, value)
    return tuple(values)


def target_option(func):
    """--target C (repeatable): compute budgets to predict at, mark on figures and report."""
    return click.option(
        "--target",
        "targets",
        type=float,
        multiple=True,
        callback=_positive_floats,
        metavar="C",
        help="Also predict N*, D*, L* at this compute in FLOPs, e.g. 1e21 (repeatable).",
    )(func)


def _column_map(ctx, param, value):
    """`--map FIELD=COLUMN ...` as {field: column}; a bad item is a one-line usage error."""
    try:
        return tables.parse_mapping(value)
    except ConfigError as exc:
        raise click.UsageError(str(exc), ctx) from None


def map_option(func):
    """--map FIELD=COLUMN (repeatable): which columns of a user's table hold what."""
    return click.option(
        "--map",
        "mapping",
        multiple=True,
        metavar="FIELD=COLUMN",
        callback=_column_map,
        help="For a table: read FIELD (params, tokens, compute, loss, budget) from COLUMN "
        "(repeatable).",
    )(func)


def config_options(func):
    """-c / --preset / --set, shared by every command that reads a study config."""
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one option, e.g. --set trainer.curve_points=16 (repeatable).",
    )(func)
    func = click.option(
        "--preset",
        default=None,
        metavar="NAME",
        help=f"A packaged study config (default: {DEFAULT_PRESET}).",
    )(func)
    func = click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Study config file (TOML or YAML).",
    )(func)
    return func


def force_option(func):
    """--force: write -o even over an existing file that is not what the command writes."""
    return click.option(
        "--force",
        is_flag=True,
        help="Overwrite -o even when it holds something else (never an input).",
    )(func)


def is_json_of(model):
    """Whether a file is a `model` flops-fit wrote (what -o may overwrite without --force)."""

    def check(path: Path) -> bool:
        try:
            model.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return False
        return True

    return check


def plugin_shortcuts(*sections: str):
    """`--trainer NAME` and friends: shortcuts for `--set trainer.name=NAME`, for the given
    sections (every section of a study config, `config.SECTIONS`, when none is given)."""

    def decorate(func):
        for section in reversed(sections or tuple(SECTIONS)):
            func = click.option(
                f"--{section}",
                section,
                default=None,
                metavar="NAME",
                help=f"Shortcut for --set {section}.name=NAME.",
            )(func)
        return func

    return decorate


def read_study_config(
    config_path, preset, overrides, beside: Path | None = None, **shortcuts
) -> StudyConfig:
    """The config from -c/--preset, else the resolved config.toml beside an input, else the
    default preset; then overrides and shortcuts."""
    if config_path is None and preset is None and beside is not None:
        candidate = beside / rundir.CONFIG_FILE
        if candidate.exists():
            config_path = candidate
    return load_study_config(config_path, preset, overrides, shortcuts)


def resolve(study_config: StudyConfig) -> Study:
    """The study of a config, every plugin built; then what loading the config did that the
    user should hear (a swapped fitter), said once the study is known to be valid."""
    study = resolve_study(study_config)
    state = click.get_current_context().find_object(State)
    for note in study_config.notes:
        if state is not None:
            state.reporter.message(note)
    return study


def report_line(summary: pipeline.RunSummary) -> str:
    if summary.report_path:
        return str(summary.report_path)
    if "report" in summary.skipped_figures:
        return f"not written ({summary.skipped_figures['report']})"
    return "none (not in [plot] names)"


def add_targets(study_config: StudyConfig, targets: tuple[float, ...]) -> tuple[float, ...]:
    """Merge `--target` into the config's `[plot] targets`, which figures and the report read,
    and return them all as the plotters will read them (one validation, so the headline never
    quotes other budgets than the figures mark)."""
    existing = study_config.plot.get("targets", [])
    existing = [existing] if isinstance(existing, str | int | float) else existing
    if not isinstance(existing, list | tuple):
        raise ConfigError("config: [plot] targets must be a list of compute budgets (FLOPs)")
    merged = [*existing, *targets]
    if not merged:
        return ()
    study_config.plot["targets"] = merged
    return parse_model(PlotterConfig, {"targets": merged}, "config [plot]").targets


def count(n: int) -> str:
    return f"{n} experiment" + ("" if n == 1 else "s")


def prediction_line(pred) -> str:
    return (
        f"at C = {pred.compute:.3g} FLOPs: N* = {pred.params}  D* = {pred.tokens}  "
        f"L* = {pred.loss}  D*/N* = {pred.tokens_per_param}"
    )


def _percentage(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a positive percentage, got {value:g}")
    return value


def group_tolerance_option(func):
    """--group-tolerance P: for a table off any budget grid, runs within P% of C form a budget."""
    return click.option(
        "--group-tolerance",
        "group_tolerance",
        type=float,
        default=None,
        callback=_percentage,
        metavar="P",
        help="For a table without budgets: runs whose C lie within P% of each other form one "
        "budget.",
    )(func)
