"""One incarnation of the REPL child process, seen from the parent.

Its pipes, draining fds 1 and 2, waiting for exit and killing. Everything here is bounded
in time and memory: a child that floods its stdout, sends an oversized line, stops reading
its input, or leaves a ``setsid`` grandchild holding a pipe cannot make the parent wait or
grow without limit. ``_pipes.py`` reads and writes the framed messages, ``_spawn.py``
starts the process; ``_session.py`` builds cells, restarts and sub-calls on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

import anyio

from rlm_async.repl._pipes import (
    DEFAULT_WRITE_TIMEOUT,
    READ_CHUNK,
    ChildStoppedReading,
    MessageReader,
    MessageWriter,
)
from rlm_async.repl._protocol import ChildMessage, InterruptMessage, encode_message
from rlm_async.repl._tree import kill_descendants, kill_session

__all__ = ["ChildProcess", "HeadTailBuffer"]


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
        self._writer = MessageWriter(to_child)
        self._reader = MessageReader(from_child, max_message_bytes=max_message_bytes)
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
        self._draining: dict[int, asyncio.AbstractEventLoop] = {}  # fd -> loop reading it
        # Set by the starter when the child is bwrap's with a pid namespace and a session
        # of its own inside (--unshare-pid --new-session): nothing the child starts can be
        # in bwrap's session, and the namespace ends them all (see _end_session).
        self.own_pid_namespace = False

    # ---- protocol -----------------------------------------------------------------

    async def send(self, data: bytes, *, within: float = DEFAULT_WRITE_TIMEOUT) -> None:
        """Write one framed message; the child must take some of it every ``within`` seconds.

        See ``MessageWriter.send``: the deadline is on progress, and a child found hung
        once fails every later write at once.

        Raises:
            ChildStoppedReading: no byte of the message was taken for ``within`` seconds
                (or an earlier message found the child hung).
            BrokenPipeError: the child is gone.
        """
        await self._writer.send(data, within=within)

    async def receive(self) -> ChildMessage | None:
        """The next validated message, or ``None`` at end of file (the child is gone).

        Raises:
            ReplProtocolError: an oversized line or one that is not our protocol.
        """
        return await self._reader.receive()

    @contextlib.contextmanager
    def draining(self) -> Iterator[None]:
        """Copy fds 1 and 2 of the child into the capped buffer while the block runs.

        A reader callback on the event loop per fd, not a task: a task group of two tasks
        waiting on the fds cost ~0.14 ms of CPU per cell to start and cancel, this ~0.02.
        Each callback reads one chunk, so a child flooding its stdout shares the loop.
        """
        loop = asyncio.get_running_loop()
        for fd in self._output_fds:
            if fd in self._fds and fd not in self._draining:
                loop.add_reader(fd, self._read_output, fd)
                self._draining[fd] = loop
        try:
            yield
        finally:
            for fd in list(self._draining):
                self._stop_draining(fd)

    def _read_output(self, fd: int) -> None:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.output.write(chunk)
        else:  # end of file (or a broken fd): nothing more will come
            self._stop_draining(fd)

    def _stop_draining(self, fd: int) -> None:
        loop = self._draining.pop(fd, None)
        if loop is not None:
            loop.remove_reader(fd)

    def drain_now(self) -> None:
        """Read whatever fds 1 and 2 hold right now, without waiting."""
        for fd in self._output_fds:
            if fd not in self._fds:
                continue
            with contextlib.suppress(OSError):
                while chunk := os.read(fd, READ_CHUNK):
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
                if not self.own_pid_namespace:
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
        session id. Under bwrap (``own_pid_namespace``) there is nothing to scan ``/proc``
        for (1.5 ms a REPL): the child's pid is bwrap's, whose session holds bwrap alone,
        and what model code started is in the pid namespace, which its init's death ended.
        """
        # Not reaped: the session is still the child's.
        if self.popen.returncode is None and not self.own_pid_namespace:
            kill_session(self.pid)

    def _close_fd(self, fd: int) -> None:
        if fd in self._fds:
            # Off the loop's selector first: its number may be reused as soon as it is closed.
            self._stop_draining(fd)
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
