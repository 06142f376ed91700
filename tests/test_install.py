"""`flops-fit install`: into the environment flops-fit runs from, recorded in its uv project
where it has one (so `uv sync` keeps the plugin), else with `uv pip install --python`.

The installer is a stand-in `uv` on PATH that records its arguments: these tests need no
network. The real installs (a wheel environment, and this checkout's own project with
`uv sync --locked` after) are checked by tools/ci/wheel-check.sh and
tools/ci/plugin-install-check.sh, steps of .ci/run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from flops_fit_core import cli_install
from tests.clirunner import assert_one_line_error, flops_fit

STAND_IN = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
exit "${{UV_STAND_IN_EXIT:-0}}"
"""


@pytest.fixture
def uv_log(tmp_path, monkeypatch) -> Path:
    """A stand-in `uv` first on PATH; returns the file each call's arguments go to."""
    bin_dir, log = tmp_path / "bin", tmp_path / "uv-calls.txt"
    bin_dir.mkdir()
    uv = bin_dir / "uv"
    uv.write_text(STAND_IN.format(log=log))
    uv.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("UV_PROJECT_ENVIRONMENT", raising=False)
    # nothing is really installed: the listing before and after is the same
    monkeypatch.setattr(cli_install, "_plugins_listing", lambda: {"plugins": [], "errors": []})
    return log


def project(root: Path, groups: str = "[dependency-groups]\nplugins = []\n") -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "p"\nversion = "0"\n{groups}')
    (root / "uv.lock").write_text("version = 1\n")
    (root / ".venv").mkdir()
    return root / ".venv"


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_project_environment_is_one_beside_a_pyproject_and_a_lock(tmp_path, monkeypatch):
    monkeypatch.delenv("UV_PROJECT_ENVIRONMENT", raising=False)
    venv = project(tmp_path / "proj")
    assert cli_install.environment_project(venv) == (tmp_path / "proj").resolve()
    (tmp_path / "proj" / "uv.lock").unlink()  # a pyproject alone: not a locked project
    assert cli_install.environment_project(venv) is None
    plain = tmp_path / "env"
    plain.mkdir()
    assert cli_install.environment_project(plain) is None
    monkeypatch.setenv("UV_PROJECT_ENVIRONMENT", str(plain))
    monkeypatch.chdir(tmp_path / "proj")
    (tmp_path / "proj" / "uv.lock").write_text("version = 1\n")
    assert cli_install.environment_project(plain) == (tmp_path / "proj").resolve()


def test_in_a_uv_project_the_plugin_is_added_to_its_plugins_group(
    capsys, tmp_path, monkeypatch, uv_log
):
    """`uv sync --locked` would remove a package the lock does not hold: `uv add` records it."""
    venv = project(tmp_path / "proj")
    monkeypatch.setattr(sys, "prefix", str(venv))
    example = tmp_path / "example"
    example.mkdir()
    done = flops_fit(capsys, "install", "flops-fit-foo", "-e", example)
    assert done.code == 0, done.err
    root = (tmp_path / "proj").resolve()
    assert calls(uv_log) == [
        f"add --project {root} --group plugins flops-fit-foo",
        f"add --project {root} --group plugins --editable {example.resolve()}",
    ]
    assert "added to the group 'plugins' of the uv project" in done.err
    assert "note: nothing new registers a flops-fit plugin" in done.err


def test_a_project_without_a_plugins_group_gets_a_dependency(capsys, tmp_path, monkeypatch, uv_log):
    monkeypatch.setattr(sys, "prefix", str(project(tmp_path / "proj", groups="")))
    assert flops_fit(capsys, "install", "-U", "flops-fit-foo").code == 0
    assert calls(uv_log) == [
        f"add --project {(tmp_path / 'proj').resolve()} --upgrade flops-fit-foo"
    ]


def test_elsewhere_uv_pip_installs_into_this_python(capsys, tmp_path, monkeypatch, uv_log):
    plain = tmp_path / "env"
    plain.mkdir()
    monkeypatch.setattr(sys, "prefix", str(plain))
    assert flops_fit(capsys, "install", "flops-fit-foo", "flops-fit-bar").code == 0
    assert calls(uv_log) == [f"pip install --python {sys.executable} flops-fit-foo flops-fit-bar"]
    assert flops_fit(capsys, "uninstall", "flops-fit-foo").code == 0
    assert calls(uv_log)[-1] == f"pip uninstall --python {sys.executable} flops-fit-foo"


def test_a_failed_install_is_one_line_and_exit_1(capsys, tmp_path, monkeypatch, uv_log):
    plain = tmp_path / "env"
    plain.mkdir()
    monkeypatch.setattr(sys, "prefix", str(plain))
    monkeypatch.setenv("UV_STAND_IN_EXIT", "3")
    done = flops_fit(capsys, "install", "no-such-plugin")
    lines = [ln for ln in done.err.splitlines() if ln.startswith("Error")]
    assert done.code == 1 and lines == [
        "Error: installing failed: uv exited 3 (its output is above)"
    ]


def test_nothing_named_is_a_usage_error(capsys, uv_log):
    assert_one_line_error(flops_fit(capsys, "install"), "name a package to install")
    assert calls(uv_log) == []


def test_the_new_plugins_and_their_load_errors_are_listed(capsys, tmp_path, monkeypatch, uv_log):
    plain = tmp_path / "env"
    plain.mkdir()
    monkeypatch.setattr(sys, "prefix", str(plain))
    mock = {"kind": "trainer", "name": "mock", "distribution": "flops-fit-mock", "version": "0.1"}
    new = {"kind": "trainer", "name": "foo", "distribution": "flops-fit-foo", "version": "1.0"}
    error = {"plugin": "bar", "distribution": "flops-fit-foo", "error": "ImportError: no baz"}
    listings = iter(
        [{"plugins": [mock], "errors": []}, {"plugins": [mock, new], "errors": [error]}]
    )
    monkeypatch.setattr(cli_install, "_plugins_listing", lambda: next(listings))
    done = flops_fit(capsys, "install", "flops-fit-foo")
    assert done.code == 0
    assert done.out.split() == ["trainer", "foo", "flops-fit-foo", "1.0"]
    assert "error     bar (flops-fit-foo): ImportError: no baz" in done.err
    assert "1 new plugin(s)" in done.err


def test_the_listing_is_what_a_fresh_process_finds():
    """The real `_plugins_listing`: the built-ins, as `flops-fit plugins --json` lists them."""
    listing = cli_install._plugins_listing()
    names = {(p["kind"], p["name"]) for p in listing["plugins"]}
    assert {("trainer", "mock"), ("fitter", "quadratic")} <= names
    assert json.dumps(listing)  # plain data
