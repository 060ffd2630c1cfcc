"""The engine's trajectory (``RLM(trajectory_dir=...)``), written off the event loop.

A :class:`~rlm_async.trajectory.TrajectoryWriter` writes and flushes each event in the
caller's thread; the engine's caller is the event loop, which must not wait on a disk
(a slow or hung one, or a 1 MB answer scrubbed of keys). :class:`BackgroundTrajectory`
hands each event to a thread of its own that feeds the writer, and never blocks:

- The events waiting for the thread are bounded by size (64 MiB by default, counted from
  their text fields). An event past the bound is not queued, and neither is any event
  after it: the file ends there, a prefix of the run as if the process had died, and the
  reason is reported. (Blocking would stall the loop; dropping single events would leave
  a trajectory whose tree does not add up.) One event is always taken when nothing waits.
- A write that fails (the file cannot be created, a full disk) stops the writing too.
- :meth:`BackgroundTrajectory.aclose` waits for the thread in a worker thread, shielded
  from cancellation and bounded in time, and returns what went wrong instead of raising:
  a trajectory never replaces a completion's result or its real exception.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import anyio

from rlm_async import events as ev
from rlm_async._logging import get_logger
from rlm_async.trajectory._files import FullText, TrajectoryWriter

__all__ = ["BackgroundTrajectory"]

_log = get_logger("rlm_async.trajectory")
DEFAULT_MAX_PENDING_BYTES = 64 << 20
DEFAULT_CLOSE_TIMEOUT = 60.0  # seconds a completion waits for its trajectory at the end
_OVERHEAD = 200  # bytes of an event beyond its strings (field names, numbers)


def _size(value: Any) -> int:
    """About how many bytes an event's values take as JSON: its strings, mostly."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(v) + 8 for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_size(v) + 2 for v in value)
    return 8


def _what(item: ev.Event | FullText) -> str:
    if isinstance(item, FullText):
        return f"the full text of {item.event} {item.ident}"
    return f"event {item.seq} ({item.type})"


class BackgroundTrajectory:
    """An event listener that feeds a :class:`TrajectoryWriter` from a thread of its own.

    Args:
        writer: The writer; only the thread touches its file.
        max_pending_bytes: How much event text may wait for the thread before the
            trajectory is cut short (see the module docstring).
        close_timeout: Seconds :meth:`aclose` waits for the thread to finish.
    """

    def __init__(
        self,
        writer: TrajectoryWriter,
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        self.writer = writer
        self.max_pending_bytes = max_pending_bytes
        self.close_timeout = close_timeout
        self._queue: queue.SimpleQueue[tuple[ev.Event | FullText, int] | None] = queue.SimpleQueue()
        writer.full_texts = True  # its header says the file holds the side record
        self._lock = threading.Lock()
        self._pending = 0  # bytes queued and not yet written
        self._thread: threading.Thread | None = None
        self._stopped = False  # no more events are taken
        self._problem: str | None = None  # why the file is not the whole run
        self._write_failed = False  # the thread skips what is still queued
        self._closed = False

    @property
    def path(self) -> str | None:
        """The file's path, once the first event named it."""
        return None if self.writer.path is None else str(self.writer.path)

    def __call__(self, event: ev.Event) -> None:
        """Queue one event for the thread; never blocks, never raises for the disk."""
        if isinstance(event, ev.ModelDelta) and not self.writer.include_deltas:
            return
        self._put(event, _size(event.__dict__) + _OVERHEAD)

    def full_text(self, event: str, ident: str, text: str) -> None:
        """Queue the side record of one call: ``text`` in full, where the ``event``
        (``subcall_finished`` or ``tool_call_finished``) of call ``ident`` keeps a preview.

        Queued before that event, so a file that holds the event holds its full text. The
        string is the run's own (no copy); the thread writes it as one line.
        """
        self._put(FullText(event, ident, text), len(text) + _OVERHEAD)

    def _put(self, event: ev.Event | FullText, size: int) -> None:
        with self._lock:
            if self._stopped or self._closed:
                return
            if self._pending and self._pending + size > self.max_pending_bytes:
                self._stop(
                    f"the disk fell behind by more than {self.max_pending_bytes} bytes of "
                    f"events; the file ends before {_what(event)}"
                )
                return
            self._pending += size
            if self._thread is None:
                self.writer._name(event if not isinstance(event, FullText) else None)
                self._thread = threading.Thread(
                    target=self._work, name="rlm-trajectory-writer", daemon=True
                )
                self._thread.start()
        self._queue.put((event, size))

    def _stop(self, problem: str) -> None:
        # Called with the lock held; the first reason is the one reported.
        self._stopped = True
        if self._problem is None:
            self._problem = problem

    def _work(self) -> None:
        """The thread: write each queued event until ``None``, then close the file."""
        while (item := self._queue.get()) is not None:
            event, size = item
            try:
                if self._write_failed:
                    pass
                elif isinstance(event, FullText):
                    self.writer.write_full_text(event)
                else:
                    self.writer(event)
            except Exception as exc:  # the reason is reported by close(), not raised here
                self._write_failed = True
                with self._lock:
                    self._stop(f"writing the trajectory failed: {type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._pending -= size
        try:
            if not self._write_failed:
                self.writer.close()
        except Exception as exc:
            with self._lock:
                self._stop(f"closing the trajectory failed: {type(exc).__name__}: {exc}")
        finally:
            if self._write_failed and self.writer._file is not None:
                self.writer._file.close()

    def close(self) -> str | None:
        """Write what is queued and close the file, blocking: for a worker thread.

        Returns:
            Why the file is not the whole run (a write failed, or the disk fell behind),
            or ``None`` when it is.
        """
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            try:
                self.writer.close()  # no event came: in_directory() leaves no file
            except Exception as exc:
                return f"closing the trajectory failed: {type(exc).__name__}: {exc}"
            return None
        self._queue.put(None)
        thread.join()
        return self._problem

    async def aclose(self) -> str | None:
        """:meth:`close` in a worker thread, shielded and bounded by ``close_timeout``.

        The event loop goes on meanwhile; a cancelled completion still finishes its file
        (its last event says why it ended). Never raises for the trajectory: the problem
        is logged and returned, for ``result.metadata["trajectory_error"]``.
        """
        problem: str | None = (
            f"the trajectory writer did not finish within {self.close_timeout:g} s "
            "(a hung disk?); the file may be incomplete"
        )
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout):
            problem = await anyio.to_thread.run_sync(self.close, abandon_on_cancel=True)
        if problem is not None:
            _log.warning("rlm_async.trajectory_incomplete", path=self.path, problem=problem)
        return problem
