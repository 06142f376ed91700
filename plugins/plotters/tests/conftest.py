"""Synthetic inputs for the plotter tests: a small Chinchilla-shaped IsoFLOP study and its fit.

Built directly from the core schemas (no fitter plugin involved) so the plotters are tested
against exactly the data they are given: losses from Chinchilla's fitted law
L = 1.69 + 406.4/N^0.34 + 410.7/D^0.28 with D = C/(6N), plus seeded noise, and per-budget
optima taken as the best run, with power laws fitted in log space.
"""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_core import Estimate, FitResult, Observations, Optimum, PowerLaw
from flops_fit_core.testing import CHINCHILLA, truth_fit

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # Student t, 97.5% quantile


def chinchilla_loss(n, d):
    return E + A / np.power(n, ALPHA) + B / np.power(d, BETA)


def chinchilla_n_opt(c):
    """N*(C) of the law above under C = 6ND (Hoffmann et al. 2022, eq. 4)."""
    g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    return g * np.power(np.asarray(c) / 6, BETA / (ALPHA + BETA))


def make_observations(budgets, sizes_per_budget: int = 7, noise: float = 0.004, seed: int = 0):
    """Runs spread log-evenly over a factor 64 in N at each budget, D = C/(6N).

    Each budget's grid is centred off the true optimum by up to a factor 2, as a planner that
    guessed N* from a prior law would place it.
    """
    rng = np.random.default_rng(seed)
    cols: dict[str, list[float]] = {k: [] for k in ("budget", "params", "tokens", "loss")}
    for c in budgets:
        centre = chinchilla_n_opt(c) * 2.0 ** rng.uniform(-1, 1)
        for n in centre * np.geomspace(1 / 8, 8, sizes_per_budget):
            n = float(round(n))
            d = c / (6 * n)
            cols["budget"].append(c)
            cols["params"].append(n)
            cols["tokens"].append(d)
            cols["loss"].append(float(chinchilla_loss(n, d) + rng.normal(0, noise)))
    params = np.array(cols["params"])
    tokens = np.array(cols["tokens"])
    return Observations(
        budget=np.array(cols["budget"]),
        params=params,
        tokens=tokens,
        compute=6 * params * tokens,
        loss=np.array(cols["loss"]),
        ids=tuple(f"run{i:03d}" for i in range(len(params))),
        source="synthetic",
    )


def fit_law(c, y, with_uncertainty: bool = True) -> PowerLaw:
    """Least squares of ln y on ln C, with the covariance `predict_interval` needs."""
    x, ly = np.log(c), np.log(y)
    if not with_uncertainty or len(c) < 3:
        a, lnk = np.polyfit(x, ly, 1)
        return PowerLaw(coefficient=float(np.exp(lnk)), exponent=float(a))
    (a, lnk), cov = np.polyfit(x, ly, 1, cov=True)
    t = T_95.get(len(c) - 2, 2.0)
    se_a, se_k = np.sqrt(cov[0, 0]), np.sqrt(cov[1, 1])
    resid = ly - (lnk + a * x)
    r2 = 1 - resid.var() / ly.var()
    return PowerLaw(
        coefficient=float(np.exp(lnk)),
        exponent=float(a),
        coefficient_interval=(float(np.exp(lnk - t * se_k)), float(np.exp(lnk + t * se_k))),
        exponent_interval=(float(a - t * se_a), float(a + t * se_a)),
        r2=float(r2),
        covariance=((float(cov[1, 1]), float(cov[0, 1])), (float(cov[0, 1]), float(cov[0, 0]))),
        t_value=t,
        n_points=len(c),
    )


def make_fit(
    obs: Observations,
    with_intervals: bool = True,
    flag_budgets: tuple[float, ...] = (),
    fitter: str = "empirical",
) -> FitResult:
    """Per budget the vertex of a parabola in ln N (Approach 2); laws through the vertices."""
    optima = []
    for budget, rows in obs.groups():
        x = np.log(obs.params[rows])
        curv, slope, const = np.polyfit(x, obs.loss[rows], 2)
        x_star = -slope / (2 * curv)
        n, loss = float(np.exp(x_star)), float(const - slope**2 / (4 * curv))
        d = budget / (6 * n)

        def est(v, lo, hi):
            return Estimate(
                value=float(v), interval=(float(lo), float(hi)) if with_intervals else None
            )

        optima.append(
            Optimum(
                budget=budget,
                params=est(n, n / 1.4, n * 1.4),
                tokens=est(d, d / 1.4, d * 1.4),
                loss=est(loss, loss - 0.006, loss + 0.006),
                n_runs=len(rows),
                flags=["minimum at grid edge"] if budget in flag_budgets else [],
            )
        )
    c = np.array([o.budget for o in optima])
    laws = {
        "n_opt": fit_law(c, [o.params.value for o in optima], with_intervals),
        "d_opt": fit_law(c, [o.tokens.value for o in optima], with_intervals),
        "loss_opt": fit_law(c, [o.loss.value for o in optima], with_intervals),
    }
    return FitResult(fitter=fitter, laws=laws, optima=optima)


BUDGETS = (1e18, 1e19, 1e20)


class Synthetic:
    """The builders above, handed to tests as a fixture (conftest is not importable under
    pytest's importlib import mode)."""

    budgets = BUDGETS
    observations = staticmethod(make_observations)
    fit = staticmethod(make_fit)
    law = staticmethod(fit_law)


@pytest.fixture(scope="session")
def synth() -> type[Synthetic]:
    return Synthetic


@pytest.fixture
def observations() -> Observations:
    return make_observations(BUDGETS, sizes_per_budget=5)


@pytest.fixture
def fit(observations) -> FitResult:
    return make_fit(observations)


@pytest.fixture
def fit_without_intervals(observations) -> FitResult:
    return make_fit(observations, with_intervals=False)


def _frontier_fit(methods=("chinchilla", "pareto", "hull")) -> FitResult:
    """The true law's fit with each envelope method's frontier on the law's optimum (what an
    `envelope` fit records in `diagnostics.frontiers`), each method a little off the last."""
    fit = truth_fit()
    c = np.geomspace(1e18, 1e22, 40)
    law = CHINCHILLA
    frontiers = {
        m: {
            "n_exponent": law.a + 0.01 * i,
            "compute": c.tolist(),
            "loss": law.loss_opt(c).tolist(),
            "params": (law.n_opt(c) * (c / 1e18) ** (0.01 * i)).tolist(),
            "run": [f"s{j:04d}" for j in range(c.size)],
        }
        for i, m in enumerate(methods)
    }
    diagnostics = {**fit.diagnostics, "method": methods[0], "frontiers": frontiers}
    return fit.model_copy(update={"fitter": "envelope", "diagnostics": diagnostics})


@pytest.fixture
def frontier_fit():
    """`_frontier_fit`: a fit that read each envelope method's frontier (methods by argument)."""
    return _frontier_fit
