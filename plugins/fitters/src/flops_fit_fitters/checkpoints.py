"""The checkpoints of each run that a curve fitter may read, and why the others are left out.

Approach 1 reads loss curves, and a curve's points are not all alike. A run trained with a
decaying learning rate (cosine, WSD's cooldown) reaches at its end a loss that its own earlier
checkpoints do not show: halfway through a cosine run the rate is still high, so that
checkpoint is above what a run *trained to that length* would reach. Reading it as such biases
the frontier towards larger models (their mid-run checkpoints are the least penalised).
Hoffmann et al. sidestep it by training each size at several horizons; a user's checkpoints
usually cannot. So, per run:

* only the last `late_fraction` of its tokens is trusted, unless its schedule is `ANYTIME`
  (every point is the end of a run: the mock's law, checkpoints that are each a cooled-down
  branch); the rest is dropped with a warning (`keep_mid_schedule` keeps it, warned);
* warmup-era checkpoints (before `min_tokens`, or before `warmup_fraction` of the run) are
  dropped: there the loss measures the optimiser's start, not the model;
* the curve is smoothed first (`smooth` points), over the whole curve, so that a late point
  is smoothed with its true neighbours.

`usable_checkpoints` does all of that once per fit; the extractors (`envelope`) and their
bootstrap then only index its flat arrays.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from flops_fit_core import ANYTIME, Observations

__all__ = ["Checkpoints", "smooth_curve", "usable_checkpoints"]


@dataclass(frozen=True)
class Checkpoints:
    """The usable checkpoints of every run, as flat arrays sorted by run, then tokens.

    `run[i]` is the observation row checkpoint i belongs to; `position[i]` its tokens as a
    share of its run's last checkpoint. `flops_per_token[r]` is row r's compute per token
    (its final C / D), which turns a checkpoint's tokens into its compute.
    """

    run: np.ndarray
    tokens: np.ndarray
    compute: np.ndarray
    loss: np.ndarray
    position: np.ndarray
    flops_per_token: np.ndarray
    n_checkpoints: int
    n_curves: int
    dropped: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    @property
    def runs(self) -> np.ndarray:
        """The rows that keep at least one checkpoint, ascending."""
        return np.unique(self.run)


def smooth_curve(log_tokens: np.ndarray, values: np.ndarray, window: int) -> np.ndarray:
    """`values` smoothed by a Gaussian of `window` points (sigma = window / 4, cut at +-window/2).

    Each point becomes the Gaussian-weighted *local linear* fit at it (in ln tokens), not the
    weighted mean: a plain mean pulls a falling curve's last points up towards earlier, higher
    losses, exactly where Approach 1 reads it; a local line leaves a straight stretch as it is
    and still averages the noise. `window` <= 2 or fewer than 3 points: returned unchanged.
    """
    n = values.size
    if window <= 2 or n < 3:
        return values.copy()
    half = window // 2
    sigma = window / 4.0
    out = np.empty(n)
    for i in range(n):
        lo, hi = max(0, i - half), min(n, i + half + 1)
        w = np.exp(-0.5 * ((np.arange(lo, hi) - i) / sigma) ** 2)
        x, y = log_tokens[lo:hi], values[lo:hi]
        xm, ym = (w @ x) / w.sum(), (w @ y) / w.sum()
        sxx = w @ ((x - xm) ** 2)
        slope = (w @ ((x - xm) * (y - ym))) / sxx if sxx > 0 else 0.0
        out[i] = ym + slope * (log_tokens[i] - xm)
    return out


def _curve(observations: Observations, row: int) -> np.ndarray:
    """Row `row`'s curve as (tokens, loss) sorted by tokens, ending at its final result.

    A run without a curve is its final result alone; a curve that stops short of the final
    tokens gets the final result appended.
    """
    final = (float(observations.tokens[row]), float(observations.loss[row]))
    raw = observations.curves[row] if row < len(observations.curves) else None
    points = np.array([(float(t), float(v)) for t, v in raw or ()], dtype=float).reshape(-1, 2)
    ok = np.isfinite(points).all(axis=1) & (points > 0).all(axis=1)
    points = points[ok]
    points = points[np.argsort(points[:, 0], kind="stable")]
    if not len(points) or points[-1, 0] < final[0] * (1 - 1e-9):
        points = np.vstack([points, final])
    return points


def usable_checkpoints(
    observations: Observations,
    *,
    smooth: int,
    late_fraction: float,
    keep_mid_schedule: bool,
    min_tokens: float,
    warmup_fraction: float,
) -> Checkpoints:
    """Every run's checkpoints, smoothed, with the mid-schedule and warmup ones left out
    (see the module's docstring), and one warning per kind of point left out or kept."""
    runs, tokens, loss, position = [], [], [], []
    dropped: Counter = Counter()  # mid-schedule checkpoints left out, by schedule
    mid_kept: Counter = Counter()
    warmup = 0
    n_checkpoints = n_curves = 0
    per_token = observations.compute / observations.tokens
    for row in range(len(observations)):
        points = _curve(observations, row)
        n_checkpoints += len(points)
        n_curves += len(points) > 1
        t = points[:, 0]
        smoothed = np.exp(smooth_curve(np.log(t), np.log(points[:, 1]), smooth))
        share = t / t[-1]
        keep = t >= max(min_tokens, warmup_fraction * t[-1])
        keep[-1] = t[-1] >= min_tokens  # a run's end is never warmup, unless all of it is
        warmup += int((~keep).sum())
        schedule = observations.schedule_of(row)
        if schedule != ANYTIME:
            mid = keep & (share < 1.0 - late_fraction)
            name = schedule or "unknown"
            if keep_mid_schedule:
                mid_kept[name] += int(mid.sum())
            else:
                dropped[name] += int(mid.sum())
                keep &= ~mid
        runs.append(np.full(int(keep.sum()), row))
        tokens.append(t[keep])
        loss.append(smoothed[keep])
        position.append(share[keep])
    run = np.concatenate(runs).astype(np.int64)
    tokens_arr = np.concatenate(tokens)
    warnings = _warnings(dropped, mid_kept, late_fraction)
    return Checkpoints(
        run=run,
        tokens=tokens_arr,
        compute=tokens_arr * per_token[run],
        loss=np.concatenate(loss),
        position=np.concatenate(position),
        flops_per_token=per_token,
        n_checkpoints=n_checkpoints,
        n_curves=n_curves,
        dropped={"warmup": warmup, "mid_schedule": sum(dropped.values())},
        warnings=warnings,
    )


def _warnings(dropped: Counter, mid_kept: Counter, late_fraction: float) -> list[str]:
    """What leaving out (or keeping) mid-schedule checkpoints means, once per kind. Warmup
    checkpoints are left out without a word (`Checkpoints.dropped` counts them): they never
    carried a frontier."""
    why = (
        "a checkpoint taken mid-schedule is above what a run trained to that length reaches "
        "(a decaying rate has not decayed yet; a constant rate never does)"
    )
    late = f"before the last {late_fraction:.0%} of their runs"
    out = []
    if mid := {k: v for k, v in dropped.items() if v}:
        by = ", ".join(f"{v} under {k}" for k, v in sorted(mid.items()))
        out.append(
            f"dropped {sum(mid.values())} checkpoints taken {late} ({by}): {why}; "
            f"late_fraction sets the share, keep_mid_schedule = true keeps them"
        )
    if kept := {k: v for k, v in mid_kept.items() if v}:
        by = ", ".join(f"{v} under {k}" for k, v in sorted(kept.items()))
        out.append(
            f"kept {sum(kept.values())} checkpoints taken {late} ({by}) because "
            f"keep_mid_schedule is on: {why}, so the frontier leans towards larger models"
        )
    return out
