"""Opt-in (`uv run pytest -m slow -s`): do the robust fitter's 95% intervals mean 95%?

Over 100 seeded replications of the synthetic design the acceptance tests use (Chinchilla's
law, 5 budgets x 7 sizes over 1/8x-8x the true optimum, 1% log-normal noise), the default
interval for the N* exponent must hold the truth in at least 88% of them. Prints the coverage
and the median interval width, which say together whether the intervals are honest and useful.
"""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_core.testing.synthetic import CHINCHILLA, isoflop_observations
from flops_fit_fitters.robust import RobustConfig, RobustFitter

BUDGETS = (1e18, 1e19, 1e20, 1e21, 1e22)
REPLICATIONS = 100


@pytest.mark.slow
def test_default_interval_on_a_covers_the_truth():
    fitter = RobustFitter(RobustConfig())
    covered, widths, errors = 0, [], []
    for seed in range(REPLICATIONS):
        observations = isoflop_observations(BUDGETS, 7, 8.0, 0.01, seed=10_000 + seed)
        law = fitter.fit(observations).laws["n_opt"]
        lo, hi = law.exponent_interval
        covered += lo <= CHINCHILLA.a <= hi
        widths.append(hi - lo)
        errors.append(abs(law.exponent - CHINCHILLA.a))
    coverage = covered / REPLICATIONS
    print(
        f"\nrobust, {REPLICATIONS} replications: coverage of a's 95% interval {coverage:.0%}, "
        f"median width {np.median(widths):.4f}, median |a_hat - a| {np.median(errors):.4f}"
    )
    assert coverage >= 0.88
