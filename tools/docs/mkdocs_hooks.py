"""mkdocs hooks of the documentation site (`mkdocs.yml`: `hooks`).

The generated CLI reference (docs/cli-reference.md, mkdocs-click) documents the click group
`flops_fit_core.cli:cli`. Before it is rendered:

- plugins add their commands to the group (`serve`, from flops-fit-api) when the `flops-fit`
  entry point starts, not at import: this hook starts it once, as `flops-fit --version`, so the
  reference lists the installed plugins' commands too;
- mkdocs-click reads each command's description as Markdown, where `N*, D*` would start
  emphasis: the asterisks are escaped (in this build process only; the options are shown as
  the `--help` text itself, in a code block, and need nothing).
"""

from __future__ import annotations

import contextlib
import io

import click


def _commands(group: click.Group):
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from _commands(command)


def on_startup(command: str, dirty: bool) -> None:
    from flops_fit_core.cli import cli, main

    with contextlib.redirect_stdout(io.StringIO()):
        main(["--version"])  # adds the plugins' commands to the click group, once
    for each in [cli, *_commands(cli)]:
        if each.help and "\\*" not in each.help:
            each.help = each.help.replace("*", "\\*")
