"""Training resumes by id: failures are recorded, kept, and retried only when asked."""

from __future__ import annotations

import pytest

from flops_fit_core import SweepPlan, TrainingCancelled
from flops_fit_core.executors import SerialExecutor
from flops_fit_core.store import ResultsStore
from flops_fit_core.testing import EchoTrainer, tiny_specs
from flops_fit_core.training import train_plan


def test_failures_are_recorded_skipped_and_retried_only_when_asked(tmp_path):
    specs = tiny_specs(4, fail=(2,))
    plan = SweepPlan(planner="test", experiments=specs)
    results = tmp_path / "results.jsonl"

    first = train_plan(plan, EchoTrainer(), SerialExecutor(), results)
    assert (first.trained, first.failed, first.skipped) == (3, 1, 0)
    assert "asked to fail" in first.errors[0]

    again = train_plan(plan, EchoTrainer(), SerialExecutor(), results)
    assert (again.trained, again.failed, again.skipped, again.failed_before) == (0, 0, 4, 1)

    retry = train_plan(plan, EchoTrainer(), SerialExecutor(), results, retry_failed=True)
    assert (retry.trained, retry.failed, retry.skipped) == (0, 1, 3)
    loaded = ResultsStore(results).load()
    assert len(loaded) == 5  # the failure is kept for the record, never rewritten
    assert loaded.statuses()[specs[2].id] == "failed"


def test_a_fixed_failure_succeeds_on_retry_and_wins(tmp_path):
    specs = tiny_specs(2, fail=(1,))
    results = tmp_path / "results.jsonl"
    train_plan(SweepPlan(planner="t", experiments=specs), EchoTrainer(), SerialExecutor(), results)
    # The same experiment id, now trainable (a fixed bug): simulate by appending its success.
    from flops_fit_core import RunResult

    ResultsStore(results).append(
        RunResult.success(specs[1], EchoTrainer().info, loss=2.0, tokens_trained=1)
    )
    assert ResultsStore(results).load().statuses()[specs[1].id] == "ok"
    summary = train_plan(
        SweepPlan(planner="t", experiments=specs), EchoTrainer(), SerialExecutor(), results
    )
    assert summary.trained == summary.failed == 0 and summary.skipped == 2


def test_a_set_cancel_flag_trains_nothing_and_records_nothing(tmp_path):
    import threading

    cancel = threading.Event()
    cancel.set()
    results = tmp_path / "results.jsonl"
    with pytest.raises(TrainingCancelled, match="3 of 3 experiments not trained yet"):
        train_plan(
            SweepPlan(planner="t", experiments=tiny_specs(3)),
            EchoTrainer(),
            SerialExecutor(),
            results,
            cancel=cancel,
        )
    assert not results.exists() or not results.read_bytes()


def test_a_fit_does_not_depend_on_the_order_results_arrived_in(tmp_path):
    """Workers finish in any order; the robust bootstrap resamples rows by index, so the
    observations are put in the plan's order before any fitter sees them."""
    import random

    from flops_fit_core import fit, resolve_study, run_study
    from flops_fit_core.config import StudyConfig

    config = StudyConfig.model_validate(
        {
            "planner": {"name": "isoflop", "n_budgets": 4, "sizes_per_budget": 5},
            "trainer": {"name": "mock", "noise": 0.01},
            "plot": {"names": []},
        }
    )
    run_study(resolve_study(config), tmp_path / "a")
    lines = (tmp_path / "a" / "results.jsonl").read_text().splitlines(keepends=True)
    random.Random(3).shuffle(lines)
    (tmp_path / "shuffled.jsonl").write_text("".join(lines))
    options = {"bootstrap": 200}
    ordered = fit(tmp_path / "a" / "results.jsonl", "robust", options=options)
    shuffled = fit(tmp_path / "shuffled.jsonl", "robust", options=options)
    assert shuffled.model_dump() == ordered.model_dump()
