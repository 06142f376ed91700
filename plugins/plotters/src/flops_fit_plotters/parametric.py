"""The `parametric` plotter: the fitted loss surface L(N, D) in the (N, D) plane.

Chinchilla's Approach 3 fits one law to every run, L(N, D) = E + A/N^alpha + B/D^beta, and the
compute-optimal laws are derived from it. This figure shows what that derivation rests on:
the contours of the fitted surface, the runs it was fitted to, each budget's iso-FLOP line
D = C/(k N) and the frontier (N*(C), D*(C)) where those lines touch the lowest contour. A
reader sees at once whether the runs bracket the frontier (each budget's sweep should cross
it) and how far the frontier is extrapolated to reach the budgets the study is meant for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from flops_fit_core import (
    FitResult,
    InputError,
    NothingToDraw,
    Observations,
    Optimum,
    StudyOutcome,
    format_number_tex,
)

from .base import FigurePlotter, is_positive, match_optima, nearest_groups, usable_law
from .style import (
    EXTRAPOLATE_DECADES,
    FONT_SIZES,
    LEGEND_EDGE,
    NEUTRAL,
    OKABE_ITO,
    budget_label,
    budget_labels,
    flops_kind,
    new_figure,
    series_style,
    style_axes,
)
from .surfaces import IsoFlopLine, isoflop_lines, parametric_loss, parametric_values

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MAX_CONTOURS",
    "MAX_ZOOM_OUT",
    "ParametricPlotter",
    "contour_levels",
    "flops_per_param_token",
]


#: How many contour levels to aim for: enough to read the surface's shape, few enough that
#: every level can carry a label.
CONTOUR_COUNT = 10
MAX_CONTOURS = 13

#: The plotted region may grow to reach the targets, but only so far that the runs keep
#: 1/MAX_ZOOM_OUT of each axis (or their span plus MIN_EXTRA_DECADES, whichever is wider): a
#: figure where the fitted data is a dot shows the extrapolation but not what it rests on.
#: Targets further out are named, with their N* and D*, in a note on the figure.
MAX_ZOOM_OUT = 2.5
MIN_EXTRA_DECADES = 2.0

#: Grid resolution of the surface (per axis): smooth contours, negligible cost.
GRID_POINTS = 240

_STAR = {"marker": "*", "markersize": 15, "markeredgecolor": "black", "markeredgewidth": 0.9}
_FRONTIER_COLOUR = OKABE_ITO["black"]
_TARGET_COLOUR = OKABE_ITO["yellow"]  # the one colour no budget series takes

_NO_PARAMETRIC = (
    "no fit of this study has a parametric law L(N, D); run the robust fitter "
    "(flops-fit fit RESULTS --fitter robust)"
)


def flops_per_param_token(observations: Observations) -> float:
    """k in C = k N D, as the data counts it: the median over runs of C/(N D).

    It is exactly 6 under the 6N convention; under the exact count it also includes attention
    and the embeddings, so it is larger for small models. The median keeps a few odd shapes
    from moving every iso-FLOP line.
    """
    return float(np.median(observations.compute / (observations.params * observations.tokens)))


def contour_levels(
    values: dict[str, float],
    loss: np.ndarray,
    floor: float | None = None,
    count: int = CONTOUR_COUNT,
    most: int = MAX_CONTOURS,
) -> tuple[list[float], list[int]]:
    """Readable loss levels: about `count` spread over the values of `loss` (L on a grid over
    the runs), continued down to `floor` (the loss where the plotted frontier ends) with at
    most `most` levels in all.

    The levels are evenly spaced in log(L - E), the reducible loss: as L - E is a sum of power
    laws in N and D, such contours are about evenly spaced on log-log axes, where evenly
    spaced values of L would crowd into the high-loss corner. The ends are the 3rd and 97th
    percentiles over the runs so that each level crosses the data; the spacing is set there,
    and levels continue at that spacing towards `floor` (spaced wider if `most` would be
    exceeded), so the extrapolated part of the plane is not left blank. Each level is then
    rounded to the fewest decimals that keep it apart from its neighbours, so that labels
    read "2.35", not "2.3487". Returns (levels, decimals of each level).
    """
    e = values["E"]
    reducible = np.asarray(loss, dtype=float).ravel() - e
    reducible = reducible[np.isfinite(reducible) & (reducible > 0)]
    if reducible.size == 0:
        raise InputError("the fitted L(N, D) has no reducible loss over the plotted region")
    lo, hi = (float(q) for q in np.quantile(np.log(reducible), [0.03, 0.97]))
    if not hi > lo:
        hi = lo + 1e-3
    step = (hi - lo) / max(count - 1, 1)
    if floor is not None and floor - e > 0 and math.log(floor - e) < lo:
        lo = math.log(floor - e)
        count = min(most, math.ceil((hi - lo) / step - 1e-9) + 1)
    raw = e + np.exp(np.linspace(lo, hi, count))
    gaps = np.diff(raw)
    nearest = np.minimum(np.r_[gaps, np.inf], np.r_[np.inf, gaps])
    levels: list[float] = []
    decimals: list[int] = []
    for value, gap in zip(raw, nearest, strict=True):
        digits = int(np.clip(math.ceil(-math.log10(gap / 2.0)), 0, 8))
        rounded = round(float(value), digits)
        if levels and rounded <= levels[-1]:  # rounding merged two levels: keep the first
            continue
        levels.append(rounded)
        decimals.append(digits)
    return levels, decimals


@dataclass(frozen=True)
class _Region:
    """The plotted (N, D) limits, those of the runs alone, the largest compute whose frontier
    point is inside, and the targets left outside."""

    limits: tuple[tuple[float, float], tuple[float, float]]
    runs: tuple[tuple[float, float], tuple[float, float]]
    reached: float | None
    off_figure: tuple[float, ...]


def _check_values(values: dict[str, float], fit: FitResult, plotter: str) -> None:
    bad = [k for k in ("A", "B", "alpha", "beta") if not values[k] > 0]
    if bad:
        raise InputError(
            f"plotter {plotter!r}: the {fit.fitter!r} fit's parametric law has non-positive "
            f"{', '.join(bad)}; L(N, D) = E + A/N^alpha + B/D^beta needs them positive"
        )


class ParametricPlotter(FigurePlotter):
    """Contours of the fitted L(N, D) over (N, D), with the runs, iso-FLOP lines, optima,
    the compute-optimal frontier and the targets."""

    name = "parametric"

    def figure_for(self, outcome: StudyOutcome) -> Figure:
        """The first fit of the study with a parametric law (the study's own fitter may be
        the quadratic one, with `robust` run beside it for comparison)."""
        for observations, fit in zip(outcome.observations, outcome.fits, strict=True):
            if parametric_values(fit) is not None:
                return self.figure(observations, fit)
        for observations, fit in zip(outcome.observations, outcome.fits, strict=True):
            if fit.parametric:  # a law that is there but unusable: say what is wrong with it
                return self.figure(observations, fit)
        raise NothingToDraw(_NO_PARAMETRIC)

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw the plane; artists carry gids (`contours`, `contours-filled`, `isoflop-i`,
        `runs-i`, `optimum-i`, `frontier`, `frontier-extrapolated`, `target-j`)."""
        from matplotlib.lines import Line2D

        values = self._values(fit)
        budgeted = observations.has_budgets
        if budgeted:
            groups = observations.groups()
        else:  # each run with the reported C nearest its own: the optima's iso-FLOP lines
            groups = nearest_groups(observations, [o.budget for o in fit.optima])
            if len(observations) and not groups:
                raise NothingToDraw(
                    f"the runs have no budgets and the {fit.fitter} fit reports no optima to "
                    "draw iso-FLOP lines at"
                )
        if not groups:
            raise InputError(
                f"plotter {self.name!r}: no finished runs to draw "
                f"({observations.source or 'observations'} is empty)"
            )
        k = flops_per_param_token(observations)
        isoflops = isoflop_lines(observations, groups)
        budgets = [budget for budget, _ in groups]
        labels = budget_labels(budgets)
        optima = sorted(
            (
                opt
                for opt in fit.optima
                if is_positive(opt.budget)
                and is_positive(opt.params.value)
                and is_positive(opt.tokens.value)
            ),
            key=lambda opt: opt.budget,
        )
        laws = fit.laws.get("n_opt"), fit.laws.get("d_opt")
        has_frontier = all(usable_law(law) for law in laws)
        lo_c = min([*budgets, *(o.budget for o in optima)])
        hi_c = max([*budgets, *(o.budget for o in optima)])
        targets = tuple(float(t) for t in self.config.targets)
        end_c = max((hi_c * 10**EXTRAPOLATE_DECADES, *targets))

        def frontier(c):
            return laws[0].predict(c), laws[1].predict(c)

        region = self._region(
            observations, optima, frontier if has_frontier else None, hi_c, targets
        )
        x_lim, y_lim = region.limits
        off_figure = region.off_figure
        floor = None
        if region.reached is not None:
            floor = float(parametric_loss(values, *frontier(region.reached)))

        fig = new_figure(9.0, 7.6)
        ax = fig.add_subplot()
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(*x_lim)
        ax.set_ylim(*y_lim)
        contour_handle = self._surface(fig, ax, values, region, floor)

        handles: list = []
        notes: list[str] = []
        self._isoflops(ax, isoflops, labels, x_lim, y_lim)
        constant = all(np.allclose(line.ln_k, math.log(k), rtol=0, atol=1e-6) for line in isoflops)
        iso_label = f"iso-FLOP line D = C/(k N), k = {k:.3g}"
        if not constant:
            iso_label = f"iso-FLOP line C = k N D, k from the\nbudget's runs (median {k:.3g})"
        iso_handle = Line2D([], [], color=NEUTRAL, linewidth=1.3, label=iso_label)
        if has_frontier:
            handles.extend(self._frontier(ax, frontier, lo_c, hi_c, end_c))
        else:
            notes.append("no usable N*(C), D*(C) laws in this fit: frontier not drawn")

        run_handle = self._runs(ax, observations, groups)
        paired, unmatched = match_optima(budgets, optima)
        for i, opt in paired.items():
            self._star(ax, opt, series_style(i)[0], f"{i}")
        for j, opt in enumerate(unmatched):
            self._star(ax, opt, NEUTRAL, f"unmatched-{j}")
        handles = [run_handle, iso_handle, contour_handle, *handles]
        if optima:
            handles.insert(
                1,
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    color=NEUTRAL,
                    markerfacecolor=NEUTRAL,
                    label=f"per-budget optimum ({fit.fitter})",
                    **_STAR,
                ),
            )
        if any(opt.flags for opt in optima):
            handles.insert(
                2,
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    color=NEUTRAL,
                    markerfacecolor="white",
                    label="flagged optimum (see fit warnings)",
                    **_STAR,
                ),
            )
        if targets and not has_frontier:
            notes.append("targets not marked: they need the frontier")
        elif targets:
            handles.append(self._targets(ax, frontier, targets, off_figure))
            for t in off_figure:
                n_t, d_t = frontier(t)
                notes.append(
                    f"target C = {budget_label(t)} is off the figure: "
                    f"N* = {budget_label(n_t)}, D* = {budget_label(d_t)}"
                )

        style_axes(ax)
        ax.grid(False, which="minor")  # the contours already carry the eye; keep it quiet
        params_kind = fit.conventions.params.replace("_", "-")
        ax.set_xlabel(f"Parameters N ({params_kind})", fontsize=FONT_SIZES["label"])
        ax.set_ylabel("Training tokens D", fontsize=FONT_SIZES["label"])
        fig.suptitle(f"Parametric fit L(N, D) — {fit.fitter}", fontsize=FONT_SIZES["title"])
        ax.set_title(_law_text(fit, values), fontsize=FONT_SIZES["legend"], loc="left")
        if notes:
            ax.text(
                0.01,
                0.01,
                "\n".join(notes),
                transform=ax.transAxes,
                ha="left",
                va="bottom",
                fontsize=FONT_SIZES["legend"] - 0.5,
                color="black",
                bbox={"facecolor": "white", "edgecolor": LEGEND_EDGE, "alpha": 0.9},
                zorder=8,
                gid="notes",
            )
        compute_kind = flops_kind(fit.conventions.flops)
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=2,
            frameon=False,
            fontsize=FONT_SIZES["legend"],
            title=f"Compute C in FLOPs ({compute_kind}); runs and lines coloured by budget"
            + ("" if budgeted else "\n(runs without budgets: by the optimum's C nearest theirs)"),
            title_fontsize=FONT_SIZES["legend"],
        )
        return fig

    def _values(self, fit: FitResult) -> dict[str, float]:
        if not fit.parametric:
            raise NothingToDraw(
                f"plotter {self.name!r}: the {fit.fitter!r} fit has no parametric law "
                "L(N, D); run the robust fitter (flops-fit fit RESULTS --fitter robust)"
            )
        values = parametric_values(fit)
        if values is None:
            raise InputError(
                f"plotter {self.name!r}: the {fit.fitter!r} fit's parametric law lacks one of "
                "E, A, B, alpha, beta or has a non-finite value"
            )
        _check_values(values, fit, self.name)
        return values

    @staticmethod
    def _region(
        observations: Observations,
        optima: Sequence[Optimum],
        frontier,
        hi_c: float,
        targets: Sequence[float],
    ) -> _Region:
        """The (N, D) limits: the runs and optima with a margin, grown towards the frontier a
        decade past the largest budget and towards each target, as far as `MAX_ZOOM_OUT`
        allows (targets further out are listed as off the figure)."""
        xs = np.log10([*observations.params, *(o.params.value for o in optima)])
        ys = np.log10([*observations.tokens, *(o.tokens.value for o in optima)])
        runs = [[xs.min(), xs.max()], [ys.min(), ys.max()]]
        allowed = [
            max(MAX_ZOOM_OUT * (hi - lo), (hi - lo) + MIN_EXTRA_DECADES, 1.0) for lo, hi in runs
        ]
        box = [list(span) for span in runs]
        off_figure: list[float] = []
        reached: float | None = None
        if frontier is not None:
            for c in (hi_c * 10**EXTRAPOLATE_DECADES, *sorted(targets)):
                n, d = (float(v) for v in frontier(c))
                new = None
                if is_positive(n) and is_positive(d):
                    new = [
                        [min(lo, math.log10(v)), max(hi, math.log10(v))]
                        for (lo, hi), v in zip(box, (n, d), strict=True)
                    ]
                    if any(hi - lo > a for (lo, hi), a in zip(new, allowed, strict=True)):
                        new = None
                if new is not None:
                    box, reached = new, c
                elif c in targets:
                    off_figure.append(c)

        def limits(spans, margin_of):
            out = []
            for (lo, hi), ref in zip(spans, margin_of, strict=True):
                # The margin scales with the plot so the iso-FLOP labels always fit in it.
                margin = max(0.1 * (ref[1] - ref[0]), 0.3)
                out.append((10 ** (lo - margin), 10 ** (hi + margin)))
            return tuple(out)

        return _Region(
            limits=limits(box, box),
            runs=limits(runs, runs),
            reached=reached,
            off_figure=tuple(off_figure),
        )

    @staticmethod
    def _surface(fig: Figure, ax: Axes, values, region: _Region, floor: float | None):
        """Filled contours (light greys, so coloured series stay readable) and labelled
        contour lines, with a colour bar in nats/token; returns the legend's proxy."""
        from matplotlib.colors import ListedColormap
        from matplotlib.lines import Line2D

        x_lim, y_lim = region.limits
        grid_n, grid_d = np.meshgrid(
            np.geomspace(*x_lim, GRID_POINTS), np.geomspace(*y_lim, GRID_POINTS)
        )
        loss = parametric_loss(values, grid_n, grid_d)
        near_runs = parametric_loss(
            values,
            *np.meshgrid(
                np.geomspace(*region.runs[0], GRID_POINTS // 2),
                np.geomspace(*region.runs[1], GRID_POINTS // 2),
            ),
        )
        levels, decimals = contour_levels(values, near_runs, floor)
        greys = ListedColormap(
            [(g, g, g) for g in np.linspace(0.98, 0.72, len(levels) + 1)], name="loss-greys"
        )
        filled = ax.contourf(
            grid_n, grid_d, loss, levels=levels, cmap=greys, extend="both", zorder=0
        )
        filled.set_gid("contours-filled")
        lines = ax.contour(
            grid_n, grid_d, loss, levels=levels, colors="#6b6b6b", linewidths=0.7, zorder=1
        )
        lines.set_gid("contours")
        fmt = {lv: f"{lv:.{dec}f}" for lv, dec in zip(levels, decimals, strict=True)}
        spots = _contour_label_spots(values, levels, x_lim, y_lim)
        texts = ax.clabel(
            lines, levels=lines.levels, fmt=fmt, fontsize=7.5, inline_spacing=3, manual=spots
        )
        for text in texts:
            text.set_color("#3b3b3b")
            text.set_gid("contour-label")
        bar = fig.colorbar(filled, ax=ax, pad=0.02, fraction=0.05, aspect=30)
        bar.add_lines(lines)
        bar.set_ticks(levels, labels=[fmt[lv] for lv in levels])
        bar.ax.tick_params(labelsize=FONT_SIZES["tick"])
        bar.set_label("Fitted loss L(N, D) (nats/token)", fontsize=FONT_SIZES["label"])
        return Line2D(
            [], [], color="#6b6b6b", linewidth=0.7, label="contours of the fitted L(N, D)"
        )

    @staticmethod
    def _isoflops(ax: Axes, isoflops: list[IsoFlopLine], labels, x_lim, y_lim) -> None:
        """One line D = C/(k N) per budget across the plot, labelled with C where it enters
        the plot at the upper left (the region's margin keeps that end free of runs, and
        there k is the constant `k_left`, so the line is straight).

        The labels lie along their lines, like contour labels: the lines are parallel, so
        labels of close budgets stack instead of colliding as horizontal ones at the top edge
        would. They are placed in axes coordinates, where the direction of a line of slope -1
        on log-log axes is known exactly, and `transform_rotates_text` turns that direction
        into the on-screen angle once the layout has fixed the axes' aspect.
        """
        n = np.geomspace(*x_lim, 200)
        lx0, lx1 = (math.log10(v) for v in x_lim)
        ly0, ly1 = (math.log10(v) for v in y_lim)
        dx, dy = 1.0 / (lx1 - lx0), -1.0 / (ly1 - ly0)  # +1 decade in N, -1 in D, axes units
        norm = math.hypot(dx, dy)
        ux, uy = dx / norm, dy / norm
        angle = math.degrees(math.atan2(dy, dx))
        for i, (line, label) in enumerate(zip(isoflops, labels, strict=True)):
            colour, _ = series_style(i)
            ax.plot(
                n,
                line.tokens(n),
                color=colour,
                linewidth=1.3,
                alpha=0.9,
                zorder=2,
                label="_nolegend_",
                gid=f"isoflop-{i}",
            )
            level = math.log10(line.budget / line.k_left)  # log D + log N along the line
            top = ((level - ly1) - lx0) / (lx1 - lx0)  # where it meets the top edge
            if top >= 0.0:
                x, y = top, 1.0
            else:  # it enters through the left edge
                x, y = 0.0, ((level - lx0) - ly0) / (ly1 - ly0)
            x, y = x + 0.012 * ux, y + 0.012 * uy
            if not (0.0 <= x <= 0.9 and 0.1 <= y <= 1.0):
                continue  # the line barely crosses the plot: no room for a label
            ax.text(
                x,
                y,
                f"C = {label}",
                transform=ax.transAxes,
                rotation=angle,
                transform_rotates_text=True,
                rotation_mode="anchor",
                ha="left",
                va="center",
                fontsize=FONT_SIZES["legend"] - 1,
                color=colour,
                zorder=7,
                gid=f"isoflop-label-{i}",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.8},
            )

    @staticmethod
    def _frontier(ax: Axes, frontier, lo_c: float, hi_c: float, end_c: float) -> list:
        """(N*(C), D*(C)) solid over the budgets, dashed beyond to the targets or a decade."""
        fitted = np.geomspace(lo_c, hi_c, 100) if hi_c > lo_c else np.array([lo_c, lo_c])
        beyond = np.geomspace(hi_c, end_c, 100)
        (line,) = ax.plot(
            *frontier(fitted),
            color=_FRONTIER_COLOUR,
            linewidth=2.6,
            solid_capstyle="round",
            zorder=3,
            label="compute-optimal frontier (N*(C), D*(C))",
            gid="frontier",
        )
        (extra,) = ax.plot(
            *frontier(beyond),
            color=_FRONTIER_COLOUR,
            linewidth=2.0,
            linestyle="--",
            zorder=3,
            label=f"frontier extrapolated to C = {budget_label(end_c)}",
            gid="frontier-extrapolated",
        )
        return [line, extra]

    @staticmethod
    def _runs(ax: Axes, observations: Observations, groups):
        """Each budget's runs in its colour (edged, to stand out on the grey surface)."""
        from matplotlib.lines import Line2D

        for i, (_, rows) in enumerate(groups):
            colour, marker = series_style(i)
            ax.plot(
                observations.params[rows],
                observations.tokens[rows],
                linestyle="none",
                marker=marker,
                markersize=5.5,
                color=colour,
                markeredgecolor="black",
                markeredgewidth=0.6,
                zorder=4,
                label="_nolegend_",
                gid=f"runs-{i}",
            )
        return Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=5.5,
            color=NEUTRAL,
            markeredgecolor="black",
            markeredgewidth=0.6,
            label=f"runs ({len(observations)})",
        )

    @staticmethod
    def _star(ax: Axes, opt: Optimum, colour: str, tag: str) -> None:
        flagged = bool(opt.flags)
        ax.plot(
            [opt.params.value],
            [opt.tokens.value],
            linestyle="none",
            color=colour,
            markerfacecolor="white" if flagged else colour,
            zorder=5,
            label="_nolegend_",
            gid=f"optimum-{tag}",
            **_STAR,
        )

    @staticmethod
    def _targets(ax: Axes, frontier, targets: Sequence[float], off_figure: Sequence[float]):
        """A diamond on the frontier at each target, labelled with its C, N* and D*."""
        from matplotlib.lines import Line2D

        style = {
            "marker": "D",
            "markersize": 8,
            "color": _TARGET_COLOUR,
            "markeredgecolor": "black",
            "markeredgewidth": 0.8,
            "linestyle": "none",
        }
        for j, target in enumerate(targets):
            if target in off_figure:
                continue
            n, d = (float(v) for v in frontier(target))
            ax.plot([n], [d], zorder=6, label="_nolegend_", gid=f"target-{j}", **style)
            ax.annotate(
                f"C = {budget_label(target)}\nN* = {budget_label(n)}\nD* = {budget_label(d)}",
                (n, d),
                # Up and to the left of the frontier: the contours' labels sit at the right
                # and bottom edges and the runs below, so that corner is free.
                xytext=(-10, -3),
                textcoords="offset points",
                ha="right",
                va="bottom",
                multialignment="left",
                fontsize=FONT_SIZES["legend"] - 1,
                color="black",
                zorder=7,
                gid=f"target-label-{j}",
                bbox={"facecolor": "white", "edgecolor": LEGEND_EDGE, "alpha": 0.85, "pad": 1.5},
            )
        return Line2D([], [], label="target compute budget on the frontier", **style)


