"""5. Many completions at once on one RLM: 100 concurrent ``completion()`` calls vs one.

The scripted NIAH trajectory of the demo (``demo_responder``: peek, fan out over 20 chunks,
answer) on a small haystack, root turns and sub-calls at 100 ms each, over loopback HTTP to
the mock server in its own process. Each completion gets its own REPL process. Memory: the
parent's RSS high-water growth, and the summed RSS of the live REPL children (sampled).
CPU: the parent's process CPU time (every thread; the RSS sampler's own CPU subtracted) over
the runs, divided by the number of runs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _common import (
    MIB,
    ChildRssSampler,
    CpuTime,
    PeakRss,
    Result,
    ServerProcess,
    median,
    settings_for,
)

from rlm_async import RLM
from rlm_async.demo import make_haystack
from rlm_async.server._heap import settle_heap

LATENCY = 0.1
LINES = 20_000
TARGET = 3.0
TARGET_CPU = 0.015  # seconds of parent CPU per completion
QUERY = "What is the magic number hidden in the text? Answer with the number only."


async def _runs(rlm: RLM, text: str, number: int, count: int) -> dict[str, Any]:
    with ChildRssSampler() as children, PeakRss() as parent, CpuTime() as cpu:
        started = time.perf_counter()
        results = await asyncio.gather(*(rlm.completion(text, QUERY) for _ in range(count)))
        wall = time.perf_counter() - started
    wrong = [r.answer for r in results if str(number) not in r.answer]
    if wrong:
        raise RuntimeError(f"{len(wrong)} of {count} runs answered wrongly, e.g. {wrong[0]!r}")
    return {
        "wall": wall,
        "cpu_each": (cpu.seconds - children.cpu_seconds) / count,
        "parent_growth": parent.growth,
        "children_peak": children.peak_sum,
        "child_peak_one": children.peak_one,
        "children_max": children.max_count,
        "subcalls": sum(int(r.metadata.get("subcalls", 0)) for r in results),
        "elapsed_each": median([r.elapsed for r in results]),
    }


async def _warm_runs(
    base_url: str, text: str, number: int, count: int, *, settle: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One run alone (three times) and ``count`` at once, each from a filled warm pool.

    ``settle``: as `rlm-async serve` runs, the heap frozen once the RLM is open and its pool
    filled (``server._heap.settle_heap``; process-wide, so the last thing measured).
    """
    async with RLM(
        model="openai-compatible:rlm-demo-root",
        sub_model="openai-compatible:rlm-demo-sub",
        settings=settings_for(base_url),
        max_iterations=10,
        warm_repls=count,
    ) as rlm:
        assert rlm.repl_pool is not None
        await _runs(rlm, text, number, 1)
        if settle:
            await rlm.repl_pool.wait_ready()
            settle_heap()
        ones = []
        for _ in range(3):
            await rlm.repl_pool.wait_ready()
            ones.append(await _runs(rlm, text, number, 1))
        await rlm.repl_pool.wait_ready()  # every child started before the clock starts
        return ones, await _runs(rlm, text, number, count)


def _http_pool_size(rlm: RLM) -> str:
    """What the HTTP pool was sized to (a private detail: ``"?"`` when it moves)."""
    size = getattr(getattr(rlm, "_recipe", None), "connections", None)
    return f"{size:,}" if isinstance(size, int) else "?"


