"""The parametric figure: contours of L(N, D), iso-FLOP lines, runs, optima, frontier, targets."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from flops_fit_core import Estimate, InputError, NothingToDraw, PowerLaw, StudyOutcome
from flops_fit_plotters.parametric import (
    MAX_CONTOURS,
    MAX_ZOOM_OUT,
    ParametricPlotter,
    contour_levels,
    flops_per_param_token,
)
from flops_fit_plotters.surfaces import parametric_loss

#: Chinchilla's fitted law (Hoffmann et al. 2022), the one the synthetic runs are drawn from.
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def with_law(fit, fitter="robust", **estimates):
    law = {k: estimates.get(k, Estimate(value=v)) for k, v in CHINCHILLA.items()}
    return fit.model_copy(update={"parametric": law, "fitter": fitter})


@pytest.fixture
def robust(fit):
    return with_law(fit)


def gid(ax, name):
    return [a for a in [*ax.lines, *ax.collections, *ax.texts] if a.get_gid() == name]


def gid_prefix(ax, prefix):
    return [a for a in [*ax.lines, *ax.collections, *ax.texts] if (a.get_gid() or "") == prefix]


def main_axes(fig):
    return fig.axes[0]


def contours(ax):
    (found,) = gid(ax, "contours")
    return found


def runs_of(ax, n):
    return [gid(ax, f"runs-{i}")[0] for i in range(n)]


def legend_texts(fig):
    return [t.get_text() for t in fig.legends[0].get_texts()]


def inside(ax, x, y):
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    return x0 <= x <= x1 and y0 <= y <= y1


def test_log_log_plane_labelled_with_units(observations, robust):
    fig = ParametricPlotter().figure(observations, robust)
    ax = main_axes(fig)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "Parameters N (total)"
    assert ax.get_ylabel() == "Training tokens D"
    assert fig.get_suptitle() == "Parametric fit L(N, D) — robust"
    colour_bar = fig.axes[1]
    assert colour_bar.get_ylabel() == "Fitted loss L(N, D) (nats/token)"


def test_subtitle_gives_the_fitted_parameters(observations, robust, fit):
    ax = main_axes(ParametricPlotter().figure(observations, robust))
    title = ax.get_title(loc="left")
    for text in ("E = 1.69", "A = 406", "B = 411", r"\alpha = 0.34", r"\beta = 0.28"):
        assert text in title
    assert "intervals" not in title, "no intervals were given"

    with_iv = with_law(fit, A=Estimate(value=406.4, interval=(120.0, 1990.96)))
    with_iv = with_iv.model_copy(update={"settings": {"confidence": 0.95}})
    title = main_axes(ParametricPlotter().figure(observations, with_iv)).get_title(loc="left")
    assert r"95% intervals:  $A\ [120,\ 1991]$" in title


def test_contours_are_level_sets_of_the_fitted_law(observations, robust):
    fig = ParametricPlotter().figure(observations, robust)
    ax = main_axes(fig)
    lines = contours(ax)
    levels = np.asarray(lines.levels)
    assert 8 <= len(levels) <= MAX_CONTOURS
    assert np.all(np.diff(levels) > 0)
    for level, path in zip(levels, lines.get_paths(), strict=True):
        vertices = path.vertices
        assert len(vertices), f"level {level} does not cross the plot"
        loss = parametric_loss(CHINCHILLA, vertices[:, 0], vertices[:, 1])
        np.testing.assert_allclose(loss, level, rtol=2e-4)
    # Spaced evenly in the reducible loss, up to rounding for readable labels.
    steps = np.diff(np.log(levels - CHINCHILLA["E"]))
    assert steps.max() / steps.min() < 1.5
    # The levels span the loss of the runs' region: each run lies between two of them.
    run_loss = parametric_loss(CHINCHILLA, observations.params, observations.tokens)
    assert levels[0] < np.median(run_loss) < levels[-1]
    (filled,) = gid(ax, "contours-filled")
    np.testing.assert_array_equal(filled.levels, levels)
    labels = {t.get_text() for t in gid(ax, "contour-label")}
    assert labels and {float(t) for t in labels} <= set(levels)
    ticks = fig.axes[1].get_yticks()
    np.testing.assert_allclose(sorted(ticks), levels)


def test_contour_levels_round_and_reach_the_floor():
    n, d = np.meshgrid(np.geomspace(1e7, 1e9, 50), np.geomspace(1e8, 1e10, 50))
    loss = parametric_loss(CHINCHILLA, n, d)
    levels, decimals = contour_levels(CHINCHILLA, loss)
    assert len(levels) == 10 and len(decimals) == 10
    assert all(round(lv, dec) == lv for lv, dec in zip(levels, decimals, strict=True))
    assert levels[0] > loss.min() and levels[-1] < loss.max()
    floor = 1.75  # the loss far out on the frontier, below anything near the runs
    deeper, _ = contour_levels(CHINCHILLA, loss, floor=floor)
    assert 10 < len(deeper) <= MAX_CONTOURS
    assert deeper[0] == pytest.approx(floor, abs=0.01)
    assert deeper[-1] == pytest.approx(levels[-1], abs=0.01)


def test_one_isoflop_line_per_budget_at_the_datas_flops_per_param_token(observations, robust):
    ax = main_axes(ParametricPlotter().figure(observations, robust))
    budgets = [b for b, _ in observations.groups()]
    lines = [a for a in ax.lines if (a.get_gid() or "").startswith("isoflop-")]
    assert len(lines) == len(budgets)
    for i, budget in enumerate(budgets):
        (line,) = gid(ax, f"isoflop-{i}")
        n, d = line.get_xdata(), line.get_ydata()
        np.testing.assert_allclose(n * d * 6.0, budget, rtol=1e-12)
        assert n[0] == pytest.approx(ax.get_xlim()[0]) and n[-1] == pytest.approx(ax.get_xlim()[1])


def test_isoflop_k_is_the_median_of_the_datas_c_over_nd(observations, robust):
    exact = dataclasses.replace(observations, compute=observations.compute * (7.3 / 6.0))
    assert flops_per_param_token(exact) == pytest.approx(7.3)
    ax = main_axes(ParametricPlotter().figure(exact, robust))
    for i, (budget, _) in enumerate(exact.groups()):
        (line,) = gid(ax, f"isoflop-{i}")
        np.testing.assert_allclose(line.get_xdata() * line.get_ydata() * 7.3, budget, rtol=1e-12)


def test_isoflop_lines_pass_through_runs_whose_flops_per_param_token_varies(observations, robust):
    """Under the exact count, small models spend more FLOPs per parameter-token: each budget's
    line follows its own runs' k, so every run sits on its line."""
    k = 6.0 * (1.0 + 2e3 / np.sqrt(observations.params))  # larger for smaller models
    exact = dataclasses.replace(observations, compute=observations.params * observations.tokens * k)
    ax = main_axes(ParametricPlotter().figure(exact, robust))
    for i, (budget, rows) in enumerate(exact.groups()):
        (line,) = gid(ax, f"isoflop-{i}")
        on_line = np.interp(
            np.log(exact.params[rows]), np.log(line.get_xdata()), np.log(line.get_ydata())
        )
        expected = np.log(budget / (k[rows] * exact.params[rows]))
        np.testing.assert_allclose(on_line, expected, atol=2e-3)


