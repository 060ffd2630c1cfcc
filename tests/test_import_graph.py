"""The package imports in one direction: no cycle among ``rlm_async``'s modules, and each room
(folder) imports only the rooms below it.

The rooms, bottom up (``docs/design.md`` draws them)::

    base        _exceptions, _types, _options, _logging, _tasks, _text, _tokens, _redact,
                _version, events — shared by every room, importing none of them
    trajectory  the event files, their tree and the HTML viewer
    tracing     OpenTelemetry spans from a completion's events
    providers   adapters, the registry, model names and settings, pricing, windows, rate limits
    repl        the child process, its sandbox and the typed pipe protocol
    tools       application functions and MCP servers' tools callable from model code
    engine      RLM, options, model routes, the run loop, sub-calls, budgets, prompts, parsing
    server      the HTTP app (Starlette) over the engine
    batching    many requests on every core or on a Ray cluster (``rlm_async.batch``)
    cli         the ``rlm-async`` command: run, view, demo, serve, batch, eval

``testing`` and ``demo`` are public helpers at the top: they may use any room but
``cli``/``server``. ``evals`` (seeded tasks, their scripted solvers, the runners) sits on
them: it may use the helpers and the rooms below the server; only ``cli`` imports it.

The walk reads the source, imports inside functions included (a lazy import that closes a
cycle is still a cycle; only ``if TYPE_CHECKING:`` blocks are left out), and counts the
implicit import of another sub-package's ``__init__`` that ``import rlm_async.room.module``
runs first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "rlm_async"

ROOMS = [
    "trajectory",
    "tracing",
    "providers",
    "repl",
    "tools",
    "engine",
    "server",
    "batching",
    "evals",
    "cli",
]
# What each room may import besides base (and itself).
ALLOWED = {
    "trajectory": set(),
    "tracing": set(),
    "providers": set(),
    "repl": set(),
    "tools": set(),
    "engine": {"trajectory", "tracing", "providers", "repl", "tools"},
    "server": {"trajectory", "tracing", "providers", "repl", "tools", "engine"},
    "batching": {"trajectory", "tracing", "providers", "repl", "tools", "engine"},
    "cli": {
        "trajectory",
        "tracing",
        "providers",
        "repl",
        "tools",
        "engine",
        "server",
        "batching",
        "evals",
        "helpers",
    },
    "evals": {"trajectory", "tracing", "providers", "repl", "tools", "engine", "helpers"},
    "helpers": {"trajectory", "tracing", "providers", "repl", "tools", "engine"},
    "base": set(),
}
HELPERS = {"testing", "demo"}


def module_name(path: Path, src: Path = SRC) -> str:
    """``engine._run`` for ``src/rlm_async/engine/_run.py``; ``engine`` for its ``__init__``;
    ``""`` for the package's own ``__init__``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(module: str, src: Path = SRC, *, type_only: bool = False) -> set[str]:
    """Every ``rlm_async`` name ``module`` (dotted, e.g. ``repl._pool``) imports, at any depth
    of its code, as written (``repl._pool`` and ``repl._pool.ReplPool`` both appear for
    ``from rlm_async.repl._pool import ReplPool``); ``if TYPE_CHECKING:`` blocks are left out
    unless ``type_only``."""
    path = src / f"{module.replace('.', '/')}.py"
    if not path.exists():
        path = src / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
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
    return {
        name.removeprefix("rlm_async").removeprefix(".")
        for name in found
        if name == "rlm_async" or name.startswith("rlm_async.")
    }


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Each module of the package (sub-package ``__init__`` files included; the root one is
    ``""``) and the package modules importing it runs."""
    modules = {module_name(path, src) for path in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module in modules:
        edges = {name for name in imported_modules(module, src) if name in modules}
        # ``import rlm_async.repl._pool`` runs ``rlm_async/repl/__init__.py`` first, to its
        # end: an edge. A module's own packages are left out: their ``__init__`` has already
        # started when the module runs (and the root's is the façade, tested below).
        parts = module.split(".")
        own = {".".join(parts[:end]) for end in range(1, len(parts))}
        for name in list(edges):
            names = name.split(".")
            edges.update({".".join(names[:end]) for end in range(1, len(names))} - own)
        edges.discard(module)
        edges.discard("")
        graph[module] = edges
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


def room_of(module: str) -> str:
    top = module.split(".")[0]
    if top in ROOMS:
        return top
    return "helpers" if top in HELPERS else "base"


def test_the_walk_sees_imports_and_package_inits() -> None:
    graph = import_graph()
    assert "engine._run" in graph
    assert "engine._subcalls" in graph["engine._run"]  # a plain import
    assert "engine" not in graph["engine._run"]  # its own package's __init__ ran first
    assert "repl" in graph["engine._resources"]  # an imported module's package


def test_find_cycle_finds_one_through_a_lazy_import(tmp_path: Path) -> None:
    # A test that cannot fail proves nothing: a package with a cycle closed inside a function.
    pkg = tmp_path / "rlm_async"
    (pkg / "room").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "room" / "__init__.py").write_text("")
    (pkg / "room" / "_a.py").write_text("from rlm_async.room._b import B\n")
    (pkg / "room" / "_b.py").write_text(
        "def f():\n    from rlm_async.room import _a\n\nB = 1\n"
    )
    assert find_cycle(import_graph(pkg)) == ["room._a", "room._b", "room._a"]


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_each_room_imports_only_the_rooms_below_it() -> None:
    wrong = sorted(
        f"{module} imports {imported}"
        for module, edges in import_graph().items()
        if module
        for imported in edges
        if room_of(imported) not in {room_of(module), "base"} | ALLOWED[room_of(module)]
        or (room_of(module) == "base" and room_of(imported) != "base")
    )
    assert wrong == []


@pytest.mark.parametrize("module", sorted(m for m in import_graph() if m))
def test_no_module_imports_the_package_facade(module: str) -> None:
    # ``from rlm_async import X`` runs the package's __init__, which imports every room: from
    # inside the package that is a cycle waiting for its first import order. (``events`` is a
    # module, imported as ``from rlm_async import events``: a module is allowed.)
    tree = ast.parse(
        (
            SRC / f"{module.replace('.', '/')}.py"
            if (SRC / f"{module.replace('.', '/')}.py").exists()
            else SRC / module.replace(".", "/") / "__init__.py"
        ).read_text(encoding="utf-8")
    )
    names = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "rlm_async"
        for alias in node.names
    ]
    not_modules = [
        name
        for name in names
        if not (SRC / f"{name}.py").exists() and not (SRC / name / "__init__.py").exists()
    ]
    assert not_modules == [], f"{module} imports {not_modules} from the package façade"


def test_the_child_files_import_nothing_from_the_package() -> None:
    # Loaded by path into the process that runs model code: stdlib only.
    for path in (SRC / "repl" / "child").glob("_*.py"):
        assert imported_modules(module_name(path)) == set(), f"{path.name} imports rlm_async"
