"""7. The 1M-line NIAH: a big context with 1,000 sub-calls, next to ``rlms``; its fixed cost.

The needle in a haystack of ``rlm_async.demo.make_haystack(1_000_000)`` (~45 million
characters), the scripted NIAH root of ``_responders.py`` (peek, fan out over K chunks,
answer), over loopback HTTP to the mock server in its own process:

* **K = 1,000** sub-calls (~45,000-character prompts), 100 ms per root turn and per
  sub-call, ``RLM(max_concurrency=128)``: rlm-async, and the official ``rlms`` 0.1.3 on the
  same context, the same server and the same script (``peer_rlms.py`` in
  ``benchmarks/.venv-peers``). Ideal: 3 root turns + ``ceil(1000/128)`` = 8 waves = 1.1 s.
* **K = 10** at zero latency: what a big context costs by itself. Each prompt is ~4.5
  million characters, over the default ``Budget.max_prompt_chars`` (2,000,000), so with the
  defaults the engine refuses the batch and no sub-call is sent (the issue's 0.59 s was
  measured that way); the second row lifts the cap, sends the ten 4.5 MB prompts and checks
  the answer.

Memory, for the K = 1,000 and the K = 10 (sent) runs: the parent's RSS high-water growth over
the completion (``VmHWM`` reset with ``clear_refs`` first; the haystack string is already
held), and the REPL child's own ``VmHWM``, next to the context's size. rlms runs the code in
its own process: its figure is that process's peak RSS.
"""

from __future__ import annotations

import math
import os
import subprocess
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
from _responders import niah_query
from bench_peers import peers_python, run_rlms

from rlm_async import RLM, Budget
from rlm_async import events as ev
from rlm_async.demo import make_haystack

LINES = 1_000_000
SEED = 13
BIG_K = 1_000
SMALL_K = 10
LATENCY = 0.1
CONCURRENCY = 128
TARGET_BIG = 1.1
TARGET_SMALL = 0.25


async def _runs(
    base_url: str,
    text: str,
    number: int,
    chunks: int,
    repeats: int,
    *,
    budget: Budget | None = None,
) -> list[dict[str, Any]]:
    """A warm-up, then ``repeats`` timed completions with memory and CPU; one dict each."""
    runs: list[dict[str, Any]] = []
    async with RLM(
        model="openai-compatible:niah-root",
        sub_model="openai-compatible:niah-sub",
        settings=settings_for(base_url),
        max_concurrency=CONCURRENCY,
        max_iterations=10,
        budget=budget,
    ) as rlm:
        for index in range(repeats + 1):
            with ChildRssSampler(hwm=True) as children:

                def on_event(event: ev.Event, children: ChildRssSampler = children) -> None:
                    # The child's high-water mark right after each cell, before it exits.
                    if isinstance(event, ev.CellFinished):
                        children.sample()

                with PeakRss() as parent, CpuTime() as cpu:
                    started = time.perf_counter()
                    result = await rlm.completion(text, niah_query(chunks), on_event=on_event)
                    wall = time.perf_counter() - started
            subcalls = int(result.metadata.get("subcalls", 0))
            if subcalls and (result.answer.strip() != str(number) or subcalls != chunks):
                raise RuntimeError(
                    f"rlm-async answered {result.answer!r} with {subcalls} sub-calls; "
                    f"expected {number} with {chunks}"
                )
            if index:  # the first run warms up imports and connections
                runs.append(
                    {
                        "wall": wall,
                        "cpu": cpu.seconds - children.cpu_seconds,
                        "parent_growth": parent.growth,
                        "parent_hwm": parent.peak,
                        "child_hwm": children.peak_hwm,
                        "subcalls": subcalls,
                        "answer": result.answer[:80],
                    }
                )
    return runs


def _memory_rows(res: Result, label: str, key: str, runs: list[dict[str, Any]], size: int) -> None:
    context = f"context {size / MIB:,.0f} MiB"
    res.add(
        "niah",
        f"{label}: parent peak RSS growth over the completion",
        max(r["parent_growth"] for r in runs) / MIB,
        "MiB",
        reference=size / MIB,
        reference_label=context,
        extra={"parent_hwm_mib": [round(r["parent_hwm"] / MIB, 1) for r in runs]},
        key=f"{key}.parent_rss",
    )
    res.add(
        "niah",
        f"{label}: REPL child peak RSS (VmHWM)",
        max(r["child_hwm"] for r in runs) / MIB,
        "MiB",
        reference=size / MIB,
        reference_label=context,
        key=f"{key}.child_rss",
    )


