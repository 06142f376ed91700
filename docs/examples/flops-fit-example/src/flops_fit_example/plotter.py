"""The `tokens-per-param` plotter: how many tokens per parameter each run saw, against compute.

Chinchilla's rule of thumb is about 20 tokens per parameter at the optimum. This figure shows
every run's D/N against its compute C (an IsoFLOP sweep is a vertical ladder per budget: small
models see many tokens per parameter, large ones few), each budget's optimum D*/N* as the fit
estimated it (with its interval where the fit has one), the fit's law for D*/N*(C) over the
budgets and a decade beyond, the 20:1 rule for reference, and the prediction at each of the
study's `targets`.

Built the way the built-in figures are: drawing (`figure`) is separate from saving (`plot`), the
figure is a bare `matplotlib.figure.Figure` (no pyplot, no global state), matplotlib is imported
only when a figure is drawn, and each format is written atomically as `<name>.<format>`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from flops_fit_core import (
    FitResult,
    NothingToDraw,
    Observations,
    Plotter,
    PlotterConfig,
    PowerLaw,
    write_atomic,
)
from pydantic import field_validator

if TYPE_CHECKING:  # matplotlib costs about a second to import: only when drawing
    from matplotlib.figure import Figure

__all__ = ["TokensPerParamConfig", "TokensPerParamPlotter"]

#: The formats matplotlib writes without extra packages.
FORMATS = ("png", "svg", "pdf")
#: Chinchilla's rule of thumb: about 20 tokens per parameter at the optimum.
RULE_OF_THUMB = 20.0


class TokensPerParamConfig(PlotterConfig):
    """The `[plot]` options (`formats`, `dpi`, `targets`), checked: a typo fails at config time.

    `[plot]` passes the same options to every plotter it names, so a plotter cannot add options
    of its own there; it can only validate the shared ones more strictly.
    """

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one format is needed")
        unknown = [v for v in value if v not in FORMATS]
        if unknown:
            raise ValueError(f"unsupported format(s) {', '.join(unknown)} (known: png, svg, pdf)")
        return value


def _ratio_law(fit: FitResult) -> PowerLaw | None:
    """D*/N*(C): the fit's own law when it has one, else D*(C) / N*(C) (no interval then)."""
    if "tokens_per_param" in fit.laws:
        return fit.laws["tokens_per_param"]
    n_opt, d_opt = fit.laws["n_opt"], fit.laws["d_opt"]
    if n_opt.offset is not None or d_opt.offset is not None:
        return None
    return PowerLaw(
        coefficient=d_opt.coefficient / n_opt.coefficient, exponent=d_opt.exponent - n_opt.exponent
    )


class TokensPerParamPlotter(Plotter):
    """Tokens per parameter (D/N) of every run against compute, with the fit's D*/N* law."""

    name = "tokens-per-param"
    Config = TokensPerParamConfig
    config: TokensPerParamConfig

    def plot(self, observations: Observations, fit: FitResult, out_dir: Path) -> list[Path]:
        figure = self.figure(observations, fit)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for fmt in self.config.formats:
            buffer = io.BytesIO()
            # no dates or versions in the file: an unchanged study redraws the same bytes
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            if fmt == "pdf":
                metadata = {"CreationDate": None, "Producer": None}
            figure.savefig(buffer, format=fmt, dpi=self.config.dpi, metadata=metadata)
            path = out / f"{self.name}.{fmt}"
            write_atomic(path, buffer.getvalue())
            written.append(path)
        return written

    def figure(self, observations: Observations, fit: FitResult) -> Figure:
        """Draw the figure (nothing is saved here: tests inspect the artists)."""
        from matplotlib.figure import Figure

        if not len(observations):
            raise NothingToDraw("no finished runs to draw")
        ratio = observations.tokens / observations.params
        fig = Figure(figsize=(9.0, 4.8), layout="constrained", facecolor="white")
        ax = fig.add_subplot()
        ax.scatter(
            observations.compute,
            ratio,
            s=14,
            color="#999999",
            alpha=0.8,
            zorder=2,
            label="runs",
            gid="runs",
        )

        optima = [o for o in fit.optima if o.params.value > 0 and o.tokens.value > 0]
        if optima:
            budgets = np.array([o.budget for o in optima])
            values = np.array([o.tokens.value / o.params.value for o in optima])
            ax.plot(
                budgets,
                values,
                "o",
                color="black",
                zorder=4,
                label=f"per-budget optima ({fit.fitter})",
                gid="optima",
            )

        law = _ratio_law(fit)
        budgets_all = [o.budget for o in fit.optima] or list(observations.compute)
        lo, hi = float(min(budgets_all)), float(max(budgets_all))
        far = max([hi * 10, *self.config.targets])
        if law is not None and math.isfinite(law.coefficient) and law.coefficient > 0:
            grid = np.geomspace(lo, far, 200)
            ax.plot(
                grid,
                law.predict(grid),
                color="#0072B2",
                linewidth=2,
                zorder=3,
                label=f"D*/N* law: {law.coefficient:.3g}·$C^{{{law.exponent:.3f}}}$",
                gid="law",
            )
            band = law.predict_interval(grid)
            if band is not None and np.all(np.isfinite(band[0])) and np.all(band[0] > 0):
                ax.fill_between(
                    grid,
                    *band,
                    color="#0072B2",
                    alpha=0.18,
                    linewidth=0,
                    zorder=1,
                    label=f"{law.level:.0%} confidence band",
                    gid="band",
                )
        ax.axhline(
            RULE_OF_THUMB,
            color="#D55E00",
            linestyle=":",
            linewidth=1.5,
            label="20 tokens per parameter",
            gid="rule-of-thumb",
        )
        for target in self.config.targets:
            predicted = fit.predict(target).tokens_per_param
            if predicted is not None and predicted.value > 0:
                ax.plot(
                    [target],
                    [predicted.value],
                    "*",
                    markersize=12,
                    color="#009E73",
                    zorder=5,
                    label=f"prediction at C = {target:.3g}",
                    gid="target",
                )

        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="major", color="#dddddd", linewidth=0.7)
        ax.set_axisbelow(True)
        convention = "6ND" if fit.conventions.flops == "6n" else "exact"
        ax.set_xlabel(f"Compute C (FLOPs, {convention})")
        ax.set_ylabel("Tokens per parameter D/N")
        ax.set_title(f"Tokens per parameter — {fit.fitter} fit")
        fig.legend(loc="outside right upper", fontsize=8)  # beside the axes: runs fill them
        return fig
