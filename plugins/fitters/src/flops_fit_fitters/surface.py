"""The loss surface L(N, D) = E + A/N^alpha + B/D^beta and its compute-optimal frontier.

The algebra the `robust` fitter turns a fitted surface into laws with. A surface is a theta
(ln E, ln A, ln B, alpha, beta) (`THETA_NAMES`; `PARAMS` names the natural parameters). With
C = k N D (k measured from the data: 6 under the 6N convention), minimising L at fixed C gives
a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)),
N*(C) = G (C/k)^a, D*(C) = (C/k)^b / G, and L*(C) = E + K C^(-alpha beta/(alpha+beta)), an
exact power law with an offset.
"""

from __future__ import annotations

import math

import numpy as np

# Used by `robust` alone: nothing here is imported from outside this package.
__all__: list[str] = []

#: The natural parameters of a surface, in the order of every theta array.
PARAMS = ("E", "A", "B", "alpha", "beta")
#: The entries of a theta array: E, A and B are held as logs.
THETA_NAMES = ("ln_E", "ln_A", "ln_B", "alpha", "beta")


def fitted_loss(theta: np.ndarray, ln_n: np.ndarray, ln_d: np.ndarray) -> np.ndarray:
    """E + A N^-alpha + B D^-beta at one theta (5,) in (ln E, ln A, ln B, alpha, beta)."""
    e, a, b, alpha, beta = theta
    return math.exp(e) + np.exp(a - alpha * ln_n) + np.exp(b - beta * ln_d)


def frontier(theta: np.ndarray, k_flops: float) -> dict[str, np.ndarray]:
    """The compute-optimal frontier of each row of theta (K, 5), with C = k_flops N D.

    Exponents `a` (of N*), `b` (of D*), `b_minus_a` (of D*/N*) and `gamma` (of L* - E), the
    laws' coefficients in logs (`ln_kn`, `ln_kd`, `ln_kr`, `ln_kl`) and `E`: arrays (K,).
    An exponent at 0 gives an infinite or undefined frontier, left for the caller to check.
    """
    ln_e, ln_a, ln_b, alpha, beta = theta.T
    total = alpha + beta
    with np.errstate(divide="ignore", invalid="ignore"):
        a = beta / total
        b = alpha / total
        ln_g = (np.log(alpha) + ln_a - np.log(beta) - ln_b) / total
        ln_c = np.log(k_flops)
        ln_kn = ln_g - a * ln_c
        ln_kd = -ln_g - b * ln_c
        # L*(C) - E = A N*^-alpha + B D*^-beta = K C^gamma with gamma = -alpha beta / (alpha+beta)
        gamma = -alpha * beta / total
        ln_kl = np.logaddexp(ln_a - alpha * ln_kn, ln_b - beta * ln_kd)
    return {
        "a": a,
        "b": b,
        "b_minus_a": b - a,
        "gamma": gamma,
        "ln_kn": ln_kn,
        "ln_kd": ln_kd,
        "ln_kr": ln_kd - ln_kn,
        "ln_kl": ln_kl,
        "E": np.exp(ln_e),
    }


def frontier_at(derived: dict[str, np.ndarray], budget: float) -> dict[str, np.ndarray]:
    """N* (`n`), D* (`d`) and L* (`l`) at compute `budget` from a `frontier`, row by row."""
    x = math.log(budget)
    return {
        "n": np.exp(derived["ln_kn"] + derived["a"] * x),
        "d": np.exp(derived["ln_kd"] + derived["b"] * x),
        "l": derived["E"] + np.exp(derived["ln_kl"] + derived["gamma"] * x),
    }
