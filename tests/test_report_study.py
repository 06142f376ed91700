"""A study's answer through the CLI: compared fitters, targets, the headline, `flops-fit report`,
and the figures a study skips (with the reason) or refuses (when asked for by name)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.clirunner import assert_one_line_error, flops_fit

DATA = Path(__file__).parent / "data"

COMPARE = """
[[compare]]
name = "quadratic"

[[compare]]
name = "robust"
bootstrap = 50
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, str]:
    """The mock preset with two fitters compared and a target beyond the budgets."""
    from flops_fit_core.cli import main

    root = tmp_path_factory.mktemp("report")
    config = root / "compare.toml"
    config.write_text(COMPARE)
    out = root / "run"
    args = ["run", "--preset", "mock", "-c", str(config), "--out", str(out), "--target", "1e24"]
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(args) == 0
    return out, buffer.getvalue()


def test_compared_fitters_are_fitted_recorded_and_reported(study):
    run_dir, _ = study
    assert {p.name for p in (run_dir / "fits").iterdir()} == {"quadratic.json", "robust.json"}
    assert json.loads((run_dir / "fit.json").read_text())["fitter"] == "empirical"
    assert json.loads((run_dir / "fits" / "robust.json").read_text())["fitter"] == "robust"
    config = (run_dir / "config.toml").read_text()
    assert "[[compare]]" in config and "bootstrap = 50" in config
    html = (run_dir / "report.html").read_text()
    for name in ("empirical", "quadratic", "robust"):
        assert f"Full {name} fit report" in html
    # The report embeds the figures the study just drew (not a second drawing of its own).
    embedded = re.search(
        r'src="data:image/svg\+xml;base64,([^"]+)"[^>]*data-figure="scaling"', html
    )
    assert base64.b64decode(embedded.group(1)) == (run_dir / "figures" / "scaling.svg").read_bytes()


def test_run_ends_with_the_headline_and_the_report_path(study):
    run_dir, out = study
    lines = out.rstrip().splitlines()
    assert lines[-1] == f"report: {run_dir / 'report.html'}"
    headline = out[out.index("Compute-optimal allocation") :]
    assert "empirical fit, 95% intervals" in headline
    assert "1e+23      largest budget" in headline
    assert "1e+24      target, 10x beyond the budgets" in headline


def test_json_summary_has_the_target_prediction_and_the_report(capsys, study):
    run_dir, _ = study
    config = run_dir.parent / "compare.toml"  # the study's own config: its comparisons stay
    result = flops_fit(
        capsys,
        "run",
        "--preset",
        "mock",
        "-c",
        config,
        "--out",
        run_dir,
        "--target",
        "1e24",
        "--json",
    )
    assert result.code == 0, result.err
    summary = result.json()
    assert [p["compute"] for p in summary["predictions"]] == [1e23, 1e24]
    assert summary["report"] == str(run_dir / "report.html")
    assert summary["trained"] == 0


def test_report_command_rebuilds_the_page_with_new_targets(capsys, study, tmp_path):
    run_dir, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "report.html").unlink()
    result = flops_fit(capsys, "report", copy, "--target", "3e25")
    assert result.code == 0, result.err
    assert result.out.strip() == str(copy / "report.html")
    html = (copy / "report.html").read_text()
    assert "3e+25" in html and "1e+24" in html  # the config's target and the new one
    assert "Full robust fit report" in html


def test_report_of_a_table_fitted_elsewhere(capsys, tmp_path):
    table = DATA / "cs336" / "isoflops_curves.csv"
    fitted = flops_fit(capsys, "fit", table, "--fitter", "quadratic", "-o", tmp_path / "fit.json")
    assert fitted.code == 0, fitted.err
    result = flops_fit(capsys, "report", tmp_path, "--results", table)
    assert result.code == 0, result.err
    html = (tmp_path / "report.html").read_text()
    assert "72 finished runs over 9 compute budgets" in html


def test_report_without_a_fit_is_a_one_line_error(capsys, tmp_path):
    assert_one_line_error(flops_fit(capsys, "report", tmp_path), "has no fit.json")
    assert_one_line_error(
        flops_fit(capsys, "report", tmp_path / "nowhere"), "run directory not found"
    )


@pytest.mark.parametrize(
    ("compare", "needle"),
    [
        ('[[compare]]\nname = "robust"\n[[compare]]\nname = "robust"\n', "twice"),
        ("[[compare]]\nbootstrap = 10\n", "needs a fitter `name`"),
        ('[[compare]]\nname = "nope"\n', "Unknown fitter 'nope'"),
        ('[[compare]]\nname = "robust"\nbootstrapp = 10\n', "bootstrapp"),
    ],
)
def test_bad_compare_tables_are_one_line_errors(capsys, tmp_path, compare, needle):
    config = tmp_path / "c.toml"
    config.write_text(compare)
    result = flops_fit(capsys, "run", "--preset", "mock", "-c", config, "--out", tmp_path / "run")
    assert_one_line_error(result, needle)
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_a_compared_fitter_that_cannot_fit_does_not_fail_the_study(capsys, tmp_path, study):
    run_dir, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    config = tmp_path / "strict.toml"
    config.write_text(
        '[[compare]]\nname = "quadratic"\nmin_r_squared = 0.99999999\nstrict = true\n'
    )
    result = flops_fit(capsys, "run", "--preset", "mock", "-c", config, "--out", copy)
    assert result.code == 0, result.err
    assert "compared fitter 'quadratic' could not fit these results" in result.err
    assert not (copy / "fits" / "quadratic.json").exists()  # no stale fit left behind
    html = (copy / "report.html").read_text()
    assert "could not fit these results" in html


