"""respx's routes, answered over real aiohttp connections.

respx intercepts httpcore (its default mocker patches httpcore's connection pool), so a
client on the aiohttp transport passes it by. ``respx.mock(using="httpx")`` would catch the
request, but above the transport, and the aiohttp path would never run. Here instead, while
a respx router is active, each request of an aiohttp client goes through the real aiohttp
transport (connection, HTTP parser, streaming, error mapping) to a server on 127.0.0.1,
which answers it from the active routes: the same routes, the same recorded calls.

Only the destination changes: the request keeps its headers (``Host`` included), and the
server rebuilds the URL from the ``x-respx-url`` header. An exception a route raises (a
``side_effect`` of ``httpx.ConnectError``, say, or a stream that fails mid-body) cannot
cross a socket; it is raised on the client side, where respx would have raised it.
Real network failures on aiohttp are tested against real sockets in ``test_transport.py``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
from aiohttp import web
from respx.mocks import HTTPCoreMocker

from rlm_async.providers import _transport_aiohttp

_URL_HEADER = "x-respx-url"
_CALL_HEADER = "x-respx-call"
#: Headers the server's own framing replaces.
_FRAMING = frozenset({"transfer-encoding", "connection", "keep-alive"})


class _Failures:
    """Exceptions raised by routes, by call number, until the client side raises them."""

    def __init__(self) -> None:
        self.calls = itertools.count(1)
        self.raised: dict[int, BaseException] = {}


class BridgedTransport(_transport_aiohttp._Transport):
    """The aiohttp transport, sending to the respx loopback while a respx router is active."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._failures = _Failures()
        self._server: asyncio.Server | None = None
        self._web: web.Server | None = None
        self._url = ""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not HTTPCoreMocker.routers:
            return await super().handle_async_request(request)
        if self._server is None:
            await self._start()
        headers = [*request.headers.multi_items(), (_URL_HEADER, str(request.url))]
        bridged = httpx.Request(
            request.method,
            httpx.URL(self._url).copy_with(raw_path=request.url.raw_path),
            headers=headers,
            content=request.content,
            extensions=request.extensions,
        )
        response = await super().handle_async_request(bridged)
        call = int(response.headers[_CALL_HEADER])
        if response.status_code == 599 and call in self._failures.raised:
            await response.aclose()
            raise self._failures.raised.pop(call)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream, self._failures, call)
        return response

    async def aclose(self) -> None:
        await super().aclose()
        if self._server is not None and self._web is not None:
            self._server.close()
            await self._web.shutdown(timeout=5)
            await self._server.wait_closed()
            self._server = None

    async def _start(self) -> None:
        self._web = web.Server(self._answer, access_log=None)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._web, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self._url = f"http://127.0.0.1:{port}"

    async def _answer(self, incoming: web.BaseRequest) -> web.StreamResponse:
        """Answer one bridged request from the active respx routes."""
        call = next(self._failures.calls)
        request = httpx.Request(
            incoming.method,
            incoming.headers[_URL_HEADER],
            headers=[(k, v) for k, v in incoming.headers.items() if k.lower() != _URL_HEADER],
            content=await incoming.read(),
        )
        try:
            response = await HTTPCoreMocker.async_handler(request)
        except Exception as exc:
            self._failures.raised[call] = exc
            return web.Response(status=599, headers={_CALL_HEADER: str(call)})
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _FRAMING]
        outgoing = web.StreamResponse(status=response.status_code, headers=headers)
        outgoing.headers[_CALL_HEADER] = str(call)
        await outgoing.prepare(incoming)
        try:
            async for chunk in _raw(response):
                await outgoing.write(chunk)
        except ConnectionError:
            return outgoing  # the client went away: stop serving
        except Exception as exc:
            self._failures.raised[call] = exc
            assert incoming.transport is not None
            incoming.transport.abort()  # the client reads a body cut short, then this
            return outgoing
        finally:
            await response.aclose()
        await outgoing.write_eof()
        return outgoing


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as respx serves it to httpcore: its stream, which a route may serve again."""
    if isinstance(response.stream, httpx.AsyncByteStream):
        async for chunk in response.stream:
            yield chunk
    else:
        for chunk in response.stream:
            yield chunk


class _Body(httpx.AsyncByteStream):
    """A bridged reply body: a route's failure mid-body is raised as the route raised it."""

    def __init__(self, stream: httpx.AsyncByteStream, failures: _Failures, call: int) -> None:
        self._stream = stream
        self._failures = failures
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.TransportError:
            failure = self._failures.raised.pop(self._call, None)
            if failure is not None:
                raise failure from None
            raise

    async def aclose(self) -> None:
        await self._stream.aclose()
