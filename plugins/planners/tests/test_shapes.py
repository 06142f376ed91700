"""The vectorized shape search against a plain-Python statement of the same rule.

The oracle brackets each depth's exact root with integer arithmetic and ranks aspect ratios
with exact fractions, so it shares no float shortcut with the implementation under test.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from flops_fit_core import ConfigError, ModelShape
from flops_fit_planners.shapes import ShapeGrid, choose_heads, search_shapes

GRID = ShapeGrid(
    vocab_size=32000,
    seq_len=2048,
    d_model_multiple=64,
    min_layers=2,
    max_layers=64,
    head_options=(4, 8, 16, 32, 64),
    head_dim=64,
    ffn_ratio=4.0,
    aspect_ratio=64.0,
    param_tolerance=0.05,
)


def _shape(d: int, n_layers: int, grid: ShapeGrid) -> ModelShape | None:
    heads = [h for h in grid.head_options if d % h == 0]
    if not heads:
        return None
    h = min(sorted(heads), key=lambda h: abs(Fraction(d, h) - grid.head_dim))
    return ModelShape(
        d_model=d,
        n_layers=n_layers,
        n_heads=h,
        d_ff=round(grid.ffn_ratio * d),
        vocab_size=grid.vocab_size,
        seq_len=grid.seq_len,
    )


def _params(d: int, n_layers: int, grid: ShapeGrid) -> int:
    return ModelShape(
        d_model=d,
        n_layers=n_layers,
        n_heads=1,
        d_ff=round(grid.ffn_ratio * d),
        vocab_size=1,
        seq_len=1,
    ).params("non_embedding") + (2 * grid.vocab_size * d if grid.param_convention == "total" else 0)


def _candidates(target: float, grid: ShapeGrid) -> list[tuple[int, int, int]]:
    """(d, L, N) of the valid widths bracketing the exact root, for every depth.

    Valid: a multiple of m that some head option divides. Below the smallest valid width, both
    sides are the smallest valid width.
    """
    m = grid.d_model_multiple

    def valid(j: int) -> bool:
        return j >= 1 and _shape(j * m, 1, grid) is not None

    out = []
    for n_layers in range(grid.min_layers, grid.max_layers + 1):
        j = 0  # the largest j with params(j m) <= target
        while _params((j + 1) * m, n_layers, grid) <= target:
            j = max(2 * j, j + 1)  # gallop up, then walk back down
        while j > 0 and _params(j * m, n_layers, grid) > target:
            j -= 1
        above = j + 1
        while not valid(above):
            above += 1
        below = j
        while below >= 1 and not valid(below):
            below -= 1
        for width in sorted({(below if below >= 1 else above) * m, above * m}):
            out.append((width, n_layers, _params(width, n_layers, grid)))
    return out


def _aspect_score(d: int, n_layers: int, grid: ShapeGrid) -> Fraction:
    q = Fraction(d) / (n_layers * Fraction(grid.aspect_ratio))
    return max(q, 1 / q)


def _check_optimal(target: float, d: int, n_layers: int, n: int, grid: ShapeGrid) -> bool:
    """Assert (d, L) is what the rule picks for target; return whether it was within tolerance."""
    cands = _candidates(target, grid)
    assert (d, n_layers, n) in cands
    within = [c for c in cands if abs(c[2] / target - 1) <= grid.param_tolerance]
    if within:
        best = min(_aspect_score(c[0], c[1], grid) for c in within)
        assert abs(n / target - 1) <= grid.param_tolerance
        assert _aspect_score(d, n_layers, grid) == best  # exact ties may go either way
        return True
    assert abs(n / target - 1) == min(abs(c[2] / target - 1) for c in cands)
    return False


@pytest.mark.parametrize(
    "grid",
    [
        GRID,
        replace(GRID, param_convention="non_embedding"),
        replace(
            GRID,
            d_model_multiple=32,
            head_options=(3, 6),
            head_dim=48,
            ffn_ratio=3.0,
            min_layers=4,
            max_layers=20,
            aspect_ratio=40.0,
            param_tolerance=0.02,
        ),
    ],
)
def test_every_choice_is_the_rules_choice(grid):
    targets = np.geomspace(3e6, 3e10, 23)
    shapes = search_shapes(targets, grid)
    within = [
        _check_optimal(t, d, n_layers, n, grid)
        for t, d, n_layers, n in zip(
            targets,
            shapes.d_model.tolist(),
            shapes.n_layers.tolist(),
            shapes.params.tolist(),
            strict=True,
        )
    ]
    assert within == shapes.within_tolerance.tolist()


def test_realistic_targets_are_all_reached_within_tolerance():
    targets = np.geomspace(1e7, 1e11, 400)
    shapes = search_shapes(targets, GRID)
    assert shapes.within_tolerance.all()
    assert np.abs(shapes.params / targets - 1).max() <= GRID.param_tolerance


@pytest.mark.parametrize(
    "grid", [GRID, replace(GRID, d_model_multiple=48, head_options=(3, 5, 7), head_dim=20)]
)
def test_shapes_honour_the_multiple_and_the_head_options(grid):
    shapes = search_shapes(np.geomspace(5e6, 5e10, 200), grid)
    d, heads = shapes.d_model, shapes.n_heads
    assert np.all(d % grid.d_model_multiple == 0) and np.all(d >= grid.d_model_multiple)
    assert np.all(d % heads == 0)
    assert set(heads.tolist()) <= set(grid.head_options)
    assert np.all((grid.min_layers <= shapes.n_layers) & (shapes.n_layers <= grid.max_layers))
    for width, h in zip(d.tolist(), heads.tolist(), strict=True):
        assert _shape(width, 1, grid).n_heads == h
    for i in range(len(d)):
        shape = ModelShape(
            d_model=int(d[i]),
            n_layers=int(shapes.n_layers[i]),
            n_heads=int(heads[i]),
            d_ff=int(shapes.d_ff[i]),
            vocab_size=grid.vocab_size,
            seq_len=grid.seq_len,
        )
        assert shape.params(grid.param_convention) == shapes.params[i]


def test_head_choice_prefers_the_head_dim_nearest_the_target_one():
    grid = replace(GRID, head_options=(64, 4, 16, 8, 32))
    assert choose_heads(np.array([64, 128, 256, 320, 1024, 4096]), grid).tolist() == [
        4,
        4,
        4,
        4,
        16,
        64,
    ]  # 320: 80 (4 heads) beats 40; 4096 only reaches 64 at 64 heads


def test_a_target_below_the_smallest_model_gets_the_nearest_shape():
    shapes = search_shapes(np.array([1e5]), GRID)
    assert not shapes.within_tolerance[0]
    assert shapes.d_model[0] == 64 and shapes.n_layers[0] == 2  # the smallest model there is


def test_head_options_coarser_than_the_multiple_still_give_the_nearest_valid_widths():
    grid = replace(GRID, d_model_multiple=64, head_options=(3 * 64,))  # widths of 192 k only
    shapes = search_shapes(np.array([1e5, 3e7, 1e9]), grid)
    assert np.all(shapes.d_model % 192 == 0) and shapes.n_heads.tolist() == [192] * 3
    assert shapes.d_model[0] == 192 and not shapes.within_tolerance[0]
    for t, d, n_layers, n in zip(
        [1e5, 3e7, 1e9],
        shapes.d_model.tolist(),
        shapes.n_layers.tolist(),
        shapes.params.tolist(),
        strict=True,
    ):
        _check_optimal(t, d, n_layers, n, grid)


def test_absurd_targets_are_refused_before_int64_could_overflow():
    with pytest.raises(ConfigError, match="beyond"):
        search_shapes(np.array([1e16]), GRID)
