"""Bounds on what flops-fit reads, so malformed or hostile input is a usage error, not a crash.

Python's parsers recurse (TOML, YAML, JSON) and its ints are unbounded: a value nested
100,000 deep, a 5,000-digit number or 1 followed by 400 zeros must be refused with one line
before they reach code that recurses or converts. A config, a `--set` value or a JSON table
may nest `MAX_NESTING` levels; numbers must be finite floats.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_NESTING", "nesting_depth", "value_depth"]

#: The deepest nesting of lists and tables accepted in any input (a config nests ~4).
MAX_NESTING = 64


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
