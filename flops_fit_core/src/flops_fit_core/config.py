"""Study configs: a TOML (or YAML) file and/or a named preset, then `--set a.b=value` overrides.

A study config has one section per stage; each names its plugin with `name` and holds that
plugin's options, which the plugin's own `Config` validates (so every key is consumed or
rejected)::

    [trainer]
    name = "mock"
    seed = 0

Layers merge in order: preset, file, overrides. When a later layer names a different plugin for
a section, the earlier layers' options for that section are dropped: they belonged to the other
plugin (`--trainer local` must not inherit the mock's `noise`).

`[[compare]]` fitters are a list; a later layer's list replaces it, and a layer may address
one compared fitter by its name instead (`--set compare.robust.bootstrap=200`, or a TOML
table `[compare.robust]`). A layer that makes a compared fitter the study's own
(`--fitter robust` on a preset that compares `robust`) swaps the two: the compared table's
options become `[fitter]`'s and the replaced fitter is compared in its place, with a note.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, PrivateAttr, create_model

from .errors import ConfigError, InputError
from .files import read_text
from .limits import MAX_NESTING, MAX_VALUES, nesting_depth, value_count, value_depth
from .plugins import KINDS
from .schemas import SCHEMA_VERSION, SchemaVersion, StrictModel, parse_model

__all__ = [
    "DEFAULT_PLOTS",
    "DEFAULT_PRESET",
    "SECTIONS",
    "StudyConfig",
    "apply_overrides",
    "available_presets",
    "load_study_config",
    "merge_layers",
    "parse_override",
    "read_config_file",
    "read_preset",
]

#: The preset `flops-fit run` uses with no config: a real CPU study of the `local` trainer.
DEFAULT_PRESET = "cpu-tiny"
#: The figures a study draws, and its HTML report, unless `[plot] names` says otherwise.
DEFAULT_PLOTS = ("isoflop", "scaling", "frontier", "parametric", "residuals", "curves", "report")
#: section -> kind of plugin it names: each kind with a default is a section of a study
SECTIONS = {kind: kind for kind, spec in KINDS.items() if spec.default is not None}


def _section(kind: str):
    return Field(default_factory=lambda: {"name": KINDS[kind].default})


class _Versioned(StrictModel):
    schema_version: SchemaVersion = SCHEMA_VERSION


#: One table per stage (`[planner]`, `[trainer]`, ...), each naming its plugin: the fields are
#: made from `KINDS`, so a new kind of plugin is a new section without an edit here.
_Sections = create_model(
    "_Sections",
    __base__=_Versioned,
    **{section: (dict[str, Any], _section(kind)) for section, kind in SECTIONS.items()},
)


class StudyConfig(_Sections):
    """The top level of a study config: one table per stage, validated by its plugin."""

    if TYPE_CHECKING:  # the sections, made from `KINDS` above, spelled out for type checkers
        planner: dict[str, Any]
        trainer: dict[str, Any]
        executor: dict[str, Any]
        fitter: dict[str, Any]

    #: Fitters run beside `[fitter]` on the same results, each a table like `[fitter]`
    #: (`[[compare]]` / `name = "robust"` / options): the report shows them side by side.
    compare: list[dict[str, Any]] = Field(default_factory=list)
    plot: dict[str, Any] = Field(default_factory=lambda: {"names": list(DEFAULT_PLOTS)})
    #: What loading did that a user should hear about (a swapped or dropped fitter).
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return self._notes


def available_presets() -> list[str]:
    folder = resources.files("flops_fit_core") / "presets"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def read_preset(name: str) -> dict[str, Any]:
    """A packaged preset as a dict."""
    if name not in available_presets():
        raise ConfigError(f"Unknown preset {name!r}. Available: {', '.join(available_presets())}")
    text = (resources.files("flops_fit_core") / "presets" / f"{name}.toml").read_text()
    return tomllib.loads(text)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML or YAML config file as a dict; a bad file is a one-line InputError."""
    path = Path(path)
    text = read_text(path, "config file")
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply to read") from None
    except ValueError as exc:  # Python's int() refuses more than 4,300 digits (TOML and YAML)
        raise InputError(f"{path}: {_too_many_digits(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise InputError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config must be a table of sections, got {type(data).__name__}")
    if value_count(data) > MAX_VALUES:  # first: a walk of an alias bomb never ends
        raise InputError(
            f"{path}: holds more than {MAX_VALUES:,} values (YAML aliases repeating one "
            "another?); a study config holds a few hundred"
        )
    if value_depth(data) > MAX_NESTING:
        raise InputError(f"{path}: nested too deeply (more than {MAX_NESTING} levels)")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value); the value is read as TOML, else kept as a string."""
    key, sep, raw = item.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or not all(path):
        raise ConfigError(f"--set expects key=value (e.g. trainer.curve_points=16), got {item!r}")
    if nesting_depth(raw) > MAX_NESTING:
        raise ConfigError(
            f"--set {key.strip()}: the value is nested too deeply (more than {MAX_NESTING} "
            "levels of [ ] or { })"
        )
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = raw
    except ValueError as exc:  # valid TOML, but an integer Python will not convert
        raise ConfigError(f"--set {key.strip()}: the value {_too_many_digits(exc)}") from None
    return path, value


def _too_many_digits(exc: ValueError) -> str:
    """What a parser's `ValueError` (other than a syntax error) means to a user: an integer
    longer than Python converts (`sys.get_int_max_str_digits`)."""
    if "digits" in str(exc):
        return "holds an integer of more than 4,300 digits; no option takes one"
    return f"cannot be read ({exc})"


def apply_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Overrides as one layer (a nested dict)."""
    layer: dict[str, Any] = {}
    for item in items:
        path, value = parse_override(item)
        node = layer
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r} conflicts with an earlier --set of {part!r}")
            node = child
        node[path[-1]] = value
    return layer


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_layers(
    layers: Iterable[dict[str, Any]], notes: list[str] | None = None
) -> dict[str, Any]:
    """Merge config layers; a section whose plugin `name` changes starts afresh. `notes`
    collects what a user should hear (a fitter swapped with a compared one)."""
    notes = notes if notes is not None else []
    merged: dict[str, Any] = {}
    for layer in layers:
        layer = dict(layer)
        if isinstance(layer.get("compare"), dict):  # compared fitters addressed by name
            merged["compare"] = _address_compare(merged.get("compare", []), layer.pop("compare"))
        if "compare" not in layer:
            _swap_fitter(merged, layer, notes)
        for section in SECTIONS:
            new, old = layer.get(section), merged.get(section)
            if (
                isinstance(new, dict)
                and isinstance(old, dict)
                and "name" in new
                and new["name"] != old.get("name")
            ):
                merged[section] = {}
        merged = _merge(merged, layer)
    return merged


