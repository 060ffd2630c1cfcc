"""The transports under httpx (aiohttp, the default, and httpcore) against real sockets.

Each test talks to a small server of its own on 127.0.0.1 that misbehaves on purpose: one
that never answers, one that hangs up, a stream that stops halfway. Both transports must
turn each failure into the same error of ours, and leave no connection behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from rlm_async._exceptions import (
    ConfigurationError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from rlm_async.providers import OpenAICompatibleProvider, RetryPolicy, TextDelta
from rlm_async.providers._settings import Settings
from rlm_async.providers._transport import TRANSPORTS, build_client, tls_context
from rlm_async.providers._transport_aiohttp import AiohttpClient
from tests.providers.support import request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

ONCE = RetryPolicy(max_attempts=1)
OK_BODY = json.dumps(
    {
        "model": "m",
        "choices": [{"index": 0, "message": {"content": "fine"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
).encode()

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)


class Server:
    """A loopback HTTP/1.1 server run by ``handler``, counting the connections it holds."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.open = 0
        self.closed = asyncio.Event()  # set each time a connection ends
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            await self._handler(reader, writer)
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()
            self.closed.set()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """Read one request (its head and body are kept in ``heads`` and ``bodies``)."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        self.bodies.append(await reader.readexactly(length))
        return head


@contextlib.asynccontextmanager
async def serving(make: Callable[[Server], Handler]) -> AsyncIterator[tuple[Server, str]]:
    """A running :class:`Server` and its base URL."""
    server = Server(lambda r, w: make(server)(r, w))
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/v1"
    finally:
        listener.close()
        await listener.wait_closed()


def provider(base_url: str, transport: Any, **settings: Any) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        settings=Settings(openai_compatible_base_url=base_url, transport=transport, **settings),
        retry=ONCE,
        max_connections=1,
    )


async def until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def reply_ok(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await server.read_request(reader)
    w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
    w.write(b"content-length: %d\r\n\r\n%s" % (len(OK_BODY), OK_BODY))
    await w.drain()
    await until_eof(reader)


# ---- failures, mapped alike --------------------------------------------------------------


async def test_a_server_that_never_answers_is_a_read_timeout(transport: str) -> None:
    def make(server: Server) -> Handler:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await until_eof(reader)

        return silent

    async with serving(make) as (_, url), provider(url, transport, read_timeout=0.2) as p:
        with pytest.raises(ProviderTimeoutError, match="read_timeout") as info:
            await p.complete(request("m"))
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


async def test_an_upload_the_server_stops_reading_times_out(transport: str) -> None:
    """aiohttp has no write timeout of its own; the transport bounds the upload anyway."""

    def make(server: Server) -> Handler:
        async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.closed.wait()  # set when the client's connection ends (below)

        return never_reads

    timeout = httpx.Timeout(connect=0.2, read=0.2, write=0.3, pool=0.2)
    async with serving(make) as (server, url), build_client(transport=transport) as client:
        with pytest.raises(httpx.WriteTimeout):
            await client.post(url, content=b"x" * (32 << 20), timeout=timeout)
        server.closed.set()


async def test_a_refused_connection_is_unavailable_not_a_timeout(transport: str) -> None:
    with socket.socket() as bound:  # bound, never listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/v1"
        async with provider(url, transport) as p:
            with pytest.raises(ProviderUnavailableError, match="connection failed") as info:
                await p.complete(request("m"))
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_a_server_hanging_up_without_a_reply_is_unavailable(transport: str) -> None:
    def make(server: Server) -> Handler:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)

        return hang_up

    async with serving(make) as (_, url), provider(url, transport) as p:
        with pytest.raises(ProviderUnavailableError) as info:
            await p.complete(request("m"))
    cause = info.value.__cause__
    assert isinstance(cause, httpx.TransportError)
    assert not isinstance(cause, httpx.TimeoutException)


async def test_a_body_cut_short_is_unavailable(transport: str) -> None:
    def make(server: Server) -> Handler:
        async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
            writer.write(b"content-length: 100\r\n\r\n" + OK_BODY[:10])
            await writer.drain()

        return cut

    async with serving(make) as (_, url), provider(url, transport) as p:
        with pytest.raises(ProviderUnavailableError):
            await p.complete(request("m"))


async def test_a_reply_that_is_not_http_is_unavailable(transport: str) -> None:
    def make(server: Server) -> Handler:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            await writer.drain()
            await until_eof(reader)

        return garbage

    async with serving(make) as (_, url), provider(url, transport) as p:
        with pytest.raises(ProviderUnavailableError) as info:
            await p.complete(request("m"))
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)


async def test_a_prompt_of_many_megabytes_arrives_whole(transport: str) -> None:
    """Sent in pieces on aiohttp (no warning), with its Content-Length (not chunked)."""

    def make(server: Server) -> Handler:
        return lambda reader, writer: reply_ok(server, reader, writer)

    prompt = "0123456789abcdef" * (1 << 18)  # 4 MiB
    async with serving(make) as (server, url), provider(url, transport) as p:
        completion = await p.complete(request("m", prompt=prompt))
    assert completion.text == "fine"
    assert json.loads(server.bodies[0])["messages"][0]["content"] == prompt
    assert b"transfer-encoding" not in server.heads[0].lower()


# ---- streams -----------------------------------------------------------------------------


async def test_a_stream_cancelled_mid_body_closes_its_connection(transport: str) -> None:
    """The first delta arrives, the rest never does; cancelling the reader must close the
    connection (not hand it back to the pool with a body half read), and the pool's only
    slot must be free for the next request."""
    first_delta = asyncio.Event()

    def make(server: Server) -> Handler:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if len(server.heads) > 0:  # the second connection: an ordinary reply
                await reply_ok(server, reader, writer)
                return
            await server.read_request(reader)
            event = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
            writer.write(b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await until_eof(reader)  # the stream never ends; only the client can end it

        return serve

    async with serving(make) as (server, url), provider(url, transport) as p:

        async def read() -> None:
            async for item in p.stream(request("m")):
                if isinstance(item, TextDelta):
                    first_delta.set()

        reader = asyncio.create_task(read())
        await asyncio.wait_for(first_delta.wait(), 10)
        assert server.open == 1
        server.closed.clear()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await asyncio.wait_for(server.closed.wait(), 10)
        assert server.open == 0
        completion = await asyncio.wait_for(p.complete(request("m")), 10)
    assert completion.text == "fine"


# ---- TLS, proxies, HTTP/2 ----------------------------------------------------------------


async def test_every_client_shares_one_tls_context(transport: str) -> None:
    settings = Settings(openai_compatible_base_url="http://x.test/v1", transport=transport)
    contexts = []
    for _ in range(2):
        async with OpenAICompatibleProvider(settings=settings, max_connections=40) as p:
            for client in p._clients.clients:
                pool = client._transport  # type: ignore[attr-defined]
                if isinstance(client, AiohttpClient):
                    contexts.append(pool.ssl_context)
                else:
                    contexts.append(pool._pool._ssl_context)
    assert len(contexts) == (2 if transport == "aiohttp" else 6)  # aiohttp: one pool each
    assert all(context is tls_context() for context in contexts)


async def test_proxies_come_from_the_environment(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)

    def make(server: Server) -> Handler:
        return lambda reader, writer: reply_ok(server, reader, writer)

    async with serving(make) as (proxy, proxy_url):
        monkeypatch.setenv("HTTP_PROXY", proxy_url.removesuffix("/v1"))
        async with provider("http://upstream.test/v1", transport) as p:
            completion = await p.complete(request("m"))
    assert completion.text == "fine"
    # A proxy is sent the whole URL in the request line.
    assert proxy.heads[0].startswith(b"POST http://upstream.test/v1/chat/completions HTTP/1.1")


def test_http2_is_served_by_httpcore(transport: str) -> None:
    pytest.importorskip("h2")  # the dev extra installs it
    if transport == "aiohttp":
        with pytest.raises(ConfigurationError, match="aiohttp does not speak HTTP/2"):
            Settings(transport="aiohttp", http2=True)
        return
    settings = Settings(openai_compatible_base_url="http://x.test/v1", http2=True)
    p = OpenAICompatibleProvider(settings=settings)
    assert not isinstance(p._client, AiohttpClient)
    assert p._client._transport._pool._http2  # type: ignore[attr-defined]


def test_http2_without_h2_says_what_to_install(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "h2", None)  # import h2 now fails
    with pytest.raises(ConfigurationError, match=r"rlm-async\[http2\]"):
        Settings(http2=True, transport="httpcore" if transport == "httpcore" else None)


def test_the_transport_comes_from_the_environment(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RLM_ASYNC_TRANSPORT", transport)
    assert Settings.from_env().transport == transport
    monkeypatch.setenv("RLM_ASYNC_TRANSPORT", "curl")
    with pytest.raises(ConfigurationError, match="transport"):
        Settings.from_env()