def test_isoflop_labels_name_the_budget_and_sit_on_their_line(observations, robust):
    fig = ParametricPlotter().figure(observations, robust)
    ax = main_axes(fig)
    (lx0, lx1), (ly0, ly1) = (np.log10(ax.get_xlim()), np.log10(ax.get_ylim()))
    labels = ("1.0e18", "1.0e19", "1.0e20")
    for i, (budget, label) in enumerate(zip(observations.budgets, labels, strict=True)):
        (text,) = gid(ax, f"isoflop-label-{i}")
        assert text.get_text() == f"C = {label}"
        ux, uy = text.get_position()  # axes coordinates
        n, d = 10 ** (lx0 + ux * (lx1 - lx0)), 10 ** (ly0 + uy * (ly1 - ly0))
        assert n * d * 6.0 == pytest.approx(budget, rel=1e-9)


def test_frontier_follows_the_laws_and_extrapolates_a_decade(observations, robust):
    fig = ParametricPlotter().figure(observations, robust)
    ax = main_axes(fig)
    n_law, d_law = robust.laws["n_opt"], robust.laws["d_opt"]
    (line,) = gid(ax, "frontier")
    (beyond,) = gid(ax, "frontier-extrapolated")
    lo, hi = min(observations.budgets), max(observations.budgets)
    for artist, (c0, c1) in ((line, (lo, hi)), (beyond, (hi, 10 * hi))):
        n, d = artist.get_xdata(), artist.get_ydata()
        c = (n / n_law.coefficient) ** (1 / n_law.exponent)  # invert N*(C)
        np.testing.assert_allclose(d, d_law.predict(c), rtol=1e-9)
        assert c[0] == pytest.approx(c0) and c[-1] == pytest.approx(c1)
    assert line.get_linewidth() > 2 and beyond.get_linestyle() == "--"
    assert inside(ax, beyond.get_xdata()[-1], beyond.get_ydata()[-1])
    assert "frontier extrapolated to C = 1.0e21" in legend_texts(fig)


def test_runs_and_optima_are_plotted(observations, robust):
    ax = main_axes(ParametricPlotter().figure(observations, robust))
    groups = observations.groups()
    runs = runs_of(ax, len(groups))
    assert sum(len(r.get_xdata()) for r in runs) == len(observations)
    for points, (_, rows) in zip(runs, groups, strict=True):
        np.testing.assert_array_equal(points.get_xdata(), observations.params[rows])
        np.testing.assert_array_equal(points.get_ydata(), observations.tokens[rows])
        assert points.get_linestyle() == "None"
    for i, opt in enumerate(robust.optima):
        (star,) = gid(ax, f"optimum-{i}")
        assert (star.get_xdata()[0], star.get_ydata()[0]) == (opt.params.value, opt.tokens.value)
        assert star.get_marker() == "*"
    assert all(
        inside(ax, n, d) for n, d in zip(observations.params, observations.tokens, strict=True)
    )


