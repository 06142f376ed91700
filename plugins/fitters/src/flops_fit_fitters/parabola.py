"""A parabola fitted by least squares to one budget's losses, with delta-method errors.

`quadratic` reads each budget's optimum off its vertex (Chinchilla's Approach 2); `robust`
uses it to locate a held-out budget's own optimum in its leave-one-out check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["fit_parabola"]


@dataclass(frozen=True)
class Parabola:
    """loss = c0 + c1·u + c2·u², u = x - centre, fitted by OLS to one budget's runs.

    `x` is ln N (or ln D). Centring on the mean of x keeps the coefficients well conditioned
    (ln N ~ 20, so x² ~ 400 would otherwise swamp the constant). `covariance` is that of
    (c0, c1, c2), s²·(XᵀX)⁻¹ with s² = ssr / dof; with exactly 3 sizes (dof = 0) the parabola
    passes through every run and nothing is known about its error: `covariance` is None.
    """

    centre: float
    coefficients: tuple[float, float, float]
    covariance: np.ndarray | None
    dof: int
    ssr: float
    x_min: float
    x_max: float

    @property
    def curvature(self) -> float:
        return self.coefficients[2]

    @property
    def vertex(self) -> float:
        """x at the minimum, -c1 / (2 c2) from the centre (meaningful when curvature > 0)."""
        _, c1, c2 = self.coefficients
        return self.centre - c1 / (2.0 * c2)

    @property
    def position(self) -> float:
        """Where the vertex lies in the sampled range: 0 at its smallest x, 1 at its largest."""
        return (self.vertex - self.x_min) / (self.x_max - self.x_min)

    @property
    def minimum(self) -> float:
        """The parabola's value at its vertex, c0 - c1² / (4 c2)."""
        c0, c1, c2 = self.coefficients
        return c0 - c1 * c1 / (4.0 * c2)

    def vertex_stderr(self) -> float | None:
        """Standard error of the vertex (in x units), by the delta method.

        The vertex g = -c1 / (2 c2) has gradient (0, -1/(2 c2), c1/(2 c2²)) in (c0, c1, c2):
        a first-order error, good while the curvature is well determined; when it is not, the
        error is large and so is the interval, which is the honest answer.
        """
        if self.covariance is None:
            return None
        _, c1, c2 = self.coefficients
        grad = np.array([0.0, -1.0 / (2.0 * c2), c1 / (2.0 * c2 * c2)])
        return math.sqrt(max(float(grad @ self.covariance @ grad), 0.0))

    def minimum_stderr(self) -> float | None:
        """Standard error of the minimum value (loss units), by the delta method.

        The gradient of c0 - c1²/(4 c2) is (1, u*, u*²) with u* the vertex from the centre:
        the error of the parabola's value at a fixed u* (the vertex's own error enters only to
        second order, since the slope is zero there).
        """
        if self.covariance is None:
            return None
        u = self.vertex - self.centre
        grad = np.array([1.0, u, u * u])
        return math.sqrt(max(float(grad @ self.covariance @ grad), 0.0))


def fit_parabola(x: np.ndarray, loss: np.ndarray) -> Parabola:
    """OLS of loss on (1, u, u²), u = x - mean(x); needs 3 distinct values of x."""
    x = np.asarray(x, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if np.unique(x).size < 3:
        raise ValueError("a parabola needs at least 3 distinct x values")
    centre = float(x.mean())
    u = x - centre
    design = np.column_stack([np.ones_like(u), u, u * u])
    coef, *_ = np.linalg.lstsq(design, loss, rcond=None)
    resid = loss - design @ coef
    ssr = float(resid @ resid)
    dof = x.size - 3
    covariance = ssr / dof * np.linalg.inv(design.T @ design) if dof > 0 else None
    return Parabola(
        centre=centre,
        coefficients=(float(coef[0]), float(coef[1]), float(coef[2])),
        covariance=covariance,
        dof=dof,
        ssr=ssr,
        x_min=float(x.min()),
        x_max=float(x.max()),
    )
