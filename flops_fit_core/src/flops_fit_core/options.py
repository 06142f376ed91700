"""A plugin's options in words: name, type, default and description, read from its `Config`.

`flops-fit plugins NAME` prints them, and `config show` uses them to show a section whose
required options are not set yet, so a user learns what to write without reading the
plugin's source.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["Option", "describe_options", "missing_required", "type_name"]


@dataclass(frozen=True)
class Option:
    """One option of a plugin's `Config`."""

    name: str
    type: str
    required: bool
    default: Any
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": None if self.required else _plain(self.default),
            "description": self.description,
        }


def type_name(annotation: Any) -> str:
    """`int`, `float | None`, `'total' | 'non_embedding'`, `tuple[str, ...]`: as a user reads it."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{name}[{inner}]" if inner else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _plain(value: Any) -> Any:
    """A default as TOML/JSON would write it (tuples as lists, models as tables)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def describe_options(config: type[BaseModel]) -> list[Option]:
    """Every option of `config`, in declaration order."""
    out = []
    for name, field in config.model_fields.items():
        required = field.is_required()
        if required:
            default = None
        elif field.default_factory is not None:
            default = field.default_factory()
        else:
            default = None if field.default is PydanticUndefined else field.default
        description = field.description or ""
        out.append(Option(name, type_name(field.annotation), required, default, description))
    return out


def missing_required(config: type[BaseModel], given: dict[str, Any]) -> list[Option]:
    """The required options of `config` that `given` does not set."""
    return [o for o in describe_options(config) if o.required and o.name not in given]
