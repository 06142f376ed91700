"""The scaling figure: optima, fitted laws N*(C), D*(C), their extrapolation and 95% bands."""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_core import Estimate, InputError, PowerLaw
from flops_fit_plotters import ScalingPlotter
from flops_fit_plotters.scaling import law_label

PANELS = (("n_opt", "params"), ("d_opt", "tokens"))


def gid(ax, name):
    found = [a for a in [*ax.lines, *ax.collections] if a.get_gid() == name]
    return found


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_two_log_log_panels_labelled_with_units(observations, fit):
    fig = ScalingPlotter().figure(observations, fit)
    n_ax, d_ax = fig.axes
    for ax in (n_ax, d_ax):
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
        assert ax.get_xlabel().startswith("Compute C (FLOPs")
    assert n_ax.get_ylabel() == "Optimal parameters N*"
    assert d_ax.get_ylabel() == "Optimal tokens D*"
    assert "empirical" in fig.get_suptitle()


def test_optima_are_the_points(observations, fit):
    axes = ScalingPlotter().figure(observations, fit).axes
    for ax, (key, field) in zip(axes, PANELS, strict=True):
        (points,) = gid(ax, f"optima-{key}")
        np.testing.assert_array_equal(points.get_xdata(), [o.budget for o in fit.optima])
        np.testing.assert_array_equal(
            points.get_ydata(), [getattr(o, field).value for o in fit.optima]
        )
        assert points.get_linestyle() == "None"
        assert gid(ax, f"optima-interval-{key}"), "optima with intervals get error bars"


def test_law_is_drawn_over_the_budgets_and_a_decade_beyond(observations, fit):
    axes = ScalingPlotter().figure(observations, fit).axes
    budgets = [o.budget for o in fit.optima]
    for ax, (key, _) in zip(axes, PANELS, strict=True):
        law = fit.laws[key]
        (line,) = gid(ax, f"law-{key}")
        (beyond,) = gid(ax, f"law-extrapolated-{key}")
        x = line.get_xdata()
        assert x[0] == pytest.approx(min(budgets)) and x[-1] == pytest.approx(max(budgets))
        np.testing.assert_allclose(line.get_ydata(), law.predict(x))
        assert beyond.get_linestyle() == "--"
        assert beyond.get_xdata()[-1] == pytest.approx(10 * max(budgets))
        np.testing.assert_allclose(beyond.get_ydata(), law.predict(beyond.get_xdata()))
        assert line.get_label() == law_label(key[0].upper(), law)
        assert line.get_label() in legend_texts(ax)


def test_band_is_the_laws_interval_when_available(observations, fit):
    axes = ScalingPlotter().figure(observations, fit).axes
    for ax, (key, _) in zip(axes, PANELS, strict=True):
        law = fit.laws[key]
        (band,) = gid(ax, f"band-{key}")
        vertices = band.get_paths()[0].vertices
        xs, ys = vertices[:, 0], vertices[:, 1]
        lower, upper = law.predict_interval(xs)
        centre = law.predict(xs)
        assert np.all(ys >= lower * (1 - 1e-9)) and np.all(ys <= upper * (1 + 1e-9))
        # The band really is wider than the line (the fixture's law has nonzero covariance)
        # and widest where it extrapolates.
        assert ys.max() > centre.max() and ys.min() < centre.min()
        half = np.log(upper / lower)
        assert half[np.argmax(xs)] > half[np.argmin(np.abs(np.log(xs) - np.log(1e19)))]
        assert "95% confidence band" in legend_texts(ax)


def test_no_band_without_interval_information(observations, fit_without_intervals):
    axes = ScalingPlotter().figure(observations, fit_without_intervals).axes
    for ax, (key, _) in zip(axes, PANELS, strict=True):
        assert fit_without_intervals.laws[key].predict_interval(1e20) is None
        assert not gid(ax, f"band-{key}")
        assert gid(ax, f"law-{key}"), "the law itself is still drawn"
        assert not gid(ax, f"optima-interval-{key}")
        assert not any("band" in t for t in legend_texts(ax))


def test_law_label_reads_like_the_law():
    law = PowerLaw(coefficient=0.052, exponent=0.47)
    assert law_label("N", law) == r"$N^* = 0.052\cdot C^{0.470}$"
    tiny = PowerLaw(coefficient=1.234e-5, exponent=0.5, exponent_interval=(0.45, 0.55))
    text = law_label("D", tiny)
    assert r"1.23\times10^{-5}" in text
    assert "95% CI [0.450, 0.550]" in text


def test_unusable_law_is_noted_not_drawn(observations, fit):
    laws = dict(fit.laws, d_opt=PowerLaw(coefficient=float("nan"), exponent=0.5))
    n_ax, d_ax = ScalingPlotter().figure(observations, fit.model_copy(update={"laws": laws})).axes
    assert gid(n_ax, "law-n_opt")
    assert not gid(d_ax, "law-d_opt") and not gid(d_ax, "band-d_opt")
    assert any("no usable D*(C) law" in t.get_text() for t in d_ax.texts)
    assert gid(d_ax, "optima-d_opt"), "the optima are still shown"


def test_flagged_optima_are_hollow(observations, synth):
    fit = synth.fit(observations, flag_budgets=(synth.budgets[-1],))
    n_ax, _ = ScalingPlotter().figure(observations, fit).axes
    (flagged,) = gid(n_ax, "optima-flagged-n_opt")
    assert list(flagged.get_xdata()) == [synth.budgets[-1]]
    assert flagged.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))
    assert any("flagged" in t for t in legend_texts(n_ax))


def test_no_optima_is_a_clear_input_error(observations, fit):
    with pytest.raises(InputError, match="'empirical' fit has no per-budget optima"):
        ScalingPlotter().figure(observations, fit.model_copy(update={"optima": []}))


def test_optima_without_positive_tokens_are_an_input_error(observations, fit):
    bad = [o.model_copy(update={"tokens": Estimate(value=0.0)}) for o in fit.optima]
    with pytest.raises(InputError, match="tokens"):
        ScalingPlotter().figure(observations, fit.model_copy(update={"optima": bad}))


def test_targets_are_marked_with_the_laws_prediction_and_its_interval(observations, fit):
    targets = (1e17, 1e23)  # one below the budgets, one three decades beyond
    axes = ScalingPlotter({"targets": targets}).figure(observations, fit).axes
    for ax, (key, _) in zip(axes, PANELS, strict=True):
        law = fit.laws[key]
        (point,) = gid(ax, f"target-point-{key}")
        np.testing.assert_allclose(point.get_xdata(), targets)
        np.testing.assert_allclose(point.get_ydata(), law.predict(np.array(targets)), rtol=1e-12)
        assert gid(ax, f"target-interval-{key}"), "the prediction's interval is drawn"
        assert len(gid(ax, f"target-{key}")) == 2  # a dotted line at each target
        # The law reaches both targets: extrapolated up to the far one and down to the near one.
        (up,) = gid(ax, f"law-extrapolated-{key}")
        (down,) = gid(ax, f"law-extrapolated-below-{key}")
        assert up.get_xdata().max() >= 1e23 and down.get_xdata().min() <= 1e17
        assert any("target" in t for t in legend_texts(ax))


def test_without_targets_nothing_is_marked(observations, fit):
    for ax, (key, _) in zip(ScalingPlotter().figure(observations, fit).axes, PANELS, strict=True):
        assert not gid(ax, f"target-point-{key}") and not gid(ax, f"target-{key}")
