"""Running clean-up that a caller's cancellation cannot cut short.

anyio's shielded cancel scopes protect clean-up (killing REPL processes, closing pipes,
removing work dirs) from anyio cancellation, but a native ``Task.cancel()`` — which is what
``asyncio.timeout()``, ``asyncio.wait_for()`` and a plain ``task.cancel()`` use — goes
through them. So the engine's work runs in a task of its own that is only ever cancelled
through an anyio scope; the caller's task waits for it, and when the caller is cancelled
(either way) it cancels that scope and waits for the clean-up before re-raising.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

__all__ = ["run_cancel_safely", "wait_out"]

T = TypeVar("T")


async def wait_out(task: asyncio.Future[Any]) -> None:
    """Wait until ``task`` is done, through any number of cancellations of our own task.

    The task's outcome is left on it (read it with ``task.result()`` if needed).
    """
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue  # our task was cancelled (natively): keep waiting
            except Exception:  # the task failed: it is done, and the loop ends
                continue
    if not task.cancelled():
        task.exception()  # its outcome is the caller's to read; never "never retrieved"


async def run_cancel_safely(function: Callable[[], Awaitable[T]]) -> T:
    """``await function()`` in a task of its own; a cancellation of ours reaches it through
    an anyio scope (so its shielded clean-up runs whole) and is re-raised once it is done."""
    scope = anyio.CancelScope()

    async def inner() -> T | None:
        with scope:
            return await function()
        return None  # cancelled through the scope: the caller re-raises its own cancel

    task = asyncio.ensure_future(inner())
    try:
        result = await asyncio.shield(task)
    except BaseException:
        # Our cancellation (or a KeyboardInterrupt): stop the work, wait for its clean-up.
        # Or the task's own error, and then the task is done and this is quick.
        scope.cancel()
        await wait_out(task)
        raise
    return result  # type: ignore[return-value]  # None only when cancelled, which raised
