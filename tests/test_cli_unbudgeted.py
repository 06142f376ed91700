"""Observations without budgets (issue 11, point 2): a table whose compute is continuous.

Runs trained at arbitrary compute (no two at the same C) lie on no budget grid. `robust` fits
every run without budgets and reports its optima at log-spaced C; `plot` and `report` draw
it; the fitters that need budgets refuse with one line naming both remedies, `--map
budget=COLUMN` and `--group-tolerance P`, and the latter makes them fit.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from flops_fit_core.grouping import group_by_tolerance
from flops_fit_core.tables import read_table
from flops_fit_core.testing import CHINCHILLA
from tests.clirunner import assert_one_line_error, flops_fit, snapshot

ROOT = Path(__file__).resolve().parents[1]
#: The table docs/cli.md fits (`unbudgeted_table(seed=0)`, written with `--write` below).
DOCUMENTED = ROOT / "tests/data/unbudgeted/runs.csv"


def unbudgeted_table(path: Path, n: int = 200, seed: int = 0, noise: float = 0.002) -> Path:
    """`n` runs of Chinchilla's law (`CHINCHILLA`, C = 6ND) with C log-uniform over 1e18 to
    1e21 (three decades, no two runs at one C), N within 6x either side of N*(C), D = C/(6N),
    loss times exp(noise z); columns N, C, loss (no budget)."""
    rng = np.random.default_rng(seed)
    compute = np.exp(rng.uniform(np.log(1e18), np.log(1e21), n))
    params = CHINCHILLA.n_opt(compute) * np.exp(rng.uniform(-np.log(6), np.log(6), n))
    loss = CHINCHILLA.loss(params, compute / (6 * params)) * np.exp(noise * rng.normal(size=n))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["N", "C", "loss"])
        for row in zip(params, compute, loss, strict=True):
            writer.writerow([f"{v:.6g}" for v in row])
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return unbudgeted_table(tmp_path_factory.mktemp("unbudgeted") / "runs.csv")


@pytest.fixture(scope="module")
def robust_fit(table) -> dict:
    """`flops-fit fit runs.csv --fitter robust` (in-process), as fit.json."""
    from flops_fit_core.cli import main

    out = table.parent / "study" / "fit.json"
    assert main(["-q", "fit", str(table), "--fitter", "robust", "-o", str(out)]) == 0
    return json.loads(out.read_text())


def test_the_documented_table_is_this_generator(tmp_path):
    assert unbudgeted_table(tmp_path / "runs.csv").read_text() == DOCUMENTED.read_text()


def test_a_table_off_any_grid_loads_without_budgets(table):
    obs = read_table(table)
    assert len(np.unique(obs.compute)) == len(obs) == 200
    assert not obs.has_budgets and obs.budget is None and obs.budgets.size == 0
    assert "no clearly separated budgets" in obs.no_budgets
    notes = [w for w in obs.warnings if w.startswith("no budgets: ")]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "--group-tolerance P" in notes[0] and "--map budget=COLUMN" in notes[0]


def test_a_grid_of_budgets_is_still_grouped(tmp_path):
    """Today's rule where it clearly works: 4 budgets of 5 runs each, C within 0.3%."""
    rng = np.random.default_rng(3)
    rows = [
        [f"{1e8 * (i + 1):.6g}", f"{c * (1 + rng.uniform(-0.003, 0.003)):.10g}", "3"]
        for c in (1e18, 1e19, 1e20, 1e21)
        for i in range(5)
    ]
    path = tmp_path / "grid.csv"
    path.write_text("N,C,loss\n" + "".join(",".join(r) + "\n" for r in rows))
    obs = read_table(path)
    assert obs.has_budgets and len(obs.budgets) == 4 and not obs.warnings[1:]


def test_one_run_per_compute_has_no_budgets(tmp_path):
    """Clear gaps, but every run alone at its C: one-run "budgets" are no budgets."""
    path = tmp_path / "spread.csv"
    path.write_text("N,C,loss\n" + "".join(f"{i + 1}e8,{2**i}e18,3\n" for i in range(8)))
    obs = read_table(path)
    assert not obs.has_budgets
    assert "8 of 8 runs are alone at their C" in obs.no_budgets


def test_group_by_tolerance_starts_a_budget_past_p_percent_of_its_smallest():
    compute = np.array([1.3, 1.0, 2.0, 1.2, 1.26, 2.4])
    budget = group_by_tolerance(compute, 25)
    groups = {float(b): sorted(compute[budget == b]) for b in np.unique(budget)}
    assert list(groups.values()) == [[1.0, 1.2], [1.26, 1.3], [2.0, 2.4]]
    for members, b in zip(groups.values(), groups, strict=True):
        assert b == pytest.approx(np.exp(np.mean(np.log(members))))  # the geometric mean