def test_flagged_optimum_is_hollow(observations, synth):
    fit = with_law(synth.fit(observations, flag_budgets=(synth.budgets[0],)))
    fig = ParametricPlotter().figure(observations, fit)
    (star,) = gid(main_axes(fig), "optimum-0")
    assert star.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))
    assert "flagged optimum (see fit warnings)" in legend_texts(fig)


def test_targets_are_marked_on_the_frontier(observations, robust):
    targets = (1e21, 1e22)
    fig = ParametricPlotter({"targets": targets}).figure(observations, robust)
    ax = main_axes(fig)
    for j, target in enumerate(targets):
        (marker,) = gid(ax, f"target-{j}")
        n, d = marker.get_xdata()[0], marker.get_ydata()[0]
        assert n == pytest.approx(robust.laws["n_opt"].predict(target))
        assert d == pytest.approx(robust.laws["d_opt"].predict(target))
        assert inside(ax, n, d)
        (label,) = gid(ax, f"target-label-{j}")
        assert label.get_text().startswith(f"C = {target:.1e}".replace("e+", "e"))
    (beyond,) = gid(ax, "frontier-extrapolated")
    c_end = (beyond.get_xdata()[-1] / robust.laws["n_opt"].coefficient) ** (
        1 / robust.laws["n_opt"].exponent
    )
    assert c_end == pytest.approx(1e22)
    assert "target compute budget on the frontier" in legend_texts(fig)
    assert not gid(ax, "notes")


def test_a_target_too_far_out_is_noted_not_drawn(observations, robust):
    fig = ParametricPlotter({"targets": (1e21, 1e40)}).figure(observations, robust)
    ax = main_axes(fig)
    assert gid(ax, "target-0") and not gid(ax, "target-1")
    (note,) = gid(ax, "notes")
    assert "target C = 1.0e40 is off the figure" in note.get_text()
    # The runs keep a readable share of each axis.
    for values, lim in ((observations.params, ax.get_xlim()), (observations.tokens, ax.get_ylim())):
        runs_span = math.log10(values.max() / values.min())
        assert math.log10(lim[1] / lim[0]) <= max(MAX_ZOOM_OUT * runs_span, runs_span + 2) + 1.5


def test_unusable_laws_leave_out_the_frontier_not_the_surface(observations, robust):
    laws = dict(robust.laws, d_opt=PowerLaw(coefficient=float("nan"), exponent=0.5))
    fit = robust.model_copy(update={"laws": laws})
    ax = main_axes(ParametricPlotter({"targets": (1e21,)}).figure(observations, fit))
    assert not gid(ax, "frontier") and not gid(ax, "target-0")
    assert gid(ax, "contours") and gid(ax, "runs-0")
    (note,) = gid(ax, "notes")
    assert "frontier not drawn" in note.get_text()


def test_a_fit_without_a_parametric_law_has_nothing_to_draw(observations, fit):
    with pytest.raises(NothingToDraw, match="'empirical' fit has no parametric law"):
        ParametricPlotter().figure(observations, fit)
    outcome = StudyOutcome(fits=(fit, fit), observations=(observations, observations))
    with pytest.raises(NothingToDraw, match="no fit of this study has a parametric law"):
        ParametricPlotter().figure_for(outcome)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("alpha", -0.1, "non-positive alpha"), ("B", float("nan"), "non-finite")],
)
def test_an_unusable_parametric_law_is_an_input_error(observations, fit, key, value, message):
    bad = with_law(fit, **{key: Estimate(value=value)})
    with pytest.raises(InputError, match=message) as caught:
        ParametricPlotter().figure(observations, bad)
    assert not isinstance(caught.value, NothingToDraw)
    assert "\n" not in str(caught.value)


def test_figure_for_picks_the_first_parametric_fit_with_its_data(observations, fit, synth):
    quadratic = fit.model_copy(update={"fitter": "quadratic"})
    other = synth.observations(synth.budgets, sizes_per_budget=4, seed=1)
    robust = with_law(synth.fit(other), fitter="robust")
    second = with_law(fit, fitter="another")
    outcome = StudyOutcome(
        fits=(quadratic, robust, second), observations=(observations, other, observations)
    )
    fig = ParametricPlotter().figure_for(outcome)
    assert fig.get_suptitle() == "Parametric fit L(N, D) — robust"
    runs = runs_of(main_axes(fig), len(other.groups()))
    assert sum(len(r.get_xdata()) for r in runs) == len(other) != len(observations)


def test_plot_writes_png_and_svg(tmp_path, observations, robust):
    paths = ParametricPlotter().plot(observations, robust, tmp_path)
    assert paths == [tmp_path / "parametric.png", tmp_path / "parametric.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert b"<svg" in paths[1].read_bytes()[:1000]
