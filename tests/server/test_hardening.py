"""A client cannot stall the server's loop or hold its connections (issue 11, items 4, 12, 15).

Over real loopback HTTP (uvicorn) and raw sockets: a large body is parsed and its context
prepared without stalling the event loop; a slow-loris client (no bytes, partial or
trickled headers, a body that stops coming) is closed within the configured timeout; past
the connection cap new connections are turned away at once, and the server answers again
once the idle ones are dropped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from rlm_async import RLM
from rlm_async.server import create_app, open_server
from rlm_async.testing import ScriptedModel
from tests.loop_meter import loop_meter
from tests.server.support import two_turns

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
# How long a test waits for the server to act on a timeout above: a bound, not a pace.
WITHIN = 10.0


@asynccontextmanager
async def server(**options: float) -> AsyncIterator[tuple[str, int]]:
    app_options = {k: v for k, v in options.items() if k == "body_timeout"}
    server_options = {k: v for k, v in options.items() if k != "body_timeout"}
    app = create_app(RLM(model=ScriptedModel(two_turns)), **app_options)
    async with open_server(app, **server_options) as url:  # type: ignore[arg-type]
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


async def closed_by_server(connection: SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        try:
            received += await connection.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return received


def head(port: int, length: int) -> bytes:
    return (
        f"POST /v1/rlm HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


# ---- 4. a large body does not stall the loop -------------------------------------------


async def test_an_8_mb_context_body_is_parsed_and_prepared_without_stalling_the_loop() -> None:
    """`context=[0]*4_000_000` (8 MB) made /health wait 5.6-6.3 s: the body was parsed
    holding the GIL and the context was prepared on the event loop."""
    body = json.dumps({"context": [0] * 4_000_000, "query": "q"}, separators=(",", ":"))
    async with (
        server() as (host, port),
        httpx.AsyncClient(timeout=60) as client,
        loop_meter() as meter,
    ):
        response = await client.post(f"http://{host}:{port}/v1/rlm", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == "4000000"
    assert meter.longest_stall < 1.0, f"the loop stalled {meter.longest_stall:.2f} s"


# ---- 12. a lone surrogate -------------------------------------------------------------


async def test_a_lone_surrogate_escape_in_the_body_is_a_400_that_says_what_to_do() -> None:
    async with server() as (host, port), httpx.AsyncClient() as client:
        response = await client.post(
            f"http://{host}:{port}/v1/rlm", content=b'{"context": ["\\udfff"], "query": "q"}'
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert "surrogate" in error["message"] and "UTF-8" in error["message"]


# ---- 15. slow-loris clients ----------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/rlm HTTP/1.1\r\nhost: x\r\n", b"GET /health HTTP/1.1\r\n"],
    ids=["no-bytes", "partial-headers", "request-line-only"],
)
async def test_a_connection_that_does_not_finish_its_headers_is_closed(sent: bytes) -> None:
    async with (
        server(header_timeout=HEADER_TIMEOUT) as (host, port),
        await anyio.connect_tcp(host, port) as connection,
    ):
        if sent:
            await connection.send(sent)
        with anyio.fail_after(WITHIN):
            answer = await closed_by_server(connection)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")


async def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_header_timeout() -> None:
    request = b"GET /health HTTP/1.1\r\n" + b"x-pad: " + b"a" * 10_000
    async with (
        server(header_timeout=HEADER_TIMEOUT) as (host, port),
        await anyio.connect_tcp(host, port) as connection,
    ):
        with anyio.fail_after(WITHIN):
            # The classic slow loris: each byte well within any per-read timeout.
            for byte in request:
                try:
                    await connection.send(bytes([byte]))
                except (anyio.BrokenResourceError, ConnectionError):
                    break
                await anyio.sleep(0.05)
            else:
                pytest.fail("the server read trickled headers for longer than its timeout")
            await closed_by_server(connection)


async def test_a_body_that_stops_coming_is_a_408_and_the_connection_is_closed() -> None:
    async with (
        server(header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT) as (host, port),
        await anyio.connect_tcp(host, port) as connection,
    ):
        await connection.send(head(port, 1000) + b'{"context": "')
        with anyio.fail_after(WITHIN):
            answer = await closed_by_server(connection)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request_timeout" in answer


async def test_past_the_connection_cap_new_connections_are_refused_until_idle_ones_drop() -> None:
    """1,100 idle connections used to exhaust the fd limit, so real requests timed out."""
    cap = 4
    async with (
        server(header_timeout=3.0, max_connections=cap) as (host, port),
        httpx.AsyncClient() as client,
    ):
        idle = [await anyio.connect_tcp(host, port) for _ in range(cap)]
        try:
            # "At once": well before the idle connections could time out (3 s).
            with anyio.fail_after(2.0):
                async with await anyio.connect_tcp(host, port) as extra:
                    refused = await closed_by_server(extra)
            with anyio.fail_after(WITHIN):
                for connection in idle:
                    assert await closed_by_server(connection) == b""
            health = await client.get(f"http://{host}:{port}/health")
        finally:
            for connection in idle:
                await connection.aclose()
    assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
    assert health.status_code == 200


async def test_an_idle_keep_alive_connection_is_closed_after_its_timeout() -> None:
    """An answered client that keeps its connection open and silent holds an fd until the
    keep-alive timeout; then the server closes it (and the next request gets a new one)."""
    async with (
        server(header_timeout=4 * WITHIN, keep_alive_timeout=HEADER_TIMEOUT) as (host, port),
        await anyio.connect_tcp(host, port) as connection,
    ):
        await connection.send(f"GET /health HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n".encode())
        with anyio.fail_after(WITHIN):
            # Closed by the keep-alive timeout (0.5 s), not the header timeout (40 s), with
            # the first answer, a 200, the only thing sent.
            answer = await closed_by_server(connection)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1


async def test_the_server_options_are_checked() -> None:
    from rlm_async import ConfigurationError

    app = create_app(RLM(model=ScriptedModel(two_turns)))
    for bad in ({"header_timeout": 0}, {"max_connections": 0}, {"keep_alive_timeout": -1}):
        with pytest.raises(ConfigurationError):
            async with open_server(app, **bad):  # type: ignore[arg-type]
                pass
    with pytest.raises(ConfigurationError):
        create_app(RLM(model=ScriptedModel(two_turns)), body_timeout=0)
