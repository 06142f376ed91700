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
def _run_args(out, *extra: str, quiet: bool = True) -> list[str]:
    """`flops-fit [-q] run --preset mock-adaptive --out OUT`, no figures, then `extra`."""
    quietly = ["-q"] if quiet else []
    return [*quietly, "run", "--preset", "mock-adaptive", "--out", str(out), *NO_FIGURES, *extra]


def _check_what_the_user_sees(run_dir, printed: str) -> None:
    """One line per round, the stop, and the rounds figure (the report's section:
    plugins/plotters/tests/test_report.py)."""
    plan = json.loads((run_dir / "plan.json").read_text())
    rounds = plan["rounds"]
    lines = [ln for ln in printed.splitlines() if ln.startswith("round ")]
    assert [ln.split(":")[0] for ln in lines] == [f"round {r['index']}" for r in rounds]
    for line, record in zip(lines[1:], rounds[1:], strict=True):
        assert f"+{len(record['experiments'])} runs" in line
        assert f"width {record['width']:.3g}" in line and "FLOPs fitted so far" in line
    assert f"planner 'adaptive' stopped: {plan['stop']['note']}" in printed
    svg = (run_dir / "figures" / "rounds.svg").read_text()
    for record in rounds:
        assert f'id="round-{record["index"]}"' in svg


def _lines(path) -> int:
    try:
        return sum(1 for _ in path.open())
    except FileNotFoundError:
        return 0


