"""The run store's rules, on a real SQLite file: legal moves only, retries counted apart."""

from __future__ import annotations

import pytest

from flops_fit_api.db import IllegalMove, RunStore, SpecConflict
from flops_fit_core.testing import tiny_specs


@pytest.fixture
def store(tmp_path):
    store = RunStore(tmp_path)
    yield store
    store.close()


def test_training_failures_are_retried_apart_from_infrastructure_ones(store):
    spec = tiny_specs(1)[0]
    store.create(spec)
    assert store.claim_next() == spec.id
    again = store.fail(spec.id, "RuntimeError: boom", train_retries=1)
    assert (again.state, again.attempt, again.cause) == ("queued", 2, "trainer_error")
    store.claim_next()
    crashed = store.requeue(spec.id, "worker_crashed", "killed by signal 9", infra_retries=1)
    assert (crashed.state, crashed.attempt) == ("queued", 3)  # its own budget, untouched
    store.claim_next()
    failed = store.fail(spec.id, "RuntimeError: boom", train_retries=1)
    assert (failed.state, failed.cause, failed.error) == (
        "failed",
        "trainer_error",
        "RuntimeError: boom",
    )


def test_a_terminal_run_never_moves_except_by_a_resubmission(store):
    spec, other = tiny_specs(2)
    store.create(spec)
    store.claim_next()
    store.move(spec.id, "succeeded", expect="running")
    for state in ("running", "queued", "failed", "cancelled"):
        with pytest.raises(IllegalMove):
            store.move(spec.id, state)
    view, created = store.create(spec)  # a succeeded run is answered, not trained again
    assert (view.state, created) == ("succeeded", False)
    store.create(other)
    store.request_cancel(other.id)
    assert store.get(other.id).state == "cancelled"
    resubmitted, _ = store.create(other)
    assert (resubmitted.state, resubmitted.attempt) == ("queued", 2)


def test_another_spec_under_a_known_id_conflicts(store):
    first, second = tiny_specs(2)
    store.create(first)
    with pytest.raises(SpecConflict):
        store.create(second.model_copy(update={"id": first.id}))
