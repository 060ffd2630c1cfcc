"""Connection limits uvicorn does not have: a header-read timeout and a connection cap.

uvicorn closes a connection that sits idle *after* a response (``timeout_keep_alive``),
but nothing bounds a connection before its first request's headers are complete: a client
that connects and sends nothing, or sends its headers a byte every few seconds (slow
loris), holds the connection and its file descriptor for good, and enough of them exhaust
the process's fd limit so that real requests time out. ``limit_concurrency`` does not help:
it answers 503 to *requests*, and these clients never finish one.

:func:`guarded_protocol` wraps uvicorn's HTTP protocol (h11, or httptools when installed:
``AutoHTTPProtocol``, what ``http="auto"`` picks) in a protocol that

- turns a connection away at once (a ``503`` with ``Connection: close``) when the server
  already holds ``max_connections`` of them;
- closes a connection whose request headers are not complete ``header_timeout`` seconds
  after it was opened, or after the first byte that followed the previous response (with
  a ``408`` when some of the request had arrived, silently when nothing had).

A request body that comes slowly is the app's to time out (``create_app(body_timeout=)``),
where it can answer with a proper error. The wrapper reads the wrapped protocol's
``cycle`` (the request being served; ``cycle.response_complete``), which both uvicorn
implementations keep; ``tests/server/test_hardening.py`` runs it against the installed one.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from rlm_async._logging import get_logger

__all__ = ["default_max_connections", "guarded_protocol"]

_log = get_logger("rlm_async.server")


def _plain_response(status: str, text: str, *extra: str) -> bytes:
    """A complete ``Connection: close`` response, written before any request was parsed."""
    body = text.encode()
    head = [f"HTTP/1.1 {status}", "content-type: text/plain; charset=utf-8", *extra]
    head += ["connection: close", f"content-length: {len(body)}", "", ""]
    return "\r\n".join(head).encode() + body


_BUSY = _plain_response(
    "503 Service Unavailable", "the server has too many open connections", "retry-after: 1"
)
_TIMED_OUT = _plain_response("408 Request Timeout", "the request headers came too slowly")
_WARN_EVERY = 10.0  # seconds between two warnings about refused connections


def default_max_connections() -> int:
    """Half the process's open-file limit, at most 1,024: the other half is left for REPL
    pipes, work-dir files and the connections to model providers."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(1, min(1024, soft // 2))


def guarded_protocol(*, header_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a header-read timeout and a connection cap.

    Pass the class as ``uvicorn.Config(http=...)``.

    Args:
        header_timeout: Seconds a request's headers may take to arrive in full.
        max_connections: Connections held at once; more are refused with 503.
    """

    class GuardedHTTPProtocol(_Guarded):
        pass

    GuardedHTTPProtocol.header_timeout = header_timeout
    GuardedHTTPProtocol.max_connections = max_connections
    return GuardedHTTPProtocol


class _Guarded(asyncio.Protocol):
    header_timeout: float
    max_connections: int
    _last_warning = 0.0  # per class, so per server

    def __init__(self, *, config: Any, server_state: Any, app_state: Any, _loop: Any = None):
        self._inner: Any = AutoHTTPProtocol(  # type: ignore[call-arg]
            config=config, server_state=server_state, app_state=app_state, _loop=_loop
        )
        # uvicorn's set of open connections (the inner protocols; the server closes them
        # at shutdown), which is what the cap counts.
        self._connections: set[Any] = server_state.connections
        self._loop = _loop or asyncio.get_event_loop()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None  # loop time the awaited headers began
        self._got_bytes = False  # some of the awaited request has arrived
        self._seen_cycle: Any = None

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self._connections) >= self.max_connections:
            self._refuse(transport)
            return
        self._transport = transport
        self._await_headers()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        if self._waiting_since is None:
            cycle = self._inner.cycle
            if cycle is not None and cycle.response_complete:
                # The previous request is answered: these bytes begin the next one (or are
                # the rest of a body the app never read; either way they end in headers).
                self._await_headers()
        self._got_bytes = True
        self._inner.data_received(data)
        cycle = self._inner.cycle
        if self._waiting_since is not None and cycle is not self._seen_cycle:
            self._seen_cycle = cycle  # a new request's headers are in
            self._stop_waiting()

    def eof_received(self) -> bool | None:
        if self._transport is None:
            return None
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        if self._transport is not None:
            self._transport = None
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._inner.resume_writing()

    # ---- the guard -----------------------------------------------------------------------

    def _refuse(self, transport: asyncio.Transport) -> None:
        transport.write(_BUSY)
        transport.close()
        now = time.monotonic()
        cls = type(self)
        if now - cls._last_warning >= _WARN_EVERY:
            cls._last_warning = now
            _log.warning(
                "rlm_async.server.connections_refused",
                max_connections=self.max_connections,
                hint="idle clients are dropped after header_timeout; raise max_connections "
                "(and the open-file limit) if real clients are being refused",
            )

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._waiting_since = self._loop.time()
        self._got_bytes = False
        self._timer = self._loop.call_later(self.header_timeout, self._headers_timed_out)

    def _stop_waiting(self) -> None:
        self._waiting_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_timed_out(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing() or self._waiting_since is None:
            return
        if self._got_bytes:
            transport.write(_TIMED_OUT)
        # connection_lost follows, and tells the wrapped protocol.
        transport.close()
