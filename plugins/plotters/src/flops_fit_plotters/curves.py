"""The `curves` plotter: each run's eval loss during training, one small panel per budget.

The final losses the fit reads are only as good as the runs behind them: a curve still falling
steeply at its end, one that diverged and recovered, or a large model that never got going
shows here and not in the IsoFLOP profile. Small multiples with shared axes keep 20-100 runs
readable (a budget's few runs per panel) while still comparing across budgets; colour encodes
model size on one log scale for the whole figure, so the same N has the same colour everywhere.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from flops_fit_core import FitResult, NothingToDraw, Observations

from .base import FigurePlotter
from .style import FONT_SIZES, budget_labels, new_figure, style_axes

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = ["NO_CURVES", "CurvesPlotter", "curve_colours"]

#: Panels per row at most: wider and the panels get too small to read a curve's tail.
MAX_COLUMNS = 4

#: Viridis is perceptually uniform and reads in greyscale and under colour-vision deficiencies;
#: its last eighth (pale yellow) is cut because it nearly vanishes on white.
_CMAP_RANGE = (0.0, 0.88)

NO_CURVES = "no run recorded a loss curve; the local trainer records one when curve_points > 0"


def curve_colours() -> Colormap:
    """The colour map of model size: viridis without its palest end."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(
        colormaps["viridis"](np.linspace(*_CMAP_RANGE, 256)), name="flops_fit_model_size"
    )


def _clean(curve) -> np.ndarray | None:
    """The curve as an (n, 2) array of its points with finite positive tokens and finite loss,
    sorted by tokens; None when nothing is left."""
    if curve is None:
        return None
    points = np.array([(float(t), float(v)) for t, v in curve], dtype=float).reshape(-1, 2)
    keep = np.isfinite(points).all(axis=1) & (points[:, 0] > 0) & (points[:, 1] > 0)
    points = points[keep]
    if not len(points):
        return None
    return points[np.argsort(points[:, 0], kind="stable")]


class CurvesPlotter(FigurePlotter):
    """Eval loss against tokens per run, a panel per budget, coloured by parameters N."""

    name = "curves"

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw the panels; artists carry gids (`curve-<run id>`, `final-<run id>`), the
        panels are in budget order and a colour bar gives N."""
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import LogNorm
        from matplotlib.lines import Line2D

        raw = observations.curves
        curves = {
            row: points
            for row in range(min(len(raw), len(observations)))
            if (points := _clean(raw[row])) is not None
        }
        if not curves:
            raise NothingToDraw(NO_CURVES)
        groups = (
            observations.groups()
            if observations.has_budgets
            else [(None, np.argsort(observations.params, kind="stable"))]  # one panel: all runs
        )
        panels = [(budget, [int(r) for r in rows if int(r) in curves]) for budget, rows in groups]
        panels = [(budget, rows) for budget, rows in panels if rows]
        shown = [row for _, rows in panels for row in rows]

        sizes = observations.params[shown]
        lo_n, hi_n = float(sizes.min()), float(sizes.max())
        if lo_n == hi_n:  # one size: a norm needs a range; centre it on that size
            lo_n, hi_n = lo_n / 2, hi_n * 2
        norm = LogNorm(vmin=lo_n, vmax=hi_n)
        cmap = curve_colours()

        ncols = min(MAX_COLUMNS, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        fig = new_figure(2.9 * ncols + 1.4, 2.5 * nrows + 1.1)
        grid = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
        axes = grid.ravel()
        labels = (
            budget_labels([budget for budget, _ in panels])
            if observations.has_budgets
            else ["all runs (no budgets)"]
        )
        for ax, (_, rows), label in zip(axes, panels, labels, strict=False):
            for row in rows:
                points = curves[row]
                colour = cmap(norm(observations.params[row]))
                run = observations.ids[row]
                ax.plot(
                    points[:, 0],
                    points[:, 1],
                    color=colour,
                    linewidth=1.3,
                    marker="." if len(points) == 1 else None,
                    zorder=2,
                    gid=f"curve-{run}",
                )
                ax.plot(
                    [observations.tokens[row]],
                    [observations.loss[row]],
                    linestyle="none",
                    marker="o",
                    markersize=4.5,
                    color=colour,
                    markeredgecolor="black",
                    markeredgewidth=0.6,
                    zorder=3,
                    gid=f"final-{run}",
                )
            ax.set_title(
                (f"C = {label} FLOPs" if observations.has_budgets else label)
                + f" ({len(rows)} run{'s' if len(rows) > 1 else ''})",
                fontsize=FONT_SIZES["legend"] + 0.5,
            )
            ax.set_xscale("log")
            ax.set_yscale("log")
            style_axes(ax)
        for ax in axes[len(panels) :]:
            ax.remove()
        # A panel above an empty cell is the lowest of its column: give it the x tick labels
        # the shared axes took away.
        for index in range(len(panels)):
            if index + ncols >= len(panels):
                axes[index].tick_params(axis="x", labelbottom=True)
        self._loss_ticks(axes[0], np.concatenate([curves[row][:, 1] for row in shown]))

        bar = fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[: len(panels)]), shrink=0.9
        )
        params_kind = observations.conventions.params.replace("_", "-")
        bar.set_label(f"Parameters N ({params_kind})", fontsize=FONT_SIZES["label"])
        bar.ax.tick_params(labelsize=FONT_SIZES["tick"])
        fig.supxlabel("Tokens trained D", fontsize=FONT_SIZES["label"])
        fig.supylabel("Eval loss (nats/token)", fontsize=FONT_SIZES["label"])
        missing = len(observations) - len(shown)
        title = "Loss curves by compute budget"
        if missing:
            title += f" — {len(shown)} of {len(observations)} runs recorded one"
        fig.suptitle(title, fontsize=FONT_SIZES["title"])
        # Beside the x label, outside the panels: no curve can run under it.
        fig.legend(
            handles=[
                Line2D([], [], color="grey", linewidth=1.3, label="eval loss during training"),
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker="o",
                    markersize=4.5,
                    color="grey",
                    markeredgecolor="black",
                    markeredgewidth=0.6,
                    label="final eval loss (what the fit reads)",
                ),
            ],
            loc="outside lower right",
            ncols=2,
            frameon=False,
            fontsize=FONT_SIZES["legend"],
        )
        return fig

    @staticmethod
    def _loss_ticks(ax, losses: np.ndarray) -> None:
        """Plain numbers (`2.5`, `3`) on the shared log loss axis, enough of them to read.

        Losses span less than a decade or barely more, where default log ticks show one
        label or none; ticks at 1-9 (and halves when the span is under a factor 3) times a
        power of ten keep three or more labelled.
        """
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

        span = float(losses.max() / losses.min())
        if span < 3:
            subs = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
        elif span < 10:
            subs = (1.0, 2.0, 3.0, 4.0, 5.0, 7.0)
        else:
            subs = (1.0, 2.0, 5.0)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
