"""The `adaptive` planner end to end: half the compute of a fixed grid for the same certainty.

The acceptance of issue 16 on the mock law (`tests/adaptive_sim.py`): the target is the median
95% width on the N* exponent of a fixed 5 x 7 grid centred on the true optimum (computed here,
over seeds 0-19); the adaptive planner, from a prior 4x too small, must reach it with at most
half the grid's compute in the median. Three seeds run by default, all twenty with `-m slow`
(the benchmark `tests/benchmarks/test_bench_adaptive.py` prints the ratio). A study killed in
the middle of a round and run again must end with the same rounds and the same fit.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

from tests import adaptive_sim as sim
from tests.clirunner import NO_FIGURES, flops_fit

ALL_SEEDS = range(20)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("adaptive")


@pytest.fixture(scope="module")
def fixed(root) -> list[sim.Outcome]:
    return sim.fixed_grid(ALL_SEEDS, root)


@pytest.fixture(scope="module")
def target(fixed) -> float:
    return sim.target_width(fixed)


def test_the_reference_grid_is_the_one_the_issue_measured(fixed, target):
    """About 0.083 wide, and every grid spends the same compute (8.5e21 FLOPs)."""
    assert 0.07 < target < 0.10, target
    assert len({round(o.compute, -15) for o in fixed}) == 1
    assert fixed[0].compute == pytest.approx(8.51e21, rel=0.01)


def _check(outcomes, fixed, target: float, *, misses: tuple[int, int]):
    """The acceptance, each point as the issue states it; `misses`: seeds allowed to fail the
    stop (point 1) and coverage (point 4), scaled from 1 and 3 of 20."""
    grid = fixed[0].compute
    report = "\n".join(
        f"seed {o.seed}: width {o.width:.4f} a {o.exponent:.4f} compute {o.compute / grid:.1%} "
        f"rounds {o.rounds} top runs {o.top_runs} bracketed {o.bracketed} covers {o.covers}"
        for o in outcomes
    )
    stopped = [o for o in outcomes if o.reached and o.width <= target]
    assert len(stopped) >= len(outcomes) - misses[0], report
    assert all(o.top_runs >= 3 and o.bracketed for o in stopped), report
    ratios = [o.compute / grid for o in outcomes]
    assert statistics.median(ratios) <= 0.50, report
    assert max(ratios) <= 0.85, report
    assert sum(o.covers for o in outcomes) >= len(outcomes) - misses[1], report
    assert statistics.median(abs(o.exponent - sim.TRUE_A) for o in outcomes) <= 0.02, report


def test_three_seeds_reach_the_grid_width_on_half_its_compute(root, fixed, target):
    outcomes = sim.adaptive(range(3), target, root)
    _check(outcomes, fixed, target, misses=(0, 1))


@pytest.mark.slow
def test_twenty_seeds_reach_the_grid_width_on_half_its_compute(root, fixed, target):
    outcomes = sim.adaptive(ALL_SEEDS, target, root)
    _check(outcomes, fixed, target, misses=(1, 3))


# ---------------------------------------------------------------------- killed mid-round
def _cli(out, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flops_fit_core",
        "-q",
        "run",
        "--preset",
        "mock-adaptive",
        "--out",
        str(out),
        *NO_FIGURES,
        *extra,
    ]


def _lines(path) -> int:
    try:
        return sum(1 for _ in path.open())
    except FileNotFoundError:
        return 0


def test_a_study_killed_mid_round_resumes_to_the_same_rounds_and_fit(tmp_path, capsys):
    """SIGKILL while round 2 trains (some of its runs done, some not); the rerun replays the
    rounds from the results, trains only what is missing, and ends as an unbroken run does."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert flops_fit(capsys, *_cli(whole)[3:]).code == 0

    slow = ("--set", "trainer.seconds_per_run=0.05")  # no outcome option: results are reused
    child = subprocess.Popen(
        _cli(broken, *slow),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            plan = broken / "plan.json"
            rounds = json.loads(plan.read_text())["rounds"] if plan.exists() else []
            if (
                len(rounds) >= 2
                and _lines(broken / "results.jsonl") >= len(rounds[0]["experiments"]) + 2
            ):
                break
            time.sleep(0.02)
        assert child.poll() is None, child.stderr.read()
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        child.stderr.close()
    interrupted = json.loads((broken / "plan.json").read_text())
    trained = _lines(broken / "results.jsonl")
    assert len(interrupted["rounds"]) == 2 and interrupted["stop"] is None
    assert trained < len(interrupted["experiments"])  # killed mid-round

    again = flops_fit(capsys, *_cli(broken)[3:])
    assert again.code == 0, again.err
    a, b = (json.loads((d / "plan.json").read_text()) for d in (whole, broken))
    assert b["rounds"] == a["rounds"] and b["stop"] == a["stop"]
    assert [s["id"] for s in b["experiments"]] == [s["id"] for s in a["experiments"]]
    fit_a, fit_b = (json.loads((d / "fit.json").read_text()) for d in (whole, broken))
    assert fit_b == fit_a
    # nothing trained twice: one record per experiment
    assert _lines(broken / "results.jsonl") == len(b["experiments"])
