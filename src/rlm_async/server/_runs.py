"""Running a request's RLM so that the client going away cancels it.

A run is cancelled, never abandoned: cancellation reaches it through a cancel scope (the
way a cancelled ``completion()`` is cancelled), so its sub-calls stop and every REPL
process of its tree is killed before the caller goes on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.requests import Request

from rlm_async import events as ev
from rlm_async._engine import RLM

__all__ = ["ClientGone", "run_events", "until_disconnect"]

_T = TypeVar("_T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready (the run was cancelled)."""


def run_events(
    tg: TaskGroup, rlm: RLM, context: Any, query: str
) -> MemoryObjectReceiveStream[ev.Event | Exception]:
    """Start a run in ``tg``; its events, then its error if it fails, arrive on the stream.

    The run is a child of the caller's task group, so a disconnect cancels it with a
    cancel scope, the way any ``completion()`` is cancelled; the application's own
    ``on_event`` listener still sees every event.
    """
    sender, receiver = anyio.create_memory_object_stream[ev.Event | Exception](math.inf)

    def emit(event: ev.Event) -> None:
        # The reader goes away with its client; the run may still emit (its cancellation
        # arrives at its next await), and those events have nobody to go to.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            sender.send_nowait(event)

    async def run() -> None:
        with sender:
            try:
                await rlm.completion(context, query, on_event=emit)
            except Exception as exc:  # BudgetExceeded too: the stream ends with `error`
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    sender.send_nowait(exc)

    tg.start_soon(run)
    return receiver


async def until_disconnect(request: Request, run: Callable[[], Awaitable[_T]]) -> _T:
    """``await run()``, cancelled if the client disconnects first.

    Raises:
        ClientGone: the client disconnected; the run was cancelled (its REPLs killed).
    """
    result: list[_T] = []
    error: Exception | None = None
    gone = False
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch)
        try:
            result.append(await run())
        except Exception as exc:
            # Kept out of the task group, which would wrap it in an ExceptionGroup.
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
    if gone or not result:
        raise ClientGone
    return result[0]
