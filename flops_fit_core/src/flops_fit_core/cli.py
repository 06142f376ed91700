"""The `flops-fit` command line.

Options belong to the command they modify; `-q/-v` and `--version` come first. Every domain
error becomes one line on stderr and an exit code (0 ok, 1 failed run, 2 bad usage, config or
input, 130 interrupted): a user never sees a traceback for a mistake of theirs. `--json` prints
machine-readable output on stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any

import click
import tomli_w

from . import __version__, files, pipeline, rundir, tables, text
from .bases import PlotterConfig
from .config import DEFAULT_PRESET, StudyConfig, load_study_config
from .errors import ConfigError, FlopsFitError, RunFailed, TrainingCancelled
from .files import check_output, os_error_cause
from .observations import StudyOutcome, is_results_file, read_observations, requested_conventions
from .plugins import get_host
from .progress import ConsoleReporter
from .schemas import FitResult, SweepPlan, parse_model
from .store import ResultsStore
from .study import Study, resolve_study

__all__ = ["cli", "main"]


class State:
    def __init__(self, quiet: bool, verbose: bool):
        self.quiet, self.verbose = quiet, verbose
        self.reporter = ConsoleReporter(quiet=quiet, verbose=verbose)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _positive_float(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a positive number of FLOPs, got {value}")
    return value


def _positive_floats(ctx, param, values):
    for value in values:
        _positive_float(ctx, param, value)
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


def _is_json_of(model):
    """Whether a file is a `model` flops-fit wrote (what -o may overwrite without --force)."""

    def check(path: Path) -> bool:
        try:
            model.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return False
        return True

    return check


def plugin_shortcuts(*sections: str):
    """`--trainer NAME` and friends: shortcuts for `--set trainer.name=NAME`."""

    def decorate(func):
        for section in reversed(sections):
            func = click.option(
                f"--{section}",
                section,
                default=None,
                metavar="NAME",
                help=f"Shortcut for --set {section}.name=NAME.",
            )(func)
        return func

    return decorate


def _study_config(
    config_path, preset, overrides, beside: Path | None = None, **shortcuts
) -> StudyConfig:
    """The config from -c/--preset, else the resolved config.toml beside an input, else the
    default preset; then overrides and shortcuts."""
    if config_path is None and preset is None and beside is not None:
        candidate = beside / rundir.CONFIG_FILE
        if candidate.exists():
            config_path = candidate
    return load_study_config(config_path, preset, overrides, shortcuts)


def _resolve(study_config: StudyConfig) -> Study:
    """The study of a config, every plugin built; then what loading the config did that the
    user should hear (a swapped fitter), said once the study is known to be valid."""
    study = resolve_study(study_config)
    state = click.get_current_context().find_object(State)
    for note in study_config.notes:
        if state is not None:
            state.reporter.message(note)
    return study


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="Only errors and warnings.")
@click.option("-v", "--verbose", is_flag=True, help="Every run's result; tracebacks on bugs.")
@click.version_option(__version__, "--version", prog_name="flops-fit")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """Plan, train and fit compute-optimal scaling laws with honest uncertainty."""
    ctx.obj = State(quiet, verbose)


@cli.command()
@config_options
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory (default: runs/<preset or config name>).",
)
@target_option
@click.option("--retry-failed", is_flag=True, help="Retrain experiments that failed before.")
@click.option(
    "--keep-results",
    is_flag=True,
    help="Keep results trained under other trainer options instead of training them again.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@plugin_shortcuts("planner", "trainer", "executor", "fitter")
@click.pass_obj
def run(
    state: State,
    config_path,
    preset,
    overrides,
    out,
    targets,
    retry_failed,
    keep_results,
    as_json,
    **shortcuts,
):
    """Run a whole study: plan, train what is missing, fit, compare, plot, report.

    Ends with the headline: N*, D*, L* and D*/N* with intervals at the largest budget and at
    each --target, and the path of the HTML report.
    """
    study_config = _study_config(config_path, preset, overrides, **shortcuts)
    targets = _add_targets(study_config, targets)
    study = _resolve(study_config)
    study.validate()  # before any stage is announced: a refusal is one line
    run_dir = out or Path("runs") / (
        config_path.stem if config_path else (preset or DEFAULT_PRESET)
    )
    summary = pipeline.run_study(
        study,
        run_dir,
        retry_failed=retry_failed,
        keep_results=keep_results,
        reporter=state.reporter,
    )
    failed = summary.training.failed + summary.training.failed_before
    if as_json:
        _echo_json(summary.as_dict(targets))
    elif not state.quiet:
        click.echo(summary.fit.report())
        click.echo()
        click.echo(
            text.format_headline(
                summary.fit, summary.headline_computes(targets), summary.plan.budgets
            )
        )
        click.echo(f"run directory: {run_dir}")
        click.echo(f"report: {_report_line(summary)}")
    if failed:
        raise RunFailed(
            f"{_count(failed)} failed (see {run_dir / rundir.RESULTS_FILE}); "
            "rerun with --retry-failed to train them again"
        )


def _report_line(summary: pipeline.RunSummary) -> str:
    if summary.report:
        return str(summary.report)
    if "report" in summary.skipped_figures:
        return f"not written ({summary.skipped_figures['report']})"
    return "none (not in [plot] names)"


def _add_targets(study_config: StudyConfig, targets: tuple[float, ...]) -> tuple[float, ...]:
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


def _count(n: int) -> str:
    return f"{n} experiment" + ("" if n == 1 else "s")


def _prediction_line(pred) -> str:
    return (
        f"at C = {pred.compute:.3g} FLOPs: N* = {pred.params}  D* = {pred.tokens}  "
        f"L* = {pred.loss}  D*/N* = {pred.tokens_per_param}"
    )


@cli.command()
@config_options
@click.option(
    "--planner", default=None, metavar="NAME", help="Shortcut for --set planner.name=NAME."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("plan.json"),
    show_default=True,
    help="Where to write the plan.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan's summary; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
@force_option
@click.pass_obj
def plan(state: State, config_path, preset, overrides, planner, output, dry_run, as_json, force):
    """Plan a sweep and write plan.json."""
    if not dry_run:
        inputs = [config_path] if config_path is not None else []
        check_output(output, inputs, force=force, is_ours=_is_json_of(SweepPlan), what="plan")
    study = _resolve(_study_config(config_path, preset, overrides, planner=planner))
    the_plan = study.plan
    study.validate()
    for warning in the_plan.warnings:
        state.reporter.message(f"plan warning: {warning}")
    if as_json:
        click.echo(the_plan.model_dump_json(indent=2))
    if not dry_run:
        files.write_atomic(output, the_plan.model_dump_json(indent=2))
    if not as_json and not state.quiet:
        est = the_plan.estimates
        click.echo(
            f"{len(the_plan.experiments)} experiments over {len(the_plan.budgets)} budgets "
            f"({the_plan.budgets[0]:.3g} to {the_plan.budgets[-1]:.3g} FLOPs); "
            f"total {est.get('total_flops', float('nan')):.3g} FLOPs"
            + ("" if dry_run else f"; written to {output}")
        )
        for profile, seconds in (est.get("wall_time_s") or {}).items():
            click.echo(f"  estimated wall time on {profile}: {seconds / 3600:.3g} h")


@cli.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path))
@config_options
@click.option(
    "--trainer", default=None, metavar="NAME", help="Shortcut for --set trainer.name=NAME."
)
@click.option(
    "--executor", default=None, metavar="NAME", help="Shortcut for --set executor.name=NAME."
)
@click.option(
    "--results",
    "results_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Results file (default: results.jsonl beside the plan).",
)
@click.option("--retry-failed", is_flag=True, help="Retrain experiments that failed before.")
@click.option(
    "--keep-results",
    is_flag=True,
    help="Keep results trained under other trainer options instead of training them again.",
)
@click.pass_obj
def train(
    state: State,
    plan_path,
    config_path,
    preset,
    overrides,
    trainer,
    executor,
    results_path,
    retry_failed,
    keep_results,
):
    """Train a plan's experiments that have no result yet (under these trainer options)."""
    the_plan = rundir.read_plan(plan_path)
    study_config = _study_config(
        config_path, preset, overrides, beside=plan_path.parent, trainer=trainer, executor=executor
    )
    study = _resolve(study_config).with_plan(the_plan)
    study.validate()
    results_path = results_path or plan_path.parent / rundir.RESULTS_FILE
    summary = pipeline.train_plan(
        the_plan,
        study.trainer,
        study.executor,
        results_path,
        retry_failed=retry_failed,
        keep_results=keep_results,
        reporter=state.reporter,
    )
    if not state.quiet:
        done = summary.skipped - summary.failed_before
        click.echo(
            f"trained {summary.trained}, failed {summary.failed}, already done {done}"
            + (
                f", failed earlier and not retried {summary.failed_before}"
                if summary.failed_before
                else ""
            )
            + f"; results in {results_path}"
        )
    if summary.failed or summary.failed_before:
        raise RunFailed(
            f"{_count(summary.failed + summary.failed_before)} failed "
            f"(see {results_path}); rerun with --retry-failed to train them again"
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


@cli.command()
@click.argument("results_path", metavar="FILE", type=click.Path(path_type=Path))
@config_options
@click.option("--fitter", default=None, metavar="NAME", help="Shortcut for --set fitter.name=NAME.")
@map_option
@group_tolerance_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write fit.json (default: beside FILE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print fit.json on stdout.")
@force_option
@click.pass_obj
def fit(
    state: State,
    results_path,
    config_path,
    preset,
    overrides,
    fitter,
    mapping,
    group_tolerance,
    output,
    as_json,
    force,
):
    """Fit scaling laws to a results file or to your own table of runs.

    FILE is a flops-fit results.jsonl, or a table (.csv, .jsonl, .json, .parquet) with one row
    per run: the loss and two of N (params), D (tokens) and C (compute), plus optionally the
    budget each run belongs to.
    """
    output = output or results_path.parent / rundir.FIT_FILE
    inputs = [results_path, *([config_path] if config_path is not None else [])]
    check_output(output, inputs, force=force, is_ours=_is_json_of(FitResult), what="fit")
    study_config = _study_config(
        config_path, preset, overrides, beside=results_path.parent, fitter=fitter
    )
    options = dict(study_config.fitter)
    the_fitter = get_host().create("fitter", options.pop("name"), options)
    observations = read_observations(
        results_path,
        mapping=mapping,
        group_tolerance=group_tolerance,
        **requested_conventions(the_fitter),
    )
    results_file = is_results_file(results_path)
    if results_file and (note := ResultsStore(results_path).load().skipped_note()):
        state.reporter.message(f"warning: {note}")
    result = pipeline.fit_observations(observations, the_fitter)
    files.write_atomic(output, result.model_dump_json(indent=2))
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    elif not state.quiet:
        click.echo(result.report())
        click.echo(f"written to {output}")


@cli.command()
@click.argument("fit_path", metavar="FIT", type=click.Path(path_type=Path))
@click.option(
    "--compute",
    required=True,
    type=float,
    callback=_positive_float,
    help="Compute budget C in FLOPs, e.g. 1e23.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
def predict(fit_path, compute, as_json):
    """Predict N*, D*, L* and D*/N* at a compute budget from fit.json."""
    prediction = rundir.read_fit(fit_path).predict(compute)
    if as_json:
        click.echo(prediction.model_dump_json(indent=2))
    else:
        click.echo(_prediction_line(prediction))


@cli.command()
@click.argument("results_path", metavar="RESULTS", type=click.Path(path_type=Path))
@click.argument("fit_path", metavar="FIT", type=click.Path(path_type=Path))
@config_options
@click.option(
    "--plotter",
    "plotters",
    multiple=True,
    metavar="NAME",
    help="Plotter to run (repeatable; default: the config's [plot] names).",
)
@map_option
@group_tolerance_option
@target_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Figure directory (default: figures/ beside RESULTS).",
)
@click.pass_obj
def plot(
    state: State,
    results_path,
    fit_path,
    config_path,
    preset,
    overrides,
    plotters,
    mapping,
    group_tolerance,
    targets,
    output,
):
    """Draw figures from a results file (or your own table) and its fit.

    Figures asked for with --plotter must be drawable; of the config's list (the report
    left out: see `flops-fit report`), those with nothing to show (no loss curves, no
    parametric law) are skipped with the reason.
    """
    study_config = _study_config(config_path, preset, overrides, beside=results_path.parent)
    _add_targets(study_config, targets)
    options = dict(study_config.plot)
    # The report belongs to a study's run directory (`flops-fit report`); of the config's
    # list, `plot` draws the figures only.
    names = list(plotters) or [n for n in options.pop("names") if n != "report"]
    options.pop("names", None)
    host = get_host()
    instances = [host.create("plotter", name, options) for name in names]
    the_fit = rundir.read_fit(fit_path)
    conventions = the_fit.conventions
    if group_tolerance is None and not is_results_file(results_path):
        group_tolerance = the_fit.settings.get("group_tolerance")  # grouped as it was fitted
    observations = read_observations(
        results_path,
        mapping=mapping,
        params=conventions.params,
        flops=conventions.flops,
        group_tolerance=group_tolerance,
    )
    drawn = pipeline.draw_outcome(
        StudyOutcome.single(observations, the_fit),
        instances,
        output or results_path.parent / rundir.FIGURES_DIR,
        skip_empty=not plotters,
        reporter=state.reporter,
    )
    if not state.quiet:
        for path in drawn.files:
            click.echo(str(path))


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(path_type=Path))
@click.option(
    "--results",
    "results_path",
    type=click.Path(path_type=Path),
    default=None,
    help="The runs the fits were made from, when not RUN_DIR/results.jsonl (a table works).",
)
@map_option
@group_tolerance_option
@target_option
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a [plot] option, e.g. --set plot.targets=[1e21] (repeatable).",
)
@click.pass_obj
def report(state: State, run_dir, results_path, mapping, group_tolerance, targets, overrides):
    """Write RUN_DIR/report.html: one self-contained page with the study's answer.

    It shows fit.json and every fits/*.json side by side, with their figures, predictions
    at the largest budget and each target, warnings, the config and the environment.
    """
    study_config = _study_config(None, None, overrides, beside=run_dir)
    _add_targets(study_config, targets)
    options = dict(study_config.plot)
    options.pop("names", None)
    the_report = get_host().create("plotter", "report", options)
    outcome = rundir.read_outcome(
        run_dir, results=results_path, mapping=mapping, group_tolerance=group_tolerance
    )
    files = the_report.draw(outcome, run_dir)
    if not state.quiet:
        for path in files:
            click.echo(str(path))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def plugins(as_json):
    """List installed plugins and any that failed to load."""
    host = get_host()
    records = [r.as_dict() for r in host.records()]
    errors = [e.as_dict() for e in host.errors]
    if as_json:
        _echo_json({"plugins": records, "errors": errors})
        return
    for r in records:
        click.echo(f"{r['kind']:<9} {r['name']:<12} {r['distribution']} {r['version']}")
    for e in errors:
        click.echo(f"error     {e['plugin']} ({e['distribution']}): {e['error']}")


