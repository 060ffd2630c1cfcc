"""The REPL's modules import in one direction: no cycle among ``rlm_async.repl``'s modules.

``ReplOptions`` once lived in the session module, which the pool and the start-up code
needed, so they imported it lazily and the pool took ``options: object``. Lazy imports count
here: one that closes a cycle is still a cycle.
"""

from __future__ import annotations

from pathlib import Path

from tests.engine.test_engine_imports import SRC, imported_modules


def repl_import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Each module of ``rlm_async.repl`` (package files excluded) and the repl modules it
    imports, type-only imports included: the design imports one way, not only at run time."""
    modules = sorted(
        ".".join(path.relative_to(src).with_suffix("").parts)
        for path in (src / "repl").rglob("*.py")
        if path.name != "__init__.py"
    )
    graph: dict[str, set[str]] = {}
    for module in modules:
        graph[module] = {
            name for name in imported_modules(module, src, type_only=True) if name in modules
        }
        graph[module].discard(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated), or ``None``."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            cycle = visit(imported, [*path, module])
            if cycle is not None:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle is not None:
            return cycle
    return None


def test_the_repl_modules_import_each_other_without_a_cycle() -> None:
    graph = repl_import_graph()
    assert "repl._session" in graph
    assert "repl._options" in graph["repl._session"]  # the walk sees the imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_child_files_import_nothing_from_the_package() -> None:
    # Loaded by path into the process that runs model code: stdlib only.
    for path in (SRC / "repl" / "child").glob("_*.py"):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        assert imported_modules(module) == set(), f"{module} imports rlm_async"
