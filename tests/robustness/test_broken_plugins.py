"""Broken plugins, installed for real: distributions on the path whose `flops_fit` entry points
raise on import, carry a hookimpl of the wrong signature, claim one name twice, or need an
option the user did not give. `flops-fit plugins` lists each with its error; every other
command works as if they were absent; selecting a broken one fails with one line.

Each distribution is a `.dist-info` folder (METADATA and entry_points.txt, as pip writes them)
beside its module in a folder on PYTHONPATH: the CLI runs in a subprocess that discovers them
through `importlib.metadata`, as it discovers an installed plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.robustness

ROOT = Path(__file__).parents[2]

TRAINER = """
from pydantic import Field
from flops_fit_core import PluginConfig, Trainer, hookimpl


class {cls}(Trainer):
    \"\"\"{doc}\"\"\"

    name = {name!r}

    class Config(PluginConfig):
        {fields}

    def train(self, spec, context):
        raise AssertionError("never trained in these tests")
"""

PLUGINS = {
    # distribution: (entry point, module, source)
    "flops-fit-raising": (
        "raising",
        "ff_raising",
        "raise RuntimeError('the raising plugin fails at import')\n",
    ),
    "flops-fit-badsig": (
        "badsig",
        "ff_badsig",
        TRAINER.format(cls="BadSig", doc="Bad signature.", name="badsig", fields="pass")
        + "\n@hookimpl\ndef flops_fit_register_trainers(extra_argument):\n    return [BadSig]\n",
    ),
    "flops-fit-twin-a": (
        "twin_a",
        "ff_twin_a",
        TRAINER.format(cls="TwinA", doc="One twin.", name="twin", fields="pass")
        + "\n@hookimpl\ndef flops_fit_register_trainers():\n    return [TwinA]\n",
    ),
    "flops-fit-twin-b": (
        "twin_b",
        "ff_twin_b",
        TRAINER.format(cls="TwinB", doc="The other twin.", name="twin", fields="pass")
        + "\n@hookimpl\ndef flops_fit_register_trainers():\n    return [TwinB]\n",
    ),
    "flops-fit-needy": (
        "needy",
        "ff_needy",
        TRAINER.format(
            cls="Needy",
            doc="Needs a URL.",
            name="needy",
            fields='url: str = Field(description="the service to train on")',
        )
        + "\n@hookimpl\ndef flops_fit_register_trainers():\n    return [Needy]\n",
    ),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    for dist, (entry, module, source) in PLUGINS.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
        info = folder / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[flops_fit]\n{entry} = {module}\n")
    return folder


def flops_fit(site: Path, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("FLOPS_FIT_DISABLE_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "flops_fit_core", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def one_line_error(done: subprocess.CompletedProcess, *needles: str) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_plugins_lists_every_broken_plugin_with_its_error_and_the_rest_as_usual(site):
    done = flops_fit(site, "plugins")
    assert done.returncode == 0, done.stderr
    errors = {ln.split()[1]: ln for ln in done.stdout.splitlines() if ln.startswith("error")}
    assert "RuntimeError: the raising plugin fails at import" in errors["raising"]
    assert "flops-fit-raising" in errors["raising"]
    assert "extra_argument" in errors["badsig"]  # pluggy names the argument no hookspec has
    twin = errors["twin_b"]
    assert "trainer name 'twin' is registered by" in twin
    assert "flops-fit-twin-a" in twin and "flops-fit-twin-b" in twin
    listed = [ln.split()[:2] for ln in done.stdout.splitlines() if not ln.startswith("error")]
    assert ["trainer", "needy"] in listed and ["trainer", "mock"] in listed
    assert ["fitter", "quadratic"] in listed
    data = json.loads(flops_fit(site, "plugins", "--json").stdout)
    assert {e["plugin"] for e in data["errors"]} == {"raising", "badsig", "twin_b"}
    needy = json.loads(flops_fit(site, "plugins", "needy", "--json").stdout)["plugins"][0]
    assert [(o["name"], o["required"]) for o in needy["options"]] == [("url", True)]


def test_every_other_command_works_beside_them(site, tmp_path):
    run = tmp_path / "run"
    done = flops_fit(site, "-q", "run", "--preset", "mock", "--out", run, "--set", "plot.names=[]")
    assert done.returncode == 0, done.stderr
    assert (run / "fit.json").is_file()
    table = ROOT / "tests/data/cs336/isoflops_curves.csv"
    done = flops_fit(site, "-q", "fit", table, "-o", tmp_path / "fit.json")
    assert done.returncode == 0, done.stderr
    done = flops_fit(site, "predict", tmp_path / "fit.json", "--compute", "1e22")
    assert done.returncode == 0 and "N* =" in done.stdout, done.stderr
    done = flops_fit(site, "config", "validate", "--preset", "mock")
    assert done.returncode == 0, done.stderr
    done = flops_fit(site, "plan", "--preset", "mock", "-o", tmp_path / "plan.json")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "trainer, needles",
    [
        ("raising", ["Unknown trainer 'raising'", "failed to load: RuntimeError: the raising"]),
        ("badsig", ["Unknown trainer 'badsig'", "failed to load", "extra_argument"]),
        ("twin", ["trainer name 'twin' is registered by", "flops-fit-twin-a", "flops-fit-twin-b"]),
        ("needy", ["trainer 'needy': missing key 'url'"]),
    ],
)
def test_selecting_a_broken_plugin_fails_in_one_line(site, tmp_path, trainer, needles):
    for command in (
        ["config", "validate", "--preset", "mock", "--trainer", trainer],
        ["run", "--preset", "mock", "--trainer", trainer, "--out", tmp_path / "run"],
    ):
        one_line_error(flops_fit(site, *command), *needles)
    assert not (tmp_path / "run" / "results.jsonl").exists()  # nothing trained


def test_a_required_option_given_makes_the_plugin_usable(site):
    done = flops_fit(
        site, "config", "show", "--preset", "mock", "--trainer", "needy",
        "--set", "trainer.url='http://127.0.0.1:9'",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'url = "http://127.0.0.1:9"' in done.stdout
