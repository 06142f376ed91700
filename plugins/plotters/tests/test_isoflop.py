"""The isoflop figure shows every budget's runs and the fitter's optimum, artist by artist."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from flops_fit_core import Estimate, InputError, Observations, Optimum
from flops_fit_plotters import IsoFlopPlotter
from flops_fit_plotters.style import NEUTRAL, series_style


def by_gid(ax, prefix):
    """Artists (lines, collections) whose gid starts with `prefix`, by gid."""
    found = {}
    for artist in [*ax.lines, *ax.collections]:
        gid = artist.get_gid()
        if gid and gid.startswith(prefix):
            found.setdefault(gid, []).append(artist)
    return found


def series(ax):
    return sorted(
        (a for a in ax.lines if (a.get_gid() or "").startswith("series-")),
        key=lambda a: int(a.get_gid().split("-")[1]),
    )


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_one_series_per_budget_holding_that_budgets_runs(observations, fit, synth):
    ax = IsoFlopPlotter().figure(observations, fit).axes[0]
    lines = series(ax)
    assert len(lines) == len(observations.budgets) == len(synth.budgets)
    for line, (_, rows) in zip(lines, observations.groups(), strict=True):
        np.testing.assert_array_equal(line.get_xdata(), observations.params[rows])
        np.testing.assert_array_equal(line.get_ydata(), observations.loss[rows])
        assert np.all(np.diff(line.get_xdata()) > 0), "points are joined in order of N"
        assert line.get_linestyle() == "-" and line.get_marker() not in (None, "", "None")


def test_budgets_have_distinct_colours_and_readable_legend_entries(observations, fit):
    ax = IsoFlopPlotter().figure(observations, fit).axes[0]
    colours = [to_hex(line.get_color()) for line in series(ax)]
    assert len(set(colours)) == len(colours)
    texts = legend_texts(ax)
    for label in ("C = 1.0e18 FLOPs", "C = 1.0e19 FLOPs", "C = 1.0e20 FLOPs"):
        assert label in texts
    assert any("fitted optimum" in t and "empirical" in t for t in texts)


def test_axes_are_labelled_with_units_and_log_in_n(observations, fit):
    ax = IsoFlopPlotter().figure(observations, fit).axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_yscale() == "linear"
    assert "Parameters N" in ax.get_xlabel()
    assert "(total)" in ax.get_xlabel(), "the parameter convention is named"
    assert "loss" in ax.get_ylabel().lower() and "nats/token" in ax.get_ylabel()
    assert "empirical" in ax.get_title()


def test_each_optimum_is_starred_at_the_fitted_point_in_its_budgets_colour(observations, fit):
    ax = IsoFlopPlotter().figure(observations, fit).axes[0]
    stars = by_gid(ax, "optimum-")
    lines = series(ax)
    for i, opt in enumerate(fit.optima):
        (star,) = stars[f"optimum-{i}"]
        assert star.get_marker() == "*"
        assert list(star.get_xdata()) == [opt.params.value]
        assert list(star.get_ydata()) == [opt.loss.value]
        assert to_hex(star.get_markerfacecolor()) == to_hex(lines[i].get_color())
        assert star.get_zorder() > lines[i].get_zorder(), "the star is drawn above its curve"


def test_interval_bars_drawn_when_the_optimum_has_intervals(observations, fit):
    ax = IsoFlopPlotter().figure(observations, fit).axes[0]
    bars = by_gid(ax, "optimum-interval-")
    assert sorted(bars) == [f"optimum-interval-{i}" for i in range(len(fit.optima))]
    # The horizontal bar spans the params interval exactly.
    segments = [
        seg
        for art in bars["optimum-interval-0"]
        if hasattr(art, "get_segments")
        for seg in art.get_segments()
    ]
    lo, hi = fit.optima[0].params.interval
    assert any(np.allclose(sorted(seg[:, 0]), [lo, hi]) for seg in segments)
    assert any("bars: its interval" in t for t in legend_texts(ax))


def test_no_interval_bars_when_the_fit_has_none(observations, fit_without_intervals):
    ax = IsoFlopPlotter().figure(observations, fit_without_intervals).axes[0]
    assert not by_gid(ax, "optimum-interval-")
    assert len(by_gid(ax, "optimum-")) == len(fit_without_intervals.optima)
    assert not any("interval" in t for t in legend_texts(ax))


def test_flagged_optimum_is_hollow_and_explained(observations, synth):
    fit = synth.fit(observations, flag_budgets=(synth.budgets[0],))
    ax = IsoFlopPlotter().figure(observations, fit).axes[0]
    stars = by_gid(ax, "optimum-")
    assert to_hex(stars["optimum-0"][0].get_markerfacecolor()) == "#ffffff"
    assert to_hex(stars["optimum-1"][0].get_markerfacecolor()) != "#ffffff"
    assert any("flagged" in t for t in legend_texts(ax))


def test_optima_match_budgets_despite_float_noise_and_extras_stay_visible(observations, fit, synth):
    noisy = [o.model_copy(update={"budget": o.budget * (1 + 1e-12)}) for o in fit.optima]
    orphan = Optimum(
        budget=1e21,
        params=Estimate(value=2e9),
        tokens=Estimate(value=8e10),
        loss=Estimate(value=2.3),
        n_runs=0,
    )
    ax = (
        IsoFlopPlotter()
        .figure(observations, fit.model_copy(update={"optima": [*noisy, orphan]}))
        .axes[0]
    )
    stars = by_gid(ax, "optimum-")
    assert {f"optimum-{i}" for i in range(len(synth.budgets))} <= set(stars)
    (lonely,) = stars["optimum-unmatched-0"]
    assert to_hex(lonely.get_markerfacecolor()) == to_hex(NEUTRAL)
    assert any("without runs" in t for t in legend_texts(ax))


def test_many_budgets_never_share_colour_and_marker(synth):
    obs = synth.observations(np.geomspace(1e17, 1e22, 11), sizes_per_budget=3)
    ax = IsoFlopPlotter().figure(obs, synth.fit(obs, with_intervals=False)).axes[0]
    styles = {(to_hex(line.get_color()), line.get_marker()) for line in series(ax)}
    assert len(styles) == 11
    assert "#f0e442" not in {colour for colour, _ in styles}, "no yellow on white"
    assert series_style(0) != series_style(len(styles))


def test_a_fit_without_optima_is_a_clear_input_error(observations, fit):
    with pytest.raises(InputError, match="no per-budget optima"):
        IsoFlopPlotter().figure(observations, fit.model_copy(update={"optima": []}))


def test_optima_that_cannot_go_on_a_log_axis_are_an_input_error(observations, fit):
    bad = [o.model_copy(update={"params": Estimate(value=float("nan"))}) for o in fit.optima]
    with pytest.raises(InputError, match="finite positive"):
        IsoFlopPlotter().figure(observations, fit.model_copy(update={"optima": bad}))


def test_no_runs_is_a_clear_input_error(fit):
    empty = Observations(
        budget=np.array([]),
        params=np.array([]),
        tokens=np.array([]),
        compute=np.array([]),
        loss=np.array([]),
        ids=(),
        source="results.jsonl",
    )
    with pytest.raises(InputError, match=r"no finished runs.*results\.jsonl"):
        IsoFlopPlotter().figure(empty, fit)


def test_the_fits_model_of_each_valley_is_drawn_through_the_runs(observations, fit):
    """A quadratic fit's parabolas (in ln N), or a parametric law along each budget's
    iso-FLOP line, drawn dashed in the budget's colour; an empirical fit draws none."""
    (ax,) = IsoFlopPlotter().figure(observations, fit).axes
    assert not by_gid(ax, "model-")
    parabolas = []
    for budget, rows in observations.groups():
        x = np.log(observations.params[rows])
        c2, c1, c0 = np.polyfit(x - x.mean(), observations.loss[rows], 2)
        parabolas.append(
            {
                "budget": budget,
                "fitted": True,
                "centre_ln_n": float(x.mean()),
                "coefficients": [float(c0), float(c1), float(c2)],
            }
        )
    quadratic = fit.model_copy(
        update={"fitter": "quadratic", "diagnostics": {"parabolas": parabolas}}
    )
    (ax,) = IsoFlopPlotter().figure(observations, quadratic).axes
    models = by_gid(ax, "model-")
    assert len(models) == len(parabolas)
    for i, entry in enumerate(parabolas):
        (line,) = models[f"model-{i}"]
        assert line.get_linestyle() == "--"
        assert to_hex(line.get_color()) == to_hex(series_style(i)[0])
        u = np.log(line.get_xdata()) - entry["centre_ln_n"]
        c0, c1, c2 = entry["coefficients"]
        np.testing.assert_allclose(line.get_ydata(), c0 + c1 * u + c2 * u * u, rtol=1e-12)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "parabola in ln N per budget (quadratic)" in labels


def test_a_flagged_budget_is_named_in_the_legend(observations, synth):
    flagged = synth.fit(observations, flag_budgets=(synth.budgets[1],))
    (ax,) = IsoFlopPlotter().figure(observations, flagged).axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "C = 1.0e19 FLOPs (minimum at grid edge)" in labels
    assert "C = 1.0e18 FLOPs" in labels
