"""Synthetic scaling-law data with a known truth, for contract tests and plugin tests.

The truth is Chinchilla's Approach-3 law L(N, D) = E + A/N^alpha + B/D^beta with C = 6ND, whose
compute-optimal allocation is known in closed form: N*(C) = G (C/6)^a, D*(C) = (C/6)^b / G,
a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fits import Estimate, FitResult, Optimum, PowerLaw
from ..observations import ANYTIME, Observations, StudyOutcome
from ..schemas import Conventions, SweepPlan

__all__ = ["CHINCHILLA", "Law", "isoflop_observations", "round_outcome", "truth_fit"]


@dataclass(frozen=True)
class Law:
    """L(N, D) = E + A/N^alpha + B/D^beta and its exact compute-optimal frontier."""

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28

    @property
    def a(self) -> float:
        """Exponent of N*(C)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D*(C)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))

    def loss(self, n, d):
        return self.E + self.A / np.power(n, self.alpha) + self.B / np.power(d, self.beta)

    def n_opt(self, c):
        return self.G * np.power(np.asarray(c, dtype=float) / 6, self.a)

    def d_opt(self, c):
        return np.power(np.asarray(c, dtype=float) / 6, self.b) / self.G

    def loss_opt(self, c):
        return self.loss(self.n_opt(c), self.d_opt(c))


CHINCHILLA = Law()


def isoflop_observations(
    budgets=(1e18, 1e19, 1e20, 1e21, 1e22),
    sizes_per_budget: int = 7,
    span: float = 8.0,
    noise: float = 0.01,
    seed: int = 0,
    law: Law = CHINCHILLA,
    curve_points: int = 0,
) -> Observations:
    """An IsoFLOP grid centred on the true optimum: per budget N = N*(C) * span^[-1..1],
    D = C / (6N), loss = L(N, D) * exp(noise * z).

    With `curve_points`, each run also has a loss curve: the law along the run, L(N, t) with
    its own noise at `curve_points` log-spaced t from D/1000 to D (the last point is the final
    loss), each point what a run trained to t tokens reaches (schedule `ANYTIME`). The final
    losses are the same with or without curves (the curves' noise is drawn after them).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        for n in law.n_opt(c) * span ** np.linspace(-1, 1, sizes_per_budget):
            d = c / (6 * n)
            rows.append((c, n, d, c, law.loss(n, d) * np.exp(noise * rng.standard_normal())))
    budget, params, tokens, compute, loss = (np.array(col) for col in zip(*rows, strict=True))
    curves: tuple = ()
    if curve_points:
        curves = tuple(
            [
                *(
                    (float(t), float(law.loss(n, t) * np.exp(noise * rng.standard_normal())))
                    for t in np.geomspace(d / 1000, d, curve_points)[:-1]
                ),
                (float(d), float(final)),
            ]
            for n, d, final in zip(params, tokens, loss, strict=True)
        )
    return Observations(
        budget=budget,
        params=params,
        tokens=tokens,
        compute=compute,
        loss=loss,
        ids=tuple(f"s{i:04d}" for i in range(len(rows))),
        conventions=Conventions(params="total", flops="6n"),
        source="synthetic",
        curves=curves,
        schedules=(ANYTIME,) * len(rows) if curve_points else (),
    )


def truth_fit(budgets=(1e18, 1e19, 1e20, 1e21, 1e22), law: Law = CHINCHILLA) -> FitResult:
    """The exact answer for `law` as a FitResult, its parametric law included (for plotter
    tests: no fitter involved)."""

    def exact(exponent: float, coefficient: float) -> PowerLaw:
        return PowerLaw(coefficient=coefficient, exponent=exponent, r2=1.0, n_points=len(budgets))

    c = np.asarray(budgets, dtype=float)
    optima = [
        Optimum(
            budget=float(ci),
            params=Estimate(value=float(law.n_opt(ci))),
            tokens=Estimate(value=float(law.d_opt(ci))),
            loss=Estimate(value=float(law.loss_opt(ci))),
            n_runs=0,
        )
        for ci in c
    ]
    slope, intercept = np.polyfit(np.log(c), np.log(law.loss_opt(c)), 1)
    return FitResult(
        fitter="truth",
        conventions=Conventions(params="total", flops="6n"),
        parametric={
            key: Estimate(value=float(getattr(law, key)))
            for key in ("E", "A", "B", "alpha", "beta")
        },
        laws={
            "n_opt": exact(law.a, law.G * 6**-law.a),
            "d_opt": exact(law.b, 6**-law.b / law.G),
            "loss_opt": PowerLaw(coefficient=float(np.exp(intercept)), exponent=float(slope)),
        },
        optima=optima,
    )


def round_outcome(
    plan: SweepPlan, law: Law = CHINCHILLA, noise: float = 0.01, halfwidth: float = 0.1
) -> StudyOutcome:
    """What a planner that plans in rounds sees after `plan` is trained and fitted: its runs
    on `law` (log-normal `noise`, seed 0) and the exact fit of `law` with an interval of
    +-`halfwidth` on the N* exponent (and a matching covariance, for intervals on N*)."""
    rng = np.random.default_rng(0)
    specs = plan.experiments
    params = np.array([s.params for s in specs], dtype=float)
    tokens = np.array([s.tokens for s in specs], dtype=float)
    observations = Observations(
        budget=np.array([s.budget for s in specs], dtype=float),
        params=params,
        tokens=tokens,
        compute=np.array([s.tokens * s.flops_per_token for s in specs], dtype=float),
        loss=law.loss(params, tokens) * np.exp(noise * rng.standard_normal(len(specs))),
        ids=tuple(s.id for s in specs),
        conventions=plan.conventions,
        source="synthetic",
    )
    fit = truth_fit(tuple(plan.budgets), law)
    se = halfwidth / 1.96
    n_opt = fit.laws["n_opt"].model_copy(
        update={
            "exponent_interval": (law.a - halfwidth, law.a + halfwidth),
            "covariance": ((0.04, 0.0), (0.0, se * se)),
            "t_value": 1.96,
        }
    )
    fit = fit.model_copy(update={"laws": {**fit.laws, "n_opt": n_opt}})
    return StudyOutcome(fits=(fit,), observations=(observations,), plan=plan)
