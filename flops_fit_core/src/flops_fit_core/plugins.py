"""The plugin host: loads `flops_fit` entry points one by one and keeps a registry per kind.

Our built-ins are ordinary entry points, treated exactly like a third party's. Each entry point
is loaded inside try/except: a broken plugin is recorded (`flops-fit plugins` shows its error)
and never takes the others down. `FLOPS_FIT_DISABLE_PLUGINS=a,b` blocks entry points (or whole
distributions) by name. Two classes registering one name make that name unusable, with an error
naming both, rather than one silently shadowing the other.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, NamedTuple

import pluggy
from pydantic import BaseModel

from . import hookspecs
from .bases import Executor, Fitter, Planner, Plotter, PluginBase, Trainer
from .errors import ConfigError, PluginError, UnknownPluginError

__all__ = ["KINDS", "Kind", "LoadError", "PluginHost", "PluginRecord", "get_host", "reset_host"]


class Kind(NamedTuple):
    """One kind of plugin: the hook that registers it, the class it subclasses, the name a
    study uses when its config names none (None: not a section of a study config), and the
    contract suite in `flops_fit_core.testing` every class of the kind must pass."""

    hook: str
    base: type[PluginBase]
    default: str | None
    contract: str


#: The one table of plugin kinds. The study config's sections (`config.SECTIONS`) and their
#: defaults, the CLI's `--planner/--trainer/...` shortcuts, `config show`, the resolved
#: `config.toml` and `testing.CONTRACTS` derive from it: adding a kind is one line here plus
#: its hookspec (and, for a kind with a section, the `Study` field its stage reads).
KINDS: dict[str, Kind] = {
    "planner": Kind("flops_fit_register_planners", Planner, "isoflop", "PlannerContract"),
    "trainer": Kind("flops_fit_register_trainers", Trainer, "mock", "TrainerContract"),
    "executor": Kind("flops_fit_register_executors", Executor, "serial", "ExecutorContract"),
    "fitter": Kind("flops_fit_register_fitters", Fitter, "empirical", "FitterContract"),
    "plotter": Kind("flops_fit_register_plotters", Plotter, None, "PlotterContract"),
}
DISABLE_ENV = "FLOPS_FIT_DISABLE_PLUGINS"

#: Our plugins that `pip install flops-fit` leaves out, and the extra that brings each: a study
#: that names one where it is not installed is told the one command that fixes it.
EXTRAS: dict[tuple[str, str], str] = {
    ("trainer", "local"): "torch",
    ("trainer", "api"): "api",
    ("executor", "ray"): "ray",
    ("executor", "slurm"): "slurm",
}

#: What a plugin name may be: it is typed by users and becomes part of file names.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class PluginRecord:
    """One registered class and where it came from."""

    kind: str
    name: str
    cls: type[PluginBase]
    plugin: str  # the entry point (or registration) name
    distribution: str
    version: str

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "entry_point": self.plugin,
        }


@dataclass(frozen=True)
class LoadError:
    """A plugin (or one of its hooks) that failed; reported, never fatal for the others."""

    plugin: str
    distribution: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "distribution": self.distribution, "error": self.error}


def _disabled() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def _describe(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the plugin said


class PluginHost:
    """Discovers plugins and answers `get(kind, name)`.

    `PluginHost()` loads the `flops_fit` entry points; `PluginHost(load_entry_points=False)`
    starts empty, for tests that `register()` plugin objects by hand.
    """

    def __init__(self, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager("flops_fit")
        self.pm.add_hookspecs(hookspecs)
        self.errors: list[LoadError] = []
        self._origin: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self._registry: dict[str, dict[str, list[PluginRecord]]] = {kind: {} for kind in KINDS}
        #: `entry point (distribution)` of each plugin FLOPS_FIT_DISABLE_PLUGINS kept out
        self.disabled: list[str] = []
        self._clashes: dict[tuple[str, str], int] = {}  # (kind, name) -> its error's index
        if load_entry_points:
            self.load_entry_points()

    # -- discovery -------------------------------------------------------------------------
    def load_entry_points(self, group: str = "flops_fit") -> None:
        blocked = _disabled()
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else "unknown"
            if ep.name in blocked or dist in blocked:
                self.disabled.append(f"{ep.name} ({dist})")
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self.errors.append(LoadError(ep.name, dist, _describe(exc)))
                continue
            self.register(obj, name=ep.name, distribution=dist, version=version)

    def register(self, plugin: Any, name: str, distribution: str = "local", version: str = "0"):
        """Register a plugin object (a module or any object with hookimpls).

        Its register hooks are called and every class they return is checked at once, so
        `host.errors` names a bad class as soon as it is registered.
        """
        wanted = getattr(plugin, "hook_api_version", hookspecs.HOOK_API_VERSION)
        if wanted != hookspecs.HOOK_API_VERSION:
            ours = hookspecs.HOOK_API_VERSION
            self.errors.append(
                LoadError(
                    name,
                    distribution,
                    f"written for hook API version {wanted!r}; this flops-fit-core has "
                    f"version {ours}: install a {distribution} release made for it",
                )
            )
            return
        if self.pm.has_plugin(name) or self.pm.is_registered(plugin):
            self.errors.append(LoadError(name, distribution, "registered twice; second ignored"))
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # e.g. a hookimpl whose signature matches no hookspec
            self.errors.append(LoadError(name, distribution, _describe(exc)))
            return
        self._origin[name] = (distribution, version)
        self._collect(plugin, name, distribution, version)

    # -- registries ------------------------------------------------------------------------
    def _collect(self, plugin: Any, plugin_name: str, dist: str, version: str) -> None:
        """Call one plugin's register hooks and file each class it returns under its kind."""
        for kind, (hook_name, base, _, _) in KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    classes = list(impl.function() or [])
                except Exception as exc:
                    self.errors.append(
                        LoadError(plugin_name, dist, f"{hook_name}: {_describe(exc)}")
                    )
                    continue
                for cls in classes:
                    if problem := self._check_class(cls, base):
                        self.errors.append(LoadError(plugin_name, dist, f"{hook_name}: {problem}"))
                        continue
                    records = self._registry[kind].setdefault(cls.name, [])
                    records.append(PluginRecord(kind, cls.name, cls, plugin_name, dist, version))
                    if len(records) > 1:  # one error per clashing name, naming every class
                        error = LoadError(
                            records[1].plugin,
                            records[1].distribution,
                            self._duplicate(kind, cls.name, records),
                        )
                        if (kind, cls.name) in self._clashes:
                            self.errors[self._clashes[kind, cls.name]] = error
                        else:
                            self._clashes[kind, cls.name] = len(self.errors)
                            self.errors.append(error)

    @staticmethod
    def _check_class(cls: Any, base: type[PluginBase]) -> str | None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            return f"{cls!r} is not a subclass of {base.__module__}.{base.__name__}"
        if not isinstance(getattr(cls, "name", None), str) or not cls.name:
            return f"{cls.__qualname__} has no `name`"
        if not _NAME.fullmatch(cls.name):
            # Names become file names (`fits/<fitter>.json`, `figures/<plotter>.png`).
            return (
                f"{cls.__qualname__}.name {cls.name!r} is not a plain name (letters, digits, "
                "'_', '-', '.'; not starting with '.' or '-')"
            )
        config = getattr(cls, "Config", None)
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            return f"{cls.__qualname__}.Config is not a pydantic model"
        return None

    @staticmethod
    def _duplicate(kind: str, name: str, records: list[PluginRecord]) -> str:
        both = " and ".join(
            f"{r.cls.__module__}.{r.cls.__qualname__} ({r.distribution})" for r in records
        )
        return f"{kind} name {name!r} is registered by {both}"

    @property
    def registry(self) -> dict[str, dict[str, list[PluginRecord]]]:
        return self._registry

    def names(self, kind: str) -> list[str]:
        return sorted(self.registry[kind])

    def get(self, kind: str, name: str) -> type[PluginBase]:
        """The class registered as `name`, or a one-line error listing what is available."""
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}")
        records = self.registry[kind].get(name)
        if not records:
            error = UnknownPluginError(kind, name, self.names(kind))
            notes = []
            if extra := EXTRAS.get((kind, name)):
                notes.append(f'it comes with `pip install "flops-fit[{extra}]"`')
            if failed := [e for e in self.errors if e.plugin == name]:
                # most plugins register under their entry point's name: this is likely why
                notes.append(
                    f"the plugin {name!r} ({failed[0].distribution}) failed to load: "
                    f"{failed[0].error}"
                )
            elif self.errors:
                n = len(self.errors)
                notes.append(
                    f"{n} plugin load error{'s' if n > 1 else ''}: see 'flops-fit plugins'"
                )
            if self.disabled:
                notes.append(f"{DISABLE_ENV} disabled {', '.join(self.disabled)}")
            if notes:
                error.args = (f"{error} ({'; '.join(notes)})",)
            raise error
        if len(records) > 1:
            raise PluginError(self._duplicate(kind, name, records))
        return records[0].cls

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> PluginBase:
        """An instance of `name` built from its options (`build` with the name given apart)."""
        return self.build(kind, {**(options or {}), "name": name})

    def build(self, kind: str, section: Mapping[str, Any]) -> PluginBase:
        """The plugin a config section names, built from the section's other keys.

        `section` is a table such as `[trainer]`: `name` picks the class and the rest are its
        options, validated against its `Config`. The one place a named plugin is built: the
        study, the CLI commands and the report all come through here.
        """
        options = dict(section)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f'[{kind}] needs a name: name = "..." ({self._choices(kind)})')
        return self.get(kind, name)(options)

    def _choices(self, kind: str) -> str:
        names = self.names(kind)
        return "available: " + ", ".join(names) if names else "none installed"

    def records(self) -> list[PluginRecord]:
        out = [r for names in self.registry.values() for rs in names.values() for r in rs]
        return sorted(out, key=lambda r: (r.kind, r.name, r.distribution))

    def add_commands(self, cli: Any) -> None:
        """Let plugins add click commands; one that fails or clashes is recorded, not fatal."""
        hook = self.pm.hook.flops_fit_register_commands
        for impl in hook.get_hookimpls():
            plugin = self.pm.get_name(impl.plugin) or "?"
            dist = self._origin.get(plugin, ("local", "0"))[0]
            before = dict(cli.commands)
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self.errors.append(LoadError(plugin, dist, f"commands: {_describe(exc)}"))
            clobbered = [n for n, c in before.items() if cli.commands.get(n) is not c]
            for name in clobbered:
                cli.commands[name] = before[name]
                self.errors.append(LoadError(plugin, dist, f"command {name!r} already exists"))


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, loaded on first use."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost()
    return _HOST


def reset_host(host: PluginHost | None = None) -> None:
    """Replace (or drop) the process-wide host; tests use it to install a hand-built one."""
    global _HOST
    _HOST = host
