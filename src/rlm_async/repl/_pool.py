"""A warm pool of fresh, pre-started REPL children.

Web backends should not pay a process start (tens of milliseconds, more with the sandbox)
on every request. The pool keeps up to ``size`` blank children ready; a session takes one
(a ``deque.popleft``: microseconds) and loads its context into it. A child is **never**
returned to the pool: state must not leak between users, so every completion gets a
process no other code has run in. A background task refills the pool after each take.
"""

from __future__ import annotations

import asyncio
from collections import deque

import anyio

from rlm_async._exceptions import ConfigurationError, ReplError
from rlm_async._logging import get_logger
from rlm_async._tasks import wait_out
from rlm_async.repl._options import ReplOptions
from rlm_async.repl._start import StartedChild, make_work_dir, remove_work_dir, start_child

__all__ = ["ReplPool"]

_log = get_logger("rlm_async.repl")


class ReplPool:
    """Pre-started blank REPL children, each used once.

    Use it as an async context manager (``RLM(warm_repls=N)`` does this for you); it
    starts filling on entry and kills every child still waiting on exit.

    Args:
        options: How the children run (``ReplOptions``), sandbox included.
        size: How many children to keep ready.
    """

    def __init__(self, options: ReplOptions, size: int) -> None:
        # Checked at run time too: callers without a type checker pass dicts.
        if not isinstance(options, ReplOptions):
            raise ConfigurationError(
                f"ReplPool takes ReplOptions, got {type(options).__name__}; "
                "build them with ReplOptions(...)"
            )
        if size < 1:
            raise ConfigurationError(f"a warm pool needs size >= 1, got {size}")
        self.options = options
        self.size = size
        self._ready: deque[StartedChild] = deque()
        self._wanted = anyio.Event()
        self._task: asyncio.Future[None] | None = None
        # Stopped through this scope, never Task.cancel(): a native cancel would go through
        # the shields that make sure a child being started is killed, not dropped.
        self._scope = anyio.CancelScope()
        self._closed = False
        self.taken = 0
        self.missed = 0
        self.started = 0

    @property
    def ready(self) -> int:
        """Children waiting to be taken."""
        return len(self._ready)

    async def __aenter__(self) -> ReplPool:
        # The refill loop is a task the pool owns and always reaps in aclose(), not a task
        # group entered here: a task group's cancel scope would have to be exited by the
        # same task, in order, which an RLM closed from elsewhere cannot promise.
        self._task = asyncio.ensure_future(self._run_refill())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def wait_ready(self) -> None:
        """Wait until the pool is full (for start-up and benchmarks)."""
        # Polling: the refill task owns the one event, and this is for start-up only.
        while len(self._ready) < self.size and not self._closed:  # noqa: ASYNC110
            await anyio.sleep(0.005)

    def take(self) -> StartedChild | None:
        """A warm child, or ``None`` when none is ready (the caller starts one itself)."""
        if self._closed:
            return None
        while self._ready:
            started = self._ready.popleft()
            self._wanted.set()
            if started.child.popen.poll() is None:
                self.taken += 1
                return started
            # It died while waiting (e.g. killed by the OS): drop it, try the next.
            started.child.close_fds()
        self.missed += 1
        self._wanted.set()
        return None

    async def _run_refill(self) -> None:
        with self._scope:
            await self._refill()

    async def _refill(self) -> None:
        failures = 0
        while not self._closed:
            while len(self._ready) < self.size and not self._closed:
                work_dir = make_work_dir()
                try:
                    started = await start_child(self.options, work_dir)
                except BaseException as exc:
                    # Cancelled (the pool is closing) or failed: never leave the dir behind.
                    with anyio.CancelScope(shield=True):
                        await remove_work_dir(work_dir)
                    if not isinstance(exc, ReplError):
                        raise
                    failures += 1
                    _log.warning("rlm_async.repl.pool_start_failed", error=str(exc))
                    # Back off instead of spinning when children cannot start at all.
                    await anyio.sleep(min(0.1 * 2**failures, 5.0))
                    continue
                failures = 0
                self.started += 1
                if self._closed:
                    await _discard(started)
                    return
                self._ready.append(started)
            self._wanted = anyio.Event()
            await self._wanted.wait()

    async def aclose(self) -> None:
        """Stop refilling and kill every child still waiting; bounded in time."""
        if self._closed:
            return
        self._closed = True
        self._wanted.set()
        with anyio.CancelScope(shield=True):
            if self._task is not None:
                self._scope.cancel()
                await wait_out(self._task)
                if not self._task.cancelled() and self._task.exception() is not None:
                    _log.warning("rlm_async.repl.pool_failed", error=str(self._task.exception()))
                self._task = None
            while self._ready:
                await _discard(self._ready.popleft())


async def _discard(started: StartedChild) -> None:
    await started.child.terminate(grace=0)
    await remove_work_dir(started.work_dir)
