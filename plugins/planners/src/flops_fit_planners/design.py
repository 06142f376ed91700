"""What a run tells about the loss surface, and how much a block of runs would narrow a target.

The `adaptive` planner places runs where they buy the most certainty per FLOP. Its model of a
run is the surface the `robust` fitter fits, ln L = ln(E + A N^-alpha + B D^-beta): near the
fitted parameters theta = (ln E, ln A, ln B, alpha, beta), a run at (N, D) adds the outer
product of its gradient q = d ln L / d theta to the information matrix M = sum q q'. The
variance of any smooth function f(theta) of the fit is then proportional to g' M^-1 g with
g = df/dtheta (the delta method). The unknown scale (the noise, the Huber loss's efficiency,
the bootstrap's own quirks) cancels: the planner calibrates it each round against the width
the fit actually measured, so only the *shape* of the design matters here.

The two targets a user can set: `n_exponent`, the exponent a = beta / (alpha + beta) of
N*(C) = G (C/k)^a, and `n_opt`, ln N* at one compute C, with
ln G = (ln alpha + ln A - ln beta - ln B) / (alpha + beta).

A `Design` is the runs a choice is weighed against (trained, and chosen so far this round), a
`Block` the runs one choice adds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SAME_RUN",
    "Block",
    "Design",
    "Surface",
    "log_loss_gradients",
    "target_gradient",
    "target_variance",
]

#: Two sizes at one budget within this share of each other are the same run.
SAME_RUN = 0.10


@dataclass(frozen=True)
class Surface:
    """L(N, D) = E + A / N^alpha + B / D^beta, the parameters a surface fit reports."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @classmethod
    def from_parametric(cls, parametric: dict | None) -> Surface | None:
        """From a `FitResult.parametric` (each an `Estimate`); None if one is missing."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not parametric or any(name not in parametric for name in names):
            return None
        return cls(*(float(parametric[name].value) for name in names))


def log_loss_gradients(surface: Surface, params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """d ln L / d (ln E, ln A, ln B, alpha, beta) at each run, shape (runs, 5)."""
    n = np.asarray(params, dtype=float)
    d = np.asarray(tokens, dtype=float)
    term_n = surface.A * np.power(n, -surface.alpha)
    term_d = surface.B * np.power(d, -surface.beta)
    loss = surface.E + term_n + term_d
    return np.stack(
        [
            np.full(n.shape, surface.E) / loss,
            term_n / loss,
            term_d / loss,
            -term_n * np.log(n) / loss,
            -term_d * np.log(d) / loss,
        ],
        axis=-1,
    )


def target_gradient(surface: Surface, target: str, log_compute_ratio: float = 0.0) -> np.ndarray:
    """d f / d theta for the target f: `n_exponent` (a) or `n_opt` (ln N* at a compute C,
    given as ln(C / k), k = C / (N D))."""
    alpha, beta = surface.alpha, surface.beta
    total = alpha + beta
    da = np.array([0.0, 0.0, 0.0, -beta / total**2, alpha / total**2])
    if target == "n_exponent":
        return da
    log_ratio = math.log(alpha) + math.log(surface.A) - math.log(beta) - math.log(surface.B)
    d_ln_g = np.array(
        [
            0.0,
            1.0 / total,
            -1.0 / total,
            1.0 / (alpha * total) - log_ratio / total**2,
            -1.0 / (beta * total) - log_ratio / total**2,
        ]
    )
    return d_ln_g + log_compute_ratio * da


def target_variance(
    gradients: np.ndarray, target: np.ndarray, free: Sequence[bool] | None = None
) -> float:
    """g' M^-1 g with M = sum of the runs' gradient outer products: the target's variance up
    to the noise's scale. `free` marks the parameters the fit estimates (a parameter the
    fitter holds fixed carries no uncertainty). Infinite when the runs do not pin the surface
    down."""
    if free is not None:
        keep = np.asarray(free, dtype=bool)
        gradients, target = gradients[:, keep], target[keep]
    info = gradients.T @ gradients
    # Scale to unit diagonal first: alpha's column (ln N ~ 20) dwarfs ln E's.
    scale = np.sqrt(np.maximum(np.diag(info), 1e-300))
    scaled = info / np.outer(scale, scale)
    g = target / scale
    try:
        value = float(g @ np.linalg.solve(scaled, g))
    except np.linalg.LinAlgError:
        return math.inf
    if not math.isfinite(value) or value <= 0 or np.linalg.cond(scaled) > 1e14:
        return math.inf
    return value


@dataclass
class Design:
    """The runs a round's choice is weighed against: the fitted ones and those chosen so far
    (N and D for the information matrix; every planned size per budget, to avoid repeats)."""

    params: np.ndarray
    tokens: np.ndarray
    planned: dict[float, list[float]]
    compute: float

    def with_runs(self, budget: float, params: np.ndarray, tokens: np.ndarray) -> Design:
        planned = {**self.planned, budget: [*self.planned.get(budget, []), *params.tolist()]}
        return Design(
            np.concatenate([self.params, params]),
            np.concatenate([self.tokens, tokens]),
            planned,
            self.compute + budget * len(params),
        )

    def is_new(self, budget: float, size: float) -> bool:
        return all(abs(size / n - 1.0) > SAME_RUN for n in self.planned.get(budget, ()))


@dataclass(frozen=True)
class Block:
    """Runs proposed together: sizes at one budget, with the real N and D of their shapes."""

    budget: float
    span: float
    targets: np.ndarray
    params: np.ndarray
    tokens: np.ndarray
    #: the runs owed at max_flops to bracket the fitted optimum there
    bracket: bool = False

    @property
    def flops(self) -> float:
        return self.budget * len(self.targets)
