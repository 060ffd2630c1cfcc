"""Where a completion's CPU goes in the parent: ``python benchmarks/profile_completion.py``.

One completion end to end, as a server runs it: a REPL taken from a warm pool, the system
prompt, the context file, three root turns and twenty sub-calls (the demo's NIAH script on a
20,000-line haystack, the ``many`` benchmark's workload), over loopback HTTP to the mock
server in its own process at zero latency. The parent's CPU per completion is measured
without the profiler first (process CPU time, median of the runs), then the same runs under
cProfile (timed with the main thread's CPU clock, so waiting is not counted), and the
profile is summed up by the part of the stack the time is spent in:

* each function's own time (``tottime``) goes to its package (``httpcore``, ``json``,
  ``rlm_async.engine``...);
* the time of a C builtin goes to whoever called it (``_json.encode_basestring`` to
  ``json``), except system calls (socket and pipe I/O, polling, process starts), which are
  a part of their own.

The profiler slows down code that makes many small calls more than code that makes few, so
the shares are approximate; "est. ms" is the share times the unprofiled CPU. Options:
``--runs N``, ``--lines N``, ``--concurrent N`` (N completions at once instead of one),
``--top N``, ``--save FILE`` (the raw profile, for ``python -m pstats FILE`` or snakeviz).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import re
import sys
import sysconfig
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ServerProcess, median, settings_for

from rlm_async import RLM
from rlm_async.demo import make_haystack

QUERY = "What is the magic number hidden in the text? Answer with the number only."
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())
# Builtins that are system calls: their time is its own part, not their caller's.
_SYSCALL = re.compile(
    r"\b(write|read|send|sendall|sendto|recv|recv_into|recvfrom|poll|select|epoll|"
    r"fork_exec|waitpid|pipe|close|open|connect|accept|getaddrinfo|stat|unlink|mkdir|"
    r"rmdir|fsync|kill|ftruncate)\b"
)

Func = tuple[str, int, str]

# Parts grouped into the layers a change would touch.
LAYERS: dict[str, tuple[str, ...]] = {
    "HTTP client (httpx over aiohttp or httpcore, anyio, urllib, yarl, multidict)": (
        "httpx", "httpcore", "h11", "anyio", "sniffio", "urllib", "http", "ssl", "idna",
        "certifi", "socket", "email", "ipaddress", "httpx_aiohttp", "aiohttp", "multidict",
        "yarl", "aiohappyeyeballs", "propcache", "frozenlist", "aiosignal",
    ),
    "JSON (json, orjson)": ("json", "orjson"),
    "rlm_async's own code": ("rlm_async.",),
    "pydantic": ("pydantic", "pydantic_core"),
    "retries (tenacity)": ("tenacity",),
    "event loop (asyncio, contextlib, weakref)": (
        "asyncio", "contextlib", "weakref", "_weakrefset", "concurrent", "threading",
    ),
    "system calls (socket/pipe I/O, epoll, process start)": ("system calls",),
}  # fmt: skip


def layer_of(part: str) -> str:
    """The layer (``LAYERS``) a part of the stack belongs to; ``"other"`` if none."""
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if part == prefix or (prefix.endswith((".", " calls")) and part.startswith(prefix)):
                return layer
    return "other"


def _part(func: Func) -> str | None:
    """The part of the stack a Python function belongs to; ``None`` for a C builtin."""
    filename = func[0]
    if filename == "~" or filename.startswith("<"):
        return None
    path = str(Path(filename).resolve()) if "/" in filename else filename
    marker = "/rlm_async/"
    if marker in path:
        rest = path.split(marker, 1)[1].removesuffix(".py").split("/")
        return "rlm_async." + rest[0]  # the room: engine, providers, repl, ...
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(_STDLIB):
        name = path[len(_STDLIB) :].lstrip("/").split("/", 1)[0].removesuffix(".py")
        return "asyncio" if name in ("asyncio", "selectors") else name
    return "other: " + Path(path).name


def _builtin_name(func: Func) -> str:
    return func[2].strip("<>{}")


def breakdown(stats: pstats.Stats) -> dict[str, tuple[float, int]]:
    """Seconds of CPU and calls per part of the stack (see the module docstring)."""
    parts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]

    def charge(part: str, seconds: float, calls: int) -> None:
        parts[part][0] += seconds
        parts[part][1] += calls

    for func, (_cc, calls, tottime, _ct, callers) in table.items():
        part = _part(func)
        if part is not None:
            charge(part, tottime, calls)
            continue
        if _SYSCALL.search(_builtin_name(func)):
            charge("system calls (socket/pipe I/O, epoll, process start)", tottime, calls)
            continue
        # A builtin's time goes to its callers, in proportion to what each one spent in it.
        charged, counted = 0.0, 0
        for caller, (_ccc, caller_calls, share, _cct) in callers.items():
            charge(_part(caller) or "builtins called from builtins", share, caller_calls)
            charged += share
            counted += caller_calls
        if tottime > charged:
            charge("builtins (caller unknown)", tottime - charged, max(calls - counted, 0))
    return {part: (seconds, int(calls)) for part, (seconds, calls) in parts.items()}


def _label(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    path = filename
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        if path.startswith(_STDLIB):
            path = path[len(_STDLIB) :].lstrip("/")
    return f"{path}:{line}({name})"


async def _completions(rlm: RLM, text: str, number: int, concurrent: int) -> None:
    results = await asyncio.gather(*(rlm.completion(text, QUERY) for _ in range(concurrent)))
    for result in results:
        if str(number) not in result.answer:
            raise RuntimeError(f"a completion answered {result.answer!r}, expected {number}")


async def measure(lines: int, runs: int, concurrent: int) -> dict[str, Any]:
    """CPU per completion without the profiler, then a profile of the same runs."""
    text, number = make_haystack(lines, seed=11)
    # CPU time of this thread, not wall time: a wall clock would count the event loop's
    # waits in epoll and the moments the OS runs another process as "time spent".
    profile = cProfile.Profile(time.thread_time)
    with ServerProcess("demo") as server:
        async with RLM(
            model="openai-compatible:rlm-demo-root",
            sub_model="openai-compatible:rlm-demo-sub",
            settings=settings_for(server.base_url),
            max_iterations=10,
            warm_repls=concurrent,
        ) as rlm:
            pool = rlm.repl_pool
            assert pool is not None
            for _ in range(2):  # warm-up: imports, connections, the pool's first children
                await pool.wait_ready()
                await _completions(rlm, text, number, concurrent)
            cpu: list[float] = []
            walls: list[float] = []
            plain_thread = 0.0
            for _ in range(runs):
                await pool.wait_ready()
                started, wall = time.process_time(), time.perf_counter()
                thread = time.thread_time()
                await _completions(rlm, text, number, concurrent)
                plain_thread += time.thread_time() - thread
                cpu.append((time.process_time() - started) / concurrent)
                walls.append(time.perf_counter() - wall)
            profiled: list[float] = []
            main_thread = 0.0
            for _ in range(runs):
                await pool.wait_ready()
                started, thread = time.process_time(), time.thread_time()
                profile.enable()
                await _completions(rlm, text, number, concurrent)
                profile.disable()
                profiled.append((time.process_time() - started) / concurrent)
                main_thread += time.thread_time() - thread
    return {
        "text_chars": len(text),
        "cpu": median(cpu),
        "wall": median(walls),
        "cpu_profiled": median(profiled),
        "other_threads_share": 1 - main_thread / sum(profiled) / concurrent if profiled else 0.0,
        "main_thread_plain": plain_thread,
        "main_thread_profiled": main_thread,
        "profile": profile,
        "completions": runs * concurrent,
    }


def report(figures: dict[str, Any], lines: int, concurrent: int, top: int) -> str:
    profile: cProfile.Profile = figures["profile"]
    stats = pstats.Stats(profile)
    completions = figures["completions"]
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    calls = sum(entry[1] for entry in table.values())
    # The profiler's own cost per call it records, from the data: the profiled main
    # thread's CPU less the same runs' CPU without the profiler, over the calls recorded.
    overhead = max(total - figures["main_thread_plain"], 0.0) / calls if calls else 0.0
    per = 1000 / completions  # seconds over all the runs -> ms per completion

    def estimate(seconds: float, count: int) -> float:
        return max(seconds - count * overhead, 0.0) * per

    parts = breakdown(stats)
    estimated = {part: estimate(seconds, count) for part, (seconds, count) in parts.items()}
    est_total = sum(estimated.values()) or 1.0
    mode = "one completion at a time" if concurrent == 1 else f"{concurrent} at once"
    out = [
        f"One completion in the parent: a {lines:,}-line haystack "
        f"({figures['text_chars']:,} characters), the demo's NIAH script (3 root turns + 20 "
        f"sub-calls), the mock server in its own process at zero latency, a REPL from a warm "
        f"pool; {mode}; {completions} completions profiled.",
        "",
        f"Parent CPU per completion: **{figures['cpu'] * 1000:.1f} ms** without the profiler "
        f"(process CPU time, median), {figures['cpu_profiled'] * 1000:.1f} ms under cProfile; "
        f"wall {figures['wall'] * 1000:.0f} ms{'' if concurrent == 1 else ' for the batch'}; "
        f"{figures['other_threads_share']:.0%} of the CPU in other threads (not profiled). "
        f"{calls / completions:,.0f} Python and builtin calls per completion; the profiler "
        f"adds ~{overhead * 1e9:,.0f} ns to each, taken off below (est. ms).",
        "",
        "Where it goes (own time; a C builtin counted in its caller's part, system calls apart):",
        "",
        "| Part | Share | est. ms | Calls | ms under cProfile |",
        "|---|---:|---:|---:|---:|",
    ]
    for part, ms in sorted(estimated.items(), key=lambda kv: -kv[1]):
        seconds, count = parts[part]
        if ms / est_total < 0.005:
            continue
        out.append(
            f"| {part} | {ms / est_total:.0%} | {ms:.2f} | {count / completions:,.0f} | "
            f"{seconds * per:.2f} |"
        )
    layers: dict[str, float] = defaultdict(float)
    for part, ms in estimated.items():
        layers[layer_of(part)] += ms
    out += ["", "By layer (est. ms per completion):", ""]
    out += [
        f"- {layer}: {ms:.1f} ms ({ms / est_total:.0%})"
        for layer, ms in sorted(layers.items(), key=lambda kv: -kv[1])
    ]
    out += [
        "",
        f"Top {top} functions by own time (est. ms per completion; calls per completion):",
        "",
        "| Function | est. ms | Calls | ms under cProfile |",
        "|---|---:|---:|---:|",
    ]
    own = {func: estimate(entry[2], entry[1]) for func, entry in table.items()}
    for func, ms in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        _cc, count, tottime, _ct, _callers = table[func]
        out.append(
            f"| `{_label(func)}` | {ms:.2f} | {count / completions:,.0f} | {tottime * per:.2f} |"
        )
    ours = [
        (func, entry)
        for func, entry in table.items()
        if "/rlm_async/" in func[0] and not func[2].startswith("<")
    ]
    out += [
        "",
        f"rlm_async's own functions by cumulative time (callees included) under cProfile, top "
        f"{top}: the profiler's cost is not taken off, so call-heavy callees (httpx, anyio) weigh "
        "more than they do; a coroutine counts while it runs, not while it waits, and each "
        "resumption is a call:",
        "",
        "| Function | Share of the profiled time | Calls |",
        "|---|---:|---:|",
    ]
    ranked_ours = sorted(ours, key=lambda kv: -kv[1][3])[:top]
    for func, (_cc, count, _tt, cumtime, _callers) in ranked_ours:
        share = cumtime / total if total else 0.0
        out.append(f"| `{_label(func)}` | {share:.0%} | {count / completions:,.0f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="completions measured (each)")
    parser.add_argument("--lines", type=int, default=20_000, help="haystack lines")
    parser.add_argument("--concurrent", type=int, default=1, help="completions at once")
    parser.add_argument("--top", type=int, default=15, help="rows of the function tables")
    parser.add_argument("--save", help="write the raw profile here")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.lines, args.runs, args.concurrent))
    if args.save:
        figures["profile"].dump_stats(args.save)
    print(report(figures, args.lines, args.concurrent, args.top))


if __name__ == "__main__":
    main()
