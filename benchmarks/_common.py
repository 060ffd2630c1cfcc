"""Shared pieces of the benchmarks: result rows, timing, memory probes, the mock server.

Every benchmark module exposes ``async def run(quick: bool) -> Result``. ``run.py`` runs each
one in its own worker process, so one benchmark's memory high-water mark, event loop and
leftover tasks never colour the next one's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


# ---- results ---------------------------------------------------------------------------


@dataclass
class Row:
    """One measured figure, with the figure it should be read against.

    Attributes:
        benchmark: Section of the table (``"fan-out"``, ``"repl"``, ...).
        case: What was measured, in a few words.
        value: The measured number.
        unit: ``"s"``, ``"ms"``, ``"MiB"``, ``"/s"``, ``"x"``...
        reference: The ideal or the peer's figure, same unit (``None`` when there is none).
        reference_label: What the reference is (``"ideal"``, ``"rlms"``, ``"file I/O"``).
        target: The target, in words (``"<= 1.10x ideal"``), or ``""``.
        ok: Whether the target is met (``None`` when there is no target).
        higher_is_better: For the ratio's direction in the table.
        extra: Anything else worth keeping in the JSON (raw samples, settings).
        key: A stable name for the row (``"many.cpu_per_completion.warm"``), by which
            ``run.py``'s issue-14 summary finds it; ``""`` for rows nothing looks up.
    """

    benchmark: str
    case: str
    value: float
    unit: str
    reference: float | None = None
    reference_label: str = ""
    target: str = ""
    ok: bool | None = None
    higher_is_better: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    key: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0 or self.value == 0:
            return None
        return self.value / self.reference


@dataclass
class Result:
    """What one benchmark module returns."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [asdict(r) | {"ratio": r.ratio} for r in self.rows],
            "notes": self.notes,
        }


def emit_worker_result(result: Result) -> None:
    """The worker's last stdout line: its result as JSON (``run.py`` reads it)."""
    sys.stdout.write("\n@@RESULT@@ " + json.dumps(result.to_json()) + "\n")
    sys.stdout.flush()


