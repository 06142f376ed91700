"""Loss surfaces: a fit's model of each run's loss, and the iso-FLOP lines across (N, D).

The model is read back from `fit.json`; the figures draw the lines across the (N, D) plane.

The figures that compare runs with the fit need the fit's prediction of a single run's loss,
not just the per-budget optima. Two fitters record one:

- `robust` (and any fitter with a `parametric` block): L(N, D) = E + A/N^alpha + B/D^beta;
- `quadratic`: per budget, a parabola of loss in ln N (`diagnostics.parabolas`, coefficients
  (c0, c1, c2) in u = ln N - centre), which only speaks for its own budget.

`empirical` models no run, so `loss_model` answers None for it and figures built on a model
say so instead of drawing something the fit never claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flops_fit_core import FitResult, Observations

__all__ = ["parametric_loss"]

_PARAMETRIC_KEYS = ("E", "A", "B", "alpha", "beta")


def parametric_loss(values: dict[str, float], params, tokens) -> np.ndarray:
    """L(N, D) = E + A/N^alpha + B/D^beta for the fitted `values` (arrays broadcast)."""
    n = np.asarray(params, dtype=float)
    d = np.asarray(tokens, dtype=float)
    return values["E"] + values["A"] / n ** values["alpha"] + values["B"] / d ** values["beta"]


@dataclass(frozen=True)
class IsoFlopLine:
    """A budget's iso-FLOP line D = C / (k(N) N), with k(N) = C/(N D) read off its own runs.

    Under the exact count k depends on the shape (attention and embeddings weigh more in small
    models), so one k for all runs would draw lines the runs visibly miss. k is interpolated in
    ln N between the budget's runs and held at the end values beyond them, so the line passes
    through every run (to within its compute's rounding to whole steps) and stays straight,
    of slope -1, past the runs, where its label sits.
    """

    budget: float
    ln_n: np.ndarray  # the runs' ln N, ascending
    ln_k: np.ndarray  # ln C/(N D) of each

    def tokens(self, n) -> np.ndarray:
        k = np.exp(np.interp(np.log(n), self.ln_n, self.ln_k))
        return self.budget / (k * np.asarray(n, dtype=float))

    @property
    def k_left(self) -> float:
        """k beyond the smallest run: that of the line where it enters at the upper left."""
        return float(np.exp(self.ln_k[0]))


def isoflop_lines(observations: Observations, groups) -> list[IsoFlopLine]:
    lines = []
    for budget, rows in groups:
        n = observations.params[rows]
        k = observations.compute[rows] / (n * observations.tokens[rows])
        order = np.argsort(n, kind="stable")
        lines.append(IsoFlopLine(budget, np.log(n[order]), np.log(k[order])))
    return lines


def parametric_values(fit: FitResult) -> dict[str, float] | None:
    """(E, A, B, alpha, beta) of a parametric fit, or None when the fit has no such law."""
    if not fit.parametric or any(k not in fit.parametric for k in _PARAMETRIC_KEYS):
        return None
    values = {k: float(fit.parametric[k].value) for k in _PARAMETRIC_KEYS}
    if not all(np.isfinite(v) for v in values.values()):
        return None
    return values


@dataclass(frozen=True)
class LossModel:
    """`predict(budget, params, tokens)`: the fit's loss for runs of that budget (NaN where
    the fit has nothing to say, e.g. a budget whose parabola was not fitted)."""

    kind: str  # "parametric" | "parabolas"
    label: str
    fitter: str
    _parametric: dict[str, float] | None = None
    _parabolas: tuple[dict[str, Any], ...] = ()

    def predict(self, budget: float, params, tokens) -> np.ndarray:
        n = np.asarray(params, dtype=float)
        d = np.asarray(tokens, dtype=float)
        if self._parametric is not None:
            return parametric_loss(self._parametric, n, d)
        parabola = self.parabola(budget)
        if parabola is None:
            return np.full(n.shape, np.nan)
        c0, c1, c2 = parabola["coefficients"]
        u = np.log(n) - parabola["centre_ln_n"]
        return c0 + c1 * u + c2 * u * u

    def parabola(self, budget: float) -> dict[str, Any] | None:
        """The fitted parabola of `budget` (relative tolerance 1e-6), if there is one."""
        for entry in self._parabolas:
            if np.isclose(entry["budget"], budget, rtol=1e-6, atol=0.0):
                return entry
        return None

    def covers(self, budget: float) -> bool:
        return self._parametric is not None or self.parabola(budget) is not None


def _fitted_parabolas(fit: FitResult) -> tuple[dict[str, Any], ...]:
    entries = fit.diagnostics.get("parabolas")
    if not isinstance(entries, list):
        return ()
    usable = []
    for entry in entries:
        if not (isinstance(entry, dict) and entry.get("fitted")):
            continue
        coefficients = entry.get("coefficients")
        centre = entry.get("centre_ln_n")
        budget = entry.get("budget")
        if (
            isinstance(coefficients, list | tuple)
            and len(coefficients) == 3
            and all(isinstance(c, int | float) and np.isfinite(c) for c in coefficients)
            and isinstance(centre, int | float)
            and isinstance(budget, int | float)
        ):
            usable.append(entry)
    return tuple(usable)


def loss_model(fit: FitResult) -> LossModel | None:
    """The fit's model of a run's loss: its parametric law, else its parabolas, else None."""
    values = parametric_values(fit)
    if values is not None:
        return LossModel(
            kind="parametric",
            label=rf"$L(N, D) = E + A/N^{{\alpha}} + B/D^{{\beta}}$ ({fit.fitter})",
            fitter=fit.fitter,
            _parametric=values,
        )
    parabolas = _fitted_parabolas(fit)
    if parabolas:
        return LossModel(
            kind="parabolas",
            label=f"parabola in ln N per budget ({fit.fitter})",
            fitter=fit.fitter,
            _parabolas=parabolas,
        )
    return None
