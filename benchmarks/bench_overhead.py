"""2. Sub-call overhead at zero latency: sub-calls per second through the whole stack.

* end to end: child -> pipe -> engine -> HTTP adapter -> loopback mock server (own process);
* pipe only: the same, with a ``ScriptedModel`` sub-model (no HTTP at all);
* one ``llm_query`` at a time from a loop in the cell (a round trip per call), pipe only.

The figure is the number of sub-calls divided by the cell's wall time.
"""

from __future__ import annotations

from _common import Result, ServerProcess, bare_pipe_round_trip, median
from bench_fanout import run_fan_out

from rlm_async.testing import ScriptedModel

CONCURRENCY = 100
TARGET = 2_000.0


def _sub() -> ScriptedModel:
    return ScriptedModel(lambda request: "ok", name="bench-sub")


async def run(quick: bool) -> Result:
    res = Result()
    n = 1_000 if quick else 3_000
    sequential = 200 if quick else 1_000
    repeats = 2 if quick else 3
    res.notes.append(
        f"overhead: {n:,} sub-calls in one llm_query_batched, RLM(max_concurrency={CONCURRENCY}), "
        f"zero latency, the lean server in its own process; best of up to {repeats}; "
        f"sequential: a loop of {sequential:,} llm_query calls."
    )
    with ServerProcess("lean") as server:
        await run_fan_out(100, CONCURRENCY, base_url=server.base_url)  # warm-up
        cells = [(await run_fan_out(n, CONCURRENCY, base_url=server.base_url))["cell"]]
        if cells[0] < 5:  # a slow path is not worth repeating
            for _ in range(repeats - 1):
                cells.append((await run_fan_out(n, CONCURRENCY, base_url=server.base_url))["cell"])
        stats = server.stats()
    rate = n / min(cells)
    res.add(
        "overhead",
        "sub-calls/s end to end (child, pipe, engine, HTTP, server)",
        rate,
        "/s",
        target=f">= {TARGET:,.0f}/s",
        ok=rate >= TARGET,
        higher_is_better=True,
        extra={"cells": cells, "n": n, "server": stats},
    )
    cells = [(await run_fan_out(n, CONCURRENCY, sub_model=_sub()))["cell"] for _ in range(repeats)]
    pipe_rate = n / min(cells)
    res.add(
        "overhead",
        "sub-calls/s, pipe and engine only (ScriptedModel sub-model)",
        pipe_rate,
        "/s",
        higher_is_better=True,
        extra={"cells": cells, "n": n},
    )
    cells = [
        (await run_fan_out(sequential, 1, sub_model=_sub(), batched=False))["cell"]
        for _ in range(repeats)
    ]
    per_call = min(cells) / sequential
    res.add(
        "overhead",
        "one llm_query round trip, sequential (ScriptedModel)",
        per_call * 1e6,
        "µs",
        reference=bare_pipe_round_trip()[0] * 1e6,
        reference_label="bare JSON-line pipe round trip, measured",
        extra={"cells": cells, "n": sequential, "median": median(cells) / sequential},
    )
    return res
