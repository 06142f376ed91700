"""The `envelope` fitter: Chinchilla's Approach 1, the frontier of the runs' loss curves.

At each compute C, the lowest loss any run reached there: that lower envelope of the curves
needs no IsoFLOP grid (checkpoints of ad-hoc runs will do) and assumes no shape of a profile.
Each frontier point says which model (N) and how many tokens (D = C / (FLOPs per token)) were
best at its C; N*(C), D*(C) and L*(C) are power laws fitted through those points.

Three ways to read the frontier off the checkpoints (`method`):

* `chinchilla` (Hoffmann et al. 2022, section 3.1 and appendix D): each run's curve smoothed,
  its loss interpolated in ln C between checkpoints, and at `points` log-spaced values of C the
  run with the lowest loss there (where at least two runs reach that C, each run reaching 2%
  beyond its last usable checkpoint at the loss it ended with). Needs curves: data of final
  losses alone is a `FitError` that names the other methods.
* `pareto`: the checkpoints no other dominates (another with a lower loss at less or equal C,
  C within 1% counting as equal: `SAME_COMPUTE`). Works on final losses alone.
* `hull`: the Pareto checkpoints on the lower convex hull in (ln C, ln L): only those a convex
  frontier touches, so one lucky checkpoint does not bend it.

Which checkpoints are read at all (late in their run, past warmup) is `checkpoints`' job.

The frontier's points are strongly dependent (neighbouring points are one run), so a least
squares interval through them would be far too narrow. Intervals come from a bootstrap over
*runs*: resample runs with replacement, extract the frontier again, refit; the level interval
of the replicates is the interval (percentile), their covariance the laws' covariance. The
estimates are the least-squares laws of the full data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from flops_fit_core import FitError, FitResult, Fitter, Observations, PowerLaw

from .checkpoints import Checkpoints, usable_checkpoints
from .checks import not_decreasing
from .config import LawConfig
from .diagnostics import law_checks, ols_line
from .powerlaw import exp_in_range, fit_power_law

__all__ = ["METHODS", "EnvelopeConfig", "EnvelopeFitter", "Frontier", "extract_frontier"]

Method = Literal["chinchilla", "pareto", "hull"]
METHODS: tuple[str, ...] = ("chinchilla", "pareto", "hull")

#: Compute within this share of each other counts as the same C: the runs of one budget differ
#: in C by their shapes' rounding (0.1-1%), and a checkpoint should not win by being cheaper
#: by that much.
SAME_COMPUTE = 0.01

#: How far beyond its last usable checkpoint a run reaches in the `chinchilla` method, as a
#: share of its C: twice `SAME_COMPUTE`, so two runs whose ends differ by up to 2% in C overlap.
REACH = 2 * SAME_COMPUTE

#: Laws and the frontier column each is fitted to (tokens_per_param: D/N).
_LAWS = ("n_opt", "d_opt", "loss_opt", "tokens_per_param")


class EnvelopeConfig(LawConfig):
    """Options of the `envelope` fitter (the `[fitter]` section with `name = "envelope"`)."""

    method: Method = Field(
        "chinchilla",
        description="chinchilla: smoothed curves interpolated in C, best run at `points` "
        "log-spaced C (Hoffmann et al. 2022, sec. 3.1, app. D); pareto: the non-dominated "
        "checkpoints; hull: the Pareto checkpoints on the lower convex hull in (ln C, ln L)",
    )
    points: int = Field(
        1500,
        ge=10,
        le=100_000,
        description="chinchilla: log-spaced C values read (Chinchilla: 1,500)",
    )
    smooth: int = Field(
        10,
        ge=1,
        le=1000,
        description="Gaussian smoothing window in logged points before reading a curve (1 = none)",
    )
    late_fraction: float = Field(
        0.15,
        gt=0.0,
        le=1.0,
        description="trust only the last share of each run's tokens, unless its schedule is "
        "'anytime' (1.0: every checkpoint)",
    )
    keep_mid_schedule: bool = Field(
        False, description="keep (with a warning) checkpoints before the last late_fraction"
    )
    min_tokens: float = Field(0.0, ge=0.0, description="drop checkpoints before this many tokens")
    warmup_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="drop checkpoints before this share of their run"
    )
    keep_edge_sizes: bool = Field(
        False,
        description="keep frontier points taken from the smallest or largest model trained "
        "(N* may lie beyond the sizes there), with a warning",
    )
    min_runs_on_frontier: int = Field(
        3,
        ge=2,
        description="fewest distinct runs (model sizes) on the frontier; fewer is a FitError",
    )
    loss_floor: bool = Field(
        False, description="fit L*(C) = E + k C^g with the floor E fitted (else E = 0)"
    )
    bootstrap: int = Field(
        400, ge=0, le=100_000, description="resamples of the runs for the intervals (0: none)"
    )
    seed: int = Field(0, ge=0, description="seed of the bootstrap")


@dataclass(frozen=True)
class Frontier:
    """The frontier's points sorted by C: compute, the run (observation row) best there, its
    N, its tokens there and its loss there."""

    compute: np.ndarray
    run: np.ndarray
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray

    def take(self, keep: np.ndarray) -> Frontier:
        return Frontier(*(getattr(self, k)[keep] for k in self.__dataclass_fields__))

    @property
    def n_runs(self) -> int:
        return int(np.unique(self.run).size)


class _Reader:
    """Extracts the frontier of any subset of runs, fast: what the bootstrap repeats.

    The chinchilla method's grid of every curve's interpolated loss (runs x points, inf where
    a run did not reach) is built once; a subset only takes the minimum over its rows.
    """

    def __init__(self, checkpoints: Checkpoints, params: np.ndarray, method: str, points: int):
        self.cp, self.params, self.method = checkpoints, params, method
        order = np.lexsort((checkpoints.loss, checkpoints.compute))
        self.order = order  # checkpoints by C, then loss
        if method == "chinchilla":
            self._grid(points)

    def _grid(self, points: int) -> None:
        """Every run's loss at `points` log-spaced C, inf where the run does not reach.

        A run reaches from its first usable checkpoint to `REACH` beyond its last, at the loss
        it ended with (a run trained that little longer would reach at least that): so a run
        left with one usable checkpoint (a cosine run logged sparsely, read only near its end)
        still competes at its C with the runs of its budget, whose C differ by rounding.
        """
        cp = self.cp
        if cp.n_curves == 0:
            raise FitError(
                f"the envelope's chinchilla method interpolates each run's loss curve, but none "
                f"of the {cp.flops_per_token.size} runs carries one (final losses only); fit "
                f'them with method = "pareto" or "hull", or record curves (the trainers\' '
                f"curve_points, or a checkpoint table's run column)"
            )
        log_c = np.log(cp.compute)
        runs = cp.runs
        starts = np.array([log_c[cp.run == r][0] for r in runs])
        ends = np.array([log_c[cp.run == r][-1] for r in runs]) + math.log1p(REACH)
        self.grid = np.linspace(starts.min(), ends.max(), points)
        self.curve_runs = runs
        table = np.full((runs.size, points), np.inf)
        for j, r in enumerate(runs):
            x, y = log_c[cp.run == r], cp.loss[cp.run == r]
            inside = (self.grid >= starts[j]) & (self.grid <= ends[j])
            table[j, inside] = np.interp(self.grid[inside], x, y)
        self.table = table

    def frontier(self, runs: np.ndarray | None = None) -> Frontier:
        """The frontier of the runs `runs` (observation rows; None: all)."""
        if self.method == "chinchilla":
            return self._chinchilla(runs)
        cp = self.cp
        order = self.order if runs is None else self.order[np.isin(cp.run[self.order], runs)]
        compute, loss = cp.compute[order], cp.loss[order]
        # Pareto: no other checkpoint has a lower loss at a C up to `SAME_COMPUTE` above this
        # one's. Without that margin the checkpoint with the least C would always be on the
        # frontier, whatever its loss, when the runs of a budget differ in C by rounding.
        within = np.searchsorted(compute, compute * (1.0 + SAME_COMPUTE), side="right")
        picked = order[loss <= np.minimum.accumulate(loss)[within - 1]]
        if self.method == "hull":
            picked = picked[_lower_hull(np.log(cp.compute[picked]), np.log(cp.loss[picked]))]
        return self._points(picked)

    def _points(self, picked: np.ndarray) -> Frontier:
        cp = self.cp
        run = cp.run[picked]
        return Frontier(
            cp.compute[picked], run, self.params[run], cp.tokens[picked], cp.loss[picked]
        )

    def _chinchilla(self, runs: np.ndarray | None) -> Frontier:
        rows = np.arange(len(self.curve_runs))
        if runs is not None:
            rows = rows[np.isin(self.curve_runs, runs)]
        if not rows.size:
            return self._points(np.empty(0, dtype=np.int64))
        table = self.table[rows]
        best = np.argmin(table, axis=0)
        loss = table[best, np.arange(table.shape[1])]
        # The lowest loss among at least two runs: where one run alone reaches (the ends of
        # the range), nothing was compared.
        reached = np.isfinite(table).sum(axis=0) >= 2
        run = self.curve_runs[rows[best[reached]]]
        compute = np.exp(self.grid[reached])
        return Frontier(
            compute,
            run,
            self.params[run],
            compute / self.cp.flops_per_token[run],
            loss[reached],
        )


def _lower_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the lower convex hull of points sorted by x (Andrew's monotone chain)."""
    hull: list[int] = []
    for i in range(x.size):
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (x[a] - x[o]) * (y[i] - y[o]) - (y[a] - y[o]) * (x[i] - x[o])
            if cross > 0:
                break
            hull.pop()
        hull.append(i)
    return np.array(hull, dtype=np.int64)


