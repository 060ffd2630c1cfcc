"""One incarnation of the REPL child process, seen from the parent.

Spawning, the framed protocol pipes, draining fds 1 and 2, waiting for exit and killing.
Everything here is bounded in time and memory: a child that floods its stdout, sends an
oversized line, stops reading its input, or leaves a ``setsid`` grandchild holding a pipe
cannot make the parent wait or grow without limit. ``_session.py`` builds cells, restarts
and sub-calls on top.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel

from rlm_async._exceptions import ReplProtocolError
from rlm_async.repl._protocol import (
    ChildMessage,
    InterruptMessage,
    decode_child_message,
    encode_message,
)
from rlm_async.repl._tree import kill_descendants, kill_session

__all__ = [
    "DEFAULT_WRITE_TIMEOUT",
    "ChildProcess",
    "ChildStoppedReading",
    "HeadTailBuffer",
    "spawn_child",
]

_READ_CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ on Linux; not exported by Python 3.11's fcntl
_PIPE_SIZE = 1 << 20
# Messages handed out from the read buffer between two yields to the event loop: a 1 MiB
# read of short forged lines is thousands of messages, which must not run as one stall.
_LINES_PER_YIELD = 64
DEFAULT_WRITE_TIMEOUT = 10.0
"""Seconds a message to the child may take to be written (``ReplOptions.write_timeout``)."""


class ChildStoppedReading(OSError):
    """A message could not be written to the child in time: it stopped reading its input.

    An ``OSError`` like a broken pipe, so every caller that treats "the child is gone" as
    a failed write (shutdown, context loading) treats a hung child the same way. The
    session turns it into a kill and a restart; it never leaves the package.
    """


class HeadTailBuffer:
    """Keeps the first and last ``limit // 2`` bytes written to it; counts what it drops."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0

    def write(self, data: bytes) -> None:
        room = self._half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            over = len(self._tail) - self._half
            if over > 0:
                del self._tail[:over]
                self.dropped += over

    def take(self) -> str:
        """Return what was kept (decoded, with a truncation marker) and empty the buffer."""
        head = self._head.decode("utf-8", "replace")
        tail = self._tail.decode("utf-8", "replace")
        text = (
            f"{head}\n[... {self.dropped} bytes truncated ...]\n{tail}"
            if self.dropped
            else head + tail
        )
        self._head.clear()
        self._tail.clear()
        self.dropped = 0
        return text


