"""Proposed library fixes, applied by monkeypatching, to measure them before they land.

``python benchmarks/run.py --proposals`` sets ``RLM_BENCH_PROPOSALS=1``; each worker then
calls :func:`apply` before it imports anything else of rlm_async's. Nothing here is used by
the library; once a fix lands in ``src/``, its patch here becomes a no-op and can go.

1. ``LinearConnectionPool``: httpcore 1.0.9's ``AsyncConnectionPool`` re-scans every
   connection for every connection on each assignment pass (O(C^2), plus a socket poll per
   idle connection per pass; encode/httpcore#1035, fixed in the pydantic/httpx2 fork by #974
   and #1075). Under a 100-wide fan-out that is ~10 ms of CPU per request. This subclass
   does one linear pass and probes an idle socket only when it is about to be reused.
2. ``sniffio``: httpcore calls ``import sniffio`` on every lock/shield it creates; anyio 4.16
   no longer depends on sniffio, so each call is a failing import that scans ``sys.path``.
   The fix is a dependency on ``sniffio``; here a minimal stand-in module.
3. The HTTP pool size: ``RLM`` sizes each provider's pool to ``max_concurrency + 4``, but
   that pool is shared by every completion of the ``RLM``; 100 concurrent completions then
   queue behind ~20 connections. Proposed: size it for the process (e.g. 256), since
   connections are opened on demand only.
"""

from __future__ import annotations

import os
import sys
import threading
import types
from contextvars import ContextVar
from typing import Any

import anyio
import httpcore
import httpx

APPLIED: list[str] = []


class LinearConnectionPool(httpcore.AsyncConnectionPool):
    """``_assign_requests_to_connections`` in one pass over connections and requests."""

    def _assign_requests_to_connections(self) -> list[Any]:
        closing: list[Any] = []
        kept = [c for c in self._connections if not c.is_closed()]
        queued: list[Any] = []
        reserved: set[int] = set()
        for request in self._requests:
            if request.connection is None:
                queued.append(request)
            else:
                reserved.add(id(request.connection))
        # An idle connection handed to a request stays "idle" until the request starts on
        # it: it is neither free for another request nor closable (encode/httpcore#1110).
        free = [c for c in kept if c.is_idle() and id(c) not in reserved]
        while len(free) > self._max_keepalive_connections:  # what the original meant to do
            connection = free.pop(0)
            kept.remove(connection)
            closing.append(connection)
        for request in queued:
            origin = request.request.url.origin
            connection = None
            for candidate in list(free):
                if candidate.has_expired():  # probe an idle socket only when reusing it
                    free.remove(candidate)
                    kept.remove(candidate)
                    closing.append(candidate)
                elif candidate.can_handle_request(origin):
                    connection = candidate
                    free.remove(candidate)
                    break
            if connection is None:  # an established HTTP/2 connection with room
                connection = next(
                    (
                        c
                        for c in kept
                        if not c.is_idle() and c.is_available() and c.can_handle_request(origin)
                    ),
                    None,
                )
            if connection is None and len(kept) >= self._max_connections and free:
                old = free.pop(0)
                kept.remove(old)
                closing.append(old)
            if connection is None and len(kept) < self._max_connections:
                connection = self.create_connection(origin)
                kept.append(connection)
            if connection is None:
                break  # nothing more can be assigned: the rest stay queued
            request.assign_to_connection(connection)
        self._connections = kept
        return closing


class _ReleaseOnClose(httpx.AsyncByteStream):
    """A response body that gives its transport slot back when it is closed."""

    def __init__(self, stream: Any, release: Any) -> None:
        self._stream = stream
        self._release = release

    async def __aiter__(self) -> Any:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class QueueOutsidePool(httpx.AsyncBaseTransport):
    """At most ``limit`` requests reach httpcore; the others wait in a FIFO semaphore.

    httpcore's pool re-scans its whole request list on every change, so thousands of queued
    requests (100 completions x 16 sub-calls on one client) make every response cost
    O(queue). Waiting here instead keeps httpcore's queue empty.
    """

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._slots = anyio.Semaphore(limit, fast_acquire=True)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._slots.acquire()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        response.stream = _ReleaseOnClose(response.stream, self._slots.release)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def linear_pool_client(
    *,
    max_connections: int = 64,
    connect_timeout: float = 10.0,
    read_timeout: float = 600.0,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """``providers._http.build_client`` with the linear pool, requests queued outside it."""
    client = _ORIGINAL_BUILD_CLIENT(
        max_connections=max_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        **kwargs,
    )
    transport = client._transport
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool:
        pool.__class__ = LinearConnectionPool
        client._transport = QueueOutsidePool(transport, max_connections)
    return client


_ORIGINAL_BUILD_CLIENT: Any = None


def _sniffio_stand_in() -> types.ModuleType:
    """What sniffio 1.3 offers (anyio and httpcore use it when it imports), asyncio only."""
    module = types.ModuleType("sniffio")

    class ThreadLocal(threading.local):
        name: str | None = None

    class AsyncLibraryNotFoundError(RuntimeError):
        pass

    cvar: ContextVar[str | None] = ContextVar("current_async_library_cvar", default=None)
    local = ThreadLocal()

    def current_async_library() -> str:
        value = local.name or cvar.get()
        if value is not None:
            return value
        if "asyncio" in sys.modules:
            from asyncio import _get_running_loop

            if _get_running_loop() is not None:
                return "asyncio"
        raise AsyncLibraryNotFoundError("unknown async library, or not in async context")

    module.__dict__.update(
        current_async_library=current_async_library,
        current_async_library_cvar=cvar,
        thread_local=local,
        AsyncLibraryNotFoundError=AsyncLibraryNotFoundError,
    )
    return module


def apply() -> list[str]:
    """Apply every proposal that is not in the library yet; returns what was applied."""
    global _ORIGINAL_BUILD_CLIENT
    if APPLIED:
        return APPLIED
    try:
        import sniffio  # noqa: F401
    except ImportError:
        sys.modules["sniffio"] = _sniffio_stand_in()
        APPLIED.append("sniffio stand-in")
    from rlm_async.engine import _rlm as _engine
    from rlm_async.providers import _http

    _ORIGINAL_BUILD_CLIENT = _http.build_client
    _http.build_client = linear_pool_client
    APPLIED.append("linear httpcore pool, requests queued outside it")

    class ProcessSizedPool(_engine.ProviderRegistry):
        def __init__(self, *args: Any, max_connections: int = 64, **kwargs: Any) -> None:
            super().__init__(*args, max_connections=max(max_connections, 256), **kwargs)

    _engine.ProviderRegistry = ProcessSizedPool  # type: ignore[misc]
    APPLIED.append("HTTP pool of >= 256 connections per provider")
    return APPLIED


def apply_if_asked() -> list[str]:
    return apply() if os.environ.get("RLM_BENCH_PROPOSALS") == "1" else []
