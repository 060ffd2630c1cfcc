"""A batch on this machine's cores: worker processes, each an event loop with many rows.

Each worker is a fresh interpreter (``spawn``: no inherited event loop, threads or HTTP
clients) running ``batching._worker.process_main``. The parent talks to each over a pipe,
with one thread per worker blocked on its end so the parent's event loop never is. A row
goes to the worker with the fewest rows in flight; a context file is read by the worker
that runs the row, so only its path crosses the pipe.

A worker that dies (killed, out of memory) hands its rows back as lost, for the batch loop
to dispatch again, and a new worker takes its place; one that dies before it is ready is
not replaced (it would only die again).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import threading
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from rlm_async._exceptions import ConfigurationError
from rlm_async.batching._backend import Outcome
from rlm_async.batching._rows import Job
from rlm_async.batching._worker import WorkerSpec, process_main

__all__ = ["DEFAULT_ROWS_PER_WORKER", "LocalBackend", "slots_per_worker"]

# Rows each worker runs at once unless the batch's ``concurrency`` says otherwise.
DEFAULT_ROWS_PER_WORKER = 8

# Seconds a worker may take to finish its rows' clean-up after "stop" before it is killed.
_STOP_GRACE = 10.0


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    jobs: dict[int, Job] = field(default_factory=dict)
    alive: bool = True
    ready: bool = False


class LocalBackend:
    """Rows run by ``processes`` worker processes, ``spec.slots`` rows at once in each."""

    def __init__(self, spec: WorkerSpec, processes: int) -> None:
        self._spec = spec
        self._processes = processes
        self._workers: list[_Worker] = []
        self._inbox: asyncio.Queue[tuple[_Worker, tuple[Any, ...]]] = asyncio.Queue()
        self._ready: deque[Outcome] = deque()
        self._closing = False
        self.replaced = 0  # workers started in place of dead ones

    @property
    def description(self) -> str:
        plural = "es" if self._processes > 1 else ""
        return f"{self._processes} local process{plural} x {self._spec.slots} rows"

    async def start(self) -> None:
        """Start the workers and wait until each has opened its ``RLM``.

        Raises:
            ConfigurationError: a worker could not open its ``RLM`` (its error, named).
        """
        for _ in range(self._processes):
            self._spawn()
        while not all(w.ready for w in self._workers):
            worker, message = await self._inbox.get()
            if message[0] == "ready":
                worker.ready = True
            elif message[0] == "failed":
                worker.alive = False
                raise ConfigurationError(f"a batch worker process could not start: {message[1]}")
            elif message[0] == "gone":
                worker.alive = False
                await asyncio.to_thread(worker.process.join, 5.0)
                raise ConfigurationError(
                    "a batch worker process exited while starting (exit code "
                    f"{worker.process.exitcode}; its traceback is above). Workers are started "
                    "with spawn, which imports the main module again: a script that calls "
                    "rlm_async.batch must do so under 'if __name__ == \"__main__\":'"
                )

    def _spawn(self) -> _Worker:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=process_main, args=(theirs, self._spec), name="rlm-batch", daemon=True
        )
        process.start()
        theirs.close()  # else our copy keeps the pipe open after the worker dies
        worker = _Worker(process, ours)
        self._workers.append(worker)
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._receive, args=(worker, loop), name="rlm-batch-receive", daemon=True
        ).start()
        return worker

    def _receive(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                message = ("gone",)
            try:
                loop.call_soon_threadsafe(self._inbox.put_nowait, (worker, message))
            except RuntimeError:  # the event loop closed first
                return
            if message[0] == "gone":
                return

    def has_room(self) -> bool:
        return any(w.ready and len(w.jobs) < self._spec.slots for w in self._workers)

    def alive(self) -> bool:
        return any(w.alive for w in self._workers)

    async def submit(self, job: Job) -> None:
        worker = min(
            (w for w in self._workers if w.ready and len(w.jobs) < self._spec.slots),
            key=lambda w: len(w.jobs),
        )
        worker.jobs[job.index] = job
        # If it died, its reader thread reports it, and this job with it as lost.
        with contextlib.suppress(OSError):
            worker.conn.send(("job", job))

    async def wait_for_room(self) -> None:
        """Wait until a worker can take a row (a replacement is starting), or none is left."""
        while not self.has_room() and self.alive() and not self._ready:
            self._handle(*await self._inbox.get())

    async def next_outcome(self) -> Outcome:
        """The next row to finish (or be lost with its worker), in order of completion."""
        while not self._ready:
            self._handle(*await self._inbox.get())
        return self._ready.popleft()

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "row":
            self._ready.append(Outcome(worker.jobs.pop(message[1]), message[2]))
        elif kind == "ready":
            worker.ready = True
        elif kind in ("gone", "failed") and worker.alive:
            worker.alive = False
            was_ready, worker.ready = worker.ready, False
            worker.process.join(1.0)
            why = f"its worker process died (exit code {worker.process.exitcode})"
            self._ready.extend(Outcome(job, None, why) for job in worker.jobs.values())
            worker.jobs.clear()
            if was_ready and not self._closing:
                self._workers.remove(worker)
                worker.conn.close()
                self._spawn()
                self.replaced += 1

    async def aclose(self) -> None:
        """Stop the workers and wait for them to exit (a worker still busy after a grace
        period, its rows in flight with it, is killed)."""
        self._closing = True
        for worker in self._workers:
            if worker.alive:
                with contextlib.suppress(OSError):
                    worker.conn.send(("stop",))
        deadline = asyncio.get_running_loop().time() + _STOP_GRACE
        for worker in self._workers:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.to_thread(worker.process.join, left)
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join)
            worker.conn.close()


def slots_per_worker(concurrency: int, workers: int) -> int:
    """Rows each of ``workers`` runs at once so that all together run ``concurrency``."""
    return max(1, math.ceil(concurrency / workers))
