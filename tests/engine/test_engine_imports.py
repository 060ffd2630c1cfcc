"""The engine's modules import in one direction: ``_engine`` -> ``_engine_run`` -> ``_run`` ->
``_subcalls``, with options, models and resources below them; nothing below reaches back up.

Walks the source (imports inside functions too: a lazy import that closes a cycle is still a
cycle) so that this stays true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "rlm_async"

# Each engine module, and the engine modules it must never import (directly or lazily).
BELOW_THE_RLM = ["_engine_run", "_run", "_subcalls", "_resources", "_models", "_engine_options"]
LAYERS = {
    "_engine_run": ["_engine"],
    "_run": ["_engine", "_engine_run"],
    "_subcalls": ["_engine", "_engine_run", "_run"],
    "_resources": ["_engine", "_engine_run", "_run", "_subcalls"],
    "_models": ["_engine", "_engine_run", "_run", "_subcalls", "_resources"],
    "_engine_options": ["_engine", "_engine_run", "_run", "_subcalls", "_resources", "_models"],
    "_prepare": ["_engine", "_engine_run", "_run", "_subcalls"],
}


def imported_modules(module: str, src: Path = SRC, *, type_only: bool = False) -> set[str]:
    """Every ``rlm_async`` module ``module`` (dotted, e.g. ``repl._pool``) imports, at any
    depth of its code, type-only imports (``if TYPE_CHECKING:``) excluded unless asked."""
    tree = ast.parse((src / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if (
                not type_only
                and isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test)
            ):
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            visit([child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)])

    visit(tree.body)
    return {name.removeprefix("rlm_async.") for name in found if name.startswith("rlm_async.")}


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_an_engine_module_never_imports_the_layers_above_it(module: str) -> None:
    above = set(LAYERS[module]) & imported_modules(module)
    assert above == set(), f"{module} imports {sorted(above)}, which import it"


@pytest.mark.parametrize("module", BELOW_THE_RLM)
def test_runs_never_import_the_package_facade(module: str) -> None:
    # ``from rlm_async import X`` runs the package's __init__, which imports RLM: a cycle.
    tree = ast.parse((SRC / f"{module}.py").read_text(encoding="utf-8"))
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "rlm_async"
        for alias in node.names
    ]
    assert set(names) <= {"events"}, f"{module} imports {names} from the package façade"
