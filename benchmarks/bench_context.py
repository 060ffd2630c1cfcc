"""3. Loading a large context into the REPL: time, and peak memory in parent and child.

``ReplSession(text)`` start -> context loaded (``start_seconds``: work dir, context file
written, child started, file read by the child; ``context_load_seconds``: the child's read
alone). Peak memory: the parent's RSS high-water mark growth over the start (``VmHWM``
reset with ``clear_refs``), and the child's ``VmHWM``. The practical limit is writing and
reading the same bytes through a file in one process.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time

from _common import MIB, PeakRss, Result, proc_status, repl_child_pid

from rlm_async.demo import make_haystack
from rlm_async.repl import ReplOptions, ReplSession

TARGET_1M = 0.3


def _file_round_trip(text: str) -> tuple[float, float, int]:
    """Write ``text`` as UTF-8 and read it back; (write s, read s, peak RSS growth)."""
    with tempfile.TemporaryDirectory(prefix="rlm-bench-") as tmp:
        path = os.path.join(tmp, "context.txt")
        with PeakRss() as peak:
            started = time.perf_counter()
            with open(path, "wb") as handle:
                handle.write(text.encode("utf-8"))
            wrote = time.perf_counter()
            with open(path, encoding="utf-8") as handle:
                back = handle.read()
            read = time.perf_counter()
        assert len(back) == len(text)
        del back
    return wrote - started, read - wrote, peak.growth


async def _session_start(text: str, options: ReplOptions) -> dict[str, float]:
    gc.collect()
    with PeakRss() as peak:
        started = time.perf_counter()
        session = ReplSession(text, options=options)
        await session.start()
        wall = time.perf_counter() - started
    try:
        pid = repl_child_pid(session.pid)
        if pid is None:
            raise RuntimeError(f"no REPL interpreter found under pid {session.pid}")
        child = proc_status(pid)
        check = await session.execute("len(context)")
        if check.stdout.strip() != str(len(text)):
            raise RuntimeError(f"the child holds a different context: {check.stdout!r}")
    finally:
        await session.aclose()
    return {
        "wall": wall,
        "start_seconds": session.start_seconds or 0.0,
        "context_load_seconds": session.context_load_seconds or 0.0,
        "parent_peak_growth": peak.growth,
        "child_hwm": child.get("VmHWM", 0),
        "child_rss": child.get("VmRSS", 0),
    }


async def run(quick: bool) -> Result:
    res = Result()
    sizes = [(1_000_000, 3)] if quick else [(1_000_000, 5), (10_000_000, 2)]
    options = ReplOptions()  # the defaults a user gets (sandbox included when available)
    empty = await _session_start("", options)
    res.notes.append(
        "context: default ReplOptions() (sandbox: "
        f"{'on' if options.sandbox is not None else 'off'}); a haystack of random-word lines "
        "(make_haystack, ~43 bytes a line); times: best of the repeats, file round trip "
        "first (the first write of a large file in a process is slow: page allocation); "
        "memory from /proc (parent VmHWM growth over the start, child VmHWM, the largest), "
        f"an empty-context child's VmHWM is {empty['child_hwm'] / MIB:.1f} MiB."
    )
    for lines, repeats in sizes:
        text, _ = make_haystack(lines, seed=7)
        size = len(text.encode())
        label = f"{lines / 1e6:g}M lines ({size / MIB:,.0f} MiB)"
        files = [_file_round_trip(text) for _ in range(repeats)]
        runs = [await _session_start(text, options) for _ in range(repeats)]
        start = min(r["start_seconds"] for r in runs)
        load = min(r["context_load_seconds"] for r in runs)
        write = min(f[0] for f in files)
        read = min(f[1] for f in files)
        file_peak = max(f[2] for f in files)
        target = lines == 1_000_000
        res.add(
            "context",
            f"{label}: ReplSession start -> context loaded",
            start,
            "s",
            reference=write + read + empty["start_seconds"],
            reference_label="file write + read + empty-context start",
            target=f"< {TARGET_1M:g} s" if target else "",
            ok=(start < TARGET_1M) if target else None,
            extra={"runs": runs},
        )
        res.add(
            "context",
            f"{label}: child reads the context file",
            load,
            "s",
            reference=read,
            reference_label="file read, same process",
        )
        res.add(
            "context",
            f"{label}: parent peak RSS growth during start",
            max(r["parent_peak_growth"] for r in runs) / MIB,
            "MiB",
            reference=file_peak / MIB,
            reference_label="file write + read, same process",
        )
        res.add(
            "context",
            f"{label}: child peak RSS (VmHWM)",
            max(r["child_hwm"] for r in runs) / MIB,
            "MiB",
            reference=(size + empty["child_hwm"]) / MIB,
            reference_label="one copy + empty child",
        )
        del text
        gc.collect()
    return res
