"""Variable projection and batched Newton: the solver that fits L(N, D) many times at once.

It is the engine of the `robust` fitter, for the surface L(N, D) = E + A/N^alpha + B/D^beta of
`surface`, whose parameter order (`surface.PARAMS`) every theta array here follows.

Chinchilla's Approach 3 (and Epoch AI's replication) runs one L-BFGS from each of 4,500 starts and
one more per bootstrap resample: ~10,000 small Python-driven optimisations. This module does the
same work as a few dozen numpy passes over all starts or resamples at once:

1. **Variable projection for the starts.** For fixed exponents (alpha, beta) the model is linear
   in (E, A, B), so a grid over (alpha, beta) needs no grid over E, A, B: each grid point gets its
   best non-negative (E, A, B) from a 3x3 least-squares solve (weighted by 1/L² for losses on ln L,
   the first-order equivalent of a log residual). Every entry of those 3x3 systems is a product of
   an alpha-only and a beta-only array, so the whole grid costs two small matrix products. The grid
   objective then gives, for every start, a discrete descent to a local minimum of the grid
   (`grid_basins`); those minima are polished, and a start "reaches" the optimum when its basin's
   polished objective is within `SAME_OPTIMUM` of the best.
2. **Batched Newton with exact Hessians.** Polishing, bootstrap replicates and leave-one-out refits
   are all the same problem with per-point weights (a resample is a vector of counts), solved by
   Levenberg-Marquardt-damped Newton on (ln E, ln A, ln B, alpha, beta) for every row at once,
   with the log-sum-exp form of the model (as Chinchilla and Epoch). The Hessian is exact
   (including the curvature of the model), which matters for Huber with delta = 1e-3: most points
   sit on its linear arms, where a Gauss-Newton Hessian would be nearly empty. Rows that have
   converged leave the batch.

Losses (`Objective`): `huber` on ln L (default, delta 1e-3, summed), `log_mse` (squared ln L
error), `mse` (squared raw-loss error) and `asymmetric_mae` (raw-loss absolute error weighted
`asymmetry` above the data and 1 - `asymmetry` below, smoothed within ±delta so Newton applies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Data", "Grid", "Objective", "evaluate", "minimise", "project", "screen"]

#: Two objectives closer than this (relative) are the same optimum for the convergence report.
SAME_OPTIMUM = 1e-6

#: Where the log of a projected coefficient that came out 0 is clamped: E, A or B = e^-60 is
#: zero for every purpose, yet finite, so the log-parametrised Newton steps stay defined.
_LOG_FLOOR = -60.0


@dataclass(frozen=True)
class Data:
    """The points a fit sees: ln N, ln D, the loss and its log, as float64 arrays."""

    ln_n: np.ndarray
    ln_d: np.ndarray
    loss: np.ndarray
    ln_loss: np.ndarray = field(init=False)
    columns: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("ln_n", "ln_d", "loss"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), float))
        object.__setattr__(self, "ln_loss", np.log(self.loss))
        ln_n, ln_d = self.ln_n, self.ln_d
        ones = np.ones_like(ln_n)
        columns = {
            "n": np.stack((ones, ln_n, ln_n * ln_n), axis=1),
            "d": np.stack((ones, ln_d, ln_d * ln_d), axis=1),
            "nd": np.stack((ones, ln_n, ln_d, ln_n * ln_d), axis=1),
        }
        object.__setattr__(self, "columns", columns)

    @classmethod
    def from_arrays(cls, params, tokens, loss) -> Data:
        return cls(np.log(params), np.log(tokens), np.asarray(loss, float))

    def __len__(self) -> int:
        return self.loss.size


@dataclass(frozen=True)
class Objective:
    """A per-point loss rho(r) on a residual r of ln L (`log_space`) or of L itself."""

    kind: str = "huber"
    delta: float = 1e-3
    asymmetry: float = 0.5

    @property
    def log_space(self) -> bool:
        return self.kind in ("huber", "log_mse")

    def rho(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """rho(r), rho'(r) and rho''(r), elementwise."""
        if self.kind in ("mse", "log_mse"):
            return r * r, 2.0 * r, np.full_like(r, 2.0)
        d = self.delta
        a = np.abs(r)
        inner = a <= d
        value = np.where(inner, 0.5 * r * r, d * (a - 0.5 * d))
        d1 = np.clip(r, -d, d)
        d2 = inner.astype(float)
        if self.kind == "huber":
            return value, d1, d2
        # asymmetric_mae: a smoothed pinball loss, |r| weighted by side, in raw-loss units.
        side = np.where(r > 0, self.asymmetry, 1.0 - self.asymmetry) / d
        return side * value, side * d1, side * d2


