"""The commands that run a study: `run` (all of it), `plan` and `train` (stage by stage)."""

from __future__ import annotations

from pathlib import Path

import click

from . import files, pipeline, rundir, text, training
from .cli_options import (
    State,
    add_targets,
    config_options,
    count,
    echo_json,
    force_option,
    is_json_of,
    plugin_shortcuts,
    read_study_config,
    report_line,
    resolve,
    target_option,
)
from .config import DEFAULT_PRESET
from .errors import RunFailed
from .files import check_output
from .plugins import get_host
from .schemas import SweepPlan

__all__ = [
    "plan",
    "run",
    "train",
]


@click.command()
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
@plugin_shortcuts()
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
    study_config = read_study_config(config_path, preset, overrides, **shortcuts)
    targets = add_targets(study_config, targets)
    study = resolve(study_config)
    if broken := get_host().errors:  # said once, before hours of training, not per run
        names = ", ".join(sorted({e.plugin for e in broken}))
        state.reporter.message(
            f"warning: {len(broken)} plugin load error(s) ({names}): see 'flops-fit plugins'"
        )
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
        echo_json(summary.as_dict(targets))
    elif not state.quiet:
        click.echo(summary.fit.report())
        click.echo()
        click.echo(
            text.format_headline(
                summary.fit, summary.headline_computes(targets), summary.plan.budgets
            )
        )
        click.echo(f"run directory: {run_dir}")
        click.echo(f"report: {report_line(summary)}")
    if failed:
        raise RunFailed(
            f"{count(failed)} failed (see {run_dir / rundir.RESULTS_FILE}); "
            "rerun with --retry-failed to train them again"
        )


@click.command()
@config_options
@plugin_shortcuts("planner")
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
        check_output(output, inputs, force=force, is_ours=is_json_of(SweepPlan), what="plan")
    study = resolve(read_study_config(config_path, preset, overrides, planner=planner))
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
        if the_plan.rounds:
            click.echo(
                f"this is round 1 of planner {study.planner.name!r}, which plans in rounds: "
                "`flops-fit run` trains it, fits it and plans each next round from the fit"
            )


@click.command()
@click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path))
@config_options
@plugin_shortcuts("trainer", "executor")
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
    study_config = read_study_config(
        config_path, preset, overrides, beside=plan_path.parent, trainer=trainer, executor=executor
    )
    study = resolve(study_config).with_plan(the_plan)
    study.validate()
    results_path = results_path or plan_path.parent / rundir.RESULTS_FILE
    summary = training.train_plan(
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
            f"{count(summary.failed + summary.failed_before)} failed "
            f"(see {results_path}); rerun with --retry-failed to train them again"
        )
