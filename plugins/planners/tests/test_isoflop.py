"""What a user betting GPU-hours on an isoflop plan relies on."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from importlib.resources import files

import numpy as np
import pytest

from flops_fit_core import ConfigError, SweepPlan, resolve_study
from flops_fit_core.config import load_study_config
from flops_fit_planners import IsoFlopPlanner
from flops_fit_planners.shapes import ShapeGrid, choose_heads, search_shapes

SMALL = {"min_flops": 1e18, "max_flops": 1e20, "n_budgets": 3, "sizes_per_budget": 5}


def plan_of(**options) -> SweepPlan:
    return IsoFlopPlanner(options).plan()


def target_of_each_experiment(planner: IsoFlopPlanner) -> dict[str, float]:
    """id -> the target N its size was planned for (the first, if several shared a shape)."""
    budget, target = planner.targets()
    shapes = search_shapes(target, planner.shape_grid())
    by_key: dict[tuple, float] = {}
    for b, t, d, n_layers in zip(
        budget.tolist(),
        target.tolist(),
        shapes.d_model.tolist(),
        shapes.n_layers.tolist(),
        strict=True,
    ):
        by_key.setdefault((b, d, n_layers), t)
    return {
        s.id: by_key[(s.budget, s.shape.d_model, s.shape.n_layers)]
        for s in planner.plan().experiments
    }


def mock_preset_options() -> dict:
    text = files("flops_fit_core").joinpath("presets", "mock.toml").read_text()
    options = dict(tomllib.loads(text)["planner"])
    assert options.pop("name") == "isoflop"
    return options


@pytest.mark.parametrize("options", [{}, SMALL, {"conventions": {"params": "non_embedding"}}])
def test_every_size_is_built_within_tolerance_of_its_target(options):
    planner = IsoFlopPlanner(options)
    plan = planner.plan()
    targets = target_of_each_experiment(planner)
    assert plan.warnings == []
    assert len(targets) == len(plan.experiments)
    tol = planner.config.param_tolerance
    for spec in plan.experiments:
        assert abs(spec.params / targets[spec.id] - 1) <= tol


def test_the_mock_preset_plans_cleanly():
    planner = IsoFlopPlanner(mock_preset_options())
    plan = planner.plan()
    assert plan.warnings == []
    budgets = sorted(set(planner.targets()[0].tolist()))
    assert plan.budgets == budgets
    assert len(plan.experiments) == len(budgets) * planner.config.sizes_per_budget


def test_the_cpu_tiny_preset_plans_every_size_within_tolerance():
    # The default study, through the same door `flops-fit plan` uses (issue 11: it once
    # started with "budget 1e+11: target N=3608 is not reachable within 20%").
    study = resolve_study(load_study_config(preset="cpu-tiny"))
    planner, plan = study.planner, study.plan
    c = planner.config
    assert plan.warnings == []
    assert len(plan.experiments) == c.n_budgets * c.sizes_per_budget == 20
    targets = target_of_each_experiment(planner)
    for spec in plan.experiments:
        assert abs(spec.params / targets[spec.id] - 1) <= c.param_tolerance
        # The local trainer's rotary positions need an even integer head size.
        assert spec.shape.d_model % spec.shape.n_heads == 0
        assert (spec.shape.d_model // spec.shape.n_heads) % 2 == 0
    study.validate()  # and the local trainer agrees
    # Still the sweep it was: 1e11 to 3e12, 8x each way around 20 tokens per parameter.
    budget, target = planner.targets()
    assert (c.min_flops, c.max_flops, c.span, c.tokens_per_param) == (1e11, 3e12, 8.0, 20.0)
    n0 = np.sqrt(budget / (6 * 20.0))
    assert target == pytest.approx(n0 * 8.0 ** np.tile([-1, -0.5, 0, 0.5, 1], 4), rel=1e-12)


def test_the_grid_reaches_the_smallest_cpu_tiny_target_with_even_heads():
    # The cause of the old warning: with d_model a multiple of 16 the grid's floor was d_model
    # 16, 1 layer, 5,168 parameters, 43% above the smallest target (3,608). A multiple of 4
    # reaches d_model 12 (3,300), and head_dim_multiple = 2 keeps heads even on the way.
    study = resolve_study(load_study_config(preset="cpu-tiny"))
    grid = study.planner.shape_grid()
    floor = search_shapes(np.array([3608.0]), grid)
    assert (floor.d_model[0], floor.n_layers[0], floor.params[0]) == (12, 1, 3300)
    old = resolve_study(
        load_study_config(preset="cpu-tiny", overrides=["planner.d_model_multiple=16"])
    ).plan
    assert [w for w in old.warnings if "not reachable" in w] == [
        "budget 1e+11: target N=3608 is not reachable within 20%; nearest shape has "
        "N=5,168 (+43.22%; d_model=16, n_layers=1)"
    ]
    # Without the head constraint a multiple of 4 would plan heads of odd size (68 / 4 = 17)
    odd = dataclasses.replace(grid, head_dim_multiple=1)
    assert choose_heads(np.array([68]), odd)[0] == 4
    assert choose_heads(np.array([68]), grid)[0] == 2


def test_head_dim_multiple_leaves_only_widths_with_such_heads():
    grid = ShapeGrid(
        vocab_size=64, seq_len=64, d_model_multiple=4, min_layers=1, max_layers=4,
        head_options=(4, 8), head_dim=16, ffn_ratio=4.0, aspect_ratio=16.0,
        param_tolerance=0.2, head_dim_multiple=4,
    )  # fmt: skip
    shapes = search_shapes(np.geomspace(2e3, 2e6, 200), grid)
    assert np.all(shapes.d_model % (shapes.n_heads * 4) == 0)  # every head a multiple of 4
    with pytest.raises(ConfigError, match="into heads of a multiple of 4"):
        choose_heads(np.array([24]), grid)


@pytest.mark.parametrize("flops", ["exact", "6n"])
@pytest.mark.parametrize("params", ["total", "non_embedding"])
def test_each_run_spends_its_budget(flops, params):
    plan = plan_of(**SMALL, conventions={"params": params, "flops": flops})
    for spec in plan.experiments:
        assert spec.params == spec.shape.params(params)
        assert spec.tokens * spec.flops_per_token == pytest.approx(spec.budget, rel=1e-6)
        # D is the nearest integer to C / FLOPs-per-token: no other D spends C better.
        assert abs(spec.tokens * spec.flops_per_token - spec.budget) <= spec.flops_per_token / 2


def test_sizes_are_spread_log_evenly_around_the_chinchilla_optimum():
    planner = IsoFlopPlanner(SMALL)
    budget, target = planner.targets()
    assert budget.tolist() == [1e18] * 5 + [1e19] * 5 + [1e20] * 5
    n0 = np.sqrt(budget / (6 * 20.0))
    assert target == pytest.approx(n0 * 8.0 ** np.tile([-1, -0.5, 0, 0.5, 1], 3), rel=1e-12)
    # D / N at the middle size is about 20 tokens per parameter, as Chinchilla's rule says.
    middle = [s for s in planner.plan().experiments if s.budget == 1e20]
    middle = sorted(middle, key=lambda s: s.params)[2]
    assert 15 < middle.tokens / middle.params < 25


def test_an_explicit_prior_and_explicit_budgets():
    planner = IsoFlopPlanner(
        {
            "budgets": [3e19, 1e18],
            "sizes_per_budget": 1,
            "prior_coefficient": 0.1,
            "prior_exponent": 0.5,
        }
    )
    plan = planner.plan()
    assert [s.budget for s in plan.experiments] == [1e18, 3e19]
    for spec in plan.experiments:
        assert spec.params == pytest.approx(0.1 * spec.budget**0.5, rel=0.05)


def test_the_same_config_gives_the_same_plan():
    a, b = plan_of(**SMALL), plan_of(**SMALL)
    assert a.model_dump() == b.model_dump()
    ids = [s.id for s in a.experiments]
    assert len(set(ids)) == len(ids)
    # The config the plan records reproduces it, as `flops-fit plan` on a run directory does.
    again = IsoFlopPlanner(a.config).plan()
    assert [s.id for s in again.experiments] == ids


@pytest.mark.parametrize("k_old, k_new", [(5, 9), (7, 13), (3, 5)])
def test_refining_the_size_grid_keeps_the_old_experiments(k_old, k_new):
    """Going from k to 2k - 1 sizes adds sizes between the old ones; resume trains only those."""
    old_planner = IsoFlopPlanner({**SMALL, "sizes_per_budget": k_old})
    new_planner = IsoFlopPlanner({**SMALL, "sizes_per_budget": k_new})
    old_targets = old_planner.targets()[1].reshape(3, k_old)
    new_targets = new_planner.targets()[1].reshape(3, k_new)
    assert np.array_equal(old_targets, new_targets[:, ::2])  # bit-identical
    old_ids = {s.id for s in old_planner.plan().experiments}
    new_ids = {s.id for s in new_planner.plan().experiments}
    assert old_ids < new_ids


def test_an_unrelated_change_changes_the_ids():
    base = {s.id for s in plan_of(**SMALL).experiments}
    assert base.isdisjoint(s.id for s in plan_of(**SMALL, seed=1).experiments)


def test_learning_rate_follows_the_power_rule():
    plan = plan_of(**SMALL, lr_schedule={"base_lr": 1e-3, "base_size": 1e8, "lr_power": 0.5})
    lrs = {s.params: s.learning_rate for s in plan.experiments}
    assert len(set(lrs.values())) == len(lrs) > 10
    for n, lr in lrs.items():
        assert lr == pytest.approx(1e-3 * (n / 1e8) ** -0.5, rel=1e-11)
    flat = plan_of(**SMALL, lr_schedule={"base_lr": 3e-4})
    assert {s.learning_rate for s in flat.experiments} == {3e-4}


def test_run_settings_are_stored_in_each_spec():
    plan = plan_of(**SMALL, batch_size=64, schedule="wsd", seed=7)
    assert {(s.batch_size, s.schedule, s.seed) for s in plan.experiments} == {(64, "wsd", 7)}


def test_dataset_warning_counts_the_runs_that_would_repeat_data():
    tokens = sorted(s.tokens for s in plan_of(**SMALL).experiments)
    limit = tokens[len(tokens) // 2]
    over = sum(t > limit for t in tokens)
    plan = plan_of(**SMALL, dataset_tokens=limit)
    [warning] = [w for w in plan.warnings if "dataset" in w]
    assert warning.startswith(f"{over} of {len(tokens)} experiments need more tokens")
    assert f"{max(tokens):,}" in warning
    assert not any("dataset" in w for w in plan_of(**SMALL, dataset_tokens=max(tokens)).warnings)
    [one] = [w for w in plan_of(**SMALL, dataset_tokens=tokens[-2]).warnings if "dataset" in w]
    assert one.startswith(f"1 of {len(tokens)} experiments")


def test_6n_and_exact_conventions_give_consistent_tokens():
    exact = plan_of(**SMALL)
    six_n = plan_of(**SMALL, conventions={"flops": "6n"})
    assert len(exact.experiments) == len(six_n.experiments)
    for e, s in zip(exact.experiments, six_n.experiments, strict=True):
        assert e.shape == s.shape and e.params == s.params and e.id != s.id
        assert s.tokens == round(s.budget / (6 * s.params))
        assert e.tokens == round(e.budget / e.shape.flops_per_token)
        # Same compute either way: the token counts differ exactly by the FLOP-count ratio.
        ratio = e.shape.flops_per_token / (6 * e.params)
        assert s.tokens / e.tokens == pytest.approx(ratio, rel=1e-6)
        assert 0.9 < ratio < 2.0  # attention FLOPs weigh most in the smallest models


def test_estimates_add_up():
    plan = plan_of(**SMALL, hardware={"slow": 1e12, "fast": 4e14})
    est = plan.estimates
    assert est["n_experiments"] == len(plan.experiments) == 15
    assert est["total_tokens"] == sum(s.tokens for s in plan.experiments)
    assert est["total_flops"] == pytest.approx(sum(s.flops for s in plan.experiments), rel=1e-12)
    assert est["total_flops"] == pytest.approx(5 * (1e18 + 1e19 + 1e20), rel=1e-6)
    assert est["hardware_flops_per_s"] == {"slow": 1e12, "fast": 4e14}
    assert est["wall_time_s"] == pytest.approx(
        {"slow": est["total_flops"] / 1e12, "fast": est["total_flops"] / 4e14}
    )
    assert plan.planner == "isoflop" and plan.config["n_budgets"] == 3


def test_sizes_that_land_on_one_shape_are_planned_once_with_a_warning():
    planner = IsoFlopPlanner({**SMALL, "sizes_per_budget": 41, "span": 1.5})
    plan = planner.plan()
    ids = [s.id for s in plan.experiments]
    assert len(set(ids)) == len(ids) < 3 * 41
    shapes = [(s.budget, s.shape) for s in plan.experiments]
    assert len(set(shapes)) == len(shapes)
    dup = [w for w in plan.warnings if "both land on" in w or "more sizes landed" in w]
    named = [w for w in dup if "both land on" in w]
    more = [int(re.search(r"and (\d+) more", w).group(1)) for w in dup if "more sizes" in w]
    assert len(named) + sum(more) == 3 * 41 - len(ids)
    assert plan.estimates["n_experiments"] == len(ids)


def test_unreachable_targets_are_named_with_the_size_reached():
    # N0 = 2.9e6: the two smaller targets are below the smallest model (embeddings alone: 4.1e6).
    plan = plan_of(budgets=[1e15], sizes_per_budget=3, span=2.0)
    missed = [w for w in plan.warnings if "not reachable" in w]
    assert len(missed) == 2
    smallest = min(s.params for s in plan.experiments)
    assert smallest == 4_194_624  # d_model 64, 2 layers
    assert "target N=1.443e+06" in missed[0] and f"N={smallest:,} (+190.61%" in missed[0]
    assert "target N=2.887e+06" in missed[1] and f"N={smallest:,} (+45.31%" in missed[1]
    assert len(plan.experiments) == 2  # the two missed targets share the smallest model


def test_runs_shorter_than_one_batch_are_flagged():
    # N0 = 2.9e4 parameters get 5.8e5 tokens, less than one batch of 4096 x 256 tokens.
    plan = plan_of(
        budgets=[1e11],
        sizes_per_budget=1,
        vocab_size=256,
        seq_len=256,
        d_model_multiple=16,
        head_options=[2, 4],
        head_dim=16,
        batch_size=4096,
    )
    assert any("fewer tokens than one batch" in w for w in plan.warnings)
    assert not any("one batch" in w for w in plan_of(**SMALL).warnings)


def test_warnings_stay_readable_for_large_sweeps():
    planner = IsoFlopPlanner({"budgets": [1e14, 1e15], "sizes_per_budget": 15, "span": 4.0})
    n_missed = int(
        (~search_shapes(planner.targets()[1], planner.shape_grid()).within_tolerance).sum()
    )
    assert n_missed > 20
    missed = [w for w in planner.plan().warnings if "not reachable" in w]
    assert len(missed) == 11
    assert missed[-1] == f"... and {n_missed - 10} more targets not reachable within tolerance"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"budgets": [1e40]}, "beyond"),
        ({"budgets": [1.0]}, "less than one token"),
    ],
)
def test_budgets_outside_what_can_be_built_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        plan_of(**options)


def test_plan_round_trips_through_json():
    plan = plan_of(**SMALL)
    again = SweepPlan.model_validate_json(plan.model_dump_json())
    assert again == plan
    assert math.isclose(again.estimates["total_flops"], plan.estimates["total_flops"])
