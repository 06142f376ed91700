"""The `adaptive` planner's parts: its options, its ladder and first round, the design math
(checked against finite differences and a Monte Carlo of least squares), and what its rounds
may and may not propose."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from flops_fit_core import ConfigError, StudyOutcome
from flops_fit_core.testing import CHINCHILLA, round_outcome
from flops_fit_planners import AdaptivePlanner
from flops_fit_planners.adaptive import FAR_FROM_OPTIMUM
from flops_fit_planners.design import (
    Surface,
    log_loss_gradients,
    target_gradient,
    target_variance,
)
from flops_fit_planners.grid import ladder_budgets

SIX_N = {"conventions": {"params": "total", "flops": "6n"}}
SURFACE = Surface(CHINCHILLA.E, CHINCHILLA.A, CHINCHILLA.B, CHINCHILLA.alpha, CHINCHILLA.beta)


# ---------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "options, needle",
    [
        ({"min_flops": 1e21, "max_flops": 1e20}, "must be below max_flops"),
        ({"target_compute": 1e22}, "target_compute is for target = 'n_opt'"),
        ({"first_budgets": 11}, "first_budgets (11) exceeds the 10 budgets"),
        ({"min_flops": 1e-300, "budgets_per_decade": 20}, "more than 1000; narrow the range"),
        ({"block_spans": [2, 2]}, "block_spans has duplicates"),
        ({"target_width": 0}, "target_width"),
        ({"target": "d_opt"}, "target"),
        ({"prior_coefficient": 1.0}, "together"),
    ],
)
def test_a_bad_option_is_one_clear_error(options, needle):
    with pytest.raises(ConfigError, match=None) as caught:
        AdaptivePlanner(options)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_ladder_keeps_its_ends_and_steps_evenly():
    budgets = ladder_budgets(AdaptivePlanner({}).config)
    assert len(budgets) == 10 and budgets[0] == 1e18 and budgets[-1] == 1e21
    assert np.allclose(np.diff(np.log10(budgets)), 1 / 3)
    odd = ladder_budgets(AdaptivePlanner({"min_flops": 3e17, "max_flops": 1e19}).config)
    assert odd[0] == 3e17 and odd[-1] == 1e19
    assert np.all(np.diff(np.log10(odd)) <= 1 / 3 + 1e-9)


def test_round_one_is_the_cheapest_budgets_over_a_wide_window():
    plan = AdaptivePlanner({**SIX_N, "prior_coefficient": 0.1, "prior_exponent": 0.5}).plan()
    assert plan.budgets == pytest.approx(list(ladder_budgets(AdaptivePlanner({}).config)[:3]))
    assert len(plan.experiments) == 15
    assert [r.index for r in plan.rounds] == [1]
    assert plan.rounds[0].experiments == [s.id for s in plan.experiments]
    for budget in plan.budgets:
        sizes = sorted(s.params for s in plan.experiments if s.budget == budget)
        prior = 0.1 * budget**0.5
        assert sizes[0] == pytest.approx(prior / 16, rel=0.06)
        assert sizes[-1] == pytest.approx(prior * 16, rel=0.06)


def test_a_first_round_beyond_max_compute_is_refused():
    with pytest.raises(ConfigError, match="max_compute"):
        AdaptivePlanner({**SIX_N, "max_compute": 1e18}).plan()


# ---------------------------------------------------------------------- the design math
def _numeric(f, theta, h=1e-6):
    out = np.zeros(len(theta))
    for j in range(len(theta)):
        up, down = np.array(theta, float), np.array(theta, float)
        up[j] += h
        down[j] -= h
        out[j] = (f(up) - f(down)) / (2 * h)
    return out


def _theta(s: Surface):
    return np.array([math.log(s.E), math.log(s.A), math.log(s.B), s.alpha, s.beta])


def _surface(theta) -> Surface:
    return Surface(*np.exp(theta[:3]), theta[3], theta[4])


def test_the_gradients_of_ln_l_are_its_derivatives():
    n, d = np.array([3e7, 4e8]), np.array([2e10, 5e9])
    analytic = log_loss_gradients(SURFACE, n, d)
    for row in range(2):

        def ln_loss(theta, row=row):
            s = _surface(theta)
            return math.log(s.E + s.A * n[row] ** -s.alpha + s.B * d[row] ** -s.beta)

        assert analytic[row] == pytest.approx(_numeric(ln_loss, _theta(SURFACE)), rel=1e-5)


def test_the_target_gradients_are_those_of_the_true_optimum():
    """Against `Law.n_opt`, the closed form the mock and the fitters are checked with."""
    from flops_fit_core.testing import Law

    def law(theta):
        s = _surface(theta)
        return Law(E=s.E, A=s.A, B=s.B, alpha=s.alpha, beta=s.beta)

    theta = _theta(SURFACE)
    exponent = _numeric(lambda t: law(t).a, theta)
    assert target_gradient(SURFACE, "n_exponent") == pytest.approx(exponent, rel=1e-6)
    compute = 1e21
    ln_n_star = _numeric(lambda t: math.log(float(law(t).n_opt(compute))), theta)
    assert target_gradient(SURFACE, "n_opt", math.log(compute / 6)) == pytest.approx(
        ln_n_star, rel=1e-5
    )


def test_the_predicted_variance_is_that_of_least_squares():
    """For a model linear in theta (the fit near its optimum), the variance of g'theta-hat
    over repeated noisy fits is sigma^2 g' (J'J)^-1 g: what `target_variance` predicts."""
    rng = np.random.default_rng(1)
    c = np.repeat([1e18, 1e19, 1e20], 5)
    n = np.tile([1e7, 3e7, 1e8, 3e8, 1e9], 3)
    jac = log_loss_gradients(SURFACE, n, c / (6 * n))
    g = target_gradient(SURFACE, "n_exponent")
    sigma = 0.01
    draws = []
    for _ in range(4000):
        y = sigma * rng.standard_normal(len(n))
        draws.append(g @ np.linalg.lstsq(jac, y, rcond=None)[0])
    assert np.var(draws) == pytest.approx(sigma**2 * target_variance(jac, g), rel=0.08)


def test_runs_that_cannot_pin_the_surface_have_infinite_variance():
    n = np.array([1e8, 1e8, 1e8])
    jac = log_loss_gradients(SURFACE, n, np.array([1e9, 1e9, 1e9]))
    assert target_variance(jac, target_gradient(SURFACE, "n_exponent")) == math.inf


# ---------------------------------------------------------------------- later rounds
@pytest.fixture
def planner():
    return AdaptivePlanner(SIX_N)


@pytest.fixture
def outcome(planner) -> StudyOutcome:
    """Round 1 trained on Chinchilla and fitted with a 0.2-wide interval on the N* exponent."""
    return round_outcome(planner.plan())


def test_a_next_round_repeats_no_run_and_expects_to_narrow_the_width(planner, outcome):
    proposed = planner.next_round(outcome)
    assert proposed.stop is None
    record = proposed.rounds[-1]
    assert record.width == pytest.approx(0.2)
    assert record.predicted_width < record.width
    for budget in proposed.budgets:
        sizes = sorted(s.params for s in proposed.experiments if s.budget == budget)
        ratios = np.array(sizes[1:]) / np.array(sizes[:-1])
        assert (ratios > 1.1).all(), (budget, sizes)  # no two runs within 10% at one budget


def test_a_round_that_leans_on_far_sizes_says_so(planner, outcome):
    proposed = planner.next_round(outcome)
    far = [w for w in proposed.warnings if "from the fitted optimum" in w]
    spans = [
        max(s.params / n, n / s.params)
        for s in proposed.experiments[len(outcome.plan.experiments) :]
        for n in [float(f"{outcome.fit.laws['n_opt'].predict(s.budget):.10g}")]
    ]
    assert bool(far) == (max(spans) > FAR_FROM_OPTIMUM)


def test_a_narrow_interval_brackets_the_top_then_stops(planner, outcome):
    """Width under the target: first three runs around N* at max_flops, then done."""
    plan = outcome.plan
    narrow = outcome.fit.laws["n_opt"].model_copy(update={"exponent_interval": (0.44, 0.46)})
    fit = outcome.fit.model_copy(update={"laws": {**outcome.fit.laws, "n_opt": narrow}})
    narrow_outcome = StudyOutcome(fits=(fit,), observations=outcome.observations, plan=plan)
    proposed = planner.next_round(narrow_outcome)
    # not bracketed yet: the round is only the runs at max_flops
    new = proposed.experiments[len(plan.experiments) :]
    assert {s.budget for s in new} == {1e21} and len(new) == 3
    n_star = float(fit.laws["n_opt"].predict(1e21))
    assert min(s.params for s in new) < n_star < max(s.params for s in new)
    done = planner.next_round(round_outcome(proposed, halfwidth=0.01))
    assert done.stop is not None and done.stop.reached
    assert done.experiments == proposed.experiments
    assert "0.02 <= target 0.1" in done.stop.note and "between 3 runs" in done.stop.note


def test_max_rounds_and_max_compute_stop_short_and_say_so(outcome):
    capped = AdaptivePlanner({**SIX_N, "max_rounds": 1}).next_round(outcome)
    assert capped.stop is not None and not capped.stop.reached
    assert "max_rounds = 1" in capped.stop.note
    assert capped.experiments == outcome.plan.experiments
    poor = AdaptivePlanner({**SIX_N, "max_compute": 5e19}).next_round(outcome)
    assert poor.stop is not None and not poor.stop.reached
    assert "max_compute" in poor.stop.note


def test_a_fit_without_a_surface_is_refused(planner, outcome):
    from flops_fit_core import FitError

    bare = outcome.fit.model_copy(update={"parametric": None})
    with pytest.raises(FitError, match="fitted surface"):
        planner.next_round(
            StudyOutcome(fits=(bare,), observations=outcome.observations, plan=outcome.plan)
        )


def test_the_n_opt_target_reads_the_relative_width_at_its_compute(outcome):
    planner = AdaptivePlanner({**SIX_N, "target": "n_opt", "target_compute": 1e22})
    proposed = planner.next_round(outcome)
    estimate = outcome.fit.predict(1e22).params
    lo, hi = estimate.interval
    assert proposed.rounds[-1].width == pytest.approx((hi - lo) / estimate.value)


def test_a_failed_run_at_the_top_brackets_nothing_and_is_not_proposed_again(planner, outcome):
    """The bracket counts runs with a result; a failed one is replaced by the next size out
    on its side, never proposed again (its id would only meet its failure)."""
    narrow = outcome.fit.laws["n_opt"].model_copy(update={"exponent_interval": (0.44, 0.46)})
    fit = outcome.fit.model_copy(update={"laws": {**outcome.fit.laws, "n_opt": narrow}})
    bracketing = planner.next_round(
        StudyOutcome(fits=(fit,), observations=outcome.observations, plan=outcome.plan)
    )
    top = [s for s in bracketing.experiments if s.budget == 1e21]
    trained = round_outcome(bracketing, halfwidth=0.01)
    lost = max(top, key=lambda s: s.params)  # the run above N* failed: no result
    keep = [i for i, run in enumerate(trained.primary_observations.ids) if run != lost.id]
    without = trained.primary_observations.take(keep)
    again = planner.next_round(dataclasses.replace(trained, observations=(without,)))
    assert again.stop is None
    new = again.experiments[len(bracketing.experiments) :]
    assert [s.budget for s in new] == [1e21]
    assert new[0].params > float(fit.laws["n_opt"].predict(1e21))
    assert abs(new[0].params / lost.params - 1) > 0.1


def test_a_met_width_without_the_bracket_is_said_as_it_is(outcome):
    narrow = outcome.fit.laws["n_opt"].model_copy(update={"exponent_interval": (0.44, 0.46)})
    fit = outcome.fit.model_copy(update={"laws": {**outcome.fit.laws, "n_opt": narrow}})
    capped = AdaptivePlanner({**SIX_N, "max_rounds": 1}).next_round(
        StudyOutcome(fits=(fit,), observations=outcome.observations, plan=outcome.plan)
    )
    assert "width 0.02 <= target 0.1 but N* at max_flops = 1e+21 not yet bracketed" in (
        capped.stop.note
    )


def test_max_compute_must_leave_room_for_the_bracket():
    with pytest.raises(ConfigError, match="leaves no room for the first round"):
        AdaptivePlanner({**SIX_N, "max_compute": 2e21}).plan()
    assert AdaptivePlanner({**SIX_N, "max_compute": 4e21}).plan().experiments


def test_a_parameter_the_fitter_holds_fixed_carries_no_variance():
    n = np.tile([1e7, 3e7, 1e8, 3e8, 1e9], 3)
    c = np.repeat([1e18, 1e19, 1e20], 5)
    jac = log_loss_gradients(SURFACE, n, c / (6 * n))
    g = target_gradient(SURFACE, "n_opt", math.log(1e21 / 6))
    free = [True, True, True, False, True]  # alpha fixed
    fixed_alpha = target_variance(jac, g, free)
    assert 0 < fixed_alpha < target_variance(jac, g)
