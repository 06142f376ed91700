"""`flops-fit install` and `flops-fit uninstall`: plugins into the environment flops-fit runs from.

As `llm install` does, the packages go where this very `flops-fit` is installed, so the next
`flops-fit` command finds them. Where that environment belongs to a uv project (a clone of
flops-fit, or a user's project, whose `.venv` `uv sync` keeps exact), a bare `uv pip install`
would be undone by the next `uv sync --locked`: there the packages are added to the project
(`uv add`, into its `plugins` dependency group when it has one) so that its lock file keeps
them. Anywhere else (a virtual environment made with pip or `uv venv`, a `uv tool` or `pipx`
environment) they are installed with `uv pip install --python <this python>`, or with pip when
uv is not there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click

from .errors import FlopsFitError, UsageError

__all__ = ["Installer", "environment_project", "install", "installer", "uninstall"]

#: The dependency group a project keeps its plugins in, when it has one (flops-fit's own
#: checkout does: `[tool.uv] default-groups` names it, so `uv sync` installs it).
PLUGINS_GROUP = "plugins"


def environment_project(prefix: Path | None = None) -> Path | None:
    """The uv project whose environment this Python is, or None.

    A project environment is `<project>/.venv` (or the folder UV_PROJECT_ENVIRONMENT names)
    beside a `pyproject.toml` and a `uv.lock`: the environment `uv sync` makes exact again.
    """
    prefix = Path(prefix or sys.prefix).resolve()
    candidates = [prefix.parent]
    if named := os.environ.get("UV_PROJECT_ENVIRONMENT"):
        if Path(named).resolve() == prefix:
            candidates.insert(0, Path.cwd().resolve())
    elif prefix.name != ".venv":
        return None
    for root in candidates:
        if (root / "pyproject.toml").is_file() and (root / "uv.lock").is_file():
            return root
    return None


def _groups(project: Path) -> set[str]:
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{project / 'pyproject.toml'}: cannot read it ({exc})") from None
    groups = data.get("dependency-groups", {})
    return set(groups) if isinstance(groups, dict) else set()


def _uv() -> tuple[str] | None:
    if found := shutil.which("uv"):
        return (found,)
    try:  # the `uv` distribution installed as a Python package ships its binary
        from uv import find_uv_bin  # type: ignore[import-not-found]

        return (find_uv_bin(),)
    except (ImportError, FileNotFoundError):
        return None


def _has_pip() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, check=False
    )
    return probe.returncode == 0


@dataclass(frozen=True)
class Installer:
    """How packages reach this environment: the program that installs them (uv's binary, or
    this Python's pip) and, in a uv project, the project and group that record them."""

    kind: str  # "project", "uv pip" or "pip"
    program: tuple[str, ...]
    project: Path | None = None
    group: str | None = None

    def _records(self) -> list[str]:
        """`uv add`/`uv remove` arguments naming where the requirement is recorded."""
        return ["--project", str(self.project), *(["--group", self.group] if self.group else [])]

    def install(self, packages: list[str], editables: list[str], upgrade: bool) -> list[list[str]]:
        """The commands that install `packages` and `editables` (local folders), in order."""
        upgrade_flag = ["--upgrade"] if upgrade else []
        if self.kind == "project":
            head = [*self.program, "add", *self._records(), *upgrade_flag]
            # `uv add --editable` makes every requirement of the call editable: its own call
            return [
                *([[*head, *packages]] if packages else []),
                *([[*head, "--editable", *editables]] if editables else []),
            ]
        if self.kind == "uv pip":
            head = [*self.program, "pip", "install", "--python", sys.executable]
        else:  # python -m pip
            head = [*self.program, "install"]
        return [[*head, *upgrade_flag, *packages, *(f for e in editables for f in ("-e", e))]]

    def uninstall(self, packages: list[str]) -> list[str]:
        if self.kind == "project":
            return [*self.program, "remove", *self._records(), *packages]
        if self.kind == "uv pip":
            return [*self.program, "pip", "uninstall", "--python", sys.executable, *packages]
        return [*self.program, "uninstall", "--yes", *packages]

    def describe(self) -> str:
        if self.kind == "project":
            where = f"the group {self.group!r} of the " if self.group else "the "
            return f"added to {where}uv project {self.project} (kept by `uv sync`)"
        return f"into {sys.prefix} ({self.kind})"


def installer() -> Installer:
    """The way to install into the environment flops-fit runs from; one line if there is none."""
    uv = _uv()
    if project := environment_project():
        if uv is None:
            raise UsageError(
                f"this flops-fit runs from the uv project {project}, and uv is not on PATH: "
                "install uv (`pip install uv`) so the plugin is recorded in the project"
            )
        group = PLUGINS_GROUP if PLUGINS_GROUP in _groups(project) else None
        return Installer("project", uv, project, group)
    if uv is not None:
        return Installer("uv pip", uv)
    if _has_pip():
        return Installer("pip", (sys.executable, "-m", "pip"))
    raise UsageError(
        f"neither uv nor pip can install into {sys.prefix}: install uv (`pip install uv`)"
    )


def _plugins_listing() -> dict:
    """`flops-fit plugins --json` of a fresh process: what the next command will find."""
    done = subprocess.run(
        [sys.executable, "-m", "flops_fit_core", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"plugins": [], "errors": []}


def _run(command: list[str], what: str) -> None:
    click.echo(f"$ {' '.join(command)}", err=True)
    done = subprocess.run(command, check=False)  # its output is the user's to read
    if done.returncode != 0:
        raise FlopsFitError(
            f"{what} failed: {Path(command[0]).name} exited {done.returncode} (its output is above)"
        )


def _key(entry: dict) -> tuple[str, str, str]:
    return entry.get("kind", ""), entry.get("name", ""), entry.get("distribution", "")


@click.command()
@click.argument("packages", nargs=-1, metavar="[PACKAGE]...")
@click.option(
    "-e",
    "--editable",
    "editables",
    multiple=True,
    metavar="PATH",
    type=click.Path(exists=True, file_okay=False, resolve_path=True),
    help="Install a local folder in editable mode.",
)
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade the packages if installed already.")
def install(packages, editables, upgrade):
    """Install plugins into the environment flops-fit runs from, so every later command finds
    them: PACKAGE is anything pip accepts (a name, NAME==VERSION, a wheel, a folder). In a uv
    project's environment (a clone of flops-fit) they are added to the project, so that
    `uv sync` keeps them; then it lists the plugins they registered."""
    if not packages and not editables:
        raise UsageError("name a package to install (flops-fit install NAME, or -e PATH)")
    how = installer()
    before = _plugins_listing()
    for command in how.install(list(packages), list(editables), upgrade):
        _run(command, "installing")
    after = _plugins_listing()
    known = {_key(p) for p in before["plugins"]}
    new = [p for p in after["plugins"] if _key(p) not in known]
    width = max([12, *(len(p["name"]) for p in new)])
    for p in new:
        click.echo(f"{p['kind']:<9} {p['name']:<{width}} {p['distribution']} {p['version']}")
    old_errors = {json.dumps(e, sort_keys=True) for e in before.get("errors", [])}
    for e in after.get("errors", []):
        if json.dumps(e, sort_keys=True) not in old_errors:
            click.echo(f"error     {e['plugin']} ({e['distribution']}): {e['error']}", err=True)
    click.echo(f"installed {how.describe()}; {len(new)} new plugin(s)", err=True)
    if not new:
        click.echo(
            "note: nothing new registers a flops-fit plugin (see 'flops-fit plugins')", err=True
        )


@click.command()
@click.argument("packages", nargs=-1, required=True, metavar="PACKAGE...")
def uninstall(packages):
    """Uninstall packages from the environment flops-fit runs from (from its uv project,
    where it belongs to one)."""
    how = installer()
    _run(how.uninstall(list(packages)), "uninstalling")
    click.echo(f"uninstalled {', '.join(packages)}", err=True)
