"""The commands that read results: `fit`, `predict`, `plot` and `report`.

They work on a study's run directory or on runs a team trained elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import click

from . import files, pipeline, rundir
from .cli_options import (
    State,
    add_targets,
    config_options,
    force_option,
    group_tolerance_option,
    is_json_of,
    map_option,
    plugin_shortcuts,
    positive_float,
    prediction_line,
    read_study_config,
    target_option,
)
from .files import check_output
from .fits import FitResult
from .observations import (
    StudyOutcome,
    is_results_file,
    observations_for,
    read_observations,
    requested_conventions,
)
from .plugins import get_host
from .store import ResultsStore

__all__ = [
    "fit",
    "plot",
    "predict",
    "report",
]


@click.command()
@click.argument("results_path", metavar="FILE", type=click.Path(path_type=Path))
@config_options
@plugin_shortcuts("fitter")
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
    check_output(output, inputs, force=force, is_ours=is_json_of(FitResult), what="fit")
    study_config = read_study_config(
        config_path, preset, overrides, beside=results_path.parent, fitter=fitter
    )
    the_fitter = get_host().build("fitter", study_config.fitter)
    observations = read_observations(
        results_path,
        mapping=mapping,
        group_tolerance=group_tolerance,
        **requested_conventions(the_fitter),
    )
    result = pipeline.fit_observations(observations, the_fitter)
    # Said once the fit is made: a fit that fails is one `Error:` line, nothing before it.
    if is_results_file(results_path) and (note := ResultsStore(results_path).load().skipped_note()):
        state.reporter.message(f"warning: {note}")
    files.write_atomic(output, result.model_dump_json(indent=2))
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    elif not state.quiet:
        click.echo(result.report())
        click.echo(f"written to {output}")


@click.command()
@click.argument("fit_path", metavar="FIT", type=click.Path(path_type=Path))
@click.option(
    "--compute",
    required=True,
    type=float,
    callback=positive_float,
    help="Compute budget C in FLOPs, e.g. 1e23.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
def predict(fit_path, compute, as_json):
    """Predict N*, D*, L* and D*/N* at a compute budget from fit.json."""
    prediction = rundir.read_fit(fit_path).predict(compute)
    if as_json:
        click.echo(prediction.model_dump_json(indent=2))
    else:
        click.echo(prediction_line(prediction))


@click.command()
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
    study_config = read_study_config(config_path, preset, overrides, beside=results_path.parent)
    add_targets(study_config, targets)
    options = dict(study_config.plot)
    # The report belongs to a study's run directory (`flops-fit report`); of the config's
    # list, `plot` draws the figures only.
    names = list(plotters) or [n for n in options.pop("names") if n != "report"]
    options.pop("names", None)
    host = get_host()
    instances = [host.build("plotter", {**options, "name": name}) for name in names]
    the_fit = rundir.read_fit(fit_path)
    observations = observations_for(
        the_fit, results_path, mapping=mapping, group_tolerance=group_tolerance
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


@click.command()
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
    study_config = read_study_config(None, None, overrides, beside=run_dir)
    add_targets(study_config, targets)
    options = dict(study_config.plot)
    options.pop("names", None)
    the_report = get_host().build("plotter", {**options, "name": "report"})
    outcome = rundir.read_outcome(
        run_dir, results=results_path, mapping=mapping, group_tolerance=group_tolerance
    )
    written = the_report.draw(outcome, run_dir)
    if not state.quiet:
        for path in written:
            click.echo(str(path))
