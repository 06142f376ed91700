"""Learning-rate schedules as fractions of the peak: warmup to the peak, the shape after it,
and the run's own last step at exactly the final value, for runs from 1 to 1000 steps."""

from __future__ import annotations

import itertools
import math
import pickle

import pytest
import torch

from flops_fit_torch.schedule import SCHEDULES, Schedule

STEPS = (1, 2, 3, 10, 1000)


def values(schedule: Schedule) -> list[float]:
    return [schedule(step) for step in range(schedule.steps)]


def case(name: str, steps: int, *reasons: str):
    marks = [pytest.mark.xfail(strict=True, reason="; ".join(reasons))] if reasons else []
    return pytest.param(name, steps, marks=marks, id=f"{name}-{steps}")


def all_cases(wsd_reasons=lambda steps: ()):
    return [
        case(name, steps, *(wsd_reasons(steps) if name == "wsd" else ()))
        for name in SCHEDULES
        for steps in STEPS
    ]


def test_schedule_names():
    assert SCHEDULES == ("cosine", "wsd", "constant")


@pytest.mark.parametrize(("name", "steps"), all_cases())
def test_warmup_rises_monotonically_to_the_peak(name, steps):
    schedule = Schedule(name, steps)
    lr = values(schedule)
    warm = schedule.warmup_steps
    assert 0 <= warm <= steps - 1
    ramp = lr[:warm]
    assert all(0 < v < 1 for v in ramp)
    assert all(a < b for a, b in itertools.pairwise(ramp))
    if warm < steps - 1:
        assert lr[warm] == 1.0  # the peak, right after warmup


@pytest.mark.parametrize(
    ("steps", "warmup", "expected"),
    [(1000, 0.05, 50), (1000, 0.1, 100), (10, 0.05, 1), (2, 0.5, 1), (1, 0.5, 0)],
)
def test_warmup_share(steps, warmup, expected):
    schedule = Schedule("cosine", steps, warmup=warmup)
    assert schedule.warmup_steps == expected
    if expected:
        assert schedule(expected - 1) < 1.0


@pytest.mark.parametrize(("name", "steps"), all_cases())
def test_last_step_is_exactly_the_final_value(name, steps):
    schedule = Schedule(name, steps)
    assert schedule(steps - 1) == (1.0 if name == "constant" else schedule.final_ratio)


@pytest.mark.parametrize("steps", STEPS)
def test_wsd_ends_at_final_ratio(steps):
    """A one- or two-step wsd run (warmup ending on its last step) must decay too."""
    schedule = Schedule("wsd", steps)
    assert schedule(steps - 1) == pytest.approx(schedule.final_ratio, abs=1e-12)


@pytest.mark.parametrize("final_ratio", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("name", ["cosine", "wsd"])
def test_last_step_exact_for_other_final_ratios(name, final_ratio):
    """Ratios where 1 - (1 - r) is exact in floating point (contrast with 0.1 above)."""
    assert Schedule(name, 100, final_ratio=final_ratio)(99) == final_ratio


@pytest.mark.parametrize("steps", STEPS)
def test_cosine_is_non_increasing_after_warmup(steps):
    schedule = Schedule("cosine", steps)
    after = values(schedule)[schedule.warmup_steps :]
    assert all(a >= b for a, b in itertools.pairwise(after))


def test_cosine_midpoint_is_halfway():
    schedule = Schedule("cosine", 1001, warmup=0.0, final_ratio=0.2)
    # warmup is at least one step: the cosine spans steps 1 .. 1000
    assert schedule.warmup_steps == 1
    assert schedule(1) == 1.0
    assert schedule(500) == pytest.approx(
        0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 499 / 999)), rel=1e-12
    )
    assert schedule(1000) == 0.2


@pytest.mark.parametrize("steps", [3, 10, 1000])
def test_wsd_is_stable_then_decays_linearly(steps):
    schedule = Schedule("wsd", steps)
    lr = values(schedule)
    warm = schedule.warmup_steps
    decay_steps = max(1, round(schedule.decay * steps))
    start = steps - 1 - decay_steps  # last step at the peak
    assert start >= warm
    assert all(v == 1.0 for v in lr[warm : start + 1])
    decay = lr[start:]
    assert len(decay) == decay_steps + 1
    assert all(v < 1.0 for v in decay[1:])
    slope = (1 - schedule.final_ratio) / decay_steps
    for i, v in enumerate(decay):
        assert v == pytest.approx(1 - slope * i, abs=1e-12)


@pytest.mark.parametrize(("name", "steps"), all_cases())
def test_values_stay_between_final_ratio_and_peak_after_warmup(name, steps):
    schedule = Schedule(name, steps)
    floor = 1.0 if name == "constant" else schedule.final_ratio
    after = values(schedule)[schedule.warmup_steps :]
    assert all(floor <= v <= 1.0 for v in after), (min(after), max(after))


def test_unknown_name_is_rejected_with_the_options():
    with pytest.raises(ValueError, match=r"'linear'.*cosine, wsd, constant"):
        Schedule("linear", 10)


@pytest.mark.parametrize("steps", [0, -1])
def test_a_run_needs_a_step(steps):
    with pytest.raises(ValueError, match=str(steps)):
        Schedule("cosine", steps)


def test_schedule_pickles():
    schedule = Schedule("wsd", 50, warmup=0.1, final_ratio=0.2, decay=0.3)
    clone = pickle.loads(pickle.dumps(schedule))
    assert clone == schedule
    assert values(clone) == values(schedule)


@pytest.mark.parametrize("name", SCHEDULES)
def test_lambda_lr_follows_the_schedule_per_group(name):
    steps, peak = 40, 0.3
    schedule = Schedule(name, steps, warmup=0.1)
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD(
        [{"params": [a], "lr": peak}, {"params": [b], "lr": peak * 0.25}], lr=peak
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    seen = []
    for step in range(steps):
        lrs = [group["lr"] for group in optimizer.param_groups]
        assert lrs == [peak * schedule(step), peak * 0.25 * schedule(step)], step
        seen.append(lrs[0])
        a.grad, b.grad = torch.ones(2), torch.ones(2)
        optimizer.step()
        scheduler.step()
    assert seen == [peak * v for v in values(schedule)]
    assert max(seen) == pytest.approx(peak, rel=1e-12)
