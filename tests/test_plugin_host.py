"""The plugin host: entry points, broken plugins, duplicates, unknown names, blocking."""

from __future__ import annotations

import types

import pytest

from flops_fit_core import (
    PluginConfig,
    PluginError,
    Trainer,
    UnknownPluginError,
    hookimpl,
)
from flops_fit_core.plugins import PluginHost

BUILT_INS = {
    ("planner", "isoflop"),
    ("trainer", "mock"),
    ("fitter", "empirical"),
    ("plotter", "isoflop"),
    ("plotter", "scaling"),
    ("executor", "serial"),
    ("executor", "process"),
}


def trainer_plugin(cls_name: str, name: str):
    cls = type(cls_name, (Trainer,), {"name": name, "Config": PluginConfig})

    class Plugin:
        @hookimpl
        def flops_fit_register_trainers(self):
            return [cls]

    return Plugin(), cls


def test_every_built_in_is_an_ordinary_entry_point():
    host = PluginHost()
    found = {(r.kind, r.name) for r in host.records()}
    assert found >= BUILT_INS
    for record in host.records():
        assert record.distribution.startswith("flops-fit")
        assert record.version != "unknown"
    assert host.errors == []


def test_unknown_name_lists_what_is_available():
    with pytest.raises(UnknownPluginError) as info:
        PluginHost().get("trainer", "nope")
    assert str(info.value) == "Unknown trainer 'nope'. Available: api, local, mock"
    assert info.value.exit_code == 2


def test_duplicate_names_are_an_error_naming_both_classes():
    host = PluginHost(load_entry_points=False)
    first, _ = trainer_plugin("FirstTrainer", "dup")
    second, _ = trainer_plugin("SecondTrainer", "dup")
    host.register(first, "first", "dist-a")
    host.register(second, "second", "dist-b")
    with pytest.raises(
        PluginError, match=r"FirstTrainer \(dist-a\) and .*SecondTrainer \(dist-b\)"
    ):
        host.get("trainer", "dup")
    assert any("registered by" in e.error for e in host.errors)


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "-flag", "two words"])
def test_a_name_that_is_not_a_plain_name_is_refused(name):
    """Names become file names (fits/<fitter>.json): none may leave its folder."""
    host = PluginHost(load_entry_points=False)
    plugin, _ = trainer_plugin("OddTrainer", name)
    host.register(plugin, "odd", "dist-odd")
    assert name not in host.names("trainer")
    assert any("is not a plain name" in e.error for e in host.errors)


def test_a_broken_plugin_is_reported_and_the_others_still_load():
    host = PluginHost(load_entry_points=False)

    class Broken:
        @hookimpl
        def flops_fit_register_trainers(self):
            raise RuntimeError("import of a missing dependency")

    good, cls = trainer_plugin("GoodTrainer", "good")
    host.register(Broken(), "broken", "dist-broken")
    host.register(good, "good", "dist-good")
    assert host.get("trainer", "good") is cls
    assert [e.plugin for e in host.errors] == ["broken"]
    assert "missing dependency" in host.errors[0].error


def test_a_class_of_the_wrong_kind_is_rejected_with_a_reason():
    host = PluginHost(load_entry_points=False)
    host.register(types.SimpleNamespace(flops_fit_register_trainers=hookimpl(lambda: [int])), "x")
    assert host.names("trainer") == []
    assert "not a subclass" in host.errors[0].error


def test_an_entry_point_that_fails_to_import_is_recorded(monkeypatch):
    import importlib.metadata as md

    class FakeEP:
        name, value, group = "ghost", "no_such_module_xyz", "flops_fit"
        dist = None

        def load(self):
            raise ModuleNotFoundError("No module named 'no_such_module_xyz'")

    real = md.entry_points
    monkeypatch.setattr(
        "flops_fit_core.plugins.entry_points", lambda group: [*real(group=group), FakeEP()]
    )
    host = PluginHost()
    assert ("trainer", "mock") in {(r.kind, r.name) for r in host.records()}
    assert [e.plugin for e in host.errors] == ["ghost"]


def test_plugins_can_be_blocked_by_entry_point_or_distribution(monkeypatch):
    monkeypatch.setenv("FLOPS_FIT_DISABLE_PLUGINS", "mock, flops-fit-plotters")
    host = PluginHost()
    kinds = {(r.kind, r.name) for r in host.records()}
    assert ("trainer", "mock") not in kinds
    assert not any(kind == "plotter" for kind, _ in kinds)
    assert ("fitter", "empirical") in kinds


def test_plugin_commands_cannot_clobber_existing_ones():
    import click

    host = PluginHost(load_entry_points=False)

    @click.group()
    def group():
        """g"""

    @group.command()
    def run():
        """the real run"""

    original = group.commands["run"]

    class Greedy:
        @hookimpl
        def flops_fit_register_commands(self, cli):
            @cli.command(name="run")
            def fake():
                """hijack"""

            @cli.command()
            def serve():
                """a new command"""

    host.register(Greedy(), "greedy")
    host.add_commands(group)
    assert group.commands["run"] is original
    assert "serve" in group.commands
    assert any("already exists" in e.error for e in host.errors)