#: Rows evaluated together: a block of 256 starts x a few hundred points stays in cache, and
#: numpy runs 2-3x faster on it than on one array of all rows (measured here: 6 vs 15 ms).
_BLOCK = 256


def evaluate(
    theta: np.ndarray,
    data: Data,
    objective: Objective,
    weights: np.ndarray | None = None,
    derivatives: bool = True,
):
    """Objective per row of theta (K, 5); with `derivatives`, also gradient and Hessian.

    Shapes: (K,), (K, 5) and (K, 5, 5).

    With s = ln L-hat, the residual is r = s - ln L (log losses) or e^s - L (raw losses), and
    grad s = q = (p0, p1, p2, -p1 ln N, -p2 ln D) with p the log-sum-exp shares of the three
    terms, Hess s = M' diag(p) M - q q'. So the Hessian of sum w rho(r) is
    sum c1 q q' + sum c2 M' diag(p) M, with c2 = w rho' r_s (also the gradient's weight) and
    c1 = w (rho'' r_s² + rho' r_ss) - c2. Each sum is a product of a (K, n) weight array with a
    few fixed per-point columns (1, ln N, ln N², ...), so no (K, n, 5) array is ever formed.
    """
    k = theta.shape[0]
    f = np.empty(k)
    grad = np.empty((k, 5)) if derivatives else None
    hess = np.empty((k, 5, 5)) if derivatives else None
    for start in range(0, k, _BLOCK):
        rows = slice(start, min(start + _BLOCK, k))
        w = None if weights is None else weights[rows]
        # A trial step may overflow; its objective is then inf or nan and the step is refused.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = _evaluate_block(theta[rows], data, objective, w, derivatives)
        if derivatives:
            f[rows], grad[rows], hess[rows] = out
        else:
            f[rows] = out
    return (f, grad, hess) if derivatives else f