def _compare_names(tables: Any) -> list[str]:
    if not isinstance(tables, list):
        return []
    return [t.get("name") for t in tables if isinstance(t, dict)]


def _address_compare(tables: Any, addressed: dict[str, Any]) -> list[dict[str, Any]]:
    """Options for compared fitters by name (`compare.robust.bootstrap=200`) merged into the
    `[[compare]]` table of that name."""
    tables = copy.deepcopy(tables) if isinstance(tables, list) else []
    names = _compare_names(tables)
    for name, options in addressed.items():
        if name not in names:
            listed = ", ".join(repr(n) for n in names) or "none"
            raise ConfigError(
                f"config: compare.{name}: no [[compare]] fitter is named {name!r} "
                f"(compared: {listed})"
            )
        if not isinstance(options, dict):
            raise ConfigError(
                f"config: compare.{name} must be a table of options "
                f"(e.g. --set compare.{name}.KEY=VALUE)"
            )
        i = names.index(name)
        tables[i] = _merge(tables[i], options)
    return tables


def _swap_fitter(merged: dict[str, Any], layer: dict[str, Any], notes: list[str]) -> None:
    """When `layer` names as `[fitter]` a fitter the study compares, that compared table
    becomes the fitter (then `layer`'s options on top) and the replaced fitter is compared in
    its place: `--fitter robust` keeps robust's options and still compares the old fitter."""
    new, old = layer.get("fitter"), merged.get("fitter")
    if not (isinstance(new, dict) and isinstance(old, dict) and "name" in new):
        return
    name, before = new["name"], old.get("name")
    if name == before:
        return
    names = _compare_names(merged.get("compare"))
    if name not in names:
        if before is not None and names:
            notes.append(f"fitter {name!r} replaces {before!r}")
        return
    i = names.index(name)
    promoted = merged["compare"][i]
    merged["compare"] = [*merged["compare"][:i], old, *merged["compare"][i + 1 :]]
    merged["fitter"] = promoted
    notes.append(f"fitter {name!r} replaces {before!r}, which is now compared in its place")


def load_study_config(
    config_path: str | Path | None = None,
    preset: str | None = None,
    overrides: Iterable[str] = (),
    shortcuts: dict[str, str | None] | None = None,
) -> StudyConfig:
    """Preset (the default one when no file is given), then the file, then `--set` overrides.

    `shortcuts` maps a section to a plugin name (`--trainer NAME` is `--set trainer.name=NAME`).
    """
    layers: list[dict[str, Any]] = []
    if preset is not None or config_path is None:
        layers.append(read_preset(preset or DEFAULT_PRESET))
    if config_path is not None:
        layers.append(read_config_file(config_path))
    # Shortcuts name a plugin; --set options then refine it (so they are not dropped).
    short = {section: {"name": name} for section, name in (shortcuts or {}).items() if name}
    if short:
        layers.append(short)
    layers.append(apply_overrides(overrides))
    notes: list[str] = []
    merged = merge_layers(layers, notes)
    where = str(config_path) if config_path else f"preset {preset or DEFAULT_PRESET!r}"
    study = parse_model(StudyConfig, merged, f"config ({where})")
    study.notes.extend(notes)
    for section in SECTIONS:
        name = getattr(study, section).get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config: section [{section}] needs a plugin `name`")
    names = study.plot.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError("config: [plot] needs `names`, a list of plotter names")
    _check_compare(study)
    return study


def _check_compare(study: StudyConfig) -> None:
    """Each `[[compare]]` table names a fitter, once: each fit is written to
    `fits/<name>.json`, so two of one name would overwrite each other. A table naming the
    study's own fitter (one file that lists it as both) is dropped, with a note: that fit is
    `fit.json` already."""
    seen: set[str] = set()
    for i, table in enumerate(study.compare):
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config: [[compare]] table {i + 1} needs a fitter `name`")
        if name in seen:
            raise ConfigError(f"config: [[compare]] lists {name!r} twice; list each fitter once")
        seen.add(name)
    own = study.fitter.get("name")
    if own in seen:
        study.notes.append(f"[[compare]] {own!r} dropped: it is the study's own fitter")
        study.compare = [t for t in study.compare if t["name"] != own]
