"""The version is written once, and no module reaches back to the package root for it."""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path

import rlm_async
from rlm_async._version import __version__

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "rlm_async"


def test_the_version_has_one_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/rlm_async/_version.py"
    assert rlm_async.__version__ == __version__


def test_no_module_imports_a_name_from_the_package_root() -> None:
    # `from rlm_async import X` where X is not a submodule runs rlm_async/__init__.py,
    # which imports the engine: an import cycle for any module the engine imports.
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "rlm_async" and node.level == 0:
                for alias in node.names:
                    if importlib.util.find_spec(f"rlm_async.{alias.name}") is None:
                        offenders.append(f"{path.relative_to(PACKAGE)}: {alias.name}")
    assert offenders == []
