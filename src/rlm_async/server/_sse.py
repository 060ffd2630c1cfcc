"""Server-sent events: framing, and a response that stops its producer when the client goes.

Starlette's ``StreamingResponse`` only watches for a disconnect on servers that speak ASGI
spec < 2.4, and an async generator cannot hold a task group across its ``yield``. So
:class:`SSEResponse` takes a *producer*, an ``async`` function that writes events through
the ``send`` it is given, and runs it in a task group next to two helpers: one listens for
``http.disconnect`` and cancels everything (the run with it), one writes a comment line
every ``heartbeat`` seconds so proxies keep the connection open while a run thinks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["SSEResponse", "SSESend", "sse_comment", "sse_data", "sse_event"]

SSESend = Callable[[bytes], Awaitable[None]]
"""Writes one framed SSE message (see :func:`sse_data`, :func:`sse_event`)."""

Producer = Callable[[SSESend], Awaitable[None]]


def sse_data(data: Any) -> bytes:
    """``data: <json>`` (or a preformatted string such as ``[DONE]``) and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def sse_event(event: str, data: str) -> bytes:
    """``event: <name>`` and ``data: <json text>``; ``data`` must be one line of JSON."""
    return f"event: {event}\ndata: {data}\n\n".encode()


def sse_comment(text: str) -> bytes:
    """A comment line: clients ignore it; it keeps idle connections open."""
    return f": {text}\n\n".encode()


class SSEResponse(Response):
    """A ``text/event-stream`` response written by a producer function.

    Args:
        producer: ``async def produce(send)``: writes the events; returning ends the stream.
        heartbeat: Seconds between keep-alive comments (``None``: none).
        on_close: Called once when the response is over, however it ended (e.g. to
            release the run's slot).
        headers: Extra response headers.
    """

    def __init__(
        self,
        producer: Producer,
        *,
        heartbeat: float | None = 15.0,
        on_close: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        # Like Starlette's StreamingResponse, no super().__init__(): there is no body.
        self.producer = producer
        self.heartbeat = heartbeat
        self.on_close = on_close
        self.status_code = 200
        self.media_type = "text/event-stream"
        self.background = None
        self.init_headers(
            # x-accel-buffering: nginx must not buffer the stream
            {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        )
        self.disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()

    async def _respond(self, receive: Receive, send: Send) -> None:
        lock = anyio.Lock()
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )

        async def write(chunk: bytes) -> None:
            async with lock:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

        error: Exception | None = None
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        self.disconnected = True
                        tg.cancel_scope.cancel()
                        return

            async def beat(interval: float) -> None:
                while True:
                    await anyio.sleep(interval)
                    try:
                        await write(sse_comment("ping"))
                    except OSError:
                        self.disconnected = True
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch_disconnect)
            if self.heartbeat:
                tg.start_soon(beat, self.heartbeat)
            try:
                await self.producer(write)
            except OSError:
                # The server reported the connection gone while writing (ASGI spec 2.4).
                self.disconnected = True
            except Exception as exc:
                # Kept out of the task group, which would wrap it in an ExceptionGroup.
                error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        if not self.disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
