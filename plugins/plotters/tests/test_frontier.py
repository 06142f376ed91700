"""The frontier figure: optimal losses, the fitted L*(C), its band, the floor E and targets."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from flops_fit_core import Estimate, InputError, PowerLaw
from flops_fit_plotters.frontier import FrontierPlotter, loss_law_label


def gid(ax, name):
    return [a for a in [*ax.lines, *ax.collections] if a.get_gid() == name]


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def offset_fit(fit, with_band: bool = True):
    """The fixture's fit with L*(C) = E + k C^a fitted through its optima (E known)."""
    e = 1.69
    c = np.array([o.budget for o in fit.optima])
    y = np.array([o.loss.value for o in fit.optima])
    a, lnk = np.polyfit(np.log(c), np.log(y - e), 1)
    extra = {}
    if with_band:
        extra = {
            "covariance": ((1e-4, 0.0, 0.0), (0.0, 0.05, -1e-3), (0.0, -1e-3, 2e-5)),
            "t_value": 2.0,
            "offset_interval": (1.6, 1.78),
        }
    law = PowerLaw(coefficient=float(np.exp(lnk)), exponent=float(a), offset=e, **extra)
    return fit.model_copy(update={"laws": dict(fit.laws, loss_opt=law), "fitter": "robust"})


def test_axes_are_log_compute_against_linear_loss_with_units(observations, fit):
    fig = FrontierPlotter().figure(observations, fit)
    (ax,) = fig.axes
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "linear")
    assert ax.get_xlabel() == "Compute C (FLOPs, exact count)"
    assert "L*" in ax.get_ylabel() and "nats/token" in ax.get_ylabel()
    assert ax.get_title() == "Loss frontier — empirical fit"


def test_optima_are_the_points_with_their_loss_intervals(observations, fit):
    ax = FrontierPlotter().figure(observations, fit).axes[0]
    (points,) = gid(ax, "optima")
    np.testing.assert_array_equal(points.get_xdata(), [o.budget for o in fit.optima])
    np.testing.assert_array_equal(points.get_ydata(), [o.loss.value for o in fit.optima])
    bars = [
        seg
        for art in gid(ax, "optima-interval")
        if hasattr(art, "get_segments")
        for seg in art.get_segments()
    ]
    lo, hi = fit.optima[0].loss.interval
    assert any(np.allclose(sorted(seg[:, 1]), [lo, hi]) for seg in bars)
    assert any("bars: their intervals" in t for t in legend_texts(ax))


def test_law_is_solid_over_the_budgets_and_dashed_a_decade_beyond(observations, fit):
    ax = FrontierPlotter().figure(observations, fit).axes[0]
    law = fit.laws["loss_opt"]
    (line,) = gid(ax, "law")
    (beyond,) = gid(ax, "law-extrapolated")
    budgets = [o.budget for o in fit.optima]
    assert line.get_xdata()[0] == pytest.approx(min(budgets))
    assert line.get_xdata()[-1] == pytest.approx(max(budgets))
    np.testing.assert_allclose(line.get_ydata(), law.predict(line.get_xdata()))
    assert beyond.get_linestyle() == "--"
    assert beyond.get_xdata()[-1] == pytest.approx(10 * max(budgets))
    assert line.get_label() == loss_law_label(law) and line.get_label() in legend_texts(ax)
    assert "extrapolation" in legend_texts(ax)
    assert not gid(ax, "irreducible"), "a pure power law has no floor"


def test_band_follows_the_laws_interval(observations, fit):
    ax = FrontierPlotter().figure(observations, fit).axes[0]
    law = fit.laws["loss_opt"]
    (band,) = gid(ax, "band")
    xs, ys = band.get_paths()[0].vertices.T
    lower, upper = law.predict_interval(xs)
    assert np.all(ys >= lower * (1 - 1e-9)) and np.all(ys <= upper * (1 + 1e-9))
    assert ys.min() < law.predict(xs).min(), "the band is wider than the line"
    assert "95% confidence band" in legend_texts(ax)


def test_no_band_or_bars_without_intervals(observations, fit_without_intervals):
    plotter = FrontierPlotter({"targets": [1e21]})
    ax = plotter.figure(observations, fit_without_intervals).axes[0]
    assert not gid(ax, "band") and not gid(ax, "optima-interval")
    assert not gid(ax, "target-interval-0")
    assert gid(ax, "law") and gid(ax, "target-point-0")
    texts = legend_texts(ax)
    assert not any("band" in t or "bars" in t for t in texts)
    assert not any("[" in t for t in texts if t.startswith("target")), "no interval to quote"


def test_targets_are_marked_with_the_predicted_loss_and_its_interval(observations, fit):
    targets = (3e21, 1e21)
    ax = FrontierPlotter({"targets": targets}).figure(observations, fit).axes[0]
    law = fit.laws["loss_opt"]
    texts = legend_texts(ax)
    for i, target in enumerate(sorted(targets)):  # the config sorts them
        (vline,) = gid(ax, f"target-{i}")
        assert list(vline.get_xdata()) == [target, target]
        assert vline.get_linestyle() == ":"
        (point,) = gid(ax, f"target-point-{i}")
        value = float(law.predict(target))
        assert list(point.get_xdata()) == [target]
        assert point.get_ydata()[0] == pytest.approx(value)
        assert to_hex(point.get_color()) == to_hex(vline.get_color())
        lo, hi = (float(b) for b in law.predict_interval(target))
        segments = [
            seg
            for art in gid(ax, f"target-interval-{i}")
            if hasattr(art, "get_segments")
            for seg in art.get_segments()
        ]
        assert any(np.allclose(sorted(seg[:, 1]), [lo, hi]) for seg in segments)
        name = "1.0e21" if target == 1e21 else "3.0e21"
        (entry,) = [t for t in texts if t.startswith(f"target C = {name} FLOPs")]
        assert f"L* = {value:.3f} [{lo:.3f}, {hi:.3f}]" in entry
    # The law reaches the furthest target, which lies beyond the default decade.
    (beyond,) = gid(ax, "law-extrapolated")
    assert beyond.get_xdata()[-1] == pytest.approx(3e21)


