"""The HTML report: its content (headline, fits side by side, figures, warnings, config,
environment), its safety (escaped text, no network) and how it renders in headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import subprocess
from html import unescape

import numpy as np
import pytest

from flops_fit_core import Estimate, FitResult, StudyOutcome
from flops_fit_plotters import ReportPlotter
from flops_fit_plotters.base import FigureConfig
from flops_fit_plotters.report import _warnings as report_warnings

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28


def parametric_fit(fit: FitResult, name: str = "robust") -> FitResult:
    """The synthetic fit with Chinchilla's law attached, as a parametric fitter reports it,
    and an N* law twice as large (so the two fits' rows cannot be confused)."""
    law = {"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA}
    n_opt = fit.laws["n_opt"]
    doubled = n_opt.model_copy(update={"coefficient": 2 * n_opt.coefficient})
    return fit.model_copy(
        update={
            "fitter": name,
            "laws": {**fit.laws, "n_opt": doubled},
            "parametric": {k: Estimate(value=v) for k, v in law.items()},
            "warnings": ["<script>alert('x')</script> an unescaped warning would run"],
        }
    )


@pytest.fixture(scope="module")
def outcome(synth) -> StudyOutcome:
    observations = synth.observations(synth.budgets, sizes_per_budget=5)
    fit = synth.fit(observations)
    return StudyOutcome(
        fits=(fit, parametric_fit(fit)),
        observations=(observations, observations),
        config={"fitter": {"name": "empirical"}, "plot": {"targets": [1e22]}},
        notes=("compared fitter 'broken' could not fit these results: too few budgets",),
    )


@pytest.fixture(scope="module")
def report() -> ReportPlotter:
    return ReportPlotter(FigureConfig(targets=(1e22,)))


@pytest.fixture(scope="module")
def context(report, outcome) -> dict:
    """What the page shows (drawing its figures takes seconds: done once per module)."""
    return report.context(outcome)


@pytest.fixture(scope="module")
def html(report, context) -> str:
    return report.page(context)


def embedded_figures(html: str) -> dict[str, bytes]:
    found = re.findall(
        r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"[^>]*data-figure="([a-z]+)"',
        html,
    )
    return {name: base64.b64decode(data) for data, name in found}


def test_headline_quotes_the_largest_budget_and_each_target(context, html, outcome):
    largest = max(o.budget for o in outcome.fit.optima)
    rows = context["headline"]
    assert [float(r["compute"]) for r in rows] == pytest.approx([largest, 1e22], rel=1e-2)
    assert rows[0]["role"] == "largest budget"
    assert "beyond the budgets" in rows[1]["role"]
    for row in rows:
        expected = outcome.fit.predict(row["p"].compute)
        assert row["p"] == expected  # the same numbers `flops-fit predict` gives
    assert f"N* = {expected.params.value:.3g}" in html
    assert "95% intervals" in html


def test_every_fit_is_shown_side_by_side(context, html, outcome):
    assert [law["fitter"] for law in context["laws"]] == ["empirical", "robust"]
    for block in context["comparison"]:
        assert [fitter for fitter, _ in block["rows"]] == ["empirical", "robust"]
        for (_, shown), fit in zip(block["rows"], outcome.fits, strict=True):
            assert shown == fit.predict(shown.compute)
    for fit in outcome.fits:
        lo, hi = fit.laws["n_opt"].exponent_interval
        assert f"[{lo:.3f}, {hi:.3f}]" in html  # the exponent with its interval
        assert f"Full {fit.fitter} fit report" in html


def test_two_fits_of_one_fitter_keep_their_own_numbers(report, outcome):
    """Rows are the fits' own, by position: a second `empirical` fit (other options) must not
    replace the study's in the headline."""
    first, other = outcome.fits[0], outcome.fits[1].model_copy(update={"fitter": "empirical"})
    same = StudyOutcome(fits=(first, other), observations=outcome.observations)
    context = report.context(dataclasses.replace(same, drawn=()))
    (largest, _target) = context["headline"]
    assert largest["p"] == first.predict(largest["p"].compute)
    rows = context["comparison"][0]["rows"]
    assert rows[1][1].params.value == pytest.approx(2 * rows[0][1].params.value)


def test_figures_are_embedded_and_skipped_ones_say_why(html):
    figures = embedded_figures(html)
    # No loss curves in this data, so `curves` is the one figure left out, with its reason.
    assert set(figures) == {"isoflop", "scaling", "frontier", "parametric", "residuals"}
    for svg in figures.values():
        assert svg.startswith(b"<?xml") and b"<svg" in svg
    assert "<strong>curves</strong>" in html
    assert 'src="http' not in html and "src='http" not in html  # nothing fetched


def test_warnings_notes_and_flags_are_listed_and_escaped(html, outcome, synth):
    assert "could not fit these results: too few budgets" in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html
    flagged = synth.fit(outcome.primary_observations, flag_budgets=(synth.budgets[0],))
    groups = dict(report_warnings(StudyOutcome.single(outcome.primary_observations, flagged)))
    assert groups == {"empirical fit": ["budget 1.0e18: minimum at grid edge"]}


def test_config_and_environment_are_recorded(context, html):
    assert "[fitter]" in unescape(html) and 'name = "empirical"' in unescape(html)
    env = context["environment"]
    assert env["numpy"] == np.__version__ and env["python"]
    assert f"<td>{np.__version__}</td>" in html


def test_rendering_is_deterministic_and_written_to_the_run_dir(report, outcome, context, tmp_path):
    run_dir = tmp_path / "study"
    (path,) = report.draw(dataclasses.replace(outcome, run_dir=run_dir), tmp_path / "figures")
    assert path == run_dir / "report.html"
    assert not (tmp_path / "figures").exists()
    # Drawn again from scratch (figures included), the page is byte for byte the same.
    assert path.read_text() == report.page({**context, "title": "study"})


# --- headless Chromium ----------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "headless Chromium is not installed (.ci/run installs Debian's `chromium` where it "
        "can: apt-get install chromium)"
    )


def run_chromium(chromium: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # CI containers run as root
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_report_renders_in_headless_chromium(chromium, html, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html)
    url = page.resolve().as_uri()
    expected = set(embedded_figures(page.read_text()))

    dom = run_chromium(chromium, "--virtual-time-budget=10000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "the page logged to the console"
    loaded = dict(re.findall(r'data-figure="([a-z]+)"[^>]*data-loaded="(yes|no)"', dom.stdout))
    assert loaded == dict.fromkeys(expected, "yes"), "every figure must load"

    shot = tmp_path / "screenshot.png"
    result = run_chromium(chromium, "--window-size=1200,1800", f"--screenshot={shot}", url)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1800, 1200)
    ink = (pixels.min(axis=2) < 0.8).mean()  # share of pixels that are not (near) white
    assert ink > 0.02, f"the screenshot is blank ({ink:.2%} non-white pixels)"


def test_a_study_planned_in_rounds_shows_each_round_and_why_it_stopped(report, context):
    """The Rounds section: one row per round (what it added and why, the width it was planned
    from), the stop, and the rounds figure among the figures; none for a one-round plan."""
    from flops_fit_core import PlanRound, PlanStop, SweepPlan
    from flops_fit_core.testing import round_outcome, tiny_specs
    from flops_fit_plotters.report import _figure_names, _rounds

    specs = tiny_specs(5, budgets=(1e12, 1e12, 1e13, 1e13, 1e14))
    ids = [s.id for s in specs]
    plan = SweepPlan(
        planner="adaptive",
        experiments=specs,
        rounds=[
            PlanRound(index=1, experiments=ids[:3], note="3 runs <first>"),
            PlanRound(index=2, experiments=ids[3:], note="2 at 1e12", width=0.2, compute=3e12),
        ],
        stop=PlanStop(note="width 0.07 <= target 0.1", reached=False, width=0.07, compute=5e12),
    )
    study = dataclasses.replace(round_outcome(plan), config={"plot": {"names": []}})
    assert "rounds" in _figure_names(study)
    assert _rounds(dataclasses.replace(study, plan=None)) is None
    page = report.page({**context, "rounds": _rounds(study)})
    section = page[page.index('<section id="rounds">') : page.index('<section id="figures">')]
    assert "Stopped short of its target: width 0.07 &lt;= target 0.1" in section
    rows = re.findall(r"<tr><td class=\"num\">(\d)</td><td class=\"num\">(\d)</td>", section)
    assert rows == [("1", "3"), ("2", "2")]
    assert "3 runs &lt;first&gt;" in section and "<first>" not in section  # escaped
    assert '<td class="num">0.2</td>' in section and '<td class="num">3e+12</td>' in section
    assert '<section id="rounds">' not in report.page({**context, "rounds": None})