def test_comparing_the_study_s_own_fitter_is_dropped(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[compare]]\nname = "empirical"\n[[compare]]\nname = "quadratic"\n')
    result = flops_fit(capsys, "config", "show", "--preset", "mock", "-c", config)
    assert result.code == 0, result.err
    assert result.out.count("[[compare]]") == 1 and 'name = "quadratic"' in result.out


def test_figures_without_data_are_skipped_in_a_study_and_refused_by_name(capsys, study):
    run_dir, _ = study
    # The mock preset's own figures; the report draws the others that the fits allow (the
    # compared robust fit has a parametric law, quadratic and robust model every run).
    # This study compares no envelope fit (its config replaces the preset's comparisons), so
    # the preset's `envelope` figure has nothing to show.
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert figures == {
        f"{n}.{f}" for n in ("isoflop", "scaling", "frontier", "curves") for f in ("png", "svg")
    }
    html = (run_dir / "report.html").read_text()
    assert 'data-figure="parametric"' in html and 'data-figure="residuals"' in html
    assert "<strong>envelope</strong>: no fit of this study read a frontier" in html
    result = flops_fit(
        capsys,
        "plot",
        run_dir / "results.jsonl",
        run_dir / "fit.json",
        "--plotter",
        "envelope",
        "-o",
        run_dir / "again",
    )
    assert_one_line_error(result, "read a frontier")


def test_fits_dir_follows_the_compare_list(capsys, tmp_path, study):
    """Dropping a comparison, or making it the study's own fitter, removes its old file, so
    `flops-fit report` never shows a stale fit beside the new one."""
    run_dir, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    config = tmp_path / "c.toml"
    config.write_text(
        '[fitter]\nname = "robust"\nbootstrap = 100\n[[compare]]\nname = "empirical"\n'
    )
    result = flops_fit(capsys, "run", "--preset", "mock", "-c", config, "--out", copy, "--json")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (copy / "fits").iterdir()) == ["empirical.json"]
    html = (copy / "report.html").read_text()
    assert "Full quadratic fit report" not in html
    assert "Full robust fit report" in html and "Full empirical fit report" in html


def test_a_compared_fitter_short_of_data_is_noted_and_the_report_keeps_the_note(
    capsys, tmp_path, study
):
    run_dir, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    config = tmp_path / "c.toml"
    config.write_text('[[compare]]\nname = "quadratic"\nmin_budgets = 20\n')
    result = flops_fit(capsys, "run", "--preset", "mock", "-c", config, "--out", copy)
    assert result.code == 0, result.err
    assert "compared fitter 'quadratic' could not fit these results" in result.err
    assert (copy / "fits" / "quadratic.failed").is_file()
    (copy / "report.html").unlink()
    assert flops_fit(capsys, "report", copy).code == 0
    assert "could not fit these results" in (copy / "report.html").read_text()


def test_yaml_targets_read_as_strings_still_reach_the_headline(capsys, tmp_path, study):
    run_dir = tmp_path / "copy"
    shutil.copytree(study[0], run_dir)
    config = tmp_path / "study.yaml"
    config.write_text("plot:\n  targets: [1e21]\n")  # YAML 1.1 reads 1e21 as a string
    result = flops_fit(capsys, "run", "--preset", "mock", "-c", config, "--out", run_dir, "--json")
    assert result.code == 0, result.err
    assert [p["compute"] for p in result.json()["predictions"]] == [1e21, 1e23]


def test_report_needs_its_results(capsys, tmp_path, study):
    run_dir, _ = study
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(run_dir / "fit.json", lonely / "fit.json")
    assert_one_line_error(flops_fit(capsys, "report", lonely), "--results FILE")
    assert_one_line_error(
        flops_fit(capsys, "report", run_dir, "--map", "loss=l"), "--map names the columns"
    )


def test_report_command_rewrites_the_runs_page_byte_for_byte(capsys, tmp_path, study):
    run_dir, _ = study
    copy = tmp_path / "again" / run_dir.name  # same name: the page's title is the folder's
    shutil.copytree(run_dir, copy)
    result = flops_fit(capsys, "report", copy)
    assert result.code == 0, result.err
    assert (copy / "report.html").read_bytes() == (run_dir / "report.html").read_bytes()


def test_a_fit_added_by_hand_survives_the_next_run(capsys, tmp_path, study):
    run_dir, _ = study
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.copy(copy / "fit.json", copy / "fits" / "mine.json")
    config = run_dir.parent / "compare.toml"
    result = flops_fit(capsys, "run", "--preset", "mock", "-c", config, "--out", copy)
    assert result.code == 0, result.err
    assert (copy / "fits" / "mine.json").is_file()
    assert "removed" not in result.err