def _evaluate_block(theta, data, objective, weights, derivatives):
    ln_n, ln_d = data.ln_n, data.ln_d
    e, a, b, alpha, beta = (theta[:, k : k + 1] for k in range(5))
    u = np.exp(a - alpha * ln_n)
    v = np.exp(b - beta * ln_d)
    fitted = np.exp(e) + u + v
    r = np.log(fitted) - data.ln_loss if objective.log_space else fitted - data.loss
    value, d1, d2 = objective.rho(r)
    if weights is not None:
        value, d1, d2 = value * weights, d1 * weights, d2 * weights
    f = value.sum(axis=1)
    if not derivatives:
        return f
    inv = 1.0 / fitted
    p1 = u * inv
    p2 = v * inv
    if objective.log_space:
        c2 = d1
        c1 = d2 - c2
    else:
        c2 = d1 * fitted
        c1 = (d2 * fitted + d1) * fitted - c2
    cols = data.columns
    # sums of c2 * (p1, p2) * (1, ln N or ln D, its square): gradient and curvature terms
    c2p1 = (c2 * p1) @ cols["n"]  # (K, 3): sum c2 p1, sum c2 p1 lnN, sum c2 p1 lnN^2
    c2p2 = (c2 * p2) @ cols["d"]
    c2sum = c2.sum(axis=1)
    grad = np.empty((theta.shape[0], 5))
    grad[:, 1] = c2p1[:, 0]
    grad[:, 2] = c2p2[:, 0]
    grad[:, 0] = c2sum - grad[:, 1] - grad[:, 2]
    grad[:, 3] = -c2p1[:, 1]
    grad[:, 4] = -c2p2[:, 1]
    # S = sum c1 f f' with f = (1, p1, p2, p1 lnN, p2 lnD); then q = T f.
    c1p1 = c1 * p1
    c1p2 = c1 * p2
    s11 = (c1p1 * p1) @ cols["n"]  # p1²: 1, lnN, lnN²
    s22 = (c1p2 * p2) @ cols["d"]  # p2²: 1, lnD, lnD²
    s12 = (c1p1 * p2) @ cols["nd"]  # p1 p2: 1, lnN, lnD, lnN lnD
    s1 = c1p1 @ cols["n"][:, :2]  # p1: 1, lnN
    s2 = c1p2 @ cols["d"][:, :2]  # p2: 1, lnD
    s0 = c1.sum(axis=1)
    S = np.empty((theta.shape[0], 5, 5))
    S[:, 0, 0] = s0
    S[:, 0, 1] = S[:, 1, 0] = s1[:, 0]
    S[:, 0, 2] = S[:, 2, 0] = s2[:, 0]
    S[:, 0, 3] = S[:, 3, 0] = s1[:, 1]
    S[:, 0, 4] = S[:, 4, 0] = s2[:, 1]
    S[:, 1, 1] = s11[:, 0]
    S[:, 1, 2] = S[:, 2, 1] = s12[:, 0]
    S[:, 1, 3] = S[:, 3, 1] = s11[:, 1]
    S[:, 1, 4] = S[:, 4, 1] = s12[:, 2]
    S[:, 2, 2] = s22[:, 0]
    S[:, 2, 3] = S[:, 3, 2] = s12[:, 1]
    S[:, 2, 4] = S[:, 4, 2] = s22[:, 1]
    S[:, 3, 3] = s11[:, 2]
    S[:, 3, 4] = S[:, 4, 3] = s12[:, 3]
    S[:, 4, 4] = s22[:, 2]
    hess = _T @ S @ _T.T
    hess[:, 0, 0] += grad[:, 0]
    hess[:, 1, 1] += c2p1[:, 0]
    hess[:, 1, 3] -= c2p1[:, 1]
    hess[:, 3, 1] -= c2p1[:, 1]
    hess[:, 3, 3] += c2p1[:, 2]
    hess[:, 2, 2] += c2p2[:, 0]
    hess[:, 2, 4] -= c2p2[:, 1]
    hess[:, 4, 2] -= c2p2[:, 1]
    hess[:, 4, 4] += c2p2[:, 2]
    return f, grad, hess


def point_gradients(theta: np.ndarray, data: Data, objective: Objective) -> np.ndarray:
    """The gradient of each point's rho(r) at one theta (5,): an (n, 5) array (for sandwiches)."""
    e, a, b, alpha, beta = theta
    u = np.exp(a - alpha * data.ln_n)
    v = np.exp(b - beta * data.ln_d)
    fitted = math.exp(e) + u + v
    if objective.log_space:
        r = np.log(fitted) - data.ln_loss
        c2 = objective.rho(r)[1]
    else:
        c2 = objective.rho(fitted - data.loss)[1] * fitted
    p1, p2 = u / fitted, v / fitted
    q = np.stack((1.0 - p1 - p2, p1, p2, -p1 * data.ln_n, -p2 * data.ln_d), axis=1)
    return c2[:, None] * q


#: q = T f: the gradient of ln L-hat, (p0, p1, p2, -p1 lnN, -p2 lnD), from f = (1, p1, p2,
#: p1 lnN, p2 lnD), with p0 = 1 - p1 - p2.
_T = np.array(
    [
        [1.0, -1.0, -1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, -1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, -1.0],
    ]
)


@dataclass
class Solution:
    """Where each row of a batched minimisation ended."""

    theta: np.ndarray  # (K, 5)
    objective: np.ndarray  # (K,)
    converged: np.ndarray  # (K,) bool
    iterations: np.ndarray  # (K,) int
    hessian: np.ndarray | None = None  # (K, 5, 5) at the end, when asked for


