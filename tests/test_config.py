"""Study configs: presets, files, overrides and strict validation."""

from __future__ import annotations

import tomllib

import pytest

from flops_fit_core import ConfigError, InputError, UnknownPluginError, resolve_study
from flops_fit_core.config import (
    DEFAULT_PRESET,
    available_presets,
    load_study_config,
    merge_layers,
    parse_override,
)
from tests.clirunner import assert_one_line_error, flops_fit


def test_default_preset_is_the_real_cpu_study():
    assert DEFAULT_PRESET == "cpu-tiny" and DEFAULT_PRESET in available_presets()
    study = load_study_config()
    assert study.trainer["name"] == "local"
    assert study.planner["n_budgets"] >= 4 and study.planner["sizes_per_budget"] >= 5


def test_overrides_are_typed_as_toml_values():
    assert parse_override("fitter.min_r_squared=0.5") == (["fitter", "min_r_squared"], 0.5)
    assert parse_override("trainer.seed=3") == (["trainer", "seed"], 3)
    assert parse_override("plot.names=['isoflop']") == (["plot", "names"], ["isoflop"])
    assert parse_override("trainer.device=cuda") == (["trainer", "device"], "cuda")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("trainer.seed")


def test_changing_a_sections_plugin_drops_the_old_plugins_options():
    merged = merge_layers(
        [
            {"trainer": {"name": "mock", "noise": 0.1}},
            {"trainer": {"name": "other", "lr": 1}},
        ]
    )
    assert merged["trainer"] == {"name": "other", "lr": 1}
    same = merge_layers([{"trainer": {"name": "mock", "noise": 0.1}}, {"trainer": {"seed": 2}}])
    assert same["trainer"] == {"name": "mock", "noise": 0.1, "seed": 2}


def test_file_layers_over_preset_and_overrides_over_file(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('[trainer]\nname = "mock"\nseed = 5\n')
    study = load_study_config(path, preset="mock", overrides=["trainer.noise=0.0"])
    assert study.trainer == {"name": "mock", "seed": 5, "noise": 0.0, "curve_points": 32}
    assert study.planner["sizes_per_budget"] == 9  # from the preset


def test_yaml_configs_are_read(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("trainer:\n  name: mock\n  seed: 7\n")
    assert load_study_config(path).trainer["seed"] == 7


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (["nonsense.key=1"], ConfigError, "unknown key 'nonsense'"),
        (["trainer.not_an_option=1"], ConfigError, "trainer 'local': unknown key 'not_an_option'"),
        (["fitter.name=nope"], UnknownPluginError, "Unknown fitter 'nope'. Available: empirical"),
        (["trainer.noise=-1"], ConfigError, "noise"),
        (["plot.names=['isoflop', 'nope']"], UnknownPluginError, "Unknown plotter 'nope'"),
    ],
)
def test_every_bad_key_or_name_is_a_one_line_error(overrides, error, match):
    with pytest.raises(error, match=match) as info:
        resolve_study(load_study_config(overrides=overrides))
    assert "\n" not in str(info.value)


def test_bad_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_study_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[trainer\nname=")
    with pytest.raises(InputError, match="invalid TOML"):
        load_study_config(bad)
    with pytest.raises(
        ConfigError,
        match=r"Unknown preset 'nope'\. Available: cpu-tiny, gpu-small, mock, mock-adaptive$",
    ):
        load_study_config(preset="nope")


def test_resolved_config_holds_every_option_and_reloads(tmp_path):
    import tomli_w

    study = resolve_study(load_study_config())
    resolved = study.resolved()
    assert "precision" in resolved["trainer"] and "min_r_squared" in resolved["fitter"]
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(resolved))
    again = resolve_study(load_study_config(path))
    assert again.resolved() == resolved


def test_a_shortcut_names_the_plugin_and_set_refines_it():
    study = load_study_config(
        preset="mock", overrides=["executor.workers=2"], shortcuts={"executor": "process"}
    )
    assert study.executor == {"name": "process", "workers": 2}


def test_set_reaches_a_compared_fitter_by_its_name(capsys):
    """Issue 11: `--set compare.NAME.KEY=VALUE` sets an option of a `[[compare]]` fitter."""
    outcome = flops_fit(capsys, "config", "show", "--set", "compare.robust.bootstrap=200")
    assert outcome.code == 0, outcome.err
    compared = tomllib.loads(outcome.out)["compare"]
    assert [t["name"] for t in compared] == ["robust", "envelope"]
    assert compared[0]["bootstrap"] == 200


def test_set_on_a_fitter_not_compared_names_those_that_are(capsys):
    outcome = flops_fit(capsys, "config", "validate", "--set", "compare.vpnls.bootstrap=200")
    assert_one_line_error(outcome, "compare.vpnls", "'robust', 'envelope'")


def test_an_option_of_a_compared_fitter_set_on_the_fitter_says_where_it_goes(capsys):
    outcome = flops_fit(capsys, "config", "validate", "--set", "fitter.bootstrap=200")
    assert_one_line_error(outcome, "unknown key 'bootstrap'", "--set compare.robust.bootstrap=")


def test_making_a_compared_fitter_the_study_fitter_keeps_the_others_compared(capsys):
    """`--fitter robust` on the default preset: robust (with its compared options) becomes the
    fitter, quadratic (the replaced one) is compared in its place, envelope stays, and the
    swap is said."""
    outcome = flops_fit(
        capsys,
        "config", "show", "--set", "compare.robust.bootstrap=100", "--set", "fitter.name=robust",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    config = tomllib.loads(outcome.out)
    assert config["fitter"]["name"] == "robust" and config["fitter"]["bootstrap"] == 100
    assert [t["name"] for t in config["compare"]] == ["quadratic", "envelope"]
    assert "fitter 'robust' replaces 'quadratic', which is now compared in its place" in outcome.err
