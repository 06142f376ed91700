"""Properties over random configs: a plan is either valid in every respect or a ConfigError."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flops_fit_core import ConfigError
from flops_fit_planners import IsoFlopPlanner

configs = st.fixed_dictionaries(
    {
        "min_flops": st.floats(1e12, 1e20),
        "decades": st.floats(0.5, 5.0),
        "n_budgets": st.integers(2, 6),
        "sizes_per_budget": st.integers(1, 9),
        "span": st.floats(1.1, 20.0),
        "vocab_size": st.integers(2, 70000),
        "seq_len": st.integers(16, 8192),
        "d_model_multiple": st.sampled_from([8, 16, 32, 48, 64, 128]),
        "min_layers": st.integers(1, 8),
        "extra_layers": st.integers(0, 60),
        "head_options": st.lists(st.integers(1, 128), min_size=1, max_size=5, unique=True),
        "head_dim": st.integers(8, 256),
        "ffn_ratio": st.sampled_from([2.0, 8 / 3, 3.5, 4.0]),
        "aspect_ratio": st.floats(4.0, 256.0),
        "param_tolerance": st.floats(0.005, 0.3),
        "conventions": st.fixed_dictionaries(
            {
                "params": st.sampled_from(["total", "non_embedding"]),
                "flops": st.sampled_from(["exact", "6n"]),
            }
        ),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_any_config_plans_validly_or_says_why(raw):
    raw = dict(raw)
    raw["max_flops"] = raw["min_flops"] * 10 ** raw.pop("decades")
    raw["max_layers"] = raw["min_layers"] + raw.pop("extra_layers")
    planner = IsoFlopPlanner(raw)
    try:
        plan = planner.plan()
    except ConfigError as exc:
        event(f"refused: {str(exc).split(':')[1].strip()[:20]}")
        return
    event("planned")
    c = planner.config
    ids = [s.id for s in plan.experiments]
    assert len(set(ids)) == len(ids) and ids == [s.id for s in planner.plan().experiments]
    per_budget = {}
    for spec in plan.experiments:
        shape = spec.shape
        assert spec.params == shape.params(c.conventions.params)
        # D = round(C / flops per token) spends C to within half a token; the float product
        # itself carries rounding error of about C * 2^-52 (budgets reach 1e23 and beyond).
        slack = spec.flops_per_token / 2 + 1e-12 * spec.budget
        assert abs(spec.tokens * spec.flops_per_token - spec.budget) <= slack
        assert shape.d_model % c.d_model_multiple == 0 and shape.d_model % shape.n_heads == 0
        assert shape.n_heads in c.head_options
        assert c.min_layers <= shape.n_layers <= c.max_layers
        assert shape.d_ff == max(1, round(c.ffn_ratio * shape.d_model))
        assert math.isclose(spec.learning_rate, c.lr_schedule.base_lr)
        per_budget[spec.budget] = per_budget.get(spec.budget, 0) + 1
    assert len(per_budget) == c.n_budgets
    assert all(1 <= k <= c.sizes_per_budget for k in per_budget.values())
