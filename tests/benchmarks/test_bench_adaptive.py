"""The `adaptive` planner against a fixed IsoFLOP grid, both run here on the mock law.

Issue 16's simulation (`tests/adaptive_sim.py`): 20 seeds of a fixed 5-budget x 7-size grid
centred on the true optimum set the target (the median 95% width on the N* exponent); 20 seeds
of the adaptive planner, from a prior 4x too small, must reach it. Printed per seed: width,
exponent, rounds, runs and compute; then the compute ratio against the grid (median and
worst), how many seeds reached the target, coverage, the median error, and the wall time per
study of each. Asserted: only the acceptance's numbers (median ratio <= 0.50, none above
0.85), which do not depend on the machine.

    uv run pytest tests/benchmarks/test_bench_adaptive.py -m benchmark -n 0 -s
"""

from __future__ import annotations

import statistics
import time

from tests import adaptive_sim as sim

SEEDS = range(20)


def test_adaptive_compute_against_the_fixed_grid(tmp_path):
    started = time.perf_counter()
    fixed = sim.fixed_grid(SEEDS, tmp_path)
    fixed_s = (time.perf_counter() - started) / len(SEEDS)
    target = sim.target_width(fixed)
    grid = fixed[0].compute

    started = time.perf_counter()
    outcomes = sim.adaptive(SEEDS, target, tmp_path)
    adaptive_s = (time.perf_counter() - started) / len(SEEDS)

    print(f"\nfixed grid: 35 runs, {grid:.3g} FLOPs, median width {target:.4f} (the target)")
    for o in outcomes:
        print(
            f"  seed {o.seed:2d}: width {o.width:.4f}  a {o.exponent:.4f}  rounds {o.rounds}  "
            f"compute {o.compute:.3g} ({o.compute / grid:.1%})  covers {o.covers}"
        )
    ratios = [o.compute / grid for o in outcomes]
    reached = sum(o.reached and o.width <= target for o in outcomes)
    print(
        f"adaptive / fixed compute: median {statistics.median(ratios):.3f}, "
        f"worst {max(ratios):.3f}; reached the target {reached}/20; covers the true "
        f"a = {sim.TRUE_A:.4f} {sum(o.covers for o in outcomes)}/20; median |a - a_true| "
        f"{statistics.median(abs(o.exponent - sim.TRUE_A) for o in outcomes):.4f}"
    )
    print(f"wall time per study: fixed {fixed_s:.2f} s, adaptive {adaptive_s:.2f} s (all rounds)")
    assert statistics.median(ratios) <= 0.50
    assert max(ratios) <= 0.85
