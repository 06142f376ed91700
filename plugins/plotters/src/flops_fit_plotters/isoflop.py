"""The `isoflop` plotter: loss against model size, one curve per planned compute budget.

This is the figure a reader checks first: each budget's runs should trace a valley, and the
fitter's optimum should sit at its bottom. The fit's own model of the valley is drawn through
the runs (dashed): the parabola in ln N of a `quadratic` fit, or the iso-FLOP slice of a
parametric L(N, D). A minimum at the edge of a curve, a flagged (off-centre) budget, or an
optimum far from the lowest runs shows at a glance that the sweep or the fit needs another look.

Runs without budgets (a table whose compute lies on no grid, fitted by `robust`) have no
curves to join: each run is a point coloured by its C on one log scale (a colour bar), and the
fit's valleys are drawn at the C it reported its optima at, in the same colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flops_fit_core import FitResult, InputError, Observations

from .base import (
    FigurePlotter,
    compute_colorbar,
    compute_scale,
    interval_errors,
    match_optima,
    usable_optima,
)
from .style import (
    FONT_SIZES,
    NEUTRAL,
    budget_labels,
    legend_outside,
    new_figure,
    series_style,
    style_axes,
)
from .surfaces import LossModel, isoflop_lines, loss_model

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = ["IsoFlopPlotter"]

_STAR = {"marker": "*", "markersize": 15, "markeredgecolor": "black", "markeredgewidth": 0.9}


class IsoFlopPlotter(FigurePlotter):
    """Final loss against parameters N (log axis) per budget, with the fitted optima marked."""

    name = "isoflop"

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw the IsoFLOP profiles; artists carry gids (`series-i`, `optimum-i`, ...)."""
        from matplotlib.lines import Line2D

        if not observations.has_budgets and len(observations):
            return self._unbudgeted(observations, fit)
        groups = observations.groups()
        if not groups:
            raise InputError(
                f"plotter {self.name!r}: no finished runs to draw "
                f"({observations.source or 'observations'} is empty)"
            )
        optima = usable_optima(fit, ("params", "loss"), self.name)
        budgets = [budget for budget, _ in groups]
        paired, unmatched = match_optima(budgets, optima)
        labels = budget_labels(budgets)

        model = loss_model(fit)
        fig = new_figure(8.2, 5.0)
        ax = fig.add_subplot()
        handles: list[Line2D] = []
        any_interval = any_flagged = any_model = False
        for i, (budget, rows) in enumerate(groups):
            colour, marker = series_style(i)
            flags = paired[i].flags if i in paired else []
            label = f"C = {labels[i]} FLOPs" + (f" ({'; '.join(flags)})" if flags else "")
            (line,) = ax.plot(
                observations.params[rows],
                observations.loss[rows],
                color=colour,
                marker=marker,
                markersize=5,
                linewidth=0.9 if model is not None else 1.5,
                alpha=0.85 if model is not None else 1.0,
                label=label,
                gid=f"series-{i}",
                zorder=2,
            )
            handles.append(line)
            if model is not None:
                any_model |= self._draw_model(ax, model, observations, budget, rows, colour, i)
            if i in paired:
                shown_interval, flagged = self._mark_optimum(ax, paired[i], colour, f"{i}")
                any_interval |= shown_interval
                any_flagged |= flagged
        for j, opt in enumerate(unmatched):
            shown_interval, flagged = self._mark_optimum(ax, opt, NEUTRAL, f"unmatched-{j}")
            any_interval |= shown_interval
            any_flagged |= flagged
        if unmatched:
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    color=NEUTRAL,
                    markerfacecolor=NEUTRAL,
                    label="optimum of a budget without runs",
                    **_STAR,
                )
            )

        if any_model:
            handles.append(
                Line2D([], [], color=NEUTRAL, linestyle="--", linewidth=1.6, label=model.label)
            )
        _finish(ax, handles, observations, fit, any_interval, any_flagged)
        ax.set_title(f"IsoFLOP profiles — {fit.fitter} fit", fontsize=FONT_SIZES["title"])
        legend_outside(ax, handles, title="Compute budget")
        return fig

    def _unbudgeted(self, observations: Observations, fit: FitResult) -> Figure:
        """Runs without budgets: points coloured by C, the fit's valley and optimum at each C
        it reported (the iso-FLOP line D = C / (k N), k the runs' median C / (N D))."""
        from matplotlib.lines import Line2D

        optima = usable_optima(fit, ("params", "loss"), self.name)
        model = loss_model(fit)
        norm, cmap = compute_scale([*observations.compute, *(o.budget for o in optima)])
        fig = new_figure(8.2, 5.8)
        ax = fig.add_subplot()
        ax.scatter(
            observations.params,
            observations.loss,
            c=observations.compute,
            norm=norm,
            cmap=cmap,
            s=16,
            alpha=0.8,
            linewidths=0,
            zorder=2,
            gid="runs",
        )
        k = float(np.median(observations.compute / (observations.params * observations.tokens)))
        lo_n, hi_n = float(observations.params.min()), float(observations.params.max())
        any_model = any_interval = any_flagged = False
        for i, opt in enumerate(optima):
            colour = cmap(norm(opt.budget))
            if model is not None:
                centre = opt.params.value
                grid = np.geomspace(max(lo_n, centre / 8) / 1.25, min(hi_n, centre * 8) * 1.25, 120)
                curve = model.predict(opt.budget, grid, opt.budget / (k * grid))
                if np.all(np.isfinite(curve)):
                    ax.plot(
                        grid,
                        curve,
                        color=colour,
                        linestyle="--",
                        linewidth=1.6,
                        zorder=2.5,
                        label="_nolegend_",
                        gid=f"model-{i}",
                    )
                    any_model = True
            shown_interval, flagged = self._mark_optimum(ax, opt, colour, f"{i}")
            any_interval |= shown_interval
            any_flagged |= flagged
        handles: list[Line2D] = [
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markersize=5,
                color=NEUTRAL,
                label=f"run ({len(observations)}; colour: its C)",
            ),
        ]
        if any_model:
            handles.append(
                Line2D(
                    [],
                    [],
                    color=NEUTRAL,
                    linestyle="--",
                    linewidth=1.6,
                    label=f"{model.label},\nalong D = C/({k:.3g} N) at each C",
                )
            )
        _finish(ax, handles, observations, fit, any_interval, any_flagged)
        ax.set_title(
            f"Loss against N, runs without budgets — {fit.fitter} fit", fontsize=FONT_SIZES["title"]
        )
        legend_outside(ax, handles, title=f"Valleys at {len(optima)} C")
        compute_colorbar(fig, ax, norm, cmap, fit.conventions.flops)
        return fig

    @staticmethod
    def _draw_model(
        ax, model: LossModel, observations: Observations, budget: float, rows, colour: str, i: int
    ) -> bool:
        """The fit's loss along this budget's iso-FLOP line, a little past its runs' sizes.

        A parametric law needs D for each N: the iso-FLOP line through the budget's own runs
        (`surfaces.IsoFlopLine`: D = C / (k N), k = 6 under C = 6ND, and read off each run when
        attention is counted), the same line the parametric figure draws.
        """
        if not model.covers(budget):
            return False
        n = observations.params[rows]
        grid = np.geomspace(n.min() / 1.25, n.max() * 1.25, 120)
        (line,) = isoflop_lines(observations, [(budget, rows)])
        tokens = line.tokens(grid)
        curve = model.predict(budget, grid, tokens)
        if not np.all(np.isfinite(curve)):
            return False
        ax.plot(
            grid,
            curve,
            color=colour,
            linestyle="--",
            linewidth=1.6,
            zorder=2.5,
            label="_nolegend_",
            gid=f"model-{i}",
        )
        return True

    @staticmethod
    def _mark_optimum(ax, opt, colour: str, tag: str) -> tuple[bool, bool]:
        """Star the optimum (hollow when flagged) with its interval bars; (had bars, flagged)."""
        flagged = bool(opt.flags)
        x, y = opt.params.value, opt.loss.value
        xerr = None if opt.params.interval is None else interval_errors([x], [opt.params.interval])
        yerr = None if opt.loss.interval is None else interval_errors([y], [opt.loss.interval])
        if xerr is not None or yerr is not None:
            bars = ax.errorbar(
                [x],
                [y],
                xerr=xerr,
                yerr=yerr,
                fmt="none",
                ecolor=colour,
                elinewidth=1.3,
                capsize=3,
                zorder=3,
                label="_nolegend_",
            )
            for child in bars.get_children():
                child.set_gid(f"optimum-interval-{tag}")
        ax.plot(
            [x],
            [y],
            linestyle="none",
            color=colour,
            markerfacecolor="white" if flagged else colour,
            zorder=4,
            label="_nolegend_",
            gid=f"optimum-{tag}",
            **_STAR,
        )
        return xerr is not None or yerr is not None, flagged


def _finish(ax, handles, observations: Observations, fit: FitResult, interval, flagged) -> None:
    """What both IsoFLOP figures end with: the optimum's legend entries, log N, the labels."""
    from matplotlib.lines import Line2D

    star_label = f"fitted optimum ({fit.fitter})" + (",\nbars: its interval" if interval else "")
    marker = {"linestyle": "none", "color": NEUTRAL, **_STAR}
    handles.append(Line2D([], [], markerfacecolor=NEUTRAL, label=star_label, **marker))
    if flagged:
        label = "flagged optimum\n(see fit warnings)"
        handles.append(Line2D([], [], markerfacecolor="white", label=label, **marker))
    ax.set_xscale("log")
    style_axes(ax)
    params_kind = observations.conventions.params.replace("_", "-")
    ax.set_xlabel(f"Parameters N ({params_kind})", fontsize=FONT_SIZES["label"])
    ax.set_ylabel("Final eval loss (nats/token)", fontsize=FONT_SIZES["label"])