def _law_text(fit: FitResult, values: dict[str, float]) -> str:
    """The fitted law and its parameters (with their intervals when the fit has them)."""
    names = {"E": "E", "A": "A", "B": "B", "alpha": r"\alpha", "beta": r"\beta"}
    fitted = ",  ".join(
        rf"${sym} = {format_number_tex(values[key])}$" for key, sym in names.items()
    )
    text = rf"$L(N, D) = E + A/N^{{\alpha}} + B/D^{{\beta}}$:  {fitted}"
    estimates = fit.parametric or {}
    intervals = [
        (sym, estimates[key].interval)
        for key, sym in names.items()
        if estimates[key].interval is not None
    ]
    if intervals:
        level = fit.settings.get("confidence")
        head = f"{level:.0%} intervals" if isinstance(level, float) else "intervals"
        parts = ",  ".join(
            rf"${sym}\ [{format_number_tex(lo)},\ {format_number_tex(hi)}]$"
            for sym, (lo, hi) in intervals
        )
        text += f"\n{head}:  {parts}"
    return text


def _contour_label_spots(values: dict[str, float], levels, x_lim, y_lim) -> list:
    """Where each contour gets its label: at its lower-right end, just inside the plot.

    Every contour of L(N, D) falls from upper left to lower right, so it leaves the plot
    through the right or the bottom edge; labels there stay clear of the iso-FLOP labels at
    the upper left and of the runs (the region's margin holds none). Solved from the law
    itself: on the contour, A/N^alpha + B/D^beta = level - E.
    """
    lx0, lx1 = (math.log10(v) for v in x_lim)
    ly0, ly1 = (math.log10(v) for v in y_lim)
    right = 10 ** (lx1 - 0.05 * (lx1 - lx0))
    bottom = 10 ** (ly0 + 0.04 * (ly1 - ly0))
    e, a, b, alpha, beta = (values[k] for k in ("E", "A", "B", "alpha", "beta"))
    spots = []
    for level in levels:
        rest = level - e - a / right**alpha  # what B/D^beta must be at the right edge
        if rest > 0 and bottom <= (d := (b / rest) ** (1 / beta)) <= y_lim[1]:
            spots.append((right, d))
            continue
        rest = level - e - b / bottom**beta  # what A/N^alpha must be at the bottom edge
        if rest > 0 and x_lim[0] <= (n := (a / rest) ** (1 / alpha)) <= right:
            spots.append((n, bottom))
    return spots
