"""What every figure plotter shares: a validated config, drawing split from saving, and the
checks that turn unusable fits into a clear `InputError` instead of a matplotlib traceback.

Drawing (`figure`) returns a `Figure` that tests inspect artist by artist; saving (`plot`) only
renders it. Later plotters (frontier, parametric, residuals, curves) subclass `FigurePlotter`
and write only `figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import field_validator

from flops_fit_core import (
    FitResult,
    InputError,
    Observations,
    Optimum,
    Plotter,
    PlotterConfig,
    PowerLaw,
    StudyOutcome,
)

from .style import EXTRAPOLATE_DECADES, SUPPORTED_FORMATS, save_figure

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.figure import Figure

__all__ = ["FigureConfig", "FigurePlotter"]


class FigureConfig(PlotterConfig):
    """`PlotterConfig` with its values checked, so a typo fails at config time, not mid-run."""

    @field_validator("formats", mode="before")
    @classmethod
    def _normalise_formats(cls, value):
        if isinstance(value, str):  # `formats = "png"` means one format, not three letters
            value = (value,)
        if not isinstance(value, list | tuple):
            raise ValueError(f'a list of file formats such as ["png", "svg"], not {value!r}')
        return tuple(str(v).strip().lower().lstrip(".") for v in value)

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one format is needed")
        unknown = [v for v in value if v not in SUPPORTED_FORMATS]
        if unknown:
            raise ValueError(
                f"unsupported format(s) {', '.join(unknown)} (supported: "
                f"{', '.join(SUPPORTED_FORMATS)})"
            )
        return tuple(dict.fromkeys(value))  # each file once, in the order given

    @field_validator("dpi")
    @classmethod
    def _sane_dpi(cls, value: int) -> int:
        if not 10 <= value <= 1200:
            raise ValueError(f"dpi must be between 10 and 1200, got {value}")
        return value


class FigurePlotter(Plotter):
    """A plotter that draws one figure and saves it as `<out_dir>/<name>.<fmt>` per format.

    Subclasses write `figure(observations, fit)`. One that needs a particular fit of a study
    (the parametric figure wants a fit with a parametric law, whichever fitter made it)
    overrides `figure_for(outcome)` as well.
    """

    Config = FigureConfig

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw the figure; subclasses implement this and never save or show anything."""
        raise NotImplementedError

    def figure_for(self, outcome: StudyOutcome) -> Figure:
        """The figure of a study's outcome: by default, that of the study's own fit."""
        return self.figure(outcome.primary_observations, outcome.fit)

    def draw(self, outcome: StudyOutcome, out_dir: Path) -> list[Path]:
        """Draw, then write each configured format; returns the files written."""
        fig = self.figure_for(outcome)
        return save_figure(fig, out_dir, self.name, self.config.formats, self.config.dpi)

    def plot(self, observations: Observations, fit: FitResult, out_dir: Path) -> list[Path]:
        """Draw one fit of one data set (what `flops-fit plot` does)."""
        return self.draw(StudyOutcome.single(observations, fit), out_dir)


