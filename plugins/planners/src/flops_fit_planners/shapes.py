"""Vectorized shape search: the transformer shape whose real N is nearest a target N.

The predecessor of flops-fit built models that overshot their planned N by 42%, which silently
moves every point of an IsoFLOP curve. Here every target N is matched against the whole shape
grid at once: for each depth in [min_layers, max_layers] the width that gives exactly N is
solved from the (quadratic in d_model) parameter count of `flops_fit_core.flops`, the two
valid widths around it (multiples of `d_model_multiple` that some head option divides) are
counted exactly, and among those within
`param_tolerance` of the target the one closest to the preferred aspect ratio d_model/n_layers
wins. Everything is numpy over (targets x depths x 2) so 10,000 targets take milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flops_fit_core import ConfigError, ParamConvention, params_count

__all__ = ["MAX_TARGET_PARAMS", "ShapeGrid", "Shapes", "choose_heads", "d_ff_for", "search_shapes"]

#: Targets are matched in blocks of this many, to bound the (targets x depths x 2) temporaries.
_CHUNK = 256
#: Above this N the exact int64 counts of `flops_fit_core.flops` could overflow; no one trains it.
MAX_TARGET_PARAMS = 1e15


@dataclass(frozen=True)
class ShapeGrid:
    """The space of shapes a planner may build, and how to rank them."""

    vocab_size: int
    seq_len: int
    d_model_multiple: int
    min_layers: int
    max_layers: int
    head_options: tuple[int, ...]
    head_dim: int
    ffn_ratio: float
    aspect_ratio: float
    param_tolerance: float
    param_convention: ParamConvention = "total"
    #: every head size d_model / n_heads is a multiple of this
    head_dim_multiple: int = 1


@dataclass(frozen=True)
class Shapes:
    """One chosen shape per target, as parallel int64 arrays, plus whether it met tolerance."""

    d_model: np.ndarray
    n_layers: np.ndarray
    n_heads: np.ndarray
    d_ff: np.ndarray
    params: np.ndarray
    within_tolerance: np.ndarray

    def __len__(self) -> int:
        return len(self.d_model)


def _d_ff_float(d_model: np.ndarray, ffn_ratio: float) -> np.ndarray:
    return np.maximum(1.0, np.rint(ffn_ratio * np.asarray(d_model, dtype=np.float64)))


def d_ff_for(d_model: np.ndarray, ffn_ratio: float) -> np.ndarray:
    """MLP width for each d_model: ffn_ratio x d_model rounded to an int (at least 1).

    The search ranks shapes with the same rounding, so the N ranked is the N recorded.
    """
    return _d_ff_float(d_model, ffn_ratio).astype(np.int64)


def _heads_scores(d_model: np.ndarray, grid: ShapeGrid) -> tuple[np.ndarray, np.ndarray]:
    """(index into sorted head options, whether any option fits d_model), per d_model.

    An option fits when it divides d_model into heads whose size is a multiple of
    `head_dim_multiple`. Options are sorted ascending so a tie in |d/h - head_dim| goes to the
    larger head dim.
    """
    heads = np.array(sorted(grid.head_options), dtype=np.int64)
    d = np.asarray(d_model, dtype=np.int64)[..., None]
    divides = d % (heads * grid.head_dim_multiple) == 0
    distance = np.where(divides, np.abs(d / heads - grid.head_dim), np.inf)
    return np.argmin(distance, axis=-1), divides.any(axis=-1)


def choose_heads(d_model: np.ndarray, grid: ShapeGrid) -> np.ndarray:
    """The head count among `head_options` fitting d_model whose head dim is nearest head_dim."""
    index, ok = _heads_scores(d_model, grid)
    if not ok.all():
        bad = np.asarray(d_model)[~ok][0]
        into = f" into heads of a multiple of {grid.head_dim_multiple}" * (
            grid.head_dim_multiple > 1
        )
        raise ConfigError(
            f"planner 'isoflop': no head option in {list(grid.head_options)} divides d_model "
            f"{bad}{into}"
        )
    return np.array(sorted(grid.head_options), dtype=np.int64)[index]


def _bracketing_widths(width: np.ndarray, grid: ShapeGrid) -> np.ndarray:
    """The valid widths just below and just above each real root `width`, stacked last.

    Valid: a multiple of d_model_multiple that some head option h divides into heads of a
    multiple of q = head_dim_multiple, i.e. a multiple of lcm(m, h q) for some h. When some
    h q divides m that is every multiple of m; otherwise the
    nearest valid width on each side is the best over the options' coarser steps. Below the
    smallest valid width there is nothing, so both sides are the smallest valid width.
    """
    m = grid.d_model_multiple
    q = grid.head_dim_multiple
    steps = sorted({m * h * q // math.gcd(m, h * q) for h in grid.head_options})
    if steps[0] == m:  # the usual case: an option divides m, so every multiple of m is valid
        j = np.floor(width / m)
        return np.stack([np.maximum(j, 1.0) * m, (j + 1.0) * m], axis=-1)
    w = width[..., None]
    step = np.array(steps, dtype=np.float64)
    j = np.floor(w / step)
    below = np.where(j >= 1, j * step, -np.inf)  # -inf: no valid width at or below it
    above = (j + 1.0) * step
    lo, hi = below.max(axis=-1), above.min(axis=-1)
    lo = np.where(np.isfinite(lo), lo, hi)
    return np.stack([lo, hi], axis=-1)


def _search_block(targets: np.ndarray, grid: ShapeGrid) -> tuple[np.ndarray, np.ndarray]:
    """Best (d_model, n_layers) for each target of one block.

    The search runs in float64, exact for these integer counts (targets stay far below 2^53);
    the chosen shapes are recounted in int64 by the caller.
    """
    layers = np.arange(grid.min_layers, grid.max_layers + 1, dtype=np.float64)
    r = grid.ffn_ratio
    # params(d, L) = L (4 + 2r) d^2 + (2L + 1 [+ 2V]) d, exactly for integer ffn_ratio and to
    # within rounding of d_ff otherwise: the exact count of each candidate is evaluated below.
    quad = layers * (4.0 + 2.0 * r)
    lin = 2.0 * layers + 1.0
    if grid.param_convention == "total":
        lin = lin + 2.0 * grid.vocab_size
    t = targets[:, None]
    # The positive root, written as 2N / (b + sqrt(b^2 + 4aN)) to avoid cancellation.
    width = 2.0 * t / (lin + np.sqrt(lin * lin + 4.0 * quad * t))
    d = _bracketing_widths(width, grid).reshape(len(targets), -1)
    n_layers = np.repeat(layers, 2)[None, :]
    params = params_count(d, n_layers, _d_ff_float(d, r), grid.vocab_size, grid.param_convention)
    miss = np.abs(params / t - 1.0)
    # |log(x / aspect)| ranks like max(x / aspect, aspect / x), which needs no logarithm.
    ratio = d * (1.0 / (n_layers * grid.aspect_ratio))
    aspect = np.maximum(ratio, 1.0 / ratio)
    within = miss <= grid.param_tolerance
    has_within = within.any(axis=1, keepdims=True)
    # Within tolerance: closest to the preferred aspect ratio; otherwise: nearest N.
    score = np.where(has_within, np.where(within, aspect, np.inf), miss)
    best = np.argmin(score, axis=1)[:, None]
    chosen_d = np.take_along_axis(d, best, axis=1)[:, 0]
    chosen_layers = np.take_along_axis(np.broadcast_to(n_layers, d.shape), best, axis=1)[:, 0]
    return chosen_d, chosen_layers


def search_shapes(targets: np.ndarray, grid: ShapeGrid) -> Shapes:
    """Match every target N (in `grid.param_convention`) to its best shape in the grid.

    Raises ConfigError if some target has no candidate at all (no head option fits).
    """
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 1 or not np.all(np.isfinite(targets) & (targets > 0)):
        raise ValueError("targets must be a 1-d array of finite positive numbers")
    if targets.size and targets.max() > MAX_TARGET_PARAMS:
        raise ConfigError(
            f"planner 'isoflop': a target of N={targets.max():.4g} parameters is "
            f"beyond what the planner counts exactly (at most "
            f"{MAX_TARGET_PARAMS:.0e}); lower max_flops, span or the prior"
        )
    blocks = [_search_block(targets[i : i + _CHUNK], grid) for i in range(0, len(targets), _CHUNK)]
    d = np.concatenate([b[0] for b in blocks] or [np.zeros(0)]).astype(np.int64)
    n_layers = np.concatenate([b[1] for b in blocks] or [np.zeros(0)]).astype(np.int64)
    d_ff = d_ff_for(d, grid.ffn_ratio)
    # The recorded N is counted again, exactly, in int64 by the core's own function.
    params = np.asarray(
        params_count(d, n_layers, d_ff, grid.vocab_size, grid.param_convention),
        dtype=np.int64,
    )
    return Shapes(
        d_model=d,
        n_layers=n_layers,
        n_heads=choose_heads(d, grid),
        d_ff=d_ff,
        params=params,
        within_tolerance=np.abs(params / targets - 1.0) <= grid.param_tolerance,
    )
