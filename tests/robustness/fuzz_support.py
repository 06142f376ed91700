"""What the fuzz suites share: the promise every outcome is held to, and inputs to break.

The promise (docs/index.md): a bad input gets one `Error: ...` line on stderr and exit 2 (1
for a run that failed), never a traceback and never "internal error", and nothing the user
gave is modified. `assert_promise` checks the first half on an `Outcome`; `snapshot` (from
`tests.clirunner`) taken before and after checks the second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from tests.clirunner import Outcome, flops_fit

__all__ = [
    "ODD_NUMBERS",
    "ODD_VALUES",
    "Broken",
    "assert_fit_readable",
    "assert_promise",
    "copy_study",
    "json_values",
    "mutate_json",
    "printable_text",
]


class Broken(bytes):
    """A file's bytes after the edits a strategy made, shown by those edits (a failing
    example's report lists what was broken, not 170 kB of records)."""

    edits: tuple[str, ...] = ()

    def __new__(cls, data: bytes, edits=()):
        made = super().__new__(cls, data)
        made.edits = tuple(edits)
        return made

    def __repr__(self) -> str:
        return f"Broken({len(self)} bytes, edits={list(self.edits)!r})"


#: One line each that `run` and `train` print on the way, even with -q: a warning, a failed run.
_SAID_ON_THE_WAY = re.compile(r"warning: |\[\d+/\d+\] \S+ FAILED: ")


def assert_promise(
    outcome: Outcome, codes: Iterable[int] = (0, 1, 2), what: str = "", said_before: bool = False
) -> None:
    """Exit 0, or one of `codes` with exactly one non-empty stderr line, `Error: ...`, naming
    the problem (not an internal error); never a traceback. With `said_before` (`run` and
    `train`, which work in stages), `warning:` lines a stage printed before the error, and
    one line per run that failed, are allowed.

    The exit code is a hypothesis `event`, and with `FUZZ_SHOW_ERRORS=1` the error's start
    too: `--hypothesis-show-statistics` shows how deep the examples got.
    """
    if currently_in_test_context():  # a plain regression test has no statistics to add to
        event(f"{what} exit {outcome.code}".strip())
        if os.environ.get("FUZZ_SHOW_ERRORS"):
            event(re.sub(r"/tmp/\S*/", "", outcome.err)[:70])
    assert "Traceback" not in outcome.err + outcome.out, outcome.err
    assert outcome.code in set(codes), (outcome.code, outcome.err)
    if outcome.code == 0:
        return
    lines = [ln for ln in outcome.err.splitlines() if ln.strip()]
    if said_before:  # what a stage said on the way (a torn record set aside, a failed run)
        lines = [ln for ln in lines if not _SAID_ON_THE_WAY.match(ln)]
    assert len(lines) == 1, outcome.err
    assert lines[0].startswith("Error: "), outcome.err
    assert len(lines[0].strip()) > len("Error: ") + 3, outcome.err
    assert "internal error" not in lines[0], outcome.err


def assert_fit_readable(capsys, path: Path) -> None:
    """A fit.json a command wrote (exit 0) answers `predict`: nothing in it was written as
    null (an inf or NaN a fitter let through)."""
    outcome = flops_fit(capsys, "predict", path, "--compute", "1e21", "--json")
    assert outcome.code == 0, outcome.err


def copy_study(study: Path, into: Path) -> Path:
    """A private copy of a finished study (the session's is shared by every example)."""
    return Path(shutil.copytree(study, into / "run", ignore=shutil.ignore_patterns("*.lock")))


#: Numbers and non-numbers where a number is read: what breaks parsing, logs and intervals.
ODD_NUMBERS = [0, -1, -0.0, 1e-320, 1e308, 1e400, float("nan"), float("inf"), -float("inf"), 2**64]
#: Values of every JSON/TOML type, for a field that expects another.
ODD_VALUES = [None, True, "", "x", "1e18", [], [1, 2], {}, {"a": 1}, *ODD_NUMBERS]


def printable_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text an argv and a UTF-8 file can both carry: any character but NUL and a lone
    surrogate."""
    return st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=max_size
    )


def json_values() -> st.SearchStrategy:
    """Small JSON values of every type (NaN and infinities included, as Python's json writes)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(ODD_VALUES),
        printable_text(12),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(printable_text(6), inner, max_size=3)
        ),
        max_leaves=6,
    )


def _paths(value, prefix=()):
    """Every (path, value) inside a parsed JSON document, the root included."""
    yield prefix, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value[:4]):  # the first few items of a long list are enough
            yield from _paths(child, (*prefix, i))


@st.composite
def mutate_json(draw, document):
    """`document` (parsed JSON) with one to three edits at paths drawn from it: a value replaced
    by a value of any type, a key removed, an unknown key added, a list emptied or repeated."""
    doc = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p, _ in _paths(doc)]
        path = draw(st.sampled_from(paths))
        parent, key = None, None
        node = doc
        for part in path:
            parent, key, node = node, part, node[part]
        action = draw(st.sampled_from(["replace", "remove", "add", "empty", "repeat"]))
        if parent is None:  # the root itself
            if action == "replace":
                doc = draw(json_values())
            continue
        if action == "replace":
            parent[key] = draw(json_values())
        elif action == "remove":
            del parent[key]
        elif action == "add" and isinstance(node, dict):
            node[draw(printable_text(8))] = draw(json_values())
        elif action == "empty" and isinstance(node, list | dict):
            parent[key] = type(node)()
        elif action == "repeat" and isinstance(node, list) and node:
            parent[key] = node + node[:1]
    return doc