def compute_scale(compute) -> tuple:
    """(norm, cmap) colouring runs by their compute C on one log scale: for runs without
    budgets, where a colour per budget has nothing to stand for. Plasma, perceptually uniform,
    without its palest end (it nearly vanishes on white)."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, LogNorm

    values = np.asarray(compute, dtype=float)
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:  # a norm needs a range
        lo, hi = lo / 2, hi * 2
    cmap = ListedColormap(colormaps["plasma"](np.linspace(0.0, 0.88, 256)), name="flops_fit_c")
    return LogNorm(vmin=lo, vmax=hi), cmap


def compute_colorbar(fig, axes, norm, cmap, flops: str, location: str = "bottom") -> None:
    """The colour bar of `compute_scale`, labelled with the fit's FLOPs convention (below
    the axes by default: their right side holds the legend)."""
    from matplotlib.cm import ScalarMappable

    from .style import FONT_SIZES, flops_kind

    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=axes,
        location=location,
        shrink=0.8,
        aspect=40 if location in ("bottom", "top") else 20,
    )
    bar.solids.set_gid("colorbar")
    bar.set_label(f"Compute C (FLOPs, {flops_kind(flops)})", fontsize=FONT_SIZES["label"])
    bar.ax.tick_params(labelsize=FONT_SIZES["tick"])


def nearest_groups(observations: Observations, budgets: Sequence[float]) -> list:
    """(budget, rows sorted by N) for each of `budgets`, each run with the budget nearest its
    C in log C: how figures that draw per budget show runs without budgets, against the C a
    fit reported its optima at (`robust` fits every run and reports log-spaced C)."""
    centres = np.log(np.sort(np.asarray(budgets, dtype=float)))
    if not centres.size or not len(observations):
        return []
    ln_c = np.log(observations.compute)
    nearest = np.argmin(np.abs(ln_c[:, None] - centres[None, :]), axis=1)
    out = []
    for j, centre in enumerate(centres):
        rows = np.flatnonzero(nearest == j)
        if rows.size:
            out.append((float(np.exp(centre)), rows[np.argsort(observations.params[rows])]))
    return out


def is_positive(x: float) -> bool:
    """Finite and > 0: what a value needs to go on a log axis."""
    return math.isfinite(x) and x > 0


def usable_law(law: PowerLaw | None) -> bool:
    """Whether a law can be drawn: a finite positive coefficient, finite exponent and offset."""
    return (
        law is not None
        and is_positive(law.coefficient)
        and math.isfinite(law.exponent)
        and (law.offset is None or math.isfinite(law.offset))
    )


def usable_optima(fit: FitResult, fields: Sequence[str], plotter: str) -> list[Optimum]:
    """The fit's optima whose `fields` (of params, tokens, loss) are positive, by budget.

    Raises `InputError` when the fit has no optima at all or none that can go on a log axis,
    because a figure without them would silently show nothing.
    """
    if not fit.optima:
        raise InputError(
            f"plotter {plotter!r}: the {fit.fitter!r} fit has no per-budget optima to draw "
            "(was it fitted on any budget?)"
        )
    good = [
        opt
        for opt in fit.optima
        if is_positive(opt.budget) and all(is_positive(getattr(opt, f).value) for f in fields)
    ]
    if not good:
        raise InputError(
            f"plotter {plotter!r}: none of the {len(fit.optima)} optima of the {fit.fitter!r} "
            f"fit has finite positive {', '.join(fields)}"
        )
    return sorted(good, key=lambda opt: opt.budget)


def match_optima(
    budgets: Sequence[float], optima: Sequence[Optimum], rtol: float = 1e-6
) -> tuple[dict[int, Optimum], list[Optimum]]:
    """Pair each budget (by index) with the optimum of the same budget, and list the rest.

    Budgets are compared with a relative tolerance because a fit read back from JSON may carry
    a budget that differs from the planned one in the last bits.
    """
    paired: dict[int, Optimum] = {}
    unmatched: list[Optimum] = []
    array = np.asarray(budgets, dtype=float)
    for opt in optima:
        hits = np.flatnonzero(np.isclose(array, opt.budget, rtol=rtol, atol=0.0))
        free = [int(i) for i in hits if int(i) not in paired]
        if free:
            paired[free[0]] = opt
        else:
            unmatched.append(opt)
    return paired, unmatched


def draw_optima(ax, optima: Sequence[Optimum], field: str, fitter: str, tag: str = "") -> list:
    """Per-budget optima as black points at (budget, `field`), with interval bars where the
    fit has them and flagged optima hollow; returns their legend handles.

    Artists carry gids `optima{tag}`, `optima-interval{tag}` and `optima-flagged{tag}`.
    """
    from matplotlib.lines import Line2D

    budgets = np.array([opt.budget for opt in optima])
    estimates = [getattr(opt, field) for opt in optima]
    values = np.array([est.value for est in estimates])
    flagged = np.array([bool(opt.flags) for opt in optima])
    with_iv = [i for i, est in enumerate(estimates) if est.interval is not None]
    if with_iv:
        bars = ax.errorbar(
            budgets[with_iv],
            values[with_iv],
            yerr=interval_errors(values[with_iv], [estimates[i].interval for i in with_iv]),
            fmt="none",
            ecolor="black",
            elinewidth=1.0,
            capsize=3,
            zorder=3,
            label="_nolegend_",
        )
        for child in bars.get_children():
            child.set_gid(f"optima-interval{tag}")
    label = f"per-budget optima ({fitter})" + (",\nbars: their intervals" if with_iv else "")
    dot = {"linestyle": "none", "marker": "o", "markersize": 6, "color": "black"}
    (points,) = ax.plot(
        budgets, values, markerfacecolor="black", zorder=4, label=label, gid=f"optima{tag}", **dot
    )
    handles: list = [points]
    if flagged.any():
        ax.plot(
            budgets[flagged],
            values[flagged],
            markerfacecolor="white",
            zorder=5,
            label="_nolegend_",
            gid=f"optima-flagged{tag}",
            **dot,
        )
        flagged_label = "flagged optimum (see fit warnings)"
        handles.append(Line2D([], [], markerfacecolor="white", label=flagged_label, **dot))
    return handles


def law_band(
    law: PowerLaw, compute, positive: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """The law's confidence band at `compute`, or None when the fit has none or it is not
    finite everywhere (or, with `positive`, for a log axis, not above zero everywhere)."""
    band = law.predict_interval(compute)
    if band is None:
        return None
    lower, upper = (np.asarray(b, dtype=float) for b in band)
    ok = np.isfinite(lower) & np.isfinite(upper)
    if positive:
        ok &= lower > 0
    return (lower, upper) if np.all(ok) else None


def draw_law(
    ax,
    law: PowerLaw,
    budgets: np.ndarray,
    targets: Sequence[float],
    *,
    colour: str,
    label: str,
    tag: str = "",
    margin: float = 1.0,
    positive: bool = False,
) -> list:
    """A fitted law against compute: solid over the budgets, dashed a decade beyond (or to
    the furthest target, `margin` times past it) and back to a target below the budgets, with
    its band over the whole drawn range when the fit knows its uncertainty (`positive`: the
    band must stay above zero, for a log axis). Returns the legend handles.

    Artists carry gids `law{tag}`, `law-extrapolated{tag}`, `law-extrapolated-below{tag}`,
    `band{tag}`.
    """
    lo_c, hi_c = float(budgets.min()), float(budgets.max())
    far = max([hi_c * 10**EXTRAPOLATE_DECADES, *(t * margin for t in targets)])
    near = min([lo_c, *(t / margin for t in targets)])
    fitted = np.geomspace(lo_c, hi_c, 100) if hi_c > lo_c else np.array([lo_c])
    style = {"color": colour, "linewidth": 2.0, "zorder": 2}
    (line,) = ax.plot(fitted, law.predict(fitted), label=label, gid=f"law{tag}", **style)
    beyond = np.geomspace(hi_c, far, 100)
    (extra,) = ax.plot(
        beyond,
        law.predict(beyond),
        linestyle="--",
        label="extrapolation",
        gid=f"law-extrapolated{tag}",
        **style,
    )
    if near < lo_c:  # a target below the budgets: the law extrapolated downwards too
        below = np.geomspace(near, lo_c, 60)
        ax.plot(
            below,
            law.predict(below),
            linestyle="--",
            label="_nolegend_",
            gid=f"law-extrapolated-below{tag}",
            **style,
        )
    handles: list = [line, extra]
    grid = np.geomspace(near, far, 200)
    band = law_band(law, grid, positive=positive)
    if band is not None:
        handles.append(
            ax.fill_between(
                grid,
                *band,
                color=colour,
                alpha=0.18,
                linewidth=0,
                zorder=1,
                label=f"{law.level:.0%} confidence band",
                gid=f"band{tag}",
            )
        )
    return handles


def interval_errors(values: Sequence[float], intervals) -> np.ndarray:
    """Asymmetric error-bar lengths (2 x n) from (lo, hi) intervals around `values`.

    Lengths are clipped at zero so an interval that does not contain its value (a fitter bug
    worth seeing elsewhere) cannot make matplotlib draw a bar backwards.
    """
    vals = np.asarray(values, dtype=float)
    lo = np.array([iv[0] for iv in intervals], dtype=float)
    hi = np.array([iv[1] for iv in intervals], dtype=float)
    return np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
