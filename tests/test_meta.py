"""Every hookspec has a contract suite and a docs section; every built-in passes its contract."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from flops_fit_core import hookspecs
from flops_fit_core.plugins import KINDS, PluginHost
from flops_fit_core.testing import CONTRACTS

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(
    name
    for name, obj in vars(hookspecs).items()
    if name.startswith("flops_fit_") and inspect.isfunction(obj)
)


def test_hookspecs_are_found():
    assert len(HOOKS) == 6


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_has_a_contract_and_a_docstring(hook):
    assert hook in CONTRACTS, f"{hook} has no contract suite in flops_fit_core.testing"
    assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"{hook} has no docstring"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hookspec_has_a_section_in_the_plugin_guide(hook):
    guide = (ROOT / "docs" / "plugins.md").read_text()
    headings = [ln for ln in guide.splitlines() if ln.startswith("#")]
    assert any(hook in h for h in headings), f"docs/plugins.md has no section for {hook}"


def _contract_subclasses() -> dict[str, set[str]]:
    """contract name -> names the test classes that subclass it mention (from the source)."""
    found: dict[str, set[str]] = {}
    for path in [*ROOT.glob("plugins/*/tests/**/*.py"), *ROOT.glob("tests/**/*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            for base in bases:
                found.setdefault(base, set()).update(names)
    return found


def test_every_built_in_class_is_tested_through_its_contract():
    subclassed = _contract_subclasses()
    host = PluginHost()
    missing = []
    for record in host.records():
        contract = CONTRACTS[KINDS[record.kind][0]].__name__
        if record.cls.__name__ not in subclassed.get(contract, set()):
            missing.append(f"{record.kind} {record.name!r} ({record.cls.__name__}) via {contract}")
    assert not missing, "built-ins without a contract test: " + "; ".join(missing)
