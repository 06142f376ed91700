"""The isoflop planner's config: defaults, alternatives, and every impossible value rejected."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import flops_fit_planners
from flops_fit_core import ConfigError, Conventions, Planner
from flops_fit_planners import AdaptivePlanner, IsoFlopConfig, IsoFlopPlanner


def test_defaults_are_the_documented_ones():
    c = IsoFlopPlanner().config
    assert (c.budgets, c.min_flops, c.max_flops, c.n_budgets) == (None, 1e18, 1e21, 5)
    assert (c.sizes_per_budget, c.span, c.tokens_per_param) == (7, 8.0, 20.0)
    assert (c.prior_coefficient, c.prior_exponent) == (None, None)
    assert (c.vocab_size, c.seq_len, c.d_model_multiple) == (32000, 2048, 64)
    assert (c.min_layers, c.max_layers, c.head_options, c.head_dim) == (
        2,
        64,
        (4, 8, 16, 32, 64),
        64,
    )
    assert (c.ffn_ratio, c.aspect_ratio, c.param_tolerance) == (4, 64.0, 0.05)
    assert c.conventions == Conventions(params="total", flops="exact")
    assert (c.lr_schedule.base_lr, c.lr_schedule.base_size, c.lr_schedule.lr_power) == (
        2e-3,
        1e8,
        0.0,
    )
    assert (c.batch_size, c.schedule, c.seed, c.dataset_tokens) == (32, "cosine", 0, None)
    assert c.hardware == {"cpu-2-cores": 2e10, "a100-40%-mfu": 1.25e14, "h100-40%-mfu": 3.96e14}


def test_registered_through_the_hook_and_the_entry_point():
    assert flops_fit_planners.flops_fit_register_planners() == [IsoFlopPlanner, AdaptivePlanner]
    assert issubclass(AdaptivePlanner, Planner) and AdaptivePlanner.name == "adaptive"
    assert issubclass(IsoFlopPlanner, Planner) and IsoFlopPlanner.name == "isoflop"
    found = {ep.name: ep.value for ep in entry_points(group="flops_fit")}
    assert found.get("planners") == "flops_fit_planners"


def test_config_is_frozen():
    c = IsoFlopPlanner({"n_budgets": 3}).config
    with pytest.raises(Exception, match="frozen"):
        c.n_budgets = 4


@pytest.mark.parametrize(
    "options, key",
    [
        ({"min_flop": 1e18}, "min_flop"),
        ({"lr_schedule": {"base_lr": 1e-3, "warmup": 10}}, "warmup"),
        ({"conventions": {"params": "total", "flop": "6n"}}, "flop"),
    ],
)
def test_unknown_keys_are_config_errors(options, key):
    with pytest.raises(ConfigError, match=key):
        IsoFlopPlanner(options)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"min_flops": 1e21, "max_flops": 1e18}, "min_flops"),
        ({"min_flops": 1e20, "max_flops": 1e20}, "min_flops"),
        ({"span": 1.0}, "span"),
        ({"span": 0.5}, "span"),
        ({"n_budgets": 1}, "n_budgets"),
        ({"budgets": [1e18, 1e19], "min_flops": 1e17}, "either budgets"),
        ({"budgets": [1e18, 1e19], "max_flops": 1e22}, "either budgets"),
        ({"budgets": [1e18, 1e19], "n_budgets": 3}, "either budgets"),
        ({"budgets": []}, "empty"),
        ({"budgets": [1e18, 1e18]}, "duplicates"),
        ({"budgets": [1e18, -1.0]}, "budgets"),
        ({"min_flops": float("inf")}, "min_flops"),
        ({"max_flops": float("nan")}, "max_flops"),
        ({"prior_coefficient": 0.1}, "together"),
        ({"prior_exponent": 0.5}, "together"),
        ({"prior_coefficient": 0.1, "prior_exponent": 0.5, "tokens_per_param": 20}, "either"),
        ({"prior_coefficient": 0.1, "prior_exponent": 1.5}, "prior_exponent"),
        ({"tokens_per_param": 0}, "tokens_per_param"),
        ({"sizes_per_budget": 0}, "sizes_per_budget"),
        ({"min_layers": 10, "max_layers": 4}, "min_layers"),
        ({"min_layers": 0}, "min_layers"),
        ({"head_options": []}, "empty"),
        ({"head_options": [4, 4]}, "duplicates"),
        ({"head_options": [0, 4]}, "head_options"),
        ({"d_model_multiple": 0}, "d_model_multiple"),
        ({"param_tolerance": 0}, "param_tolerance"),
        ({"param_tolerance": 1.0}, "param_tolerance"),
        ({"ffn_ratio": -4}, "ffn_ratio"),
        ({"aspect_ratio": 0}, "aspect_ratio"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"schedule": ""}, "schedule"),
        ({"dataset_tokens": 0}, "dataset_tokens"),
        ({"hardware": {"gpu": 0.0}}, "hardware"),
        ({"lr_schedule": {"base_lr": 0}}, "base_lr"),
        ({"lr_schedule": {"lr_power": float("inf")}}, "lr_power"),
        ({"conventions": {"params": "kaplan"}}, "params"),
    ],
)
def test_impossible_values_are_rejected(options, message):
    with pytest.raises(ConfigError, match=message):
        IsoFlopPlanner(options)


def test_only_the_alternative_in_use_is_filled_in():
    explicit = IsoFlopPlanner(
        {"budgets": [1e19, 1e18], "prior_coefficient": 0.1, "prior_exponent": 0.5}
    ).config
    assert explicit.budgets == (1e19, 1e18)
    assert (explicit.min_flops, explicit.max_flops, explicit.n_budgets) == (None, None, None)
    assert explicit.tokens_per_param is None
    ranged = IsoFlopPlanner({"min_flops": 1e19}).config
    assert (ranged.min_flops, ranged.max_flops, ranged.n_budgets) == (1e19, 1e21, 5)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"budgets": [1e18, 3e18], "prior_coefficient": 0.05, "prior_exponent": 0.52},
        {"dataset_tokens": 10**10, "conventions": {"params": "non_embedding", "flops": "6n"}},
    ],
)
@pytest.mark.parametrize("exclude_none", [False, True])
def test_dumped_config_reads_back_to_the_same_config(options, exclude_none):
    """A run directory records the resolved config; reading it back must not clash."""
    config = IsoFlopPlanner(options).config
    dumped = config.model_dump(mode="json", exclude_none=exclude_none)
    assert IsoFlopConfig.model_validate(dumped) == config
