"""Inside the engine, modules import in one direction: ``_rlm`` (over its properties, its
recipe and its sync guard) -> ``_completion`` -> ``_run`` -> ``_run_steps`` -> ``_subcalls``,
with the completion's shared state, model calls, options, model routes and resources below
them; nothing below reaches back up (``tests/test_import_graph.py`` checks the package as a
whole).

Walks the source (imports inside functions too: a lazy import that closes a cycle is still a
cycle) so that this stays true.
"""

from __future__ import annotations

import pytest

from tests.test_import_graph import imported_modules

ORDER = [
    "engine._rlm",
    "engine._rlm_properties",
    "engine._recipe",
    "engine._sync",
    "engine._completion",
    "engine._run",
    "engine._run_steps",
    "engine._subcalls",
    "engine._state",
    "engine._model_calls",
    "engine._resources",
    "engine._routes",
    "engine._options",
]
# Each engine module, and the engine modules it must never import (directly or lazily).
LAYERS = {module: ORDER[:index] for index, module in enumerate(ORDER) if index}
LAYERS["engine._prepare"] = ORDER[: ORDER.index("engine._subcalls") + 1]


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_an_engine_module_never_imports_the_layers_above_it(module: str) -> None:
    above = set(LAYERS[module]) & imported_modules(module)
    assert above == set(), f"{module} imports {sorted(above)}, which import it"
