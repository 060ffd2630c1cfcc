"""``rlm-async serve --workers N``: worker processes behind one socket, and how they stop.

The end-to-end tests start the real command (``python -m rlm_async.cli serve --demo``) and
watch its process tree through ``/proc``: the supervisor's descendants are its workers,
multiprocessing's resource tracker, and every REPL process (and ``bwrap``) of the runs.
"""

from __future__ import annotations

import glob
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from rlm_async.cli._serve import default_workers
from rlm_async.demo import make_haystack
from rlm_async.engine._options import RLMOptions
from rlm_async.providers._settings import Settings
from rlm_async.server._heap import SettleHeapAfterStartup
from rlm_async.server._uvicorn import server_config
from rlm_async.server._workers import CloseAfterResponse, ReplicaApp
from tests.helpers import alive
from tests.server.test_cli import parse

CHILD_FILE = "rlm_async/repl/child/_child.py"
TEXT, NUMBER = make_haystack(2_000, seed=5)
QUESTION = {"context": TEXT, "query": "What is the magic number?"}


# ---- the parts -----------------------------------------------------------------------------


def test_workers_default_to_the_cpus_this_process_may_use() -> None:
    assert default_workers() == len(os.sched_getaffinity(0))
    assert parse().workers == default_workers()
    assert parse("--workers", "1").workers == 1
    assert parse().drain_timeout == 10.0


