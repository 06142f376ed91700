"""The sweep's grid before any shape is built: budgets, target sizes, learning rates.

Experiment ids hash the budget and learning rate as JSON text, so these numbers are made
reproducible to the bit: computed values that are not given by the user are rounded to 12
significant digits (Python's correctly rounded formatting), so a last-bit difference between
numpy or libm builds cannot change every id of a resumed sweep. The size exponents are the exact
ratios (2i - (k-1)) / (k-1), each rounded once, so refining a grid from k to 2k - 1 sizes keeps
the old targets bit-identical by construction, not by the details of numpy's linspace.
"""

from __future__ import annotations

import numpy as np

from .config import AdaptiveConfig, IsoFlopConfig, LrSchedule

__all__ = [
    "budget_values",
    "ladder_budgets",
    "learning_rates",
    "log_budgets",
    "prior_optimum",
    "round_sig",
    "size_exponents",
]

SIGNIFICANT_DIGITS = 12


def round_sig(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Each value rounded to `digits` significant digits, platform-independently."""
    return np.array([float(f"{v:.{digits}g}") for v in np.asarray(values, float).tolist()])


def log_budgets(low: float, high: float, count: int) -> np.ndarray:
    """`count` budgets log-spaced from `low` to `high`: the ends exactly as given, the
    interior rounded (see module)."""
    values = round_sig(np.geomspace(low, high, count))
    values[0], values[-1] = low, high
    return values


def budget_values(config: IsoFlopConfig) -> np.ndarray:
    """The planned budgets, ascending: the explicit list, or min..max log-spaced inclusive."""
    if config.budgets is not None:
        return np.sort(np.array(config.budgets, dtype=float))
    return log_budgets(config.min_flops, config.max_flops, config.n_budgets)


def ladder_budgets(config: AdaptiveConfig) -> np.ndarray:
    """The budgets the adaptive planner may place runs at: `ladder_size` log-steps from
    min_flops to max_flops."""
    return log_budgets(config.min_flops, config.max_flops, config.ladder_size)


def size_exponents(k: int) -> np.ndarray:
    """Exponents e in [-1, 1] of the targets N0 * span ** e, evenly spaced, k of them.

    One size is the prior optimum itself (e = 0), not its lower end as linspace(-1, 1, 1) gives.
    """
    if k == 1:
        return np.zeros(1)
    steps = np.arange(k, dtype=np.int64)
    return (2 * steps - (k - 1)) / float(k - 1)


def prior_optimum(config: IsoFlopConfig, budgets: np.ndarray) -> np.ndarray:
    """The prior compute-optimal N0(C) the sizes are spread around.

    Chinchilla's rule D = tokens_per_param * N with C = 6 N D gives N0 = sqrt(C / (6 tpp));
    an explicit prior gives N0 = prior_coefficient * C ** prior_exponent.
    """
    budgets = np.asarray(budgets, dtype=float)
    if config.tokens_per_param is not None:
        return np.sqrt(budgets / (6.0 * config.tokens_per_param))
    return config.prior_coefficient * np.power(budgets, config.prior_exponent)


def learning_rates(schedule: LrSchedule, params: np.ndarray) -> np.ndarray:
    """lr = base_lr * (N / base_size) ** (-lr_power) for each real N, rounded (see module)."""
    n = np.asarray(params, dtype=float)
    if schedule.lr_power == 0:
        return np.full(n.shape, schedule.base_lr)
    return round_sig(schedule.base_lr * np.power(n / schedule.base_size, -schedule.lr_power))