async def run(quick: bool) -> Result:
    res = Result()
    count = 100
    text, number = make_haystack(LINES, seed=11)
    with ServerProcess("demo", root_latency=LATENCY, sub_latency=LATENCY) as server:
        async with RLM(
            model="openai-compatible:rlm-demo-root",
            sub_model="openai-compatible:rlm-demo-sub",
            settings=settings_for(server.base_url),
            max_iterations=10,
        ) as rlm:
            await _runs(rlm, text, number, 1)  # warm-up: imports, first connections
            ones = [await _runs(rlm, text, number, 1) for _ in range(3 if quick else 5)]
            many = await _runs(rlm, text, number, count)
            stats = server.stats()
            pool = _http_pool_size(rlm)
        warm_ones, warm = await _warm_runs(server.base_url, text, number, count)
        settled_ones, settled = await _warm_runs(server.base_url, text, number, count, settle=True)
    one = median([o["wall"] for o in ones])
    per_run = many["subcalls"] // count
    ideal = 3 * LATENCY + LATENCY
    res.notes.append(
        f"many: {LINES:,}-line haystack, demo_responder (3 root turns + {per_run} sub-calls "
        "a run), "
        f"{LATENCY * 1000:.0f} ms a call, RLM defaults (max_concurrency=16, so an HTTP pool of "
        f"{pool} connections shared by every completion); one run's floor is 3 root turns + one "
        f"wave of sub-calls = {ideal:.1f} s; {count} runs made {many['subcalls']:,} sub-calls, "
        f"server max in flight {stats['max_in_flight']}."
    )
    res.add(
        "many",
        "one completion, wall time",
        one,
        "s",
        reference=ideal,
        reference_label="latency floor",
        extra={"runs": ones},
        key="many.one",
    )
    res.add(
        "many",
        f"{count} concurrent completions, wall time",
        many["wall"],
        "s",
        reference=one,
        reference_label="one run",
        target=f"< {TARGET:g}x one run",
        ok=many["wall"] < TARGET * one,
        extra=many | {"server": stats},
        key="many.concurrent.cold",
    )
    res.add(
        "many",
        f"{count} concurrent completions, RLM(warm_repls={count}) filled beforehand",
        warm["wall"],
        "s",
        reference=one,
        reference_label="one run",
        target=f"< {TARGET:g}x one run",
        ok=warm["wall"] < TARGET * one,
        extra=warm,
        key="many.concurrent.warm",
    )
    res.add(
        "many",
        f"parent CPU per completion, {count} concurrent, warm pool",
        warm["cpu_each"],
        "s",
        reference=median([o["cpu_each"] for o in warm_ones]),
        reference_label="one completion alone, warm pool",
        target=f"<= {TARGET_CPU * 1000:g} ms",
        ok=warm["cpu_each"] <= TARGET_CPU,
        key="many.cpu_per_completion.warm",
    )
    res.add(
        "many",
        f"{count} concurrent, warm pool, as `rlm-async serve` runs (start-up heap frozen)",
        settled["wall"],
        "s",
        reference=median([o["wall"] for o in settled_ones]),
        reference_label="one run, the same",
        target=f"< {TARGET:g}x one run",
        ok=settled["wall"] < TARGET * one,
        extra=settled,
        key="many.concurrent.warm.settled",
    )
    res.add(
        "many",
        f"parent CPU per completion, {count} concurrent, warm pool, start-up heap frozen",
        settled["cpu_each"],
        "s",
        reference=median([o["cpu_each"] for o in settled_ones]),
        reference_label="one completion alone, the same",
        target=f"<= {TARGET_CPU * 1000:g} ms",
        ok=settled["cpu_each"] <= TARGET_CPU,
        key="many.cpu_per_completion.warm.settled",
    )
    res.add(
        "many",
        f"parent CPU per completion, {count} concurrent, cold (REPLs started in the run)",
        many["cpu_each"],
        "s",
        reference=median([o["cpu_each"] for o in ones]),
        reference_label="one completion alone",
        key="many.cpu_per_completion.cold",
    )
    res.add(
        "many",
        f"{count} concurrent: parent peak RSS growth",
        many["parent_growth"] / MIB,
        "MiB",
        reference=median([o["parent_growth"] for o in ones]) / MIB,
        reference_label="one run",
    )
    res.add(
        "many",
        f"{count} concurrent: REPL children, peak summed RSS",
        many["children_peak"] / MIB,
        "MiB",
        reference=median([o["children_peak"] for o in ones]) / MIB,
        reference_label="one run",
        extra={"max_alive": many["children_max"]},
    )
    return res
