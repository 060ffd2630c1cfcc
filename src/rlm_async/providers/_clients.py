"""A provider's HTTP connections: httpx pools behind one FIFO limiter.

On httpcore, small pools: its connection pool re-examines every connection against every
waiting request on each state change (encode/httpcore#1035), so its CPU cost per request
grows with the pool's size. At 100 concurrent sub-calls that was ~10 ms of CPU per
request, and a fan-out of 1,000 calls took 16 times its ideal time (``benchmarks/``).
Pools of at most :data:`SHARD_SIZE` connections keep that cost small and flat. aiohttp's
pool (the default transport, ``_transport.py``) costs the same at any size, so it is one
pool. Either way the limiter in front means requests wait in one FIFO queue of ours, never
inside the pool, where a long queue would make every pass longer still.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx

from rlm_async.providers._settings import Settings
from rlm_async.providers._transport import build_client, resolve_transport

__all__ = ["SHARD_SIZE", "ClientShards", "provider_clients"]

#: The most connections in one httpcore pool.
SHARD_SIZE = 16


class ClientShards:
    """Connections to one provider: ``max_connections`` in all, in pools of ≤ ``shard_size``.

    Args:
        build: Makes one ``httpx.AsyncClient`` with a given pool size.
        max_connections: Requests in flight at once, in all.
        client: A client of the caller's to use instead (one pool, never closed here).
        shard_size: The most connections in one pool.
    """

    def __init__(
        self,
        build: Callable[..., httpx.AsyncClient],
        *,
        max_connections: int,
        client: httpx.AsyncClient | None = None,
        shard_size: int = SHARD_SIZE,
    ) -> None:
        self.owned = client is None
        if client is not None:
            self.clients = [client]
            self._limiter: anyio.CapacityLimiter | None = None
        else:
            count = math.ceil(max_connections / shard_size)
            per_shard = math.ceil(max_connections / count)
            self.clients = [build(max_connections=per_shard) for _ in range(count)]
            self._limiter = anyio.CapacityLimiter(max_connections)
        self._in_flight = [0] * len(self.clients)

    @property
    def first(self) -> httpx.AsyncClient:
        """One of the clients (for settings that are the same on all of them)."""
        return self.clients[0]

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one request: waits its turn, then the least busy pool."""
        if self._limiter is None:
            yield self.clients[0]
            return
        async with self._limiter:
            index = min(range(len(self.clients)), key=self._in_flight.__getitem__)
            self._in_flight[index] += 1
            try:
                yield self.clients[index]
            finally:
                self._in_flight[index] -= 1

    @property
    def is_closed(self) -> bool:
        return all(c.is_closed for c in self.clients)

    async def aclose(self) -> None:
        """Close the clients this object made (not a caller's client)."""
        if self.owned:
            for client in self.clients:
                await client.aclose()


def provider_clients(
    settings: Settings, *, max_connections: int, client: httpx.AsyncClient | None = None
) -> ClientShards:
    """The clients of one provider, on the transport and timeouts ``settings`` asks for.

    Raises:
        ConfigurationError: HTTP/2 asked of aiohttp, or without the ``h2`` package.
    """
    transport = resolve_transport(settings.transport, http2=settings.http2)
    build = functools.partial(
        build_client,
        transport=transport,
        http2=settings.http2,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )
    shard_size = SHARD_SIZE if transport == "httpcore" else max_connections
    return ClientShards(
        build, max_connections=max_connections, client=client, shard_size=shard_size
    )
