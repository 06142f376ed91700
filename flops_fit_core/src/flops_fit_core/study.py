"""A study resolved from its config: every named plugin looked up and its options validated.

`resolve_study(config)` builds the planner, trainer, executor, fitter, compared fitters and
plotters a config names, before anything runs, so a typo in any section fails at once with a
one-line error. The `Reporter` protocol is how the stages tell the CLI (or a notebook) what
they are doing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .bases import Executor, Fitter, Planner, Plotter, PlotterConfig, Trainer
from .config import SECTIONS, StudyConfig
from .errors import (
    ConfigError,
    UsageError,
)
from .options import Option, describe_options, missing_required
from .plugins import PluginHost, get_host
from .schemas import (
    RunResult,
    SweepPlan,
    parse_model,
)

__all__ = [
    "Reporter",
    "SilentReporter",
    "Study",
    "describe_config",
    "resolve_study",
]


class Reporter(Protocol):
    """What the pipeline tells the user; the CLI's implementation draws progress bars."""

    def message(self, text: str) -> None: ...
    def training_started(self, total: int, skipped: int) -> None: ...
    def run_progress(self, spec_id: str, fraction: float, message: str | None) -> None: ...
    def run_finished(self, result: RunResult) -> None: ...
    def training_finished(self) -> None: ...


class SilentReporter:
    """A reporter that says nothing (the Python API's default)."""

    def message(self, text: str) -> None: ...
    def training_started(self, total: int, skipped: int) -> None: ...
    def run_progress(self, spec_id: str, fraction: float, message: str | None) -> None: ...
    def run_finished(self, result: RunResult) -> None: ...
    def training_finished(self) -> None: ...


@dataclass
class Study:
    """A study config with every plugin resolved and its options validated.

    One field per section of `config.SECTIONS` (the stages read `study.trainer`, ...): a new
    kind of plugin with a section of its own gets its field here, where its stage reads it.
    """

    config: StudyConfig
    planner: Planner
    trainer: Trainer
    executor: Executor
    fitter: Fitter
    plotters: list[Plotter]
    comparisons: list[Fitter] = field(default_factory=list)
    _plan: SweepPlan | None = field(default=None, repr=False)

    @property
    def plan(self) -> SweepPlan:
        """The sweep this study trains: its planner's plan, made on first use, or the plan it
        was given (`with_plan`: `flops-fit train` trains a plan file)."""
        if self._plan is None:
            self._plan = self.planner.plan()
        return self._plan

    def with_plan(self, plan: SweepPlan) -> Study:
        self._plan = plan
        return self

    def plugins(self) -> list[Any]:
        """Every plugin of the study: one per config section, the comparisons, the plotters."""
        return [*(getattr(self, s) for s in SECTIONS), *self.comparisons, *self.plotters]

    def validate(self) -> None:
        """Every plugin's `validate_study` check; the first that fails raises `ConfigError`."""
        for plugin in self.plugins():
            plugin.validate_study(self)

    def resolved(self) -> dict[str, Any]:
        """The full config, every option's value included (what `config.toml` records)."""
        plot_options = self.plotters[0].config.model_dump(mode="json") if self.plotters else {}
        resolved = {
            "schema_version": self.config.schema_version,
            **{name: section(getattr(self, name)) for name in SECTIONS},
            "plot": {"names": [p.name for p in self.plotters], **plot_options},
        }
        if self.comparisons:
            resolved["compare"] = [section(f) for f in self.comparisons]
        return resolved


def section(plugin: Any) -> dict[str, Any]:
    """A built plugin as its config section: its name, then every option's value."""
    return {"name": plugin.name, **plugin.config.model_dump(mode="json", exclude_none=True)}


def resolve_study(config: StudyConfig, host: PluginHost | None = None) -> Study:
    """Look up every named plugin and validate its options; nothing runs yet."""
    host = host or get_host()
    built: dict[str, Any] = {}
    for section, kind in SECTIONS.items():
        table = getattr(config, section)
        if section == "fitter" and "fitter" not in config.model_fields_set:
            table = {"name": built["planner"].fitter or table["name"]}
        try:
            built[section] = host.build(kind, table)
        except ConfigError as exc:
            options = {k: v for k, v in table.items() if k != "name"}
            if section == "fitter" and (hint := _compared_option_hint(config, options, host)):
                raise ConfigError(f"{exc}; {hint}") from None
            raise
    plotters = _plotters(config, host)
    comparisons = [host.build("fitter", table) for table in config.compare]
    return Study(config=config, plotters=plotters, comparisons=comparisons, **built)


def _plotters(config: StudyConfig, host: PluginHost) -> list[Plotter]:
    """The plotters `[plot] names` lists, each built with the section's other options; with
    none to consume them, those options are still checked (a typo is an error)."""
    plot_options = dict(config.plot)
    names = plot_options.pop("names")
    plotters = [host.build("plotter", {**plot_options, "name": name}) for name in names]
    if not plotters:
        parse_model(PlotterConfig, plot_options, "config [plot]")
    return plotters


def _compared_option_hint(
    config: StudyConfig, options: Mapping[str, Any], host: PluginHost
) -> str | None:
    """For a `[fitter]` option its fitter does not know but a compared fitter does: how to
    set it there (`--set fitter.bootstrap=200` on a study that compares `robust`)."""
    for table in config.compare:
        try:
            known = host.get("fitter", table["name"]).Config.model_fields
        except UsageError:
            continue
        keys = [key for key in options if key in known]
        if keys:
            name = table["name"]
            return f"the compared {name!r} takes it: --set compare.{name}.{keys[0]}=..."
    return None


def describe_config(
    config: StudyConfig, host: PluginHost | None = None
) -> tuple[dict[str, Any], list[tuple[str, Option]]]:
    """The resolved config as `config show` prints it, even before its required options are
    set: each section that cannot be built only for want of them shows what is set and the
    defaults, and the missing options come back as (section, option) to be named."""
    host = host or get_host()
    try:
        return resolve_study(config, host).resolved(), []
    except ConfigError:
        pass
    shown: dict[str, Any] = {"schema_version": config.schema_version}
    missing: list[tuple[str, Option]] = []
    tables = [(section, kind, getattr(config, section)) for section, kind in SECTIONS.items()]
    tables += [(f"compare.{t.get('name')}", "fitter", t) for t in config.compare]
    for section, kind, table in tables:
        try:
            plugin = host.build(kind, table)
        except ConfigError:
            cls = host.get(kind, table["name"])
            given = {k: v for k, v in table.items() if k != "name"}
            lacking = missing_required(cls.Config, given)
            if not lacking:
                raise
            defaults = {o.name: o.as_dict()["default"] for o in describe_options(cls.Config)}
            values = {k: v for k, v in defaults.items() if v is not None}
            missing += [(section, option) for option in lacking]
            shown_table = {"name": table["name"], **values, **given}
        else:
            shown_table = {
                "name": plugin.name,
                **plugin.config.model_dump(mode="json", exclude_none=True),
            }
        if section.startswith("compare."):
            shown.setdefault("compare", []).append(shown_table)
        else:
            shown[section] = shown_table
    plotters = _plotters(config, host)  # a bad [plot] is refused here as `validate` does
    plot_options = plotters[0].config.model_dump(mode="json") if plotters else {}
    shown["plot"] = {"names": [p.name for p in plotters], **plot_options}
    return shown, missing