class ChildProcess:
    """A running child: its pipes, its output buffers, and how to end it."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        to_child: int,
        from_child: int,
        output_fds: tuple[int, int],
        *,
        max_message_bytes: int,
        output_limit: int,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._to_child = to_child
        self._from_child = from_child
        self._max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._scanned = 0
        self._lines_since_yield = 0
        # One writer at a time: the event loop allows one waiter per fd (a second raises
        # BusyResourceError), and two interleaved messages would corrupt the stream.
        self._write_lock = anyio.Lock()
        self._torn = False  # a write was cut mid-message (cancelled): the line is garbage
        self._stalled: str | None = None  # why the child was found not reading, once it was
        self.output = HeadTailBuffer(output_limit)
        self._pidfd: int | None = None
        self._pidfd_waited = False
        with contextlib.suppress(AttributeError, OSError):
            self._pidfd = os.pidfd_open(self.pid)
        self._output_fds = output_fds
        self._fds: list[int] = [to_child, from_child, *output_fds]
        for fd in self._fds:
            os.set_blocking(fd, False)
        self.closed = False

    # ---- protocol -----------------------------------------------------------------

    async def send(self, data: bytes, *, within: float = DEFAULT_WRITE_TIMEOUT) -> None:
        """Write one framed message; the child must take some of it every ``within`` seconds.

        The child reads its input in a thread of its own, whatever its cell does, so a
        pipe that accepts no byte for that long means model code stopped that thread. The
        deadline is on progress, not on the whole message nor on the wait for the writers
        ahead of this one: 64 megabyte answers queued behind each other to a child that
        reads steadily are not a hung child. Once one write failed for lack of progress,
        every later one fails at once: the child is hung, and no queue waits on it again.

        Raises:
            ChildStoppedReading: no byte of the message was taken for ``within`` seconds
                (or an earlier message found the child hung).
            BrokenPipeError: the child is gone.
        """
        async with self._write_lock:
            if self._stalled is not None:
                raise ChildStoppedReading(self._stalled)
            if self._torn:
                # End the cut line first: the child drops it as unparsable, and this
                # message arrives whole instead of glued to its remains.
                data = b"\n" + data
                self._torn = False
            await self._write_all(data, within)

    async def _write_all(self, data: bytes, within: float) -> None:
        view = memoryview(data)
        try:
            while view:
                try:
                    written = os.write(self._to_child, view)
                except BlockingIOError:
                    with anyio.move_on_after(within) as waited:
                        await anyio.wait_writable(self._to_child)
                    if waited.cancelled_caught:
                        self._stalled = (
                            f"the REPL stopped reading its input: it took no byte of a "
                            f"{len(data):,}-byte message for {within:g} s"
                        )
                        raise ChildStoppedReading(self._stalled) from None
                    continue
                view = view[written:]
        finally:
            if view and len(view) < len(data):
                self._torn = True

    async def receive(self) -> ChildMessage | None:
        """The next validated message, or ``None`` at end of file (the child is gone).

        Raises:
            ReplProtocolError: an oversized line or one that is not our protocol.
        """
        while True:
            newline = self._buffer.find(b"\n", self._scanned)
            if newline >= 0:
                self._lines_since_yield += 1
                if self._lines_since_yield >= _LINES_PER_YIELD:
                    # Before the line leaves the buffer: a cancellation here loses nothing.
                    self._lines_since_yield = 0
                    await anyio.lowlevel.checkpoint()
                with memoryview(self._buffer) as view:
                    line = bytes(view[:newline])  # one copy, not a slice and a copy
                del self._buffer[: newline + 1]
                self._scanned = 0
                return decode_child_message(line)
            self._scanned = len(self._buffer)
            if len(self._buffer) > self._max_message_bytes:
                raise ReplProtocolError(
                    f"the REPL sent a line longer than {self._max_message_bytes:,} bytes "
                    "(ReplOptions.max_message_bytes): send sub-calls in smaller batches, "
                    "or raise that limit for batches or sub-contexts this large"
                )
            try:
                chunk = os.read(self._from_child, _READ_CHUNK)
            except BlockingIOError:
                self._lines_since_yield = 0
                await anyio.wait_readable(self._from_child)
                continue
            if not chunk:
                return None
            self._buffer += chunk

    async def drain_output(self) -> None:
        """Copy fds 1 and 2 of the child into the capped buffer until cancelled or EOF."""
        async with anyio.create_task_group() as tg:
            for fd in self._output_fds:
                if fd in self._fds:
                    tg.start_soon(self._drain, fd)

    async def _drain(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            except OSError:
                return
            if not chunk:
                return
            self.output.write(chunk)

    def drain_now(self) -> None:
        """Read whatever fds 1 and 2 hold right now, without waiting."""
        for fd in self._output_fds:
            if fd not in self._fds:
                continue
            with contextlib.suppress(OSError):
                while chunk := os.read(fd, _READ_CHUNK):
                    self.output.write(chunk)

    # ---- life and death -------------------------------------------------------------

    async def interrupt(self, cell: int, *, within: float = DEFAULT_WRITE_TIMEOUT) -> None:
        """Ask the child to SIGINT itself: KeyboardInterrupt in the cell, state kept.

        Over the protocol rather than ``kill(pid)``: under bwrap our child's pid is the
        wrapper's, and inside a pid namespace the child's own pid differs from ours.

        Raises:
            ChildStoppedReading: the request could not be written within ``within``
                seconds: the child is hung, and only killing it ends the cell.
        """
        try:
            await self.send(encode_message(InterruptMessage(cell=cell)), within=within)
        except ChildStoppedReading:
            raise
        except OSError:
            pass  # it is gone: the pump sees the end of its pipe

    def exit_description(self) -> str:
        code = self._exit_status()
        if code is None:
            return "it stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"it was killed by {name}"
        return f"it exited with status {code}"

    def _exit_status(self) -> int | None:
        """The exit status as ``Popen.returncode`` gives it, ``None`` while running.

        Without reaping the child: until ``close_fds`` reaps it, its pid cannot be reused,
        so the processes whose session id is that pid are still the child's session (see
        ``_end_session``), never a newcomer's that got the pid.
        """
        if self.popen.returncode is not None:
            return self.popen.returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.popen.poll()  # reaped already (by subprocess): it knows the status
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    async def wait_exit(self, within: float) -> bool:
        """Wait at most ``within`` seconds for the process to exit; True if it did."""
        if self._exit_status() is not None:
            return True
        with anyio.move_on_after(within):
            if self._pidfd is not None and not self._pidfd_waited:
                # One waiter per fd is all the event loop allows (a second one raises
                # BusyResourceError): a close racing a crash restart polls instead.
                self._pidfd_waited = True
                try:
                    await anyio.wait_readable(self._pidfd)
                finally:
                    self._pidfd_waited = False
            else:
                # No pidfd (not Linux), or another task waits on it: poll the process table.
                while self._exit_status() is None:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
        return self._exit_status() is not None

    async def terminate(self, *, grace: float, shutdown_message: bytes | None = None) -> None:
        """Ask the child to stop, then kill it and all it started; always bounded in time.

        Shielded from cancellation: a cancelled run still cleans up its processes. The
        walks of ``/proc`` (up to a second each with a process that keeps forking) run in
        a worker thread, not on the event loop; the shield lets each finish its kill.
        """
        if self.closed:
            return
        with anyio.CancelScope(shield=True):
            try:
                # Before the child may exit: once it is gone, what it started would be
                # reparented out of its tree (found again by session only, see below).
                if self.popen.returncode is None:  # not reaped: the pid is still ours
                    await anyio.to_thread.run_sync(kill_descendants, self.pid)
                if shutdown_message is not None and self._exit_status() is None:
                    with contextlib.suppress(OSError), anyio.move_on_after(grace):
                        await self.send(shutdown_message)
                    # Closing our end of its input is the other way the child learns to exit.
                    self._close_fd(self._to_child)
                    await self.wait_exit(grace)
                await anyio.to_thread.run_sync(self._kill)
                await self.wait_exit(2.0)
                await anyio.to_thread.run_sync(self._end_session)
            except BaseException:
                self.kill_now()  # a native cancel got through the shield: no more waiting
                raise
            finally:
                self.close_fds()

    def kill_now(self) -> None:
        """Kill the child, all it started, and close every pipe, without awaiting.

        For paths that cannot await (a callback, a clean-up already being cancelled, the
        interpreter's exit); the walks of ``/proc`` are bounded (a second each). The exit
        is reaped by ``close_fds``' poll or by ``subprocess`` later.
        """
        self._kill()
        self._end_session()
        self.close_fds()

    def _kill(self) -> None:
        # Descendants first, with the child stopped and still their (sub)reaper: killed
        # first, it would hand them to init, out of its tree.
        if self.popen.returncode is None:  # not reaped: the pid cannot have been reused
            kill_descendants(self.pid, keep_stopped=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # the child leads its own session
        if self.popen.returncode is None:
            # Not Popen.kill(): it reaps a child that has exited, and the pid must stay
            # the child's until its session is ended (_end_session).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _end_session(self) -> None:
        """Kill every process left in the child's session: what it started and outlived it.

        A child that dies on its own (``os._exit`` in a cell) hands its descendants to init,
        out of its tree and, if they made process groups of their own, out of ``killpg``'s
        reach. They stay in its session: model code cannot leave it (seccomp refuses
        ``setsid``), and the session id is the child's pid, which the kernel does not reuse
        while the child is unreaped (ours to reap: ``close_fds``) or any process has it as
        session id. Under bwrap the child's pid namespace ends them as well.
        """
        if self.popen.returncode is None:  # not reaped: the session is still the child's
            kill_session(self.pid)

    def _close_fd(self, fd: int) -> None:
        if fd in self._fds:
            self._fds.remove(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def close_fds(self) -> None:
        """Close every pipe; never waits on the child (a setsid grandchild may hold them)."""
        self.closed = True
        for fd in list(self._fds):
            self._close_fd(fd)
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None
        with contextlib.suppress(ChildProcessError, OSError):
            self.popen.poll()  # reap if it has exited, so no zombie is left


_spawner: concurrent.futures.ThreadPoolExecutor | None = None


async def spawn_child_async(argv: Sequence[str], **options: Any) -> ChildProcess:
    """``spawn_child(argv, **options)`` off the event loop, in one long-lived spawner thread.

    ``Popen`` of a large parent holds the loop for milliseconds (12-14 ms each under a
    burst of 100 starts, measured). Not anyio's worker threads: an idle one exits, and the
    child's parent-death signal fires when the *thread* that forked it exits. Shielded:
    once the process exists it must reach the caller, who owns killing it.
    """
    global _spawner
    if _spawner is None:
        _spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rlm-spawner")
    call = functools.partial(spawn_child, argv, **options)
    future = asyncio.get_running_loop().run_in_executor(_spawner, call)
    with anyio.CancelScope(shield=True):
        try:
            child = await asyncio.shield(future)
        except asyncio.CancelledError:
            # A native cancel goes through the anyio shield: the process may still be
            # starting in the thread. Whoever gets it now is the callback: kill it there.
            future.add_done_callback(_kill_orphan)
            raise
    return child


def _kill_orphan(future: asyncio.Future[ChildProcess]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    future.result().kill_now()


def spawn_child(
    argv: Sequence[str],
    *,
    cwd: str,
    env: dict[str, str],
    max_message_bytes: int,
    output_limit: int,
    popen_extra: dict[str, Any] | None = None,
) -> ChildProcess:
    """Start the child with two dedicated protocol pipes (fds passed by number in argv).

    ``argv`` may contain the placeholders ``{in_fd}`` and ``{out_fd}``.
    """
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    # fds 1 and 2 of the child: our own pipes rather than Popen's file objects, so every
    # fd is closed by us, exactly once, without waiting on the child.
    stdout_read, stdout_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    for fd in (in_write, out_read):
        with contextlib.suppress(OSError, ImportError):
            import fcntl

            fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)  # fewer wake-ups for large messages
    final_argv = [a.format(in_fd=in_read, out_fd=out_write) for a in argv]
    try:
        popen = subprocess.Popen(
            final_argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout_write,
            stderr=stderr_write,
            pass_fds=(in_read, out_write),
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
            **(popen_extra or {}),
        )
    except BaseException:
        for fd in (in_write, out_read, stdout_read, stderr_read):
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    finally:
        for fd in (in_read, out_write, stdout_write, stderr_write):
            with contextlib.suppress(OSError):
                os.close(fd)
    return ChildProcess(
        popen,
        in_write,
        out_read,
        (stdout_read, stderr_read),
        max_message_bytes=max_message_bytes,
        output_limit=output_limit,
    )
