"""The `frontier` plotter: the best loss each compute budget buys, L*(C), and where it heads.

L*(C) is the law a study is usually run to extrapolate ("what loss will 10x the compute give?"),
so the figure shows the fitted law past the largest budget, its confidence band widening there,
and the user's target budgets with the predicted loss and its interval read off the law. A fit
with an irreducible term (L* = E + k C^a) shows E as the floor the law approaches: how much of
the remaining loss more compute can still remove is then visible at a glance.

The loss axis is linear: the optima of a study span a fraction of a nat, far less than a decade,
and on a linear axis the floor E, the band and the distance between them read directly in
nats/token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flops_fit_core import FitResult, Observations, PowerLaw, format_interval, format_law

from .base import (
    FigurePlotter,
    draw_law,
    draw_optima,
    interval_errors,
    law_band,
    usable_law,
    usable_optima,
)
from .style import (
    FONT_SIZES,
    NEUTRAL,
    OKABE_ITO,
    budget_labels,
    flops_kind,
    legend_outside,
    new_figure,
    style_axes,
)

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FrontierPlotter", "loss_law_label"]


LAW_COLOUR = OKABE_ITO["bluish_green"]

#: Target markers take these colours in turn: none is the law's, all read on white.
TARGET_COLOURS: tuple[str, ...] = tuple(
    OKABE_ITO[k] for k in ("vermillion", "blue", "reddish_purple", "orange", "sky_blue")
)


def loss_law_label(law: PowerLaw) -> str:
    """`L* = 2.06 + 1102·C^-0.290` (mathtext), with the exponent's interval when known (the
    core's `format_law`)."""
    return format_law(law, "L", tex=True)


class FrontierPlotter(FigurePlotter):
    """The per-budget optimal losses against compute, the fitted L*(C), its band and targets."""

    name = "frontier"

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw the frontier; artists carry gids (`optima`, `law`, `law-extrapolated`, `band`,
        `irreducible`, `target-i`, `target-point-i`, `target-interval-i`)."""
        from matplotlib.lines import Line2D

        optima = usable_optima(fit, ("loss",), self.name)
        law = fit.laws["loss_opt"]
        budgets = np.array([opt.budget for opt in optima])
        targets = tuple(float(t) for t in self.config.targets)

        fig = new_figure(8.6, 5.0)
        ax = fig.add_subplot()
        handles: list = []
        handles.extend(draw_optima(ax, optima, "loss", fit.fitter))
        if usable_law(law):
            handles.extend(
                draw_law(ax, law, budgets, targets, colour=LAW_COLOUR, label=loss_law_label(law))
            )
            if law.offset is not None:
                handles.append(self._draw_floor(ax, law))
            handles.extend(self._draw_targets(ax, law, targets))
        else:
            ax.text(
                0.03,
                0.03,
                "no usable L*(C) law in this fit",
                transform=ax.transAxes,
                va="bottom",
                fontsize=FONT_SIZES["legend"],
                color=OKABE_ITO["vermillion"],
            )
            for i, target in enumerate(targets):  # still say where the user wanted answers
                ax.axvline(
                    target,
                    color=TARGET_COLOURS[i % len(TARGET_COLOURS)],
                    linestyle=":",
                    linewidth=1.3,
                    gid=f"target-{i}",
                )
            if targets:
                handles.append(Line2D([], [], color=NEUTRAL, linestyle=":", label="target budget"))

        ax.set_xscale("log")
        style_axes(ax)
        compute_kind = flops_kind(fit.conventions.flops)
        ax.set_xlabel(f"Compute C (FLOPs, {compute_kind})", fontsize=FONT_SIZES["label"])
        ax.set_ylabel("Compute-optimal loss L* (nats/token)", fontsize=FONT_SIZES["label"])
        ax.set_title(f"Loss frontier — {fit.fitter} fit", fontsize=FONT_SIZES["title"])
        # Outside the axes: the law falls to the right and the band fans out there, so no
        # corner inside is reliably free, and target entries carry their numbers.
        legend_outside(ax, handles)
        return fig

    @staticmethod
    def _draw_floor(ax: Axes, law: PowerLaw):
        """The irreducible loss E, the asymptote an offset law approaches."""
        label = "irreducible loss E = " + format_interval(law.offset, law.offset_interval)
        return ax.axhline(
            law.offset,
            color=NEUTRAL,
            linewidth=0.9,
            linestyle="-.",
            zorder=1.5,
            label=label,
            gid="irreducible",
        )

    @staticmethod
    def _draw_targets(ax: Axes, law: PowerLaw, targets: tuple) -> list:
        """Each target: a dotted vertical line and the law's L* there, with its interval."""
        handles: list = []
        names = budget_labels(targets)
        for i, target in enumerate(targets):
            colour = TARGET_COLOURS[i % len(TARGET_COLOURS)]
            value = float(law.predict(target))
            band = law_band(law, np.array([target]))
            ax.axvline(
                target, color=colour, linestyle=":", linewidth=1.3, zorder=1.6, gid=f"target-{i}"
            )
            interval = None
            if band is not None:
                interval = (float(band[0][0]), float(band[1][0]))
                bars = ax.errorbar(
                    [target],
                    [value],
                    yerr=interval_errors([value], [interval]),
                    fmt="none",
                    ecolor=colour,
                    elinewidth=1.4,
                    capsize=4,
                    zorder=5,
                    label="_nolegend_",
                )
                for child in bars.get_children():
                    child.set_gid(f"target-interval-{i}")
            label = f"target C = {names[i]} FLOPs:\nL* = " + format_interval(value, interval, ".3f")
            (point,) = ax.plot(
                [target],
                [value],
                linestyle="none",
                marker="D",
                markersize=7,
                color=colour,
                markeredgecolor="black",
                markeredgewidth=0.8,
                zorder=6,
                label=label,
                gid=f"target-point-{i}",
            )
            handles.append(point)
        return handles
