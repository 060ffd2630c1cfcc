"""Inside the engine, modules import in one direction: ``_rlm`` -> ``_completion`` -> ``_run``
-> ``_subcalls``, with options, model routes and resources below them; nothing below reaches
back up (``tests/test_import_graph.py`` checks the package as a whole).

Walks the source (imports inside functions too: a lazy import that closes a cycle is still a
cycle) so that this stays true.
"""

from __future__ import annotations

import pytest

from tests.test_import_graph import imported_modules

ORDER = [
    "engine._rlm",
    "engine._completion",
    "engine._run",
    "engine._subcalls",
    "engine._resources",
    "engine._routes",
    "engine._options",
]
# Each engine module, and the engine modules it must never import (directly or lazily).
LAYERS = {module: ORDER[:index] for index, module in enumerate(ORDER) if index}
LAYERS["engine._prepare"] = ORDER[:4]


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_an_engine_module_never_imports_the_layers_above_it(module: str) -> None:
    above = set(LAYERS[module]) & imported_modules(module)
    assert above == set(), f"{module} imports {sorted(above)}, which import it"
