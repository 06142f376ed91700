"""Bounds on what flops-fit reads, so malformed or hostile input is a usage error, not a crash.

Python's parsers recurse (TOML, YAML, JSON) and its ints are unbounded: a value nested
100,000 deep, a 5,000-digit number or 1 followed by 400 zeros must be refused with one line
before they reach code that recurses or converts. A config, a `--set` value or a JSON table
may nest `MAX_NESTING` levels; numbers must be finite floats. A YAML config's aliases may
repeat a value (`*a`) without repeating its text, so a few lines can stand for billions of
values (a "billion laughs"): a config may hold `MAX_VALUES`, counted as every walk sees them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_NESTING", "MAX_VALUES", "nesting_depth", "value_count", "value_depth"]

#: The deepest nesting of lists and tables accepted in any input (a config nests ~4).
MAX_NESTING = 64
#: The most values (lists, tables and scalars, an alias counted each time it is used) a
#: config may hold: a study config holds a few hundred.
MAX_VALUES = 100_000


def nesting_depth(text: str) -> int:
    """The deepest nesting of `[ ]` and `{ }` in TOML or JSON text, outside quoted strings;
    a cheap scan run before a recursive parser sees the text."""
    depth = deepest = 0
    quote = ""
    escaped = False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def value_depth(value: Any) -> int:
    """How deeply lists and dicts nest in a parsed value (iterative: never recurses)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def value_count(value: Any, limit: int = MAX_VALUES) -> int:
    """How many values a parsed value holds, each list, table and scalar counted as often as a
    walk meets it (a YAML alias once per use); stops counting past `limit` (iterative)."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return count
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return count
