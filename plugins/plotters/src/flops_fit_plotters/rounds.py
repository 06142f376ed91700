"""The `rounds` plotter: how a study planned in rounds spent its compute, and what it bought.

Left, the IsoFLOP plane (compute C against model size N) with every run coloured by the round
that added it, over the fitted N*(C) and its band: a reader sees where each round went (wide
windows at cheap budgets first, the bracket at the largest budget last). Right, the width of
the target interval after each round against the compute trained so far, with the target: the
curve a fixed grid would reach only at its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flops_fit_core import FitResult, NothingToDraw, Observations, StudyOutcome

from .base import FigurePlotter, draw_law, usable_law
from .style import (
    FONT_SIZES,
    NEUTRAL,
    flops_kind,
    legend_outside,
    new_figure,
    series_style,
    style_axes,
)

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.figure import Figure

__all__ = ["NO_ROUNDS", "RoundsPlotter"]

NO_ROUNDS = "the plan has one round: only a planner that plans in rounds (adaptive) has more"


class RoundsPlotter(FigurePlotter):
    """Runs coloured by round over the IsoFLOP plane, and the target's width per round."""

    name = "rounds"

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        raise NothingToDraw(NO_ROUNDS + "; this figure needs a study's plan")

    def figure_for(self, outcome: StudyOutcome) -> Figure:
        """Draw both panels; artists carry gids (`round-<i>`, `law`, `width`, `target`)."""
        from matplotlib.lines import Line2D

        plan = outcome.plan
        if plan is None or len(plan.rounds) < 2:
            raise NothingToDraw(NO_ROUNDS)
        observations, fit = outcome.primary_observations, outcome.fit
        round_of = plan.round_of()
        rounds = np.array([round_of.get(i, 0) for i in observations.ids])

        fig = new_figure(11.5, 4.6)
        plane, widths = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1.0]})
        handles: list = []
        for record in plan.rounds:
            rows = rounds == record.index
            if not rows.any():
                continue
            colour, marker = series_style(record.index - 1)
            plane.scatter(
                observations.compute[rows],
                observations.params[rows],
                color=colour,
                marker=marker,
                s=30,
                edgecolors="white",
                linewidths=0.5,
                zorder=3,
                gid=f"round-{record.index}",
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    color=colour,
                    marker=marker,
                    linestyle="",
                    label=f"round {record.index} ({int(rows.sum())})",
                )
            )
        law = fit.laws.get("n_opt")
        if usable_law(law):
            span = np.array([observations.compute.min(), observations.compute.max()])
            handles += draw_law(
                plane, law, span, (), colour=NEUTRAL, label="fitted N*(C)", positive=True
            )
        plane.set_xscale("log")
        plane.set_yscale("log")
        plane.set_xlabel(
            f"Compute C (FLOPs, {flops_kind(fit.conventions.flops)})", fontsize=FONT_SIZES["label"]
        )
        plane.set_ylabel("Parameters N", fontsize=FONT_SIZES["label"])
        plane.set_title("Runs by round", fontsize=FONT_SIZES["title"])
        style_axes(plane)
        legend_outside(plane, handles)

        points = [(r.compute, r.width) for r in plan.rounds[1:] if r.compute and r.width]
        if plan.stop is not None and plan.stop.compute and plan.stop.width:
            points.append((plan.stop.compute, plan.stop.width))
        if points:
            xs, ys = zip(*points, strict=True)
            widths.plot(xs, ys, color=series_style(0)[0], marker="o", gid="width")
            for i, (x, y) in enumerate(points, start=1):
                widths.annotate(
                    f"{i}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=FONT_SIZES["tick"],
                )
        target = (plan.config or {}).get("target_width")
        if isinstance(target, int | float):
            widths.axhline(target, color=NEUTRAL, linestyle="--", linewidth=1.0, gid="target")
            widths.annotate(
                f"target {target:g}",
                (0.02, target),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(0, 4),
                fontsize=FONT_SIZES["tick"],
                color=NEUTRAL,
            )
        widths.set_xscale("log")
        widths.set_xlabel("Compute trained so far (FLOPs)", fontsize=FONT_SIZES["label"])
        what = (plan.config or {}).get("target", "target")
        label = {"n_exponent": "N* exponent", "n_opt": "N* (relative)"}.get(what, what)
        widths.set_ylabel(f"Interval width of {label}", fontsize=FONT_SIZES["label"])
        widths.set_title("Width after each round", fontsize=FONT_SIZES["title"])
        style_axes(widths)
        return fig
