"""4. The REPL: cold start to first cell (with and without the sandbox), cell round trip, warm pool.

* cold start: ``ReplSession("")`` start + ``execute("1")``, against ``python -I -c pass``;
* sandbox layers: the same with ``ReplOptions(sandbox=SandboxOptions(...))``: the defaults
  (bubblewrap when usable, then Landlock + seccomp + rlimits inside) and ``bwrap="never"``;
* cell round trip: ``execute("1")`` again and again on one session;
* warm pool: ``ReplPool.take()`` itself, and a session from the pool to its first cell.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from _common import Result, bare_pipe_round_trip, median, percentile

from rlm_async.repl import ReplOptions, ReplSession
from rlm_async.repl._pool import ReplPool

TARGET_COLD = 0.060


def _interpreter_floor(repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        samples.append(time.perf_counter() - started)
    return median(samples)


async def _cold(options: ReplOptions, repeats: int) -> tuple[list[float], dict[str, Any]]:
    samples: list[float] = []
    report: dict[str, Any] = {}
    for _ in range(repeats + 1):  # the first one warms caches (and the sandbox probe)
        started = time.perf_counter()
        session = ReplSession("", options=options)
        try:
            await session.start()
            result = await session.execute("1")
            samples.append(time.perf_counter() - started)
            report = session.sandbox_report
        finally:
            await session.aclose()
        if result.stdout.strip() != "1":
            raise RuntimeError(f"unexpected cell output {result.stdout!r} {result.error!r}")
    return samples[1:], report


def _sandbox_variants() -> tuple[list[tuple[str, Any]], str]:
    try:
        from rlm_async.repl._sandbox_options import SandboxOptions
    except ImportError as exc:  # the sandbox module is not there (yet)
        return [], f"sandbox variants skipped: rlm_async.repl._sandbox_options ({exc})"
    return [
        ("sandbox defaults (bwrap auto + Landlock + seccomp + rlimits)", SandboxOptions()),
        ("sandbox, bwrap='never' (Landlock + seccomp + rlimits)", SandboxOptions(bwrap="never")),
    ], ""


def _layers(report: dict[str, Any]) -> str:
    """The layers the child's sandbox report says are active."""
    layers = report.get("layers")
    if not isinstance(layers, dict):
        return "unknown"
    active = [k for k, v in layers.items() if isinstance(v, dict) and v.get("active")]
    return ", ".join(active) or "none"


async def run(quick: bool) -> Result:
    res = Result()
    repeats = 5 if quick else 20
    cells = 200 if quick else 2_000
    floor = _interpreter_floor(repeats)
    samples, _ = await _cold(ReplOptions(sandbox=None), repeats)
    cold = median(samples)
    res.add(
        "repl",
        "cold start to first cell, no sandbox",
        cold,
        "s",
        reference=floor,
        reference_label="python -I -c pass",
        target=f"< {TARGET_COLD * 1000:.0f} ms",
        ok=cold < TARGET_COLD,
        extra={"samples": samples},
    )
    variants, skipped = _sandbox_variants()
    if skipped:
        res.notes.append(skipped)
    for label, sandbox in variants:
        try:
            samples, report = await _cold(ReplOptions(sandbox=sandbox), repeats)
        except Exception as exc:  # a layer that cannot run here is a finding, not a crash
            res.notes.append(f"repl: {label}: {type(exc).__name__}: {exc}")
            continue
        res.add(
            "repl",
            f"cold start to first cell, {label}",
            median(samples),
            "s",
            reference=cold,
            reference_label="no sandbox",
            extra={"samples": samples, "sandbox_report": report},
        )
        res.notes.append(f"repl: {label}: active layers: {_layers(report)}")

    async with ReplSession("", options=ReplOptions(sandbox=None)) as session:
        for _ in range(20):
            await session.execute("1")
        trips = []
        for _ in range(cells):
            started = time.perf_counter()
            await session.execute("1")
            trips.append(time.perf_counter() - started)
    bare, bare_p99 = bare_pipe_round_trip()
    res.add(
        "repl",
        f"cell round trip execute('1'), median of {cells:,}",
        median(trips) * 1e6,
        "µs",
        reference=bare * 1e6,
        reference_label="bare JSON-line pipe round trip, measured",
        extra={"p99_us": percentile(trips, 99) * 1e6},
    )
    res.add(
        "repl",
        "cell round trip execute('1'), p99",
        percentile(trips, 99) * 1e6,
        "µs",
        reference=bare_p99 * 1e6,
        reference_label="bare pipe round trip p99, measured",
    )

    size = 4 if quick else 8
    async with ReplPool(ReplOptions(sandbox=None), size) as pool:
        await pool.wait_ready()
        takes = []
        for _ in range(size):
            started = time.perf_counter()
            child = pool.take()
            takes.append(time.perf_counter() - started)
            assert child is not None
            await child.child.terminate(grace=0)
        await pool.wait_ready()
        firsts = []
        for _ in range(size):
            await pool.wait_ready()
            started = time.perf_counter()
            async with ReplSession("", pool=pool) as session:
                await session.execute("1")
                firsts.append(time.perf_counter() - started)
                warm = session.warm
    res.add(
        "repl",
        "warm pool: ReplPool.take()",
        median(takes) * 1e6,
        "µs",
        extra={"samples_us": [t * 1e6 for t in takes]},
    )
    res.add(
        "repl",
        "warm pool: session start to first cell",
        median(firsts),
        "s",
        reference=cold,
        reference_label="cold start",
        extra={"samples": firsts, "warm": warm},
    )
    return res
