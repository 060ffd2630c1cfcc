"""Running a request's RLM so that the client going away cancels it.

A run is cancelled, never abandoned: cancellation reaches it through a cancel scope (the
way a cancelled ``completion()`` is cancelled), so its sub-calls stop and every REPL
process of its tree is killed before the caller goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from starlette.requests import Request

__all__ = ["ClientGone", "until_disconnect"]

_T = TypeVar("_T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready (the run was cancelled)."""


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
