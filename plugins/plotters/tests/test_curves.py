"""The curves figure: eval loss during training, a panel per budget, coloured by model size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from matplotlib.colors import LogNorm, to_hex

from flops_fit_core import InputError, NothingToDraw
from flops_fit_plotters.curves import NO_CURVES, CurvesPlotter, curve_colours


def gid(ax, name):
    return [a for a in ax.lines if a.get_gid() == name]


def panels(fig):
    """The budget panels (not the colour bar), in drawing order."""
    return [ax for ax in fig.axes if ax.get_title().startswith("C = ")]


def with_curves(obs, points: int = 8, skip=()):
    """Observations with a falling curve per run ending at its final loss; rows in `skip`
    have none."""
    curves = []
    for i in range(len(obs)):
        if i in skip:
            curves.append(None)
            continue
        tokens = np.geomspace(obs.tokens[i] / 100, obs.tokens[i], points)
        loss = obs.loss[i] + 2.0 * (obs.tokens[i] / tokens) ** 0.2 - 2.0
        curves.append([(float(t), float(v)) for t, v in zip(tokens, loss, strict=True)])
    return dataclasses.replace(obs, curves=tuple(curves))


def test_no_curves_is_nothing_to_draw(observations, fit):
    assert "curve_points > 0" in NO_CURVES
    with pytest.raises(NothingToDraw, match="no run recorded a loss curve"):
        CurvesPlotter().figure(observations, fit)  # curves=()
    empty = dataclasses.replace(observations, curves=(None,) * len(observations))
    with pytest.raises(NothingToDraw) as info:
        CurvesPlotter().figure(empty, fit)
    assert isinstance(info.value, InputError) and str(info.value) == NO_CURVES


def test_one_log_log_panel_per_budget_with_shared_axes(observations, fit, synth):
    fig = CurvesPlotter().figure(with_curves(observations), fit)
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == [
        "C = 1.0e18 FLOPs (5 runs)",
        "C = 1.0e19 FLOPs (5 runs)",
        "C = 1.0e20 FLOPs (5 runs)",
    ]
    for ax in axes:
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
        assert ax.get_shared_x_axes().joined(ax, axes[0])
        assert ax.get_shared_y_axes().joined(ax, axes[0])
    assert fig.get_supxlabel() == "Tokens trained D"
    assert fig.get_supylabel() == "Eval loss (nats/token)"
    assert fig.get_suptitle() == "Loss curves by compute budget"
    assert len(synth.budgets) == len(axes)


def test_each_run_has_its_curve_and_final_point(observations, fit):
    obs = with_curves(observations)
    axes = panels(CurvesPlotter().figure(obs, fit))
    for ax, (_, rows) in zip(axes, obs.groups(), strict=True):
        curves = [a for a in ax.lines if (a.get_gid() or "").startswith("curve-")]
        assert len(curves) == len(rows)
        for row in rows:
            run = obs.ids[row]
            (line,) = gid(ax, f"curve-{run}")
            expected = np.array(obs.curves[row])
            np.testing.assert_allclose(line.get_xdata(), expected[:, 0])
            np.testing.assert_allclose(line.get_ydata(), expected[:, 1])
            (final,) = gid(ax, f"final-{run}")
            assert list(final.get_xdata()) == [obs.tokens[row]]
            assert list(final.get_ydata()) == [obs.loss[row]]
            assert to_hex(final.get_color()) == to_hex(line.get_color())


def test_colour_is_model_size_on_one_scale_with_a_colour_bar(observations, fit):
    obs = with_curves(observations)
    fig = CurvesPlotter().figure(obs, fit)
    norm = LogNorm(vmin=obs.params.min(), vmax=obs.params.max())
    cmap = curve_colours()
    for ax in panels(fig):
        for line in ax.lines:
            if (line.get_gid() or "").startswith("curve-"):
                row = obs.ids.index(line.get_gid().removeprefix("curve-"))
                assert to_hex(line.get_color()) == to_hex(cmap(norm(obs.params[row])))
    colours = {to_hex(cmap(norm(n))) for n in obs.params}
    assert len(colours) > len(obs.params) // 2, "sizes are told apart"
    assert to_hex(cmap(1.0)) != "#fde725", "viridis' palest yellow is cut"
    (bar,) = [ax for ax in fig.axes if ax not in panels(fig)]
    assert bar.get_ylabel() == "Parameters N (total)"
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["eval loss during training", "final eval loss (what the fit reads)"]


def test_runs_without_a_curve_are_skipped_and_counted(observations, fit):
    first_budget_rows = {int(r) for r in observations.groups()[0][1]}
    obs = with_curves(observations, skip=first_budget_rows | {len(observations) - 1})
    fig = CurvesPlotter().figure(obs, fit)
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == [
        "C = 1.0e19 FLOPs (5 runs)",
        "C = 1.0e20 FLOPs (4 runs)",
    ], "a budget without curves gets no panel"
    shown = len(obs) - len(first_budget_rows) - 1
    assert fig.get_suptitle().endswith(f"{shown} of {len(obs)} runs recorded one")
    assert not gid(axes[1], f"curve-{obs.ids[-1]}")


def test_bad_points_are_dropped_and_unsorted_curves_sorted(observations, fit):
    obs = with_curves(observations)
    curves = list(obs.curves)
    good = curves[0]
    curves[0] = [*reversed(good), (float("nan"), 3.0), (0.0, 3.0), (1e9, float("inf"))]
    curves[1] = [(float("nan"), 1.0)]  # nothing usable: skipped like None
    obs = dataclasses.replace(obs, curves=tuple(curves))
    ax = panels(CurvesPlotter().figure(obs, fit))[0]
    (line,) = gid(ax, f"curve-{obs.ids[0]}")
    np.testing.assert_allclose(line.get_xdata(), [t for t, _ in good])
    assert not gid(ax, f"curve-{obs.ids[1]}")


def test_many_budgets_wrap_into_rows_of_four(synth, fit):
    obs = with_curves(synth.observations(np.geomspace(1e17, 1e20, 7), sizes_per_budget=12))
    fig = CurvesPlotter().figure(obs, fit)
    axes = panels(fig)
    assert len(axes) == 7 and len(obs) == 84
    cols = {ax.get_subplotspec().colspan.start for ax in axes}
    rows = {ax.get_subplotspec().rowspan.start for ax in axes}
    assert cols == {0, 1, 2, 3} and rows == {0, 1}
    # The panel above the empty cell is the lowest of its column: it shows its x ticks.
    (above_gap,) = [
        ax
        for ax in axes
        if ax.get_subplotspec().rowspan.start == 0 and ax.get_subplotspec().colspan.start == 3
    ]
    assert above_gap.xaxis.get_tick_params()["labelbottom"]
    top_left = axes[0]
    assert not top_left.xaxis.get_tick_params()["labelbottom"], "inner panels share the bottom's"


def test_a_single_model_size_still_draws(synth, fit):
    obs = synth.observations((1e18,), sizes_per_budget=1)
    fig = CurvesPlotter().figure(with_curves(obs, points=1), fit)
    (ax,) = panels(fig)
    (line,) = gid(ax, f"curve-{obs.ids[0]}")
    assert line.get_marker() == ".", "a one-point curve shows as a point"


def test_plot_writes_png_and_svg(observations, fit, tmp_path):
    paths = CurvesPlotter({"dpi": 40}).plot(with_curves(observations), fit, tmp_path)
    assert paths == [tmp_path / "curves.png", tmp_path / "curves.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and b"<svg" in paths[1].read_bytes()


def test_the_colour_bar_does_not_make_the_svg_differ_between_draws(observations, fit, tmp_path):
    """The colour bar is an embedded raster whose SVG id matplotlib salts at random: renamed
    like the others, so a report rebuilt from the same study is the same bytes."""
    first, second = (
        CurvesPlotter({"formats": ["svg"], "dpi": 40}).plot(
            with_curves(observations), fit, tmp_path / d
        )
        for d in ("a", "b")
    )
    assert b'id="image' in first[0].read_bytes()
    assert first[0].read_bytes() == second[0].read_bytes()
