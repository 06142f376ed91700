"""The `envelope` plotter: the runs' loss curves over compute, and each method's frontier on them.

Approach 1 reads the compute-optimal frontier off the lower envelope of the curves, and the
three ways of reading it (`chinchilla`, `pareto`, `hull`) can disagree. This figure shows why:
every run's curve in (C, L), grey, with the frontier points of each method the envelope fit
could extract (its `diagnostics.frontiers`), each in its own colour and marker, and the N*
exponent each method's frontier gives in the legend. Points a method reads where a curve is
dropped (mid-schedule, warmup) are simply absent: the curve is drawn whole, so the gap shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flops_fit_core import FitResult, NothingToDraw, Observations, StudyOutcome

from .base import FigurePlotter
from .curves import _clean
from .style import FONT_SIZES, NEUTRAL, legend_outside, new_figure, series_style, style_axes

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.figure import Figure

__all__ = ["EnvelopePlotter"]

NO_FRONTIER = (
    "no fit of this study read a frontier off the runs' curves (the envelope fitter, as the "
    "study's [fitter] or a [[compare]])"
)


def frontiers(fit: FitResult) -> dict | None:
    """Each method's frontier points from a fit's diagnostics, or None if it has none."""
    found = fit.diagnostics.get("frontiers")
    return found if isinstance(found, dict) and found else None


class EnvelopePlotter(FigurePlotter):
    """Every run's loss against compute, and the frontier points of each envelope method."""

    name = "envelope"

    def figure_for(self, outcome: StudyOutcome) -> Figure:
        """The first fit of the study that read a frontier (the study's own may be another)."""
        for observations, fit in zip(outcome.observations, outcome.fits, strict=True):
            if frontiers(fit) is not None:
                return self.figure(observations, fit)
        raise NothingToDraw(NO_FRONTIER)

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw it: left, the curves and each method's frontier in (C, L); right, the model
        size each method's frontier picks at each C, with its least-squares line. Artists
        carry gids (`curve-<run id>`, `frontier-<method>`, `size-<method>`, `law-<method>`)."""
        from matplotlib.lines import Line2D

        methods = frontiers(fit)
        if methods is None:
            raise NothingToDraw(NO_FRONTIER)
        fig = new_figure(12.0, 5.0)
        curves_ax, sizes_ax = fig.subplots(1, 2)
        per_token = observations.compute / observations.tokens
        for row in range(len(observations)):
            raw = observations.curves[row] if row < len(observations.curves) else None
            points = _clean(raw)
            if points is None:
                points = np.array([[observations.tokens[row], observations.loss[row]]])
            curves_ax.plot(
                points[:, 0] * per_token[row],
                points[:, 1],
                color=NEUTRAL,
                alpha=0.35,
                linewidth=0.8,
                marker="." if len(points) == 1 else None,
                zorder=1,
                gid=f"curve-{observations.ids[row]}",
            )
        chosen = fit.diagnostics.get("method")
        handles = [Line2D([], [], color=NEUTRAL, alpha=0.5, label="runs (checkpoints)")]
        for i, (method, front) in enumerate(methods.items()):
            colour, marker = series_style(i)
            marker = _MARKERS[i % len(_MARKERS)]
            size = 2.5 if len(front["compute"]) > MAX_MARKERS else 5.0
            label = f"{method}: a = {front['n_exponent']:.3f}" + (
                " (the fit's)" if method == chosen else ""
            )
            style = dict(linestyle="none", marker=marker, markersize=size, color=colour, alpha=0.8)
            c, loss, params = (
                np.asarray(front[k], dtype=float) for k in ("compute", "loss", "params")
            )
            shown = _thinned(c.size)
            curves_ax.plot(c[shown], loss[shown], zorder=3 + i, gid=f"frontier-{method}", **style)
            sizes_ax.plot(c[shown], params[shown], zorder=3 + i, gid=f"size-{method}", **style)
            slope, intercept = np.polyfit(np.log(c), np.log(params), 1)
            ends = np.array([c.min(), c.max()])
            sizes_ax.plot(
                ends,
                np.exp(intercept + slope * np.log(ends)),
                color=colour,
                linewidth=1.2,
                zorder=2,
                gid=f"law-{method}",
            )
            handles.append(Line2D([], [], linestyle="-", marker=marker, color=colour, label=label))
        for ax in (curves_ax, sizes_ax):
            ax.set_xscale("log")
            ax.set_yscale("log")
            style_axes(ax)
            ax.set_xlabel("Compute C (FLOPs)", fontsize=FONT_SIZES["label"])
        curves_ax.set_ylabel("Eval loss (nats/token)", fontsize=FONT_SIZES["label"])
        params_kind = observations.conventions.params.replace("_", "-")
        sizes_ax.set_ylabel(
            f"Parameters N ({params_kind}) on the frontier", fontsize=FONT_SIZES["label"]
        )
        curves_ax.set_title("The lower envelope of the runs' curves", fontsize=FONT_SIZES["title"])
        sizes_ax.set_title("The model size it picks, N*(C)", fontsize=FONT_SIZES["title"])
        legend_outside(sizes_ax, handles, title="frontier (N* exponent)")
        return fig


#: Frontier points drawn per method at most: `chinchilla` reads 1,500, which overlap into a
#: line anyway and cost seconds to render; every k-th is drawn (the fit used them all).
MAX_MARKERS = 200


def _thinned(n: int) -> np.ndarray:
    """Indices of at most `MAX_MARKERS` of `n` points, evenly spread, first and last kept."""
    if n <= MAX_MARKERS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_MARKERS).round().astype(int))


#: One marker per method, so overlapping frontiers stay apart in greyscale too.
_MARKERS = ("o", "D", "^", "s", "v")