@pytest.mark.parametrize(
    "argv", [("--workers", "0"), ("--drain-timeout", "0"), ("--drain-timeout", "nan")]
)
def test_bad_worker_counts_and_drain_timeouts_are_usage_errors(argv: tuple[str, str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_what_a_worker_is_given_survives_pickling() -> None:
    replica = ReplicaApp(
        model="openai-compatible:m",
        sub_model=None,
        options=RLMOptions(max_iterations=7),
        settings=Settings(openai_compatible_base_url="http://127.0.0.1:9/v1"),
        warm_repls=2,
        app_options={"api_key": "tok-1", "max_concurrent_runs": 3},
    )
    config = server_config(replica, factory=True, header_timeout=2.5, max_connections=7)
    copy = pickle.loads(pickle.dumps(config))
    assert copy.app == replica and copy.factory
    assert (copy.http.header_timeout, copy.http.max_connections) == (2.5, 7)
    app = copy.app()  # what uvicorn does in the worker (factory=True)
    assert isinstance(app, SettleHeapAfterStartup) and isinstance(app.app, CloseAfterResponse)
    service = app.app.app.state.rlm_service
    assert service.slots.limit == 3 and service.rlm is None  # the lifespan opens it
    rlm = replica.make_rlm()
    assert (rlm.model, rlm.max_iterations) == ("openai-compatible:m", 7)


def app_that_fails_to_start() -> ASGIApp:
    """A worker's app factory (module level: it pickles) whose lifespan start-up fails."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no model today"})

    return app


FAILING_START = """
import asyncio, signal, sys
from rlm_async.server._uvicorn import bind_socket
from rlm_async.server._workers import serve_workers
from tests.server.test_workers import app_that_fails_to_start
before = signal.getsignal(signal.SIGTERM)
sock = bind_socket("127.0.0.1", 0)
status = asyncio.run(serve_workers(app_that_fails_to_start, sock, workers=2, log_config=None))
assert signal.getsignal(signal.SIGTERM) is before, "the supervisor's handlers are still set"
sys.exit(status)
"""


def test_a_worker_that_fails_to_start_stops_them_all_with_status_3() -> None:
    # In a process of its own: the supervisor wants the main thread, and multiprocessing
    # leaves its resource-tracker process behind for the life of the process.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", FAILING_START], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr


# ---- the command ---------------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        for path in glob.glob(f"/proc/{stack.pop()}/task/*/children"):
            try:
                with open(path) as handle:
                    children = {int(p) for p in handle.read().split()}
            except OSError:
                continue
            stack.extend(children - found)
            found |= children
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def repls_under(pid: int) -> set[int]:
    return {p for p in descendants(pid) if CHILD_FILE in cmdline(p)}


def wait_for(condition: object, what: str, seconds: float = 20.0) -> None:
    """Poll ``condition()`` until true (bounded): nothing signals these states."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextmanager
def serve(*argv: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "rlm_async.cli", "serve", "--demo", "--port", "0",
         "--log-level", "warning", *argv],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert banner.startswith("rlm-async serve: http://127.0.0.1:"), banner
        yield process, banner.split()[2]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def health(url: str) -> dict[str, object] | None:
    """One health check on a connection of its own (so any worker may answer it)."""
    try:
        response = httpx.get(f"{url}/health", timeout=5)
    except httpx.TransportError:
        return None
    body: dict[str, object] = response.json()
    return body if response.status_code == 200 else None


def ready_workers(process: subprocess.Popen[str], url: str, count: int) -> set[int]:
    """The worker pids, once each has answered a health check (they start after the banner);
    checked to be the supervisor's spawned children."""
    pids: set[int] = set()

    def all_answered() -> bool:
        body = health(url)
        if body is not None:
            pids.add(int(str(body["pid"])))
        return len(pids) == count

    wait_for(all_answered, f"{count} workers to answer")
    spawned = {p for p in descendants(process.pid) if "spawn_main" in cmdline(p)}
    assert pids == spawned, [cmdline(p) for p in descendants(process.pid)]
    return pids


class Asker(threading.Thread):
    """Asks the demo question on fresh connections until a worker takes the run (a full
    worker answers 429 at once); keeps the final response."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.refused = 0
        self.response: httpx.Response | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            for _ in range(200):
                response = httpx.post(f"{self.url}/v1/rlm", json=QUESTION, timeout=60)
                if response.status_code != 429:
                    self.response = response
                    return
                self.refused += 1
        except httpx.TransportError as exc:
            self.error = exc


def test_two_workers_serve_runs_and_sigterm_lets_the_runs_in_flight_finish() -> None:
    with serve("--workers", "2", "--max-concurrent-runs", "1", "--warm-repls", "1") as (
        process,
        url,
    ):
        workers = ready_workers(process, url, 2)
        # One run per worker at most: two runs in flight at once are on two workers.
        askers = [Asker(url), Asker(url)]
        for asker in askers:
            asker.start()
        busy: dict[int, object] = {}

        def both_busy() -> bool:
            body = health(url)
            if body is not None:
                busy[int(str(body["pid"]))] = body["runs_in_flight"]
            return len(busy) == 2 and all(busy.values())

        wait_for(both_busy, "a run in flight in each worker")
        assert set(busy) == workers
        wait_for(lambda: all(repls_under(w) for w in workers), "the runs' REPL processes")
        tree = descendants(process.pid)

        process.send_signal(signal.SIGTERM)
        for asker in askers:
            asker.join(timeout=30)
        assert process.wait(timeout=30) == 0
        for asker in askers:
            assert asker.error is None and asker.response is not None
            assert asker.response.status_code == 200, asker.response.text
            assert asker.response.json()["answer"] == str(NUMBER)
            # Each request on a new connection: the next one goes to the least busy worker.
            assert asker.response.headers["connection"] == "close"
        # multiprocessing's resource tracker ends when it reads EOF: soon, not at once.
        wait_for(lambda: not [p for p in tree if alive(p)], "the process tree to be gone", 5)


def test_runs_still_going_at_the_drain_deadline_are_cancelled_and_their_repls_killed() -> None:
    with serve("--workers", "2", "--drain-timeout", "0.5") as (process, url):
        ready_workers(process, url, 2)
        asker = Asker(url)
        asker.start()
        wait_for(lambda: repls_under(process.pid), "the run's REPL process")
        tree = descendants(process.pid)

        process.send_signal(signal.SIGTERM)
        asker.join(timeout=30)
        assert process.wait(timeout=30) == 0
        # The run needed seconds more of model latency; the deadline cut it short.
        if asker.response is not None:
            assert asker.response.status_code == 500, asker.response.text
        else:
            assert isinstance(asker.error, httpx.RemoteProtocolError), asker.error
        wait_for(lambda: not [p for p in tree if alive(p)], "the process tree to be gone", 5)