def test_a_study_killed_mid_round_resumes_to_the_same_rounds_and_fit(tmp_path, capsys):
    """SIGKILL while round 2 trains (some of its runs done, some not); the rerun replays the
    rounds from the results, trains only what is missing, and ends as an unbroken run does,
    even with its runs finishing in another order (process workers)."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    shown = flops_fit(capsys, *_run_args(whole, "--set", 'plot.names=["rounds"]', quiet=False))
    assert shown.code == 0, shown.err
    _check_what_the_user_sees(whole, shown.err)

    slow = ("--set", "trainer.seconds_per_run=0.05")  # no outcome option: results are reused
    child = subprocess.Popen(
        [sys.executable, "-m", "flops_fit_core", *_run_args(broken, *slow)],
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

    # ... resumed under the process executor: results now arrive in any order, and the
    # rounds must not depend on it
    workers = ("--executor", "process", "--set", "executor.workers=2")
    again = flops_fit(capsys, *_run_args(broken), *workers)
    assert again.code == 0, again.err
    a, b = (json.loads((d / "plan.json").read_text()) for d in (whole, broken))
    assert b["rounds"] == a["rounds"] and b["stop"] == a["stop"]
    assert [s["id"] for s in b["experiments"]] == [s["id"] for s in a["experiments"]]
    fit_a, fit_b = (json.loads((d / "fit.json").read_text()) for d in (whole, broken))
    assert fit_b == fit_a
    # nothing trained twice: one record per experiment
    assert _lines(broken / "results.jsonl") == len(b["experiments"])


# ---------------------------------------------------------------------- what users meet
@pytest.mark.parametrize(
    "options, needle",
    [
        (("--fitter", "empirical"), "fitter 'empirical' does not fit; use fitter 'robust'"),
        (("--set", "fitter.bootstrap=0"), "bootstrap = 0 gives none"),
        (("--set", "fitter.flops=exact"), "plans with flops = '6n' but the fitter fits with"),
        (("--set", "planner.first_budgets=2"), "fewer than the 3 budgets fitter 'robust' needs"),
        (("--set", "planner.target_compute=1e22"), "target_compute is for target = 'n_opt'"),
        (("--set", "planner.max_compute=1e19"), "its first round alone takes"),
        (("--set", "fitter.fixed={alpha = 0.34, beta = 0.28}"), "holds alpha and beta fixed"),
    ],
)
def test_a_study_it_cannot_plan_is_one_error_before_anything_trains(
    tmp_path, capsys, options, needle
):
    from tests.clirunner import assert_one_line_error

    out = tmp_path / "study"
    outcome = flops_fit(capsys, *_run_args(out), *options)
    assert_one_line_error(outcome, needle)
    assert not (out / "results.jsonl").exists()


def test_a_cap_stops_it_short_with_a_warning_and_a_fit(tmp_path, capsys):
    out = tmp_path / "capped"
    outcome = flops_fit(capsys, *_run_args(out), "--set", "planner.max_rounds=2")
    assert outcome.code == 0, outcome.err
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["rounds"]) == 2 and plan["stop"]["reached"] is False
    assert "max_rounds = 2 reached with N* exponent width" in plan["stop"]["note"]
    warning = [ln for ln in outcome.err.splitlines() if ln.startswith("warning: planner")]
    assert warning == [
        f"warning: planner 'adaptive' stopped short of its target: {plan['stop']['note']}"
    ]
    assert (out / "fit.json").exists()


def test_plan_writes_round_one_and_says_the_rest_comes_from_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = flops_fit(capsys, "plan", "--preset", "mock-adaptive")
    assert outcome.code == 0, outcome.err
    assert "15 experiments over 3 budgets" in outcome.out
    assert "round 1 of planner 'adaptive', which plans in rounds" in outcome.out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [r["index"] for r in plan["rounds"]] == [1] and plan["stop"] is None


def test_the_json_summary_carries_the_rounds_and_the_stop(tmp_path, capsys):
    outcome = flops_fit(capsys, *_run_args(tmp_path / "j"), "--json")
    assert outcome.code == 0, outcome.err
    summary = outcome.json()
    plan = json.loads((tmp_path / "j" / "plan.json").read_text())
    assert summary["rounds"] == plan["rounds"] and summary["stop"] == plan["stop"]
    assert summary["experiments"] == len(plan["experiments"]) == summary["trained"]


# ---------------------------------------------------------------------- the pipeline's guard
def _host_with(planner_cls):
    import types

    from flops_fit_core import PluginHost, hookimpl
    from flops_fit_core.plugins import reset_host

    module = types.SimpleNamespace(flops_fit_register_planners=hookimpl(lambda: [planner_cls]))
    host = PluginHost()
    host.register(module, planner_cls.name, f"flops-fit-{planner_cls.name}", "1.0")
    assert host.errors == []
    reset_host(host)


def test_a_planner_whose_round_drops_or_adds_nothing_is_refused(tmp_path, capsys):
    from flops_fit_core import PlanStop
    from flops_fit_planners import IsoFlopPlanner

    class Drops(IsoFlopPlanner):
        name = "drops"

        def next_round(self, outcome):
            return outcome.plan.model_copy(update={"experiments": outcome.plan.experiments[1:]})

    class Loops(IsoFlopPlanner):
        name = "loops"

        def next_round(self, outcome):
            return outcome.plan

    from tests.clirunner import assert_one_line_error, mock_study_args

    class Both(IsoFlopPlanner):
        name = "both"

        def next_round(self, outcome):
            more = IsoFlopPlanner({"n_budgets": 3, "min_flops": 1e17, "max_flops": 1e18}).plan()
            return outcome.plan.model_copy(
                update={
                    "experiments": [*outcome.plan.experiments, *more.experiments],
                    "stop": PlanStop(note="done", reached=True),
                }
            )

    cases = (
        (Drops, "drops 1 experiment"),
        (Loops, "adds no experiment"),
        (Both, "stops and adds 14"),
    )
    for cls, needle in cases:
        _host_with(cls)
        outcome = flops_fit(capsys, *mock_study_args(tmp_path / cls.name), "--planner", cls.name)
        assert_one_line_error(outcome, f"planner {cls.name!r}: its next round", needle)


def test_a_config_that_names_no_fitter_gets_the_one_the_planner_needs(tmp_path, capsys):
    """The adaptive planner is placed by a fit of the surface: `robust` unless told otherwise;
    a fitter named explicitly is kept (and refused, with the fix, if it cannot serve)."""
    import tomllib

    study = tmp_path / "study.toml"
    study.write_text('[planner]\nname = "adaptive"\n\n[trainer]\nname = "mock"\n')
    shown = flops_fit(capsys, "config", "show", "-c", str(study))
    assert shown.code == 0, shown.err
    assert tomllib.loads(shown.out)["fitter"]["name"] == "robust"
    study.write_text(study.read_text() + '\n[fitter]\nname = "quadratic"\n')
    from tests.clirunner import assert_one_line_error

    assert_one_line_error(
        flops_fit(capsys, "config", "validate", "-c", str(study)), "use fitter 'robust'"
    )


def test_the_n_opt_target_stops_when_n_star_at_its_compute_is_sure_enough(tmp_path, capsys):
    """target = n_opt: the relative width of N* at target_compute, as `predict` states it."""
    out = tmp_path / "n_opt"
    options = ("--set", "planner.target=n_opt", "--set", "planner.target_width=0.3")
    outcome = flops_fit(capsys, *_run_args(out), *options)
    assert outcome.code == 0, outcome.err
    plan = json.loads((out / "plan.json").read_text())
    assert plan["stop"]["reached"], plan["stop"]
    assert "N* relative width at 1e+21" in plan["stop"]["note"]
    predicted = flops_fit(capsys, "predict", str(out / "fit.json"), "--compute", "1e21", "--json")
    row = predicted.json()
    lo, hi = row["params"]["interval"]
    assert (hi - lo) / row["params"]["value"] == pytest.approx(plan["stop"]["width"])
    assert plan["stop"]["width"] <= 0.3
    brackets = [r["note"] for r in plan["rounds"] if "to bracket the fitted N*" in r["note"]]
    assert len(brackets) == 1  # owed once; other runs at max_flops are placed for information