def extract_frontier(observations: Observations, config: EnvelopeConfig) -> Frontier:
    """The frontier of `observations` by `config.method`, before the monotonicity rule."""
    return _Reader(
        _checkpoints(observations, config), observations.params, config.method, config.points
    ).frontier()


def _checkpoints(observations: Observations, cfg: EnvelopeConfig) -> Checkpoints:
    return usable_checkpoints(
        observations,
        smooth=cfg.smooth,
        late_fraction=cfg.late_fraction,
        keep_mid_schedule=cfg.keep_mid_schedule,
        min_tokens=cfg.min_tokens,
        warmup_fraction=cfg.warmup_fraction,
    )


def _columns(front: Frontier) -> dict[str, np.ndarray]:
    return {
        "n_opt": front.params,
        "d_opt": front.tokens,
        "loss_opt": front.loss,
        "tokens_per_param": front.tokens / front.params,
    }


def _floor_law(
    compute: np.ndarray, loss: np.ndarray, start: tuple | None = None
) -> tuple[float, float, float]:
    """(E, ln k, g) of L = E + k C^g by least squares on ln L, 0 <= E < min L; `start` (the
    full data's estimate, for a bootstrap resample) saves most of the iterations."""
    from scipy.optimize import least_squares

    lx, ly = np.log(compute), np.log(loss)
    top = float(loss.min()) * (1 - 1e-9)
    if start is None:
        g, lnk = ols_line(lx, np.log(loss - 0.5 * top))
        start = (0.5 * top, lnk, g)
    x0 = np.array([min(start[0], 0.99 * top), start[1], start[2]])

    def resid(theta):
        e, lnk, g = theta
        return np.log(e + np.exp(lnk + g * lx)) - ly

    sol = least_squares(resid, x0, bounds=([0.0, -np.inf, -np.inf], [top, np.inf, np.inf]))
    e, lnk, g = (float(v) for v in sol.x)
    return e, lnk, g


