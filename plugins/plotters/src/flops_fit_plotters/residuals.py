"""The `residuals` plotter: each run's observed loss minus the loss the fit predicts for it.

A fit can match the optima and still model the runs badly, and that is where its extrapolation
goes wrong. Residuals against compute show whether a budget as a whole sits off the law;
against model size they show structure a good model leaves none of: a U or a slope across N
means the functional form, not the noise, is off. Only fits that model a single run's loss can
be shown (a parametric law, or the quadratic fitter's per-budget parabolas); when a study has
several fits, the figure takes the first that can. Runs without budgets are drawn against
their own C and N, coloured by C (a colour bar).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flops_fit_core import FitResult, InputError, NothingToDraw, Observations, StudyOutcome

from .base import FigurePlotter, compute_colorbar, compute_scale
from .style import (
    FONT_SIZES,
    NEUTRAL,
    budget_labels,
    flops_kind,
    legend_outside,
    new_figure,
    series_style,
    style_axes,
)
from .surfaces import LossModel, loss_model

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: it costs ~1 s at start-up
    from matplotlib.figure import Figure

__all__ = ["ResidualsPlotter"]

#: Half-width (decades of C) of the spread of one budget's runs in the left panel, at most;
#: runs of a budget share one C and would otherwise sit on top of each other.
MAX_SPREAD_DECADES = 0.06

_KIND = {"parametric": "parametric law L(N, D)", "parabolas": "per-budget parabolas in ln N"}


#: Up to this many budgets each budget's residuals are joined by a line in the by-size panel.
JOIN_MAX_BUDGETS = 6


def _no_model(fitters: list[str]) -> str:
    many = len(fitters) > 1
    return (
        f"the {', '.join(fitters)} fit{'s' if many else ''} model{'' if many else 's'} no single "
        "run's loss; residuals need a parametric or quadratic fit"
    )


class ResidualsPlotter(FigurePlotter):
    """Observed - fitted loss per run, against compute (left) and model size (right)."""

    name = "residuals"

    def figure_for(self, outcome: StudyOutcome) -> Figure:
        """The first of the study's fits that models a run's loss, with the data it was fitted
        to; `NothingToDraw` when none does (an `empirical`-only study)."""
        for fit, observations in zip(outcome.fits, outcome.observations, strict=True):
            if loss_model(fit) is not None:
                return self.figure(observations, fit)
        raise NothingToDraw(_no_model([fit.fitter for fit in outcome.fits]))

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw both panels; artists carry gids (`residuals-budget-i`, `residuals-params-i`,
        `zero`)."""
        from matplotlib.lines import Line2D

        model = loss_model(fit)
        if model is None:
            raise NothingToDraw(_no_model([fit.fitter]))
        if not observations.has_budgets and len(observations):
            return self._unbudgeted(observations, fit, model)
        groups = observations.groups()
        if not groups:
            raise InputError(
                f"plotter {self.name!r}: no finished runs to draw "
                f"({observations.source or 'observations'} is empty)"
            )
        shown, left_out = self._residuals(observations, groups, model)
        if not shown:
            raise NothingToDraw(
                f"the {fit.fitter} fit predicts the loss of none of the {len(observations)} "
                "runs (no fitted parabola matches their budgets)"
            )
        all_r = np.concatenate([r for _, r in shown.values()])
        rms = float(np.sqrt(np.mean(all_r**2)))

        fig = new_figure(11.0, 4.8)
        by_c, by_n = fig.subplots(1, 2, sharey=True)
        labels = budget_labels([budget for budget, _ in groups])
        offsets = self._spread(np.array([budget for budget, _ in groups]))
        handles: list = []
        # Joining each budget's runs shows a U or a slope at a glance; with many budgets or
        # many runs per budget the lines only tangle, and the points say it better alone.
        join = len(shown) <= JOIN_MAX_BUDGETS and max(len(r) for r, _ in shown.values()) <= 12
        for i, (rows, resid) in shown.items():
            budget = groups[i][0]
            colour, marker = series_style(i)
            k = len(rows)
            x = budget * 10 ** (np.linspace(-offsets, offsets, k) if k > 1 else np.zeros(1))
            by_c.plot(
                x,
                resid,
                linestyle="none",
                marker=marker,
                markersize=5.5,
                color=colour,
                alpha=0.9,
                zorder=3,
                label="_nolegend_",
                gid=f"residuals-budget-{i}",
            )
            (line,) = by_n.plot(
                observations.params[rows],
                resid,
                linestyle="-" if join else "none",
                linewidth=0.9,
                marker=marker,
                markersize=5.5,
                color=colour,
                alpha=0.9,
                zorder=3,
                label=f"C = {labels[i]} FLOPs",
                gid=f"residuals-params-{i}",
            )
            handles.append(line)
        if left_out:
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    label=f"{left_out} run{'s' if left_out > 1 else ''} left out:\n"
                    "no fitted parabola for\n"
                    f"{'their' if left_out > 1 else 'its'} budget",
                )
            )

        limit = 1.15 * float(np.max(np.abs(all_r))) or 1.0
        compute_kind = flops_kind(fit.conventions.flops)
        params_kind = observations.conventions.params.replace("_", "-")
        for ax in (by_c, by_n):
            ax.axhline(0.0, color=NEUTRAL, linewidth=1.0, zorder=2, gid="zero")
            ax.set_xscale("log")
            style_axes(ax)
        # Symmetric about zero, so a bias shows as points sitting on one side.
        by_c.set_ylim(-limit, limit)
        by_c.set_xlabel(f"Compute budget C (FLOPs, {compute_kind})", fontsize=FONT_SIZES["label"])
        by_n.set_xlabel(f"Parameters N ({params_kind})", fontsize=FONT_SIZES["label"])
        by_c.set_ylabel(
            "Residual: observed - fitted loss (nats/token)", fontsize=FONT_SIZES["label"]
        )
        by_c.set_title("by budget (runs spread in order of N)", fontsize=FONT_SIZES["label"])
        by_n.set_title("by model size", fontsize=FONT_SIZES["label"])
        by_n.tick_params(axis="y", labelleft=True)  # each panel is read alone
        fig.suptitle(
            f"Loss residuals — {fit.fitter} fit ({_KIND.get(model.kind, model.kind)}): "
            f"RMS {rms:.3g} nats/token over {len(all_r)} runs",
            fontsize=FONT_SIZES["title"],
        )
        legend_outside(by_n, handles, title="Compute budget")
        return fig

    def _unbudgeted(self, observations: Observations, fit: FitResult, model: LossModel) -> Figure:
        """Runs without budgets: residuals against each run's C and N, coloured by C."""
        predicted = np.asarray(
            model.predict(float("nan"), observations.params, observations.tokens), dtype=float
        )
        ok = np.isfinite(predicted)
        if not ok.any():
            raise NothingToDraw(
                f"the {fit.fitter} fit predicts the loss of none of the {len(observations)} runs"
            )
        resid = observations.loss[ok] - predicted[ok]
        compute = observations.compute[ok]
        rms = float(np.sqrt(np.mean(resid**2)))
        norm, cmap = compute_scale(compute)
        fig = new_figure(11.0, 5.4)
        by_c, by_n = fig.subplots(1, 2, sharey=True)
        for ax, x, tag in ((by_c, compute, "compute"), (by_n, observations.params[ok], "params")):
            ax.scatter(
                x,
                resid,
                c=compute,
                norm=norm,
                cmap=cmap,
                s=16,
                alpha=0.85,
                linewidths=0,
                zorder=3,
                gid=f"residuals-{tag}",
            )
            ax.axhline(0.0, color=NEUTRAL, linewidth=1.0, zorder=2, gid="zero")
            ax.set_xscale("log")
            style_axes(ax)
        limit = 1.15 * float(np.max(np.abs(resid))) or 1.0
        by_c.set_ylim(-limit, limit)
        compute_kind = flops_kind(fit.conventions.flops)
        params_kind = observations.conventions.params.replace("_", "-")
        by_c.set_xlabel(f"Compute C (FLOPs, {compute_kind})", fontsize=FONT_SIZES["label"])
        by_n.set_xlabel(f"Parameters N ({params_kind})", fontsize=FONT_SIZES["label"])
        by_c.set_ylabel(
            "Residual: observed - fitted loss (nats/token)", fontsize=FONT_SIZES["label"]
        )
        by_c.set_title("by compute (runs without budgets)", fontsize=FONT_SIZES["label"])
        by_n.set_title("by model size", fontsize=FONT_SIZES["label"])
        by_n.tick_params(axis="y", labelleft=True)
        fig.suptitle(
            f"Loss residuals — {fit.fitter} fit ({_KIND.get(model.kind, model.kind)}): "
            f"RMS {rms:.3g} nats/token over {len(resid)} runs",
            fontsize=FONT_SIZES["title"],
        )
        compute_colorbar(fig, [by_c, by_n], norm, cmap, fit.conventions.flops)
        return fig

    @staticmethod
    def _residuals(
        observations: Observations, groups: list, model: LossModel
    ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], int]:
        """{group index: (rows, residuals)} for rows the model predicts, and how many
        rows it does not (NaN prediction: their budget's parabola was not fitted)."""
        shown: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        left_out = 0
        for i, (budget, rows) in enumerate(groups):
            predicted = np.asarray(
                model.predict(budget, observations.params[rows], observations.tokens[rows]),
                dtype=float,
            )
            ok = np.isfinite(predicted)
            left_out += int((~ok).sum())
            if ok.any():
                shown[i] = (rows[ok], observations.loss[rows[ok]] - predicted[ok])
        return shown, left_out

    @staticmethod
    def _spread(budgets: np.ndarray) -> float:
        """Half-width in decades for spreading a budget's runs: small next to the gap between
        neighbouring budgets, so the spreads never meet."""
        if len(budgets) < 2:
            return MAX_SPREAD_DECADES
        gap = float(np.min(np.diff(np.log10(np.sort(budgets)))))
        return min(MAX_SPREAD_DECADES, 0.2 * gap)
