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


def _written_tree() -> dict[str, tuple[str | None, int | None]]:
    """errors.py's docstring tree: class -> (parent, exit code written beside it or above)."""
    import re

    from flops_fit_core import errors

    tree: dict[str, tuple[str | None, int | None]] = {}
    stack: list[tuple[int, str, int | None]] = []  # (depth, name, exit code)
    for line in errors.__doc__.splitlines():
        found = re.match(r"^\s*([│├└─\s]*)([A-Z][a-z]+[A-Z]\w+)\s{2,}(.*)$", line)
        if not found:
            continue
        depth = len(found.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        code = re.match(r"exit (\d+)", found.group(3))
        inherited = stack[-1][2] if stack else None
        exit_code = int(code.group(1)) if code else inherited
        tree[found.group(2)] = (stack[-1][1] if stack else None, exit_code)
        stack.append((depth, found.group(2), exit_code))
    return tree


def test_the_exception_tree_in_errors_py_says_what_the_code_does():
    """Issue 11: every class of the tree, its parent and exit code, as the code has them."""
    from flops_fit_core import errors

    tree = _written_tree()
    assert set(tree) == set(errors.__all__)
    for name, (parent, code) in tree.items():
        cls = getattr(errors, name)
        if parent is not None:
            assert cls.__base__.__name__ == parent, name
        assert cls.exit_code == code, name
    assert not issubclass(errors.TrainingCancelled, errors.TrainingError)


def test_built_in_plugins_import_only_the_public_api_of_the_core():
    """What a third party cannot do with `flops_fit_core`'s public API, our plugins do not do
    either: their sources import `flops_fit_core` itself, never its submodules."""
    offenders = []
    for path in sorted(ROOT.glob("plugins/*/src/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                for name in names
                if name.startswith("flops_fit_core.")
            ]
    assert not offenders, "\n".join(offenders)


def test_the_core_alone_pulls_in_no_cluster_engine():
    """`pip install flops-fit-core` installs neither Ray nor submitit: every distribution it
    requires, transitively (as installed here, extras left out), is free of them."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = ["flops-fit-core"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            wanted = requires(name) or []
        except PackageNotFoundError:
            continue
        for line in wanted:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name.lower().replace("_", "-"))
    assert "flops-fit-core" in seen and "pydantic" in seen
    assert not {"ray", "submitit", "flops-fit-ray", "flops-fit-slurm"} & seen, sorted(seen)
