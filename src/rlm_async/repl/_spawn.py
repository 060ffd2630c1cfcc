"""Starting a REPL child process: its four pipes, ``Popen``, and the thread that forks it.

Every fd is ours and closed by us exactly once, even when ``Popen`` fails or the caller is
cancelled mid-spawn: a process that exists always reaches someone who kills it.
``_start.py`` builds the command and waits for the child's hello on top of this.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import subprocess
from collections.abc import Sequence
from typing import Any

import anyio

from rlm_async.repl._process import ChildProcess

__all__ = ["spawn_child", "spawn_child_async"]

_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ on Linux; not exported by Python 3.11's fcntl
_PIPE_SIZE = 1 << 20

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