class EnvelopeFitter(Fitter):
    """The lower envelope of the runs' checkpoints in (C, L); laws through its points."""

    name: ClassVar[str] = "envelope"
    Config = EnvelopeConfig
    config: EnvelopeConfig

    def fit(self, observations: Observations) -> FitResult:
        """Read the frontier, apply the monotonicity rule, fit N*, D*, L*, D*/N* over its C,
        and bootstrap the runs for intervals.

        Raises `FitError` when the chinchilla method finds no curve to interpolate, or when
        fewer than `min_runs_on_frontier` distinct runs (or fewer than 3 points) make the
        frontier.
        """
        cfg = self.config
        cp = _checkpoints(observations, cfg)
        reader = _Reader(cp, observations.params, cfg.method, cfg.points)
        warnings = [*observations.warnings, *cp.warnings]
        front = reader.frontier()
        if not front.compute.size:
            raise FitError(
                f"{observations.source or 'observations'}: no compute value is reached by two "
                f"runs' usable checkpoints, so the envelope's {cfg.method} method compared "
                f"nothing; keep more of each run (late_fraction, keep_mid_schedule) or add runs "
                f"that overlap in compute"
            )
        front, edge_warning = self._edges(front, observations.params[cp.runs])
        front, mono_warning = self._monotonic(front)
        warnings.extend(w for w in (edge_warning, mono_warning) if w)
        self._check_runs(front, observations)

        laws, r2 = self._point_laws(front)
        reps, failed = self._bootstrap(reader, observations, laws["loss_opt"])
        laws = {
            name: self._law(name, laws[name], r2[name], reps, len(front.compute)) for name in _LAWS
        }
        checks, law_warnings = law_checks(laws, cfg)
        warnings.extend(law_warnings)
        if failed:
            warnings.append(
                f"{failed} of {cfg.bootstrap} bootstrap resamples had too few runs on their "
                f"frontier and were left out of the intervals"
            )
        diagnostics = self._diagnostics(observations, cp, reader, front, failed)
        diagnostics.update(checks)
        return FitResult(
            fitter=self.name,
            settings={**cfg.model_dump(mode="json"), **observations.record()},
            conventions=observations.conventions,
            laws=laws,
            optima=[],
            diagnostics=diagnostics,
            warnings=warnings,
        )

    # -- the frontier ------------------------------------------------------------------------

    def _monotonic(self, front: Frontier) -> tuple[Frontier, str | None]:
        """The frontier without points whose loss is not below every smaller C's (with
        `enforce_monotonic`), and a warning when there were any."""
        bad = not_decreasing(front.loss)
        if not bad.any():
            return front, None
        if self.config.enforce_monotonic:
            return front.take(~bad), (
                f"{int(bad.sum())} frontier points have a loss not below a smaller compute's "
                f"(a run's curve ends there and the next best is worse): left out of the law "
                f"fits (enforce_monotonic)"
            )
        return front, (
            f"{int(bad.sum())} frontier points have a loss not below a smaller compute's; kept "
            f"because enforce_monotonic is off"
        )

    def _edges(self, front: Frontier, sizes: np.ndarray) -> tuple[Frontier, str | None]:
        """The frontier without points of the smallest or largest model among `sizes` (unless
        `keep_edge_sizes`), and a warning naming the compute where they were.

        Where the frontier picks the smallest model trained, the optimum may be smaller still
        (and likewise at the top): those points are a bound, not an estimate, and flatten
        N*(C) at the ends of the range, as an optimum at the edge of an IsoFLOP grid does.
        """
        edge = (front.params <= sizes.min()) | (front.params >= sizes.max())
        if not edge.any():
            return front, None
        where = []
        for side, mask in (
            ("smallest", front.params <= sizes.min()),
            ("largest", front.params >= sizes.max()),
        ):
            if mask.any():
                c = front.compute[mask]
                size = float(front.params[mask][0])
                where.append(f"the {side} (N={size:.4g}) at C {c.min():.3g}-{c.max():.3g}")
        said = (
            f"the frontier picks the edge model sizes trained, {' and '.join(where)}: N* may "
            f"lie beyond the sizes there"
        )
        if self.config.keep_edge_sizes:
            return front, f"{said}; kept because keep_edge_sizes is on, which flattens N*(C)"
        return front.take(~edge), (
            f"{said}, so those {int(edge.sum())} points are left out of the laws "
            f"(keep_edge_sizes keeps them); train smaller or larger models to cover that compute"
        )

    def _check_runs(self, front: Frontier, observations: Observations) -> None:
        need = self.config.min_runs_on_frontier
        if front.n_runs < need or front.compute.size < 3:
            names = ", ".join(observations.ids[r] for r in np.unique(front.run)[:5]) or "none"
            raise FitError(
                f"{observations.source or 'observations'}: the envelope's {self.config.method} "
                f"frontier has {front.n_runs} distinct run(s) ({names}) and "
                f"{front.compute.size} point(s), fewer than min_runs_on_frontier = {need} runs "
                f"(and 3 points): N*(C) cannot be read off so few model sizes; add runs of "
                f"other sizes or budgets, or keep more of each run (late_fraction)"
            )

    # -- the laws ----------------------------------------------------------------------------

    def _point_laws(self, front: Frontier) -> tuple[dict[str, tuple], dict[str, float]]:
        """Each law's point estimate as (offset or None, ln k, exponent), and its R²."""
        out, r2 = {}, {}
        for name, values in _columns(front).items():
            law = fit_power_law(front.compute, values, self.config.confidence)
            r2[name] = float(law.r2)
            out[name] = (None, math.log(law.coefficient), law.exponent)
        if self.config.loss_floor:
            out["loss_opt"] = _floor_law(front.compute, front.loss)
            e, lnk, g = out["loss_opt"]
            fitted = e + np.exp(lnk + g * np.log(front.compute))
            ly = np.log(front.loss)
            sst = float(((ly - ly.mean()) ** 2).sum())
            r2["loss_opt"] = (
                1.0 - float(((np.log(fitted) - ly) ** 2).sum()) / sst if sst > 0 else 1.0
            )
        return out, r2

    def _replicate(
        self, front: Frontier, sizes: np.ndarray, start: tuple | None = None
    ) -> dict[str, tuple] | None:
        """The laws of the frontier of a subset of the runs, whose model sizes are `sizes`
        (None when it has too few runs); `start` is the full data's floor law."""
        if not front.compute.size:
            return None
        front, _ = self._edges(front, sizes)
        front, _ = self._monotonic(front)
        if front.n_runs < 2 or front.compute.size < 3:
            return None
        lx = np.log(front.compute)
        out = {name: (None, *ols_line(lx, np.log(v))[::-1]) for name, v in _columns(front).items()}
        if self.config.loss_floor:
            out["loss_opt"] = _floor_law(front.compute, front.loss, start)
        return out

    def _bootstrap(self, reader: _Reader, observations: Observations, start: tuple):
        """Per law, the replicates of (offset, ln k, exponent) over `bootstrap` resamples of
        the runs; and how many resamples had too few runs on their frontier."""
        cfg = self.config
        if cfg.bootstrap == 0:
            return None, 0
        rng = np.random.default_rng(cfg.seed)
        n = len(observations)
        reps: dict[str, list] = {name: [] for name in _LAWS}
        failed = 0
        for _ in range(cfg.bootstrap):
            runs = np.unique(rng.integers(0, n, size=n))
            used = runs[np.isin(runs, reader.cp.runs)]
            if not used.size:
                failed += 1
                continue
            laws = self._replicate(reader.frontier(runs), observations.params[used], start)
            if laws is None:
                failed += 1
                continue
            for name in _LAWS:
                reps[name].append(laws[name])
        if len(reps["n_opt"]) < 2:
            return None, failed
        return {name: np.array(values, dtype=float) for name, values in reps.items()}, failed

    def _law(self, name, point, r2, reps, n_points) -> PowerLaw:
        """A law with its bootstrap intervals and covariance (none without a bootstrap)."""
        offset, lnk, a = point
        level = self.config.confidence
        coefficient = exp_in_range(lnk, "coefficient")
        fields = dict(coefficient=coefficient, exponent=a, r2=r2, level=level, n_points=n_points)
        if offset is not None:
            fields["offset"] = offset
        if reps is None:
            return PowerLaw(**fields)
        r = reps[name]
        tail = (1.0 - level) / 2.0
        cols = [r[:, 1], r[:, 2]]
        if offset is not None:
            cols.insert(0, r[:, 0])
            fields["offset_interval"] = _quantiles(r[:, 0], tail)
        lo, hi = _quantiles(r[:, 1], tail)
        fields.update(
            coefficient_interval=(
                exp_in_range(lo, "coefficient's interval", bound=True),
                exp_in_range(hi, "coefficient's interval", bound=True),
            ),
            exponent_interval=_quantiles(r[:, 2], tail),
            covariance=tuple(tuple(float(x) for x in row) for row in np.cov(np.vstack(cols))),
            t_value=NormalDist().inv_cdf(0.5 + level / 2.0),
        )
        return PowerLaw(**fields)

    # -- what the fit reports ----------------------------------------------------------------

    def _diagnostics(self, observations, cp, reader, front, failed) -> dict:
        cfg = self.config
        ids = observations.ids
        at = {}
        for method in METHODS:  # each method's frontier, for the figure that compares them
            try:
                other = (
                    front
                    if method == cfg.method
                    else _Reader(cp, observations.params, method, cfg.points).frontier()
                )
            except FitError:
                continue
            if other is not front:
                other, _ = self._edges(other, observations.params[cp.runs])
                other, _ = self._monotonic(other)
            if other.compute.size < 2 or np.ptp(np.log(other.compute)) == 0:
                continue
            at[method] = {
                # the N* exponent of this method's frontier (least squares; no interval)
                "n_exponent": ols_line(np.log(other.compute), np.log(other.params))[0],
                "compute": other.compute.tolist(),
                "loss": other.loss.tolist(),
                "params": other.params.tolist(),
                "run": [ids[r] for r in other.run],
            }
        share = _position(cp, front)
        out = {
            "method": cfg.method,
            "n_budgets": 0,
            "n_runs": len(observations),
            "n_curves": cp.n_curves,
            "n_checkpoints": cp.n_checkpoints,
            "n_checkpoints_used": int(cp.run.size),
            "dropped": dict(cp.dropped),
            "n_frontier_points": int(front.compute.size),
            "frontier_runs": [ids[r] for r in dict.fromkeys(front.run.tolist())],
            "frontier_position_min": float(share.min()),
            "frontier": at[cfg.method],
            "frontiers": at,
            "bootstrap": {"resamples": cfg.bootstrap, "failed": failed},
        }
        if cfg.leave_one_out:
            out["leave_one_out"] = self._leave_one_out(reader, front, observations)
        return out

    def _leave_one_out(self, reader: _Reader, front: Frontier, observations: Observations):
        """The N* exponent refitted without each frontier run in turn."""
        without = {}
        for run in dict.fromkeys(front.run.tolist()):
            rest = reader.cp.runs[reader.cp.runs != run]
            laws = self._replicate(reader.frontier(rest), observations.params[rest])
            without[observations.ids[run]] = None if laws is None else laws["n_opt"][2]
        return {"n_opt_exponent_without": without}


def _position(cp: Checkpoints, front: Frontier) -> np.ndarray:
    """Each frontier point's tokens as a share of its run's final tokens."""
    final = np.zeros(cp.flops_per_token.size)
    np.maximum.at(final, cp.run, cp.tokens / cp.position)
    return front.tokens / final[front.run]


def _quantiles(values: np.ndarray, tail: float) -> tuple[float, float]:
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return float(lo), float(hi)