# ---- statistics ----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# ---- memory ----------------------------------------------------------------------------


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """``Vm*`` fields of ``/proc/<pid>/status`` in bytes (empty if the process is gone)."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(("VmHWM", "VmRSS", "VmPeak", "VmSize")):
                    key, value = line.split(":", 1)
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return fields


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class PeakRss:
    """This process's peak RSS growth over a block: ``VmHWM`` after - ``VmRSS`` before."""

    def __init__(self) -> None:
        self.before = 0
        self.peak = 0
        self.exact = False

    def __enter__(self) -> PeakRss:
        self.exact = reset_peak_rss()
        self.before = proc_status().get("VmRSS", 0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = proc_status().get("VmHWM", 0)

    @property
    def growth(self) -> int:
        return max(self.peak - self.before, 0)


def _children_of(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(name)] = int(fields[1])
    found: set[int] = set()
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _is_repl_child(pid: int, cache: dict[int, bool]) -> bool:
    """Whether ``pid`` is a REPL child interpreter (not the bwrap or setpriv around it)."""
    known = cache.get(pid)
    if known is None:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            argv = []
        known = (
            bool(argv)
            and b"python" in os.path.basename(argv[0])
            and any(a.endswith(b"_child.py") for a in argv[1:6])  # after -I -c <boot>
        )
        # Only a yes is kept: between fork and exec a new REPL child still shows its
        # parent's command line (ours, or bwrap's), and a cached no would hide it for good.
        if known:
            cache[pid] = known
    return known


def repl_child_pid(pid: int | None) -> int | None:
    """The REPL interpreter's host pid: ``pid`` itself, or its descendant under bwrap."""
    if pid is None:
        return None
    cache: dict[int, bool] = {}
    for candidate in (pid, *sorted(_children_of(pid))):
        if _is_repl_child(candidate, cache):
            return candidate
    return None


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _hwm(pid: int) -> int:
    return proc_status(pid).get("VmHWM", 0)


class ChildRssSampler:
    """Samples the summed RSS of this process's REPL children (``_child.py``) in a thread.

    ``peak_sum`` is the largest total seen; ``peak_one`` the largest single child;
    ``max_count`` the most REPL children alive at once. With ``hwm=True`` it also reads each
    child's ``VmHWM`` (its own high-water mark, so a peak between two samples is not
    missed): ``peak_hwm`` is the largest. A thread rather than a task, so a busy event loop
    does not skip samples. ``cpu_seconds`` is the CPU the sampling itself took (it runs in
    this process: subtract it from this process's CPU time).
    """

    def __init__(self, interval: float = 0.02, *, hwm: bool = False) -> None:
        self.interval = interval
        self.hwm = hwm
        self.peak_sum = 0
        self.peak_one = 0
        self.peak_hwm = 0
        self.max_count = 0
        self.samples = 0
        self.cpu_seconds = 0.0
        self._me = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss-sampler")
        self._cache: dict[int, bool] = {}

    def __enter__(self) -> ChildRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """One pass over the REPL children (from the sampling thread, or from an event)."""
        started = time.thread_time()
        pids = [p for p in _children_of(self._me) if _is_repl_child(p, self._cache)]
        sizes = [_rss(p) for p in pids]
        if self.hwm:
            self.peak_hwm = max([self.peak_hwm, *(_hwm(p) for p in pids)])
        self.samples += 1
        self.peak_sum = max(self.peak_sum, sum(sizes))
        self.peak_one = max(self.peak_one, max(sizes, default=0))
        self.max_count = max(self.max_count, len(pids))
        self.cpu_seconds += time.thread_time() - started

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


class CpuTime:
    """This process's CPU time (user + system, every thread) over a block, in seconds."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> CpuTime:
        self._started = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.process_time() - self._started


# ---- the mock LLM server, in its own process or in this one ----------------------------------


class ServerProcess:
    """A loopback LLM server in a separate process (its own interpreter and core).

    Args:
        responder: A name from ``_responders.RESPONDERS`` (``mock_server.py``: the library's
            ``MockLLMServer``), or ``"lean"`` for ``fast_server.py`` (one canned reply, a few
            µs a request, so the server is never what is measured).
        root_latency: Seconds per root turn (requests with a system prompt).
        sub_latency: Seconds per sub-call (requests without one); ``"lean"``: every request.
    """

    def __init__(self, responder: str, *, root_latency: float = 0.0, sub_latency: float = 0.0):
        if responder == "lean":
            self.argv = [
                sys.executable,
                str(HERE / "fast_server.py"),
                "--latency",
                str(sub_latency),
            ]
        else:
            self.argv = [
                sys.executable, str(HERE / "mock_server.py"), "--responder", responder,
                "--root-latency", str(root_latency), "--sub-latency", str(sub_latency),
            ]  # fmt: skip
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://127.0.0.1:"):
            self.__exit__()
            raise RuntimeError(f"the mock server did not start: {line!r}")
        self.base_url = line
        return self

    def stats(self) -> dict[str, Any]:
        """Requests served and the most in flight at once, asked over the stats pipe."""
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def latency_by_role(root: float, sub: float) -> Any:
    """The mock server's latency function: root turns carry a system prompt, sub-calls not."""

    def latency(request: Any) -> float:
        return root if request.system is not None else sub

    return latency


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


def settings_for(base_url: str) -> Any:
    from rlm_async import Settings

    return Settings(openai_compatible_base_url=base_url)


def fmt_bytes(n: float) -> str:
    return f"{n / MIB:,.1f} MiB"


# ---- the practical limit of a pipe round trip -------------------------------------------

_ECHO_CHILD = """
import json, os
inp, out = os.fdopen(0, 'rb', buffering=0), 1
buf = b''
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    buf += chunk
    while b'\\n' in buf:
        line, buf = buf.split(b'\\n', 1)
        message = json.loads(line)
        os.write(out, json.dumps({'type': 'result', 'cell': message['cell']}).encode() + b'\\n')
"""


def bare_pipe_round_trip(n: int = 2_000) -> tuple[float, float]:
    """Median and p99 seconds of one JSON line to a ``python -I`` child and one back.

    The floor under any REPL protocol on this machine: two processes, two pipes, a JSON
    encode and decode on each side, blocking reads (no event loop).
    """
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", _ECHO_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    to_child, from_child = proc.stdin.fileno(), proc.stdout.fileno()
    trips: list[float] = []
    try:
        for cell in range(n + 100):
            started = time.perf_counter()
            os.write(to_child, json.dumps({"type": "exec", "cell": cell}).encode() + b"\n")
            line = b""
            while not line.endswith(b"\n"):
                line += os.read(from_child, 65536)
            json.loads(line)
            if cell >= 100:  # after a warm-up
                trips.append(time.perf_counter() - started)
    finally:
        proc.stdin.close()
        proc.wait(timeout=5)
        proc.stdout.close()
    return median(trips), percentile(trips, 99)


# ---- the control loop of a server process -----------------------------------------------


async def serve_until_stdin_closes(base_url: str, counters: Callable[[], dict[str, int]]) -> None:
    """The protocol of ``ServerProcess``: print ``base_url``, answer ``stats`` lines on stdin
    with one JSON line (``counters()`` plus CPU seconds), return when stdin closes."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def stats() -> None:
        line = {**counters(), "cpu_seconds": round(time.process_time(), 3)}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def read_stdin() -> None:
        # A thread: asyncio's stdin pipe reader needs a pipe, and this also works on a tty.
        for line in sys.stdin:
            if line.strip() == "stats":
                loop.call_soon_threadsafe(stats)
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=read_stdin, daemon=True).start()
    sys.stdout.write(base_url + "\n")
    sys.stdout.flush()
    await done.wait()
