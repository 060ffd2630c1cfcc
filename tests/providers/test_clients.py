"""A provider's connections: small pools behind one FIFO limiter."""

from __future__ import annotations

import anyio
import httpx

from rlm_async.providers import OpenAIProvider, _transport
from rlm_async.providers._clients import SHARD_SIZE, ClientShards
from rlm_async.providers._settings import Settings
from rlm_async.providers._transport import build_client
from rlm_async.providers._transport_aiohttp import AiohttpClient
from tests.providers.support import pool_size


async def test_a_large_pool_is_split_into_small_ones_that_add_up() -> None:
    shards = ClientShards(build_client, max_connections=100)
    try:
        sizes = [pool_size(c) for c in shards.clients]
        assert len(sizes) == 7
        assert max(sizes) <= SHARD_SIZE
        assert sum(sizes) >= 100
    finally:
        await shards.aclose()
    assert shards.is_closed


async def test_requests_in_flight_never_exceed_max_connections_and_spread_evenly() -> None:
    shards = ClientShards(build_client, max_connections=20)
    in_flight = 0
    peak = 0
    per_client: dict[int, int] = {}
    release = anyio.Event()

    async def request() -> None:
        nonlocal in_flight, peak
        async with shards.client() as client:
            in_flight += 1
            peak = max(peak, in_flight)
            per_client[id(client)] = per_client.get(id(client), 0) + 1
            if in_flight == 20:
                release.set()
            await release.wait()
            in_flight -= 1

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(request)
    finally:
        await shards.aclose()
    assert peak == 20
    assert sorted(per_client.values()) == [25, 25]  # two pools of 10, used alike


async def test_a_callers_client_is_used_as_is_and_never_closed() -> None:
    mine = httpx.AsyncClient()
    shards = ClientShards(build_client, max_connections=100, client=mine)
    async with shards.client() as client:
        assert client is mine
    await shards.aclose()
    assert not mine.is_closed
    await mine.aclose()


async def test_providers_are_on_aiohttp_unless_told_otherwise() -> None:
    assert _transport.DEFAULT_TRANSPORT == "aiohttp"
    on = {}
    for transport in (None, "aiohttp", "httpcore"):
        settings = Settings(openai_api_key="k-1234", transport=transport)
        async with OpenAIProvider(settings=settings, max_connections=100) as provider:
            on[transport] = [type(c) for c in provider._clients.clients]
    assert on[None] == on["aiohttp"] == [AiohttpClient]  # one pool: aiohttp's costs no more
    assert on["httpcore"] == [httpx.AsyncClient] * 7  # pools of at most 16
