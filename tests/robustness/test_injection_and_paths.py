"""Injection and paths: whatever text a user, a table or a results file brings reaches
report.html escaped; YAML configs are read safely; a configured folder cannot leave the run
directory through `..` or a symlink unless the user gives it as an absolute path.

The payloads are what an attacker would put in a shared results table or run name: a script
element and an attribute break-out. After each report is written, the page must hold each
payload only in its escaped form, and no element or handler the template did not write.
"""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from flops_fit_core.cluster import shared_folder
from flops_fit_core.errors import ConfigError
from tests.clirunner import assert_one_line_error, flops_fit, mock_study_args, snapshot

pytestmark = pytest.mark.robustness

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '" onerror="alert(2)'
PAYLOAD = f"{SCRIPT}{BREAKOUT}"


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, as a browser's tokenizer sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.tags


def assert_inert(html: str, reached: int = 1) -> None:
    """No script element, no handler that runs the payload; the payload did reach the page
    (escaped) at least `reached` times, so the check is not vacuous."""
    tags = elements(html)
    assert not [t for t, _ in tags if t == "script"], "a <script> element reached the report"
    for tag, attrs in tags:
        for name, value in attrs.items():
            assert "alert(" not in (value or "") or not name.startswith("on"), (tag, name, value)
            assert name in _TEMPLATE_ATTRIBUTES, f"<{tag} {name}=...> is not the template's"
    assert "<script>alert(1)" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= reached


#: The attributes report.html.j2 itself writes: an injected one would be anything else.
_TEMPLATE = Path(__file__).parents[2] / "plugins/plotters/src/flops_fit_plotters/templates"
_TEMPLATE_ATTRIBUTES = set(
    re.findall(r"\s([a-z][a-z-]*)=[\"']", (_TEMPLATE / "report.html.j2").read_text())
)


def test_run_ids_column_names_and_values_of_a_table_reach_the_report_escaped(capsys, tmp_path):
    """A table whose run ids and column names carry payloads, fitted and reported: inert."""
    rows = list(
        csv.DictReader((Path(__file__).parents[1] / "data/cs336/isoflops_curves.csv").open())
    )
    table = tmp_path / "runs.csv"
    columns = [f"params {PAYLOAD}", f"budget {PAYLOAD}", f"loss {PAYLOAD}", f"run {PAYLOAD}"]
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, row in enumerate(rows):
            writer.writerow(
                [row["parameters"], row["compute_budget"], row["final_loss"], f"{PAYLOAD} #{i}"]
            )
    before = snapshot(tmp_path)
    maps = [
        *("--map", f"params={columns[0]}"),
        *("--map", f"budget={columns[1]}"),
        *("--map", f"loss={columns[2]}"),
        *("--map", f"run={columns[3]}"),
    ]
    out = tmp_path / f"study {PAYLOAD}".replace("/", "_")
    done = flops_fit(capsys, "-q", "fit", table, *maps, "-o", out / "fit.json")
    assert done.code == 0, done.err
    done = flops_fit(capsys, "-q", "report", out, "--results", table, *maps)
    assert done.code == 0, done.err
    html = (out / "report.html").read_text()
    assert_inert(html, reached=len(rows))  # the run ids (and the title)
    assert snapshot(tmp_path) == {**before, **snapshot(out)}  # the table untouched


def test_config_values_trainer_and_device_names_of_a_study_reach_the_report_escaped(
    capsys, tmp_path
):
    """A mock study whose recorded device and configured strings carry payloads, in a run
    directory whose name (the report's title) carries one too."""
    run = tmp_path / f"run {SCRIPT}{BREAKOUT}".replace("/", "_")
    device = f"trainer.device={json.dumps(PAYLOAD)}"
    only_report = "plot.names=['report']"
    done = flops_fit(
        capsys, "-q", "run", "--preset", "mock", "--out", run, "--set", device, "--set", only_report
    )
    assert done.code == 0, done.err
    html = (run / "report.html").read_text()
    assert_inert(html, reached=3)  # the title, the devices line, the config


def test_plugin_names_that_are_not_plain_names_are_refused_at_registration():
    """A plugin name becomes file names and report text: `<`, `"` and spaces never get in."""
    from flops_fit_core import Plotter, PluginConfig, PluginHost, hookimpl

    class Evil(Plotter):
        name = PAYLOAD

        class Config(PluginConfig):
            pass

        def plot(self, *args, **kwargs):  # pragma: no cover - never registered
            raise AssertionError

    module = type("m", (), {"flops_fit_register_plotters": staticmethod(hookimpl(lambda: [Evil]))})
    host = PluginHost(load_entry_points=False)
    host.register(module, "evil", "evil-dist", "1")
    assert PAYLOAD not in host.registry["plotter"]
    assert len(host.errors) == 1 and "is not a plain name" in host.errors[0].error


@pytest.mark.parametrize(
    "document",
    [
        "!!python/object/apply:os.system ['touch {marker}']\n",
        "trainer: !!python/object/apply:os.system ['touch {marker}']\n",
        "trainer:\n  name: !!python/name:os.system\n",
        "planner: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
    ],
)
def test_yaml_configs_are_read_safely(capsys, tmp_path, document):
    """A YAML tag that would construct a Python object is refused in one line; nothing runs."""
    marker = tmp_path / "pwned"
    config = tmp_path / "study.yaml"
    config.write_text(document.format(marker=marker))
    before = config.read_bytes()
    for command in (["config", "validate"], ["plan", "-o", str(tmp_path / "plan.json")]):
        done = flops_fit(capsys, *command, "--config", config)
        assert_one_line_error(done, str(config))
    assert not marker.exists()
    assert config.read_bytes() == before


@pytest.mark.parametrize("relative", ["../outside", "a/../../outside", "link/inside", "link"])
def test_a_configured_folder_cannot_leave_the_run_directory(tmp_path, relative):
    """`..` and a symlink out of the run directory are refused; the same folder given as an
    absolute path is the user's choice and is used."""
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (run / "link").symlink_to(outside)
    with pytest.raises(ConfigError, match="leads out of the run directory"):
        shared_folder(run, relative, "executor.folder")
    assert shared_folder(run, outside / "x", "executor.folder") == (outside / "x").resolve()
    assert shared_folder(run, "inside/x", "executor.folder") == (run / "inside/x").resolve()


def test_the_cli_refuses_a_cluster_folder_through_a_symlink_in_one_line(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "link").symlink_to(tmp_path)
    done = flops_fit(
        capsys,
        *mock_study_args(run),
        *("--set", "executor.name='slurm'", "--set", "executor.cluster='local'"),
        *("--set", "executor.folder='link/jobs'"),
    )
    assert_one_line_error(done, "executor.folder: 'link/jobs' leads out of the run directory")
    assert not (tmp_path / "jobs").exists()
