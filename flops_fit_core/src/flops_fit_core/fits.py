"""The contracts of a fit: `PowerLaw`, `Optimum`, `FitResult` and the `Prediction`s it makes.

A `FitResult` carries everything a reader needs to trust or doubt it: each law's interval and
covariance, the optima it was fitted through, the fitter's settings and the conventions its
numbers were counted under (`Conventions`), so `predict(C)` is never read in the wrong units.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import (
    Field,
    model_validator,
)

from .errors import InputError
from .schemas import SCHEMA_VERSION, Conventions, SchemaVersion, StrictModel

__all__ = [
    "LAW_NAMES",
    "Estimate",
    "FitResult",
    "Optimum",
    "PowerLaw",
    "Prediction",
]


class Estimate(StrictModel):
    """A value with its standard error and interval (either may be unknown)."""

    value: float
    stderr: float | None = None
    interval: tuple[float, float] | None = None

    def __str__(self) -> str:
        from .text import format_interval

        return format_interval(self.value, self.interval, ".4g")


class PowerLaw(StrictModel):
    """y = offset + coefficient * C ** exponent, with its uncertainty (offset 0 unless set).

    Most laws are pure power laws fitted in log space: `covariance` is then the 2x2
    covariance of (ln coefficient, exponent). A law with an irreducible term (the loss of a
    parametric fit, L*(C) = E + K C^gamma) sets `offset`, and `covariance` is the 3x3 of
    (offset, ln coefficient, exponent). `t_value` is the quantile that turns a standard error
    into the `level` interval, so `predict_interval` needs nothing but this object.
    """

    coefficient: float
    exponent: float
    coefficient_interval: tuple[float, float] | None = None
    exponent_interval: tuple[float, float] | None = None
    r2: float | None = None
    offset: float | None = None
    offset_interval: tuple[float, float] | None = None
    covariance: tuple[tuple[float, ...], ...] | None = None
    t_value: float | None = None
    level: float = 0.95
    n_points: int | None = None

    @model_validator(mode="after")
    def _covariance_shape(self) -> PowerLaw:
        if self.covariance is not None:
            size = 2 if self.offset is None else 3
            if len(self.covariance) != size or any(len(row) != size for row in self.covariance):
                raise ValueError(f"covariance must be {size}x{size} for this law")
        return self

    def predict(self, compute: float | np.ndarray) -> float | np.ndarray:
        return (self.offset or 0.0) + self.coefficient * np.power(compute, self.exponent)

    def predict_interval(self, compute: float | np.ndarray):
        """The `level` confidence interval of the law's value at `compute` (None if unknown)."""
        if self.covariance is None or self.t_value is None:
            return None
        x = np.log(compute)
        cov = np.array(self.covariance)
        if self.offset is None:  # symmetric in log space
            var = cov[0, 0] + 2 * x * cov[0, 1] + x * x * cov[1, 1]
            half = self.t_value * np.sqrt(np.maximum(var, 0.0))
            centre = np.log(self.coefficient) + self.exponent * x
            return np.exp(centre - half), np.exp(centre + half)
        # delta method on offset + exp(ln k + a x): gradient (1, term, term * x)
        term = self.coefficient * np.exp(self.exponent * x)
        grad = (1.0, term, term * x)
        var = sum(grad[i] * grad[j] * cov[i, j] for i in range(3) for j in range(3))
        half = self.t_value * np.sqrt(np.maximum(var, 0.0))
        centre = self.offset + term
        return centre - half, centre + half


class Optimum(StrictModel):
    """A budget's compute-optimal point as a fitter estimated it."""

    budget: float
    params: Estimate
    tokens: Estimate
    loss: Estimate
    n_runs: int
    flags: list[str] = Field(default_factory=list)


class Prediction(StrictModel):
    """N*, D*, L* and D*/N* at a compute budget, each with its interval."""

    compute: float
    params: Estimate
    tokens: Estimate
    loss: Estimate
    tokens_per_param: Estimate
    fitter: str
    conventions: Conventions


LAW_NAMES = ("n_opt", "d_opt", "loss_opt")


class FitResult(StrictModel):
    """A fitter's answer (`fit.json`): optima per budget, the laws, diagnostics and warnings."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    fitter: str
    settings: dict[str, Any] = Field(default_factory=dict)
    conventions: Conventions = Conventions()
    parametric: dict[str, Estimate] | None = None
    laws: dict[str, PowerLaw]
    optima: list[Optimum]
    diagnostics: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _laws_present(self) -> FitResult:
        missing = [name for name in LAW_NAMES if name not in self.laws]
        if missing:
            raise ValueError(f"laws missing: {', '.join(missing)}")
        return self

    def predict(self, compute: float) -> Prediction:
        """N*, D*, L* at `compute` from the fitted laws (through `PowerLaw`, never by hand)."""
        if not (compute > 0 and math.isfinite(compute)):
            raise InputError(f"compute must be a positive number, got {compute}")
        used = [*LAW_NAMES, *(["tokens_per_param"] if "tokens_per_param" in self.laws else [])]
        for name, law in ((n, self.laws[n]) for n in used):  # a hand-edited fit.json: no NaN
            if not (law.coefficient > 0 and math.isfinite(law.coefficient)):
                raise InputError(
                    f"the fit's {name} law has coefficient {law.coefficient}: a power law's "
                    "coefficient is a positive number, so it predicts nothing"
                )
            if not math.isfinite(law.exponent) or not math.isfinite(law.offset or 0.0):
                raise InputError(
                    f"the fit's {name} law has exponent {law.exponent} and offset "
                    f"{law.offset}: it predicts nothing"
                )

        def estimate(law: PowerLaw) -> Estimate:
            interval = law.predict_interval(compute)
            return Estimate(
                value=float(law.predict(compute)),
                interval=None if interval is None else (float(interval[0]), float(interval[1])),
            )

        n, d, loss = (estimate(self.laws[k]) for k in LAW_NAMES)
        if "tokens_per_param" in self.laws:
            ratio = estimate(self.laws["tokens_per_param"])
        else:  # conservative: the interval ends pair opposite ends of D* and N*
            ratio = Estimate(
                value=d.value / n.value,
                interval=None
                if d.interval is None or n.interval is None
                else (d.interval[0] / n.interval[1], d.interval[1] / n.interval[0]),
            )
        return Prediction(
            compute=compute,
            params=n,
            tokens=d,
            loss=loss,
            tokens_per_param=ratio,
            fitter=self.fitter,
            conventions=self.conventions,
        )

    def report(self) -> str:
        """A readable, lmfit-style report of the fit (see `flops_fit_core.text.fit_report`)."""
        from .text import fit_report

        return fit_report(self)
