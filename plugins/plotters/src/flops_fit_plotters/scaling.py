"""The `scaling` plotter: the compute-optimal laws N*(C) and D*(C) against their data.

The laws are what users extrapolate from, so the figure shows them past the largest budget
(dashed, a decade further, or to the furthest `targets` budget) with the law's own confidence
band, and marks each target with the law's prediction and its interval: a reader sees how well
the optima follow a power law and how fast the uncertainty grows where predictions are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flops_fit_core import FitResult, Observations, Optimum, PowerLaw, format_law

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
    LEGEND_EDGE,
    NEUTRAL,
    OKABE_ITO,
    flops_kind,
    new_figure,
    style_axes,
)

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["ScalingPlotter", "law_label"]


# (law key, Optimum field, symbol, y label, law colour)
_PANELS = (
    ("n_opt", "params", "N", "Optimal parameters N*", OKABE_ITO["blue"]),
    ("d_opt", "tokens", "D", "Optimal tokens D*", OKABE_ITO["vermillion"]),
)


def law_label(symbol: str, law: PowerLaw) -> str:
    """`N* = 0.052·C^0.470`, as mathtext, with the exponent's interval when known (the
    core's `format_law`: the terminal and the report write the law the same way)."""
    return format_law(law, symbol, tex=True)


class ScalingPlotter(FigurePlotter):
    """Two log-log panels, N*(C) and D*(C): fitted optima, the power law, its band."""

    name = "scaling"

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw both panels; artists carry gids (`optima-n_opt`, `law-n_opt`, `band-n_opt`)."""
        optima = usable_optima(fit, ("params", "tokens"), self.name)
        compute_kind = flops_kind(fit.conventions.flops)
        fig = new_figure(10.5, 4.6)
        axes = fig.subplots(1, 2, sharex=True)
        for ax, (key, field, symbol, ylabel, colour) in zip(axes, _PANELS, strict=True):
            self._panel(ax, optima, fit, key, field, symbol, colour)
            ax.set_xscale("log")
            ax.set_yscale("log")
            style_axes(ax)
            ax.set_xlabel(f"Compute C (FLOPs, {compute_kind})", fontsize=FONT_SIZES["label"])
            ax.set_ylabel(ylabel, fontsize=FONT_SIZES["label"])
            # Let tick labels on the shared x axis show on both panels: each is read alone.
            ax.tick_params(axis="x", labelbottom=True)
        fig.suptitle(f"Compute-optimal scaling — {fit.fitter} fit", fontsize=FONT_SIZES["title"])
        return fig

    def _panel(
        self,
        ax: Axes,
        optima: list[Optimum],
        fit: FitResult,
        key: str,
        field: str,
        symbol: str,
        colour: str,
    ) -> None:

        budgets = np.array([opt.budget for opt in optima])
        handles: list = []

        law = fit.laws[key]
        targets = tuple(self.config.targets)
        if usable_law(law):
            handles.extend(
                draw_law(
                    ax,
                    law,
                    budgets,
                    targets,
                    colour=colour,
                    label=law_label(symbol, law),
                    tag=f"-{key}",
                    margin=1.5,
                    positive=True,
                )
            )
            if targets:
                handles.append(self._mark_targets(ax, law, targets, key, symbol, colour))
        else:
            ax.text(
                0.03,
                0.97,
                f"no usable {symbol}*(C) law in this fit",
                transform=ax.transAxes,
                va="top",
                fontsize=FONT_SIZES["legend"],
                color=OKABE_ITO["vermillion"],
            )

        handles[:0] = draw_optima(ax, optima, field, fit.fitter, f"-{key}")
        ax.legend(
            handles=handles,
            loc="upper left" if law.exponent >= 0 else "lower left",
            fontsize=FONT_SIZES["legend"],
            framealpha=0.92,
            edgecolor=LEGEND_EDGE,
        )

    @staticmethod
    def _mark_targets(
        ax: Axes, law: PowerLaw, targets: tuple[float, ...], key: str, symbol: str, colour: str
    ):
        """Each target: a dotted vertical line and the law's prediction with its interval."""
        from matplotlib.lines import Line2D

        c = np.asarray(targets, dtype=float)
        values = np.asarray(law.predict(c), dtype=float)
        band = law_band(law, c)
        for x in c:
            ax.axvline(
                x, color=NEUTRAL, linestyle=":", linewidth=1.0, zorder=1, gid=f"target-{key}"
            )
        if band is not None:
            lo, hi = band
            bars = ax.errorbar(
                c,
                values,
                yerr=interval_errors(values, list(zip(lo, hi, strict=True))),
                fmt="none",
                ecolor=colour,
                elinewidth=1.4,
                capsize=4,
                zorder=4,
                label="_nolegend_",
            )
            for child in bars.get_children():
                child.set_gid(f"target-interval-{key}")
        ax.plot(
            c,
            values,
            linestyle="none",
            marker="D",
            markersize=7,
            color=colour,
            markeredgecolor="black",
            zorder=5,
            label="_nolegend_",
            gid=f"target-point-{key}",
        )
        label = "target: predicted " + rf"${symbol}^*$" + (" and interval" if band else "")
        return Line2D(
            [],
            [],
            linestyle=":",
            color=NEUTRAL,
            marker="D",
            markersize=7,
            markerfacecolor=colour,
            markeredgecolor="black",
            label=label,
        )