def minimise(
    theta0: np.ndarray,
    data: Data,
    objective: Objective,
    weights: np.ndarray | None = None,
    *,
    free: np.ndarray | None = None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    max_iter: int = 200,
    rtol: float = 1e-13,
    keep_hessian: bool = False,
    lam0: float = 1e-4,
) -> Solution:
    """Minimise every row of theta0 (K, 5) (with its own weights row) by damped Newton.

    Levenberg-Marquardt: a step solves (H + lambda diag(|H|)) s = -g; it is kept when the
    objective falls, and lambda shrinks 3x, else lambda grows 10x. Fixed parameters (`free`
    false) never move; a parameter on a bound that its gradient pushes against is held for
    that step, and every step is projected onto the bounds. A row stops when a kept
    step lowers its objective by less than `rtol` relative, or when no step can lower it any
    more (lambda beyond 1e12: the optimum to machine precision); `converged` is false for rows
    still moving after `max_iter` steps.
    """
    theta = np.array(theta0, dtype=float, copy=True)
    k = theta.shape[0]
    free = np.ones(5, bool) if free is None else np.asarray(free, bool)
    lower = np.full(5, -np.inf) if lower is None else np.asarray(lower, float)
    upper = np.full(5, np.inf) if upper is None else np.asarray(upper, float)
    theta = np.clip(theta, lower, upper)
    f, g, h = evaluate(theta, data, objective, weights)
    lam = np.full(k, lam0)
    converged = np.zeros(k, bool)
    iterations = np.zeros(k, int)
    hess_out = h.copy() if keep_hessian else None
    active = np.flatnonzero(np.isfinite(f))
    fixed = ~free
    eye = np.eye(5)
    for _ in range(max_iter):
        if active.size == 0:
            break
        ga, ha = g[active], h[active]
        # Held this step: fixed parameters, and any on a bound that the gradient pushes
        # against (the active set of a projected Newton method). Their rows and columns
        # leave the system, so the others' step does not count on them moving.
        ta = theta[active]
        held = fixed | ((ta <= lower) & (ga > 0)) | ((ta >= upper) & (ga < 0)) | ~np.isfinite(ga)
        keep = ~held
        ga = np.where(keep, ga, 0.0)
        ha = np.where(keep[:, :, None] & keep[:, None, :], ha, 0.0)
        ha = np.where(np.isfinite(ha), ha, 0.0)
        diag = np.abs(np.diagonal(ha, axis1=1, axis2=2))
        scale = diag.max(axis=1, keepdims=True)
        damp = np.maximum(diag, 1e-12 * scale + 1e-300)
        system = ha + (lam[active, None] * damp)[:, :, None] * eye
        system = system + held[:, :, None] * eye
        try:
            step = -np.linalg.solve(system, ga[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -np.stack(
                [np.linalg.lstsq(m, v, rcond=None)[0] for m, v in zip(system, ga, strict=True)]
            )
        trial = np.clip(theta[active] + step, lower, upper)
        w = None if weights is None else weights[active]
        ft, gt, htr = evaluate(trial, data, objective, w)
        better = np.isfinite(ft) & (ft < f[active])
        idx = active[better]
        gain = f[idx] - ft[better]
        theta[idx], f[idx], g[idx], h[idx] = trial[better], ft[better], gt[better], htr[better]
        if keep_hessian:
            hess_out[idx] = htr[better]
        iterations[active] += 1
        lam[idx] = np.maximum(lam[idx] / 3.0, 1e-12)
        lam[active[~better]] *= 10.0
        done = np.zeros(active.size, bool)
        done[better] = gain <= rtol * np.abs(f[idx]) + 1e-300
        done |= lam[active] > 1e12
        converged[active[done]] = True
        active = active[~done]
    return Solution(theta, f, converged, iterations, hess_out)


@dataclass(frozen=True)
class Problem:
    """What every solve of one fit shares: the points, the loss, and the constraints on theta.

    `free`, `lower` and `upper` hold one entry per parameter of theta (ln E, ln A, ln B,
    alpha, beta): which may move, and its bounds. `fixed` maps the index of each parameter
    held at a value to that value in natural units (E, A, B, alpha, beta), as `screen` takes
    it.
    """

    data: Data
    objective: Objective
    free: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    fixed: dict[int, float] = field(default_factory=dict)

    def minimise(self, theta0: np.ndarray, weights: np.ndarray | None = None, **options):
        """`minimise` every row of theta0 under this problem's constraints (`options`: its
        keyword arguments `max_iter`, `rtol`, `keep_hessian`, `lam0`)."""
        return minimise(
            theta0,
            self.data,
            self.objective,
            weights,
            free=self.free,
            lower=self.lower,
            upper=self.upper,
            **options,
        )


@dataclass(frozen=True)
class Grid:
    """The (alpha, beta) starts: `n_alpha` x `n_beta` evenly spaced points over the ranges."""

    alpha: tuple[float, float] = (0.0, 2.5)
    beta: tuple[float, float] = (0.0, 2.5)
    n_alpha: int = 75
    n_beta: int = 60

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        return np.linspace(*self.alpha, self.n_alpha), np.linspace(*self.beta, self.n_beta)

    @property
    def size(self) -> int:
        return self.n_alpha * self.n_beta


def project(
    alphas: np.ndarray, betas: np.ndarray, data: Data, objective: Objective, fixed_linear=None
) -> np.ndarray:
    """Best non-negative (E, A, B) for every (alpha, beta) pair: array (n_alpha, n_beta, 3).

    Least squares of L on (1, N^-alpha, D^-beta), weighted by 1/L² for losses on ln L (a
    relative error is a log error to first order). The normal equations' entries are sums of
    products of alpha-only and beta-only arrays, so they come from a few matrix products; a
    pair whose unconstrained solution has a negative coefficient is re-solved on every subset
    of the coefficients and the best feasible one is kept (an exact NNLS for three unknowns).
    `fixed_linear` maps 0/1/2 (E/A/B) to a fixed value, which is moved to the right-hand side.
    """
    fixed_linear = fixed_linear or {}
    w = 1.0 / data.loss**2 if objective.log_space else np.ones_like(data.loss)
    na, nb, n = alphas.size, betas.size, data.loss.size
    # Columns scaled to unit weighted norm: N^-alpha spans 1e-20..1 over the grid, and unscaled
    # normal equations would lose every digit to that range.
    u = np.exp(-np.outer(alphas, data.ln_n))  # (na, n)
    v = np.exp(-np.outer(betas, data.ln_d))  # (nb, n)
    u_scale = np.sqrt((u * u * w).sum(1))
    v_scale = np.sqrt((v * v * w).sum(1))
    u /= u_scale[:, None]
    v /= v_scale[:, None]
    one_scale = np.sqrt(w.sum())
    one = np.full(n, 1.0 / one_scale)
    scales = np.empty((na, nb, 3))
    scales[:, :, 0] = one_scale
    scales[:, :, 1] = u_scale[:, None]
    scales[:, :, 2] = v_scale[None, :]
    uw, vw = u * w, v * w
    normal = np.empty((na, nb, 3, 3))
    entries = {
        (0, 0): (one * one * w).sum(),
        (0, 1): (uw @ one)[:, None],
        (0, 2): (vw @ one)[None, :],
        (1, 1): 1.0,
        (2, 2): 1.0,
        (1, 2): uw @ v.T,
    }
    for (i, j), value in entries.items():
        normal[:, :, i, j] = value
        normal[:, :, j, i] = value
    lw = data.loss * w
    rhs = np.empty((na, nb, 3))
    rhs[:, :, 0] = lw @ one
    rhs[:, :, 1] = (u @ lw)[:, None]
    rhs[:, :, 2] = (v @ lw)[None, :]
    tt = np.full((na, nb), (data.loss * lw).sum())
    if fixed_linear:
        # A fixed coefficient c_j moves c_j * column_j to the target; every sum the solve needs
        # follows from the products above, so no (n_alpha, n_beta, n) array is formed.
        c = np.zeros((na, nb, 3))
        for j, value in fixed_linear.items():
            c[:, :, j] = value * scales[:, :, j]
        tt = tt - 2 * (c * rhs).sum(2) + np.einsum("abi,abij,abj->ab", c, normal, c)
        rhs = rhs - np.einsum("abij,abj->abi", normal, c)
    free = [j for j in range(3) if j not in fixed_linear]
    coef = np.zeros((na, nb, 3))
    best_sse = np.full((na, nb), np.inf)
    # Every non-empty subset of the free coefficients, largest first: the unconstrained
    # solution is kept wherever it is feasible, a smaller subset only where it fits better.
    subsets = sorted(
        {tuple(j for j in free if mask >> j & 1) for mask in range(1, 8)} - {()},
        key=len,
        reverse=True,
    )
    for sel in map(list, subsets):
        m = normal[:, :, sel][:, :, :, sel] + 1e-12 * np.eye(len(sel))
        r = rhs[:, :, sel]
        sol = np.linalg.solve(m, r[..., None])[..., 0]
        feasible = (sol >= 0).all(axis=2)
        sse = tt - 2 * (sol * r).sum(2) + np.einsum("abi,abij,abj->ab", sol, m, sol)
        take = feasible & (sse < best_sse)
        full = np.zeros((na, nb, 3))
        full[:, :, sel] = sol
        coef[take] = full[take]
        best_sse[take] = sse[take]
    coef = coef / scales
    for j, value in fixed_linear.items():
        coef[:, :, j] = value
    return coef


def screen(grid: Grid, data: Data, objective: Objective, fixed: dict[int, float] | None = None):
    """Project every grid start and score it.

    Returns theta (n_alpha, n_beta, 5) and the objective at each start (n_alpha, n_beta).

    `fixed` maps a parameter index (0-4) to a value in natural units (E, A, B, alpha, beta).
    """
    fixed = fixed or {}
    alphas, betas = grid.axes()
    if 3 in fixed:
        alphas = np.array([fixed[3]])
    if 4 in fixed:
        betas = np.array([fixed[4]])
    coef = project(alphas, betas, data, objective, {j: v for j, v in fixed.items() if j < 3})
    na, nb = alphas.size, betas.size
    theta = np.empty((na, nb, 5))
    theta[:, :, :3] = np.log(np.maximum(coef, np.exp(_LOG_FLOOR)))
    theta[:, :, 3] = alphas[:, None]
    theta[:, :, 4] = betas[None, :]
    flat = theta.reshape(-1, 5)
    return theta, evaluate(flat, data, objective, derivatives=False).reshape(na, nb)


def grid_basins(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Discrete steepest descent on a 2-D grid of objective values.

    Every point moves to its lowest 8-neighbour while that is lower than itself; returns the
    flat indices of the local minima reached and, for every point, the index (into that list)
    of the minimum its descent ends at.
    """
    na, nb = values.shape
    padded = np.pad(values, 1, constant_values=np.inf)
    flat_index = np.arange(na * nb).reshape(na, nb)
    padded_index = np.pad(flat_index, 1, constant_values=-1)
    best_val = values.copy()
    best_idx = flat_index.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == 0 and dj == 0:
                continue
            nv = padded[1 + di : 1 + di + na, 1 + dj : 1 + dj + nb]
            ni = padded_index[1 + di : 1 + di + na, 1 + dj : 1 + dj + nb]
            lower = nv < best_val
            best_val = np.where(lower, nv, best_val)
            best_idx = np.where(lower, ni, best_idx)
    pointer = best_idx.ravel()
    while True:  # pointer jumping: each round halves the remaining path lengths
        nxt = pointer[pointer]
        if np.array_equal(nxt, pointer):
            break
        pointer = nxt
    minima, basin = np.unique(pointer, return_inverse=True)
    return minima, basin
