"""The residuals figure: observed - fitted loss per run, for fits that model a run's loss."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from flops_fit_core import Estimate, InputError, NothingToDraw, Observations, StudyOutcome
from flops_fit_plotters.residuals import ResidualsPlotter
from flops_fit_plotters.style import series_style

CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def gid(ax, name):
    return [a for a in [*ax.lines, *ax.collections] if a.get_gid() == name]


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def chinchilla(n, d):
    p = CHINCHILLA
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def parametric_fit(fit):
    return fit.model_copy(
        update={
            "fitter": "robust",
            "parametric": {k: Estimate(value=v) for k, v in CHINCHILLA.items()},
        }
    )


def quadratic_fit(observations, fit, skip_last: bool = False):
    """Parabolas in u = ln N - centre fitted per budget, as the quadratic fitter records them;
    with `skip_last`, the largest budget's parabola is marked as not fitted."""
    entries = []
    groups = observations.groups()
    for k, (budget, rows) in enumerate(groups):
        centre = float(np.mean(np.log(observations.params[rows])))
        u = np.log(observations.params[rows]) - centre
        c2, c1, c0 = np.polyfit(u, observations.loss[rows], 2)
        fitted = not (skip_last and k == len(groups) - 1)
        entries.append(
            {
                "budget": budget,
                "fitted": fitted,
                "centre_ln_n": centre,
                "coefficients": [float(c0), float(c1), float(c2)],
            }
        )
    return fit.model_copy(update={"fitter": "quadratic", "diagnostics": {"parabolas": entries}})


def test_two_panels_share_a_symmetric_residual_axis(observations, fit):
    fig = ResidualsPlotter().figure(observations, parametric_fit(fit))
    by_c, by_n = fig.axes
    assert by_c.get_shared_y_axes().joined(by_c, by_n)
    assert by_c.get_xscale() == by_n.get_xscale() == "log"
    assert by_c.get_yscale() == "linear"
    assert by_c.get_xlabel() == "Compute budget C (FLOPs, exact count)"
    assert by_n.get_xlabel() == "Parameters N (total)"
    assert "Residual" in by_c.get_ylabel() and "nats/token" in by_c.get_ylabel()
    lo, hi = by_c.get_ylim()
    assert lo == pytest.approx(-hi)
    for ax in (by_c, by_n):
        (zero,) = gid(ax, "zero")
        assert list(zero.get_ydata()) == [0, 0]


def test_residuals_are_observed_minus_the_parametric_law(observations, fit):
    fig = ResidualsPlotter().figure(observations, parametric_fit(fit))
    by_c, by_n = fig.axes
    groups = observations.groups()
    for i, (budget, rows) in enumerate(groups):
        expected = observations.loss[rows] - chinchilla(
            observations.params[rows], observations.tokens[rows]
        )
        (left,) = gid(by_c, f"residuals-budget-{i}")
        (right,) = gid(by_n, f"residuals-params-{i}")
        np.testing.assert_allclose(left.get_ydata(), expected)
        np.testing.assert_allclose(right.get_ydata(), expected)
        np.testing.assert_array_equal(right.get_xdata(), observations.params[rows])
        # Left: spread around the budget in order of N, never reaching the next budget.
        x = np.asarray(left.get_xdata())
        assert np.all(np.diff(x) > 0)
        assert np.all(np.abs(np.log10(x / budget)) <= 0.06 + 1e-12)
        assert to_hex(left.get_color()) == to_hex(right.get_color()) == to_hex(series_style(i)[0])
    assert len(legend_texts(by_n)) == len(groups)
    assert "C = 1.0e18 FLOPs" in legend_texts(by_n)


def test_rms_is_in_the_title(observations, fit):
    fig = ResidualsPlotter().figure(observations, parametric_fit(fit))
    resid = observations.loss - chinchilla(observations.params, observations.tokens)
    rms = np.sqrt(np.mean(resid**2))
    title = fig.get_suptitle()
    assert title.startswith("Loss residuals — robust fit (parametric law L(N, D))")
    assert f"RMS {rms:.3g} nats/token over {len(observations)} runs" in title


