"""The `flops-fit` command line.

Options belong to the command they modify; `-q/-v` and `--version` come first. Every domain
error becomes one line on stderr and an exit code (0 ok, 1 failed run, 2 bad usage, config or
input, 130 interrupted): a user never sees a traceback for a mistake of theirs. `--json` prints
machine-readable output on stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import sys
import traceback
import warnings

import click
import tomli_w

from . import __version__
from .cli_install import install, uninstall
from .cli_options import (
    State,
    config_options,
    echo_json,
    plugin_shortcuts,
    read_study_config,
    resolve,
)
from .cli_results import fit, plot, predict, report
from .cli_study import plan, run, train
from .errors import FlopsFitError, TrainingCancelled, UsageError, one_line
from .files import os_error_cause
from .options import describe_options
from .plugins import DISABLE_ENV, get_host
from .study import describe_config

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="Only errors and warnings.")
@click.option("-v", "--verbose", is_flag=True, help="Every run's result; tracebacks on bugs.")
@click.version_option(__version__, "--version", prog_name="flops-fit")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool) -> None:
    """Plan, train and fit compute-optimal scaling laws with honest uncertainty."""
    ctx.obj = State(quiet, verbose)


@click.command()
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--options", "show_options", is_flag=True, help="Show every plugin's options.")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def plugins(name, show_options, as_json):
    """List installed plugins and any that failed to load; with NAME (or --options), each
    plugin's options with their types, defaults and descriptions."""
    host = get_host()
    records = host.records()
    if name is not None:
        records = [r for r in records if r.name == name]
        if not records:
            kinds = ", ".join(sorted({r.kind for r in host.records()}))
            raise UsageError(f"no plugin named {name!r} (kinds: {kinds}; see 'flops-fit plugins')")
    detailed = name is not None or show_options
    if as_json:
        listing = [
            {**r.as_dict(), **({"options": _options(r)} if detailed else {})} for r in records
        ]
        data = {"plugins": listing, "errors": [e.as_dict() for e in host.errors]}
        echo_json({**data, "disabled": host.disabled})
        return
    width = max([12, *(len(r.name) for r in records)])
    for r in records:
        click.echo(f"{r.kind:<9} {r.name:<{width}} {r.distribution} {r.version}")
        if detailed:
            doc = (r.cls.__doc__ or "").strip().splitlines()
            if doc:
                click.echo(f"    {doc[0]}")
            for option in _options(r):
                default = "required" if option["required"] else f"default {option['default']!r}"
                click.echo(f"    {option['name']} ({option['type']}, {default})")
                if option["description"]:
                    click.echo(f"        {option['description']}")
    if name is None:
        for e in host.errors:
            click.echo(f"error     {e.plugin} ({e.distribution}): {e.error}")
        for what in host.disabled:
            click.echo(f"disabled  {what} by {DISABLE_ENV}")


def _options(record) -> list[dict]:
    return [o.as_dict() for o in describe_options(record.cls.Config)]


@cli.group()
def config():
    """Show or validate a study config."""


@config.command("show")
@config_options
@plugin_shortcuts()
def config_show(config_path, preset, overrides, **shortcuts):
    """Print the resolved config, every option included, as TOML."""
    study_config = read_study_config(config_path, preset, overrides, **shortcuts)
    shown, missing = describe_config(study_config)
    for note in study_config.notes:
        click.echo(note, err=True)
    click.echo(tomli_w.dumps(shown), nl=False)
    if missing:
        click.echo("# required options not set yet (in the config, or --set KEY=VALUE):")
        for section, option in missing:
            about = f": {option.description}" if option.description else ""
            click.echo(f"# {section}.{option.name} = ...  ({option.type}, required){about}")
        names = ", ".join(f"{s}.{o.name}" for s, o in missing)
        click.echo(f"note: set {names} before running this config", err=True)


@config.command("validate")
@config_options
@plugin_shortcuts()
def config_validate(config_path, preset, overrides, **shortcuts):
    """Check a config: every plugin exists, every option is known and valid, and the plugins
    agree with each other and with the plan (what would otherwise fail every run)."""
    study = resolve(read_study_config(config_path, preset, overrides, **shortcuts))
    study.validate()
    click.echo(f"config is valid ({len(study.plan.experiments)} experiments planned)")


_COMMANDS_ADDED = False


cli.add_command(run)
cli.add_command(plan)
cli.add_command(train)
cli.add_command(fit)
cli.add_command(predict)
cli.add_command(plot)
cli.add_command(report)
cli.add_command(plugins)
cli.add_command(install)
cli.add_command(uninstall)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and turns every error into one line and an exit code."""
    global _COMMANDS_ADDED
    if not _COMMANDS_ADDED:  # once per process: main() may run many times in one (tests)
        _COMMANDS_ADDED = True
        get_host().add_commands(cli)
    verbose = any(a in ("-v", "--verbose") for a in (argv if argv is not None else sys.argv[1:]))
    with warnings.catch_warnings():
        if not verbose:  # numpy's overflow notes are not the user's to read; -v shows them
            warnings.simplefilter("ignore", RuntimeWarning)
        return _run(argv, verbose)


def _run(argv: list[str] | None, verbose: bool) -> int:
    try:
        code = cli.main(args=argv, prog_name="flops-fit", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # `flops-fit` alone: its help
        click.echo(exc.ctx.get_help())
        return 0
    except click.UsageError as exc:
        hint = (
            f" (see 'flops-fit {exc.ctx.command_path.split(' ', 1)[1]} --help')"
            if exc.ctx and " " in exc.ctx.command_path
            else " (see 'flops-fit --help')"
        )
        print(f"Error: {one_line(exc.format_message())}{hint}", file=sys.stderr)
        return 2
    except click.ClickException as exc:
        print(f"Error: {one_line(exc.format_message())}", file=sys.stderr)
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
            f"Error: internal error: {type(exc).__name__}: {one_line(str(exc))} "
            "(please report it; -v shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
