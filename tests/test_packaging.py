"""Every third-party package the installed code imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("gateway", "registry", "monitor")


def _imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported by the packages, each with one importer."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _normalized(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match[0]).lower()


def test_runtime_imports_are_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The demo's extra is imported only by the demo commands, the explain extra only by an
    # explanation; both say to install it when it is missing.
    extras = project["optional-dependencies"]
    declared = {
        _normalized(requirement)
        for requirement in [*project["dependencies"], *extras["demo"], *extras["explain"]]
    }
    distributions = importlib.metadata.packages_distributions()
    undeclared = {
        module: importer
        for module, importer in _imported_modules().items()
        if not {_normalized(d) for d in distributions.get(module, [module])} & declared
    }
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"