def test_quadratic_parabolas_give_each_budgets_residuals(observations, fit):
    quad = quadratic_fit(observations, fit)
    by_c, _ = ResidualsPlotter().figure(observations, quad).axes
    for i, (_, rows) in enumerate(observations.groups()):
        entry = quad.diagnostics["parabolas"][i]
        c0, c1, c2 = entry["coefficients"]
        u = np.log(observations.params[rows]) - entry["centre_ln_n"]
        (left,) = gid(by_c, f"residuals-budget-{i}")
        np.testing.assert_allclose(
            left.get_ydata(), observations.loss[rows] - (c0 + c1 * u + c2 * u * u)
        )
    assert "per-budget parabolas" in by_c.figure.get_suptitle()


def test_runs_without_a_parabola_are_left_out_and_said_so(observations, fit):
    quad = quadratic_fit(observations, fit, skip_last=True)
    fig = ResidualsPlotter().figure(observations, quad)
    by_c, by_n = fig.axes
    last = len(observations.groups()) - 1
    assert not gid(by_c, f"residuals-budget-{last}") and not gid(by_n, f"residuals-params-{last}")
    assert gid(by_c, "residuals-budget-0")
    left_out = len(observations.groups()[last][1])
    assert any(t.startswith(f"{left_out} runs left out") for t in legend_texts(by_n))
    shown = len(observations) - left_out
    assert f"over {shown} runs" in fig.get_suptitle()


def test_no_parabola_for_any_budget_is_nothing_to_draw(observations, fit):
    quad = quadratic_fit(observations, fit)
    moved = [dict(e, budget=e["budget"] * 3) for e in quad.diagnostics["parabolas"]]
    quad = quad.model_copy(update={"diagnostics": {"parabolas": moved}})
    with pytest.raises(NothingToDraw, match="predicts the loss of none"):
        ResidualsPlotter().figure(observations, quad)


def test_empirical_fit_has_nothing_to_draw(observations, fit, tmp_path):
    message = (
        "the empirical fit models no single run's loss; residuals need a parametric or "
        "quadratic fit"
    )
    with pytest.raises(NothingToDraw) as info:
        ResidualsPlotter().figure(observations, fit)
    assert str(info.value) == message
    with pytest.raises(NothingToDraw) as info:
        ResidualsPlotter().figure_for(StudyOutcome.single(observations, fit))
    assert str(info.value) == message
    with pytest.raises(NothingToDraw) as info:  # the pipeline skips it: still an InputError
        ResidualsPlotter().plot(observations, fit, tmp_path / "figures")
    assert isinstance(info.value, InputError)
    assert not (tmp_path / "figures").exists(), "nothing is written"


def test_figure_for_takes_the_first_fit_with_a_loss_model_and_its_observations(observations, fit):
    rows = np.flatnonzero(observations.budget < 5e19)  # the two smaller budgets
    subset = Observations(
        budget=observations.budget[rows],
        params=observations.params[rows],
        tokens=observations.tokens[rows],
        compute=observations.compute[rows],
        loss=observations.loss[rows],
        ids=tuple(observations.ids[i] for i in rows),
        source="subset",
    )
    outcome = StudyOutcome(
        fits=(fit, parametric_fit(fit), quadratic_fit(observations, fit)),
        observations=(observations, subset, observations),
    )
    fig = ResidualsPlotter().figure_for(outcome)
    assert "robust fit" in fig.get_suptitle()
    _, by_n = fig.axes
    assert len(legend_texts(by_n)) == 2, "drawn from the robust fit's own observations"


def test_plot_writes_png_and_svg(observations, fit, tmp_path):
    paths = ResidualsPlotter({"dpi": 40}).plot(observations, parametric_fit(fit), tmp_path)
    assert paths == [tmp_path / "residuals.png", tmp_path / "residuals.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and b"<svg" in paths[1].read_bytes()


def test_each_budgets_runs_are_joined_only_while_that_stays_readable(synth):
    """A few budgets: joined, so a U or a slope shows; many: points alone (lines tangle)."""
    for n_budgets, style in ((3, "-"), (8, "None")):
        obs = synth.observations(tuple(10.0 ** np.arange(18, 18 + n_budgets)), sizes_per_budget=5)
        axes = ResidualsPlotter().figure(obs, parametric_fit(synth.fit(obs))).axes
        by_n = axes[1]
        lines = [a for a in by_n.lines if (a.get_gid() or "").startswith("residuals-params-")]
        assert len(lines) == n_budgets
        assert {line.get_linestyle() for line in lines} == {style}