async def run(quick: bool) -> Result:
    res = Result()
    repeats = 1 if quick else 3
    text, number = make_haystack(LINES, seed=SEED)
    size = len(text.encode())
    ideal = 3 * LATENCY + math.ceil(BIG_K / CONCURRENCY) * LATENCY
    res.notes.append(
        f"niah: {LINES:,}-line haystack ({len(text):,} characters, {size / MIB:,.0f} MiB), the "
        f"scripted NIAH root (peek, fan out over K chunks, answer), RLM(max_concurrency="
        f"{CONCURRENCY}), the mock server in its own process; median of {repeats} after a "
        f"warm-up (rlms: {repeats} run(s), no warm-up: its imports happen before the clock); "
        f"ideal at K={BIG_K:,} and {LATENCY * 1000:.0f} ms = 3 root turns + "
        f"{math.ceil(BIG_K / CONCURRENCY)} waves = {ideal:.1f} s; CPU = the parent's process CPU "
        "time (every thread, the RSS sampler's own excluded)."
    )
    python, problem = peers_python()
    with ServerProcess("niah", root_latency=LATENCY, sub_latency=LATENCY) as server:
        before = server.stats()["cpu_seconds"]
        big = await _runs(server.base_url, text, number, BIG_K, repeats)
        server_cpu = (server.stats()["cpu_seconds"] - before) / (repeats + 1)
        wall = median([r["wall"] for r in big])
        res.notes.append(
            f"niah: at K={BIG_K:,} a completion costs the parent "
            f"{median([r['cpu'] for r in big]):.2f} s of CPU and the mock server "
            f"{server_cpu:.2f} s (its process CPU over the runs and the warm-up, per run), "
            f"on {os.cpu_count()} cores, with the REPL child's on top."
        )
        label = f"1M lines, K={BIG_K:,}, {LATENCY * 1000:.0f} ms, C={CONCURRENCY}"
        res.add(
            "niah",
            f"{label}: rlm-async",
            wall,
            "s",
            reference=ideal,
            reference_label="ideal",
            target=f"<= {TARGET_BIG:g} s",
            ok=wall <= TARGET_BIG,
            extra={"runs": big},
            key="niah.k1000",
        )
        if python is None:
            res.notes.append(f"niah: rlms skipped: {problem}")
        else:
            try:
                peer = run_rlms(
                    python, server.base_url, text, number, repeats, chunks=BIG_K, warmups=0
                )
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                res.notes.append(f"niah: rlms failed: {exc}")
            else:
                res.add(
                    "niah",
                    f"{label}: rlms {peer['version']} (official), environment='local'",
                    median(peer["walls"]),
                    "s",
                    reference=wall,
                    reference_label="rlm-async, same run",
                    extra=peer,
                    key="niah.k1000.rlms",
                )
                res.add(
                    "niah",
                    f"{label}: rlms, peak RSS of its one process",
                    peer["maxrss"] / MIB,
                    "MiB",
                    reference=size / MIB,
                    reference_label=f"context {size / MIB:,.0f} MiB",
                    key="niah.k1000.rlms.rss",
                )
        res.add(
            "niah",
            f"{label}: parent CPU per completion",
            median([r["cpu"] for r in big]),
            "s",
            key="niah.k1000.cpu",
        )
        _memory_rows(res, f"1M lines, K={BIG_K:,}", "niah.k1000", big, size)
    with ServerProcess("niah") as server:
        refused = await _runs(server.base_url, text, number, SMALL_K, repeats)
        sent = await _runs(
            server.base_url, text, number, SMALL_K, repeats, budget=Budget(max_prompt_chars=None)
        )
    label = f"1M lines, K={SMALL_K}, zero latency"
    how = (
        "defaults: the 4.5M-character prompts refused by Budget.max_prompt_chars, none sent"
        if all(r["subcalls"] == 0 for r in refused)
        else f"defaults ({refused[0]['subcalls']} sub-calls sent)"
    )
    value = median([r["wall"] for r in refused])
    res.add(
        "niah",
        f"{label} ({how})",
        value,
        "s",
        target=f"<= {TARGET_SMALL:g} s",
        ok=value <= TARGET_SMALL,
        extra={"runs": refused},
        key="niah.k10",
    )
    value = median([r["wall"] for r in sent])
    res.add(
        "niah",
        f"{label} (max_prompt_chars=None: the {SMALL_K} sub-calls sent, answer checked)",
        value,
        "s",
        extra={"runs": sent},
        key="niah.k10.sent",
    )
    res.add(
        "niah",
        f"{label}, sub-calls sent: parent CPU per completion",
        median([r["cpu"] for r in sent]),
        "s",
        key="niah.k10.sent.cpu",
    )
    _memory_rows(res, f"1M lines, K={SMALL_K} (sent)", "niah.k10.sent", sent, size)
    return res