def test_robust_fits_every_run_and_recovers_the_law(robust_fit):
    """The truth lies within the fit's own 95% intervals: a and b of N*, D* ~ C^a, C^b and
    alpha, beta of L(N, D) = E + A/N^alpha + B/D^beta."""
    truth = {"n_opt": CHINCHILLA.a, "d_opt": CHINCHILLA.b}
    for name, value in truth.items():
        lo, hi = robust_fit["laws"][name]["exponent_interval"]
        assert lo <= value <= hi, (name, value, lo, hi)
    for name in ("alpha", "beta"):
        lo, hi = robust_fit["parametric"][name]["interval"]
        assert lo <= getattr(CHINCHILLA, name) <= hi, (name, lo, hi)
    optima = [o["budget"] for o in robust_fit["optima"]]
    assert len(optima) == 6
    assert optima[0] == pytest.approx(1e18, rel=0.05)
    assert optima[-1] == pytest.approx(1e21, rel=0.05)
    np.testing.assert_allclose(np.diff(np.log(optima)), np.log(optima[1] / optima[0]))
    assert sum(o["n_runs"] for o in robust_fit["optima"]) == 200
    assert robust_fit["diagnostics"]["n_points_used"] == 200
    assert robust_fit["diagnostics"]["n_budgets"] == 0


def test_the_report_says_where_the_optima_are(capsys, table, robust_fit):
    from flops_fit_core import FitResult

    text = FitResult.model_validate(robust_fit).report()
    assert "budgets:     6 (the data has none: optima at log-spaced C across the runs)" in text
    assert "optima_at: 6 log-spaced C from 1" in text


def test_plot_and_report_draw_a_fit_without_budgets(capsys, table, robust_fit):
    study = table.parent / "study"
    outcome = flops_fit(
        capsys, "plot", table, study / "fit.json", "-o", study / "figures",
        "--set", 'plot.formats=["svg"]',
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    drawn = {Path(line).name for line in outcome.out.split()}
    assert {"isoflop.svg", "scaling.svg", "frontier.svg", "parametric.svg"} <= drawn
    assert "residuals.svg" in drawn
    assert "figure 'curves' skipped: no run recorded a loss curve" in outcome.err
    outcome = flops_fit(capsys, "report", study, "--results", table)
    assert outcome.code == 0, outcome.err
    page = (study / "report.html").read_text()
    assert "200 finished runs without budgets (C from 1.0e18 to 9.8e20 FLOPs)" in page


def test_the_isoflop_figure_colours_runs_by_compute(table, robust_fit):
    from matplotlib.collections import PathCollection

    from flops_fit_core import FitResult
    from flops_fit_plotters.isoflop import IsoFlopPlotter

    obs = read_table(table)
    fig = IsoFlopPlotter().figure(obs, FitResult.model_validate(robust_fit))
    ax = fig.axes[0]
    (runs,) = [c for c in ax.collections if c.get_gid() == "runs"]
    assert isinstance(runs, PathCollection) and len(runs.get_offsets()) == 200
    np.testing.assert_array_equal(runs.get_array(), obs.compute)  # colour = C
    assert len(fig.axes) == 2  # the axes and its colour bar
    assert "Compute C" in fig.axes[1].get_xlabel()
    valleys = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("model-")]
    assert len(valleys) == 6
    for line, opt in zip(valleys, robust_fit["optima"], strict=True):
        n, loss = line.get_data()  # the valley's bottom is the reported optimum
        assert n[np.argmin(loss)] == pytest.approx(opt["params"]["value"], rel=0.05)


def test_quadratic_refuses_naming_both_remedies(capsys, table):
    before = snapshot(table.parent)
    out = table.parent / "q.json"
    outcome = flops_fit(capsys, "fit", table, "--fitter", "quadratic", "-o", out)
    assert_one_line_error(
        outcome,
        "the quadratic fitter needs each run's compute budget",
        "--map budget=COLUMN",
        "--group-tolerance P",
    )
    assert snapshot(table.parent) == before


@pytest.mark.parametrize("fitter", ["quadratic", "empirical"])
def test_group_tolerance_makes_them_fit(capsys, table, fitter):
    out = table.parent / f"{fitter}-grouped.json"
    args = ("fit", table, "--fitter", fitter, "--group-tolerance", "25", "-o", out)
    outcome = flops_fit(capsys, *args)
    assert outcome.code == 0, outcome.err
    assert "(runs whose C lie within 25% grouped: --group-tolerance 25)" in outcome.out
    fit = json.loads(out.read_text())
    assert fit["settings"]["group_tolerance"] == 25.0  # recorded, and read back by plot
    budgets = np.array([o["budget"] for o in fit["optima"]])
    assert np.all(budgets[1:] / budgets[:-1] > 1.0)
    obs = read_table(table, group_tolerance=25)
    for b in obs.budgets:
        c = obs.compute[obs.budget == b]
        assert c.max() <= c.min() * 1.25
    plotted = flops_fit(
        capsys, "plot", table, out, "--plotter", "isoflop", "-o", table.parent / fitter,
        "--set", 'plot.formats=["png"]',
    )  # fmt: skip
    assert plotted.code == 0, plotted.err


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--group-tolerance", "0"], ["must be a positive percentage"]),
        (["--group-tolerance", "25", "--map", "budget=C"], ["has a budget column ('C')"]),
    ],
)
def test_bad_group_tolerance(capsys, table, extra, needles):
    outcome = flops_fit(capsys, "fit", table, "--fitter", "quadratic", *extra)
    assert outcome.code == 2
    assert all(n in outcome.err for n in needles), outcome.err


if __name__ == "__main__":  # python -m tests.test_cli_unbudgeted --write: the documented table
    import sys

    if sys.argv[1:] == ["--write"]:
        DOCUMENTED.parent.mkdir(parents=True, exist_ok=True)
        unbudgeted_table(DOCUMENTED)
