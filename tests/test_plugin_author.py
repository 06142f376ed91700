"""What a third-party plugin author meets: one table of kinds, checks at registration, a
stated hook API version, options users can read, and start-up that stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest
from pydantic import Field

from flops_fit_core import (
    HOOK_API_VERSION,
    PluginConfig,
    PluginHost,
    Trainer,
    hookimpl,
)
from flops_fit_core.config import SECTIONS, StudyConfig
from flops_fit_core.plugins import KINDS, reset_host
from flops_fit_core.testing import CONTRACTS
from tests.clirunner import assert_one_line_error, flops_fit


def _module(*classes, hook="flops_fit_register_trainers", **attributes):
    module = types.SimpleNamespace(**attributes)
    setattr(module, hook, hookimpl(lambda: list(classes)))
    return module


class ServiceTrainer(Trainer):
    """Trains on a remote service (for these tests: never called)."""

    name = "service"

    class Config(PluginConfig):
        url: str = Field(description="base URL of the training service")
        timeout_s: float = 30.0


@pytest.fixture
def host_with_service():
    host = PluginHost()
    host.register(_module(ServiceTrainer), "service", "flops-fit-service", "1.0.0")
    assert host.errors == []
    reset_host(host)
    yield host
    reset_host()


def test_the_table_of_kinds_is_where_sections_defaults_and_contracts_come_from():
    assert set(SECTIONS) == {k for k, spec in KINDS.items() if spec.default is not None}
    defaults = StudyConfig()
    for section in SECTIONS:
        assert getattr(defaults, section) == {"name": KINDS[section].default}
    assert {spec.hook for spec in KINDS.values()} < set(CONTRACTS)
    for spec in KINDS.values():
        assert CONTRACTS[spec.hook].__name__ == spec.contract


def test_a_bad_class_is_reported_as_soon_as_it_is_registered():
    """`assert host.errors == []` right after `register` (as the plugin guide does) must
    catch a class that is not a plugin, before anything asks the host for names."""
    host = PluginHost(load_entry_points=False)
    host.register(_module(int), "bad", "flops-fit-bad")
    assert [e.plugin for e in host.errors] == ["bad"]
    assert "not a subclass" in host.errors[0].error


def test_a_plugin_for_another_hook_api_version_is_refused_with_both_versions():
    host = PluginHost(load_entry_points=False)
    future = _module(ServiceTrainer, hook_api_version=HOOK_API_VERSION + 1)
    host.register(future, "future", "flops-fit-future", "9.0")
    assert "service" not in host.names("trainer")
    (error,) = host.errors
    assert f"hook API version {HOOK_API_VERSION + 1}" in error.error
    assert f"version {HOOK_API_VERSION}" in error.error
    current = _module(ServiceTrainer, hook_api_version=HOOK_API_VERSION)
    host.register(current, "current", "flops-fit-current")
    assert host.get("trainer", "service") is ServiceTrainer


def test_build_takes_a_config_section_and_refuses_one_without_a_name():
    from flops_fit_core import ConfigError

    host = PluginHost()
    mock = host.build("trainer", {"name": "mock", "seed": 4})
    assert mock.name == "mock" and mock.config.seed == 4
    with pytest.raises(ConfigError, match=r"\[trainer\] needs a name.*mock"):
        host.build("trainer", {"seed": 4})


def test_plugins_name_prints_each_option_with_type_default_and_description(capsys):
    outcome = flops_fit(capsys, "plugins", "mock")
    assert outcome.code == 0
    lines = outcome.out.splitlines()
    assert lines[0].split() == ["trainer", "mock", "flops-fit-mock", lines[0].split()[-1]]
    assert "    seed (int, default 0)" in lines
    assert "        replicate seed; with the spec id it seeds each run's noise" in lines
    listing = flops_fit(capsys, "plugins", "isoflop", "--json").json()
    assert {p["kind"] for p in listing["plugins"]} == {"planner", "plotter"}
    planner = next(p for p in listing["plugins"] if p["kind"] == "planner")
    span = next(o for o in planner["options"] if o["name"] == "span")
    assert span == {**span, "type": "float", "required": False, "default": 8.0}


def test_plugins_with_an_unknown_name_is_one_line_exit_2(capsys):
    assert_one_line_error(flops_fit(capsys, "plugins", "nosuch"), "no plugin named 'nosuch'")


def test_required_options_are_shown_and_marked(capsys, host_with_service):
    outcome = flops_fit(capsys, "plugins", "service")
    assert "    url (str, required)" in outcome.out.splitlines()
    assert "        base URL of the training service" in outcome.out.splitlines()


def test_config_show_works_before_the_required_options_are_set(capsys, host_with_service):
    import tomllib

    outcome = flops_fit(capsys, "config", "show", "--preset", "mock", "--trainer", "service")
    assert outcome.code == 0, outcome.err
    shown = tomllib.loads(outcome.out)
    assert shown["trainer"] == {"name": "service", "timeout_s": 30.0}
    assert shown["planner"]["name"] == "isoflop" and shown["fitter"]["name"] == "empirical"
    assert (
        "# trainer.url = ...  (str, required): base URL of the training service"
        in outcome.out.splitlines()
    )
    assert "note: set trainer.url before running this config" in outcome.err
    validate = ["config", "validate", "--preset", "mock", "--trainer", "service"]
    assert_one_line_error(flops_fit(capsys, *validate), "url")
    complete = [*validate, "--set", "trainer.url=http://127.0.0.1:1"]
    assert flops_fit(capsys, "config", "show", *complete[2:]).code == 0


def test_the_disabling_variable_is_named_when_it_hid_the_plugin_asked_for(capsys, monkeypatch):
    monkeypatch.setenv("FLOPS_FIT_DISABLE_PLUGINS", "mock")
    reset_host()
    outcome = flops_fit(capsys, "config", "validate", "--preset", "mock")
    assert_one_line_error(outcome, "Unknown trainer 'mock'", "FLOPS_FIT_DISABLE_PLUGINS")
    listing = flops_fit(capsys, "plugins", "--json").json()
    assert listing["disabled"] == ["mock (flops-fit-mock)"]
    assert (
        "disabled  mock (flops-fit-mock) by FLOPS_FIT_DISABLE_PLUGINS"
        in flops_fit(capsys, "plugins").out.splitlines()
    )


def test_run_says_once_that_a_plugin_failed_to_load(capsys, tmp_path):
    class Broken:
        @hookimpl
        def flops_fit_register_fitters(self):
            raise RuntimeError("import of a missing dependency")

    host = PluginHost()
    host.register(Broken(), "broken", "flops-fit-broken")
    reset_host(host)
    try:
        args = ["run", "--preset", "mock", "--out", tmp_path / "run", "--set", "plot.names=[]"]
        outcome = flops_fit(capsys, *args)
    finally:
        reset_host()
    assert outcome.code == 0, outcome.err
    said = [ln for ln in outcome.err.splitlines() if "plugin load error" in ln]
    assert said == ["warning: 1 plugin load error(s) (broken): see 'flops-fit plugins'"]


def test_registering_the_built_ins_imports_no_heavy_library():
    """Every plugin module is imported at every CLI start: the built-ins keep torch, scipy,
    matplotlib, lmfit and jinja2 inside the methods that use them."""
    code = (
        "import sys, json; from flops_fit_core import PluginHost; h = PluginHost(); "
        "heavy = ('torch', 'scipy', 'matplotlib', 'lmfit', 'jinja2', 'pandas'); "
        "print(json.dumps({'errors': len(h.errors), 'records': len(h.records()), "
        "'heavy': sorted(m for m in heavy if m in sys.modules)}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["errors"] == 0 and seen["records"] >= 15
    assert seen["heavy"] == []


def test_three_classes_sharing_a_name_make_one_error_naming_all_three():
    host = PluginHost(load_entry_points=False)
    for i, dist in enumerate(("dist-a", "dist-b", "dist-c")):
        cls = type(f"Trainer{i}", (ServiceTrainer,), {"name": "dup"})
        host.register(_module(cls), f"p{i}", dist)
    (error,) = host.errors
    assert all(f"Trainer{i}" in error.error for i in range(3)), error.error
    assert "dist-a" in error.error and "dist-c" in error.error