@cli.group()
def config():
    """Show or validate a study config."""


@config.command("show")
@config_options
def config_show(config_path, preset, overrides):
    """Print the resolved config, every option included, as TOML."""
    study = _resolve(_study_config(config_path, preset, overrides))
    click.echo(tomli_w.dumps(study.resolved()), nl=False)


@config.command("validate")
@config_options
def config_validate(config_path, preset, overrides):
    """Check a config: every plugin exists, every option is known and valid, and the plugins
    agree with each other and with the plan (what would otherwise fail every run)."""
    study = _resolve(_study_config(config_path, preset, overrides))
    study.validate()
    click.echo(f"config is valid ({len(study.plan.experiments)} experiments planned)")


_COMMANDS_ADDED = False


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and turns every error into one line and an exit code."""
    global _COMMANDS_ADDED
    if not _COMMANDS_ADDED:  # once per process: main() may run many times in one (tests)
        _COMMANDS_ADDED = True
        get_host().add_commands(cli)
    verbose = any(a in ("-v", "--verbose") for a in (argv if argv is not None else sys.argv[1:]))
    try:
        code = cli.main(args=argv, prog_name="flops-fit", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        hint = (
            f" (see 'flops-fit {exc.ctx.command_path.split(' ', 1)[1]} --help')"
            if exc.ctx and " " in exc.ctx.command_path
            else " (see 'flops-fit --help')"
        )
        print(f"Error: {exc.format_message()}{hint}", file=sys.stderr)
        return 2
    except click.ClickException as exc:
        print(f"Error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except TrainingCancelled as exc:
        print(f"Interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print(
            "Interrupted: stopped at once (runs in flight keep their last checkpoint); "
            "finished results are saved; rerun the same command to resume.",
            file=sys.stderr,
        )
        return 130
    except FlopsFitError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 1
    except OSError as exc:  # a disk error no stage named: still the machine's, not a bug
        print(f"Error: {exc.filename or 'a file'}: {os_error_cause(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        print(
            f"Error: internal error: {type(exc).__name__}: {exc} "
            "(please report it; -v shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