def test_no_targets_no_marks(observations, fit):
    ax = FrontierPlotter().figure(observations, fit).axes[0]
    assert not [a for a in [*ax.lines, *ax.collections] if (a.get_gid() or "").startswith("tar")]
    assert not any(t.startswith("target") for t in legend_texts(ax))


def test_a_target_below_the_budgets_gets_the_law_drawn_back_to_it(observations, fit):
    ax = FrontierPlotter({"targets": [1e17]}).figure(observations, fit).axes[0]
    (before,) = gid(ax, "law-extrapolated-below")
    assert before.get_xdata()[0] == pytest.approx(1e17)
    (band,) = gid(ax, "band")
    assert band.get_paths()[0].vertices[:, 0].min() == pytest.approx(1e17)


def test_an_offset_law_shows_its_floor_and_a_linear_band(observations, fit):
    fit = offset_fit(fit)
    ax = FrontierPlotter({"targets": [1e21]}).figure(observations, fit).axes[0]
    law = fit.laws["loss_opt"]
    (floor,) = gid(ax, "irreducible")
    assert list(floor.get_ydata()) == [1.69, 1.69]
    texts = legend_texts(ax)
    assert "irreducible loss E = 1.69 [1.6, 1.78]" in texts
    assert loss_law_label(law) in texts and "1.69 + " in loss_law_label(law)
    (line,) = gid(ax, "law")
    np.testing.assert_allclose(line.get_ydata(), law.predict(line.get_xdata()))
    assert np.all(line.get_ydata() > 1.69)
    (band,) = gid(ax, "band")
    xs, ys = band.get_paths()[0].vertices.T
    lower, upper = law.predict_interval(xs)
    assert np.all(ys >= lower - 1e-9) and np.all(ys <= upper + 1e-9)
    (point,) = gid(ax, "target-point-0")
    assert point.get_ydata()[0] == pytest.approx(float(law.predict(1e21)))
    assert ax.get_title() == "Loss frontier — robust fit"


def test_an_offset_law_without_covariance_has_floor_but_no_band(observations, fit):
    fit = offset_fit(fit, with_band=False)
    ax = FrontierPlotter().figure(observations, fit).axes[0]
    assert gid(ax, "irreducible") and not gid(ax, "band")
    assert "irreducible loss E = 1.69" in legend_texts(ax)


def test_law_label_reads_like_the_law():
    law = PowerLaw(coefficient=1102.27, exponent=-0.28954, offset=2.0565)
    assert loss_law_label(law) == r"$L^* = 2.06 + 1102\cdot C^{-0.290}$"
    plain = PowerLaw(coefficient=13.36, exponent=-0.062, exponent_interval=(-0.08, -0.04))
    text = loss_law_label(plain)
    assert text.startswith(r"$L^* = 13.4\cdot C^{-0.062}$")
    assert "95% CI [-0.080, -0.040]" in text


def test_flagged_optima_are_hollow(observations, synth):
    fit = synth.fit(observations, flag_budgets=(synth.budgets[1],))
    ax = FrontierPlotter().figure(observations, fit).axes[0]
    (flagged,) = gid(ax, "optima-flagged")
    assert list(flagged.get_xdata()) == [synth.budgets[1]]
    assert to_hex(flagged.get_markerfacecolor()) == "#ffffff"
    assert any("flagged" in t for t in legend_texts(ax))


def test_unusable_law_is_noted_and_targets_still_marked(observations, fit):
    laws = dict(fit.laws, loss_opt=PowerLaw(coefficient=float("nan"), exponent=-0.1))
    bad = fit.model_copy(update={"laws": laws})
    ax = FrontierPlotter({"targets": [1e21]}).figure(observations, bad).axes[0]
    assert not gid(ax, "law") and not gid(ax, "band") and not gid(ax, "target-point-0")
    assert gid(ax, "target-0") and gid(ax, "optima")
    assert any("no usable L*(C) law" in t.get_text() for t in ax.texts)


def test_no_optima_is_an_input_error(observations, fit):
    with pytest.raises(InputError, match="no per-budget optima"):
        FrontierPlotter().figure(observations, fit.model_copy(update={"optima": []}))
    nan = [o.model_copy(update={"loss": Estimate(value=float("nan"))}) for o in fit.optima]
    with pytest.raises(InputError, match="finite positive loss"):
        FrontierPlotter().figure(observations, fit.model_copy(update={"optima": nan}))


def test_plot_writes_png_and_svg(observations, fit, tmp_path):
    paths = FrontierPlotter({"dpi": 40, "targets": [1e21]}).plot(observations, fit, tmp_path)
    assert paths == [tmp_path / "frontier.png", tmp_path / "frontier.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and b"<svg" in paths[1].read_bytes()
