"""httpx on aiohttp: httpx-aiohttp's transport, with failures reported the way httpcore does.

Imported only when a client on the aiohttp transport is made (``_transport.py``), since
aiohttp takes ~130 ms to import. What is ours on top of httpx-aiohttp 0.2:

- **Failures.** It maps every ``aiohttp.ClientConnectionError`` to ``httpx.ConnectTimeout``,
  so a refused connection or a server hanging up read as timeouts; parse errors escape as
  aiohttp's own. Mapped here from aiohttp's exception to httpx's, as httpcore would report
  the same failure, so ``map_transport_errors`` gives the same error on both transports.
- **Proxies from the environment.** httpx reads them only when it builds the transports
  itself, so :class:`AiohttpClient` replaces its two transport builders (as httpx-aiohttp's
  ``HttpxAiohttpClient`` does); SOCKS proxies, which aiohttp cannot use, stay on httpcore.
- **Uploads.** aiohttp has no write timeout (see :func:`_deadline`), and warns on each
  body of more than 1 MiB given as ``bytes`` (see :func:`_in_pieces`).
- **The session**: the shared TLS context, no cookie jar (httpx keeps the cookies; parsing
  each ``Set-Cookie`` twice is waste), no decompression (httpx decodes the body).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import aiohttp
import httpx
from httpx._types import CertTypes
from httpx_aiohttp import AiohttpTransport

__all__ = ["AiohttpClient"]

_DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100)
#: The largest body aiohttp takes as one ``bytes`` without a warning (its TOO_LARGE_BYTES_BODY).
_PIECE: Final = 1 << 20


class AiohttpClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose transports, proxies' too, are aiohttp's."""

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.AsyncBaseTransport:
        if transport is not None:
            return transport
        return _Transport(verify=verify, cert=cert, trust_env=trust_env, limits=limits)

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
    ) -> httpx.AsyncBaseTransport:
        if proxy.url.scheme.startswith("socks"):
            return super()._init_proxy_transport(
                proxy, verify, cert, trust_env, http1, http2, limits
            )
        return _Transport(verify=verify, cert=cert, trust_env=trust_env, limits=limits, proxy=proxy)


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport on our session, its failures reported as httpx's."""

    def __init__(self, *, limits: httpx.Limits, **kwargs: Any) -> None:
        super().__init__(limits=limits, **kwargs)
        # Called at the first request: an aiohttp session is made inside its event loop.
        self.client = functools.partial(_session, self.ssl_context, limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            async with asyncio.timeout(_deadline(request)):
                response = await super().handle_async_request(_in_pieces(request))
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            _raise_as_httpx(exc)
            raise
        except TimeoutError:  # the deadline's (aiohttp's own timeouts are mapped above)
            raise httpx.WriteTimeout(
                "the request was not sent: the server stopped reading it"
            ) from None
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response


def _in_pieces(request: httpx.Request) -> httpx.Request:
    """``request``, its body sent in 1 MiB pieces when it is larger.

    Handed a larger ``bytes`` body, aiohttp warns (a ``ResourceWarning``: "might lock the
    event loop") on every request, and prompts of many MB are ordinary here. Pieces of a
    ``memoryview`` copy nothing; ``Content-Length`` stays as httpx set it.
    """
    try:
        body = request.content
    except httpx.RequestNotRead:
        return request  # already a stream
    if len(body) <= _PIECE:
        return request
    return httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        stream=_Pieces(body),
        extensions=request.extensions,
    )


class _Pieces(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        view = memoryview(self._body)
        for start in range(0, len(view), _PIECE):
            yield view[start : start + _PIECE]  # type: ignore[misc]


def _deadline(request: httpx.Request) -> float | None:
    """Seconds to connect, send the request and receive the reply's head, in all.

    aiohttp has no write timeout: its read timeout starts once the body is sent, so an
    upload the server stops reading would wait forever (httpcore gives up after ``write``
    seconds). This bound gives up after connect + write + read seconds instead, later than
    any of aiohttp's own timeouts would fire on a request that was sent.
    """
    timeout = request.extensions.get("timeout", {})
    parts = [timeout.get("connect"), timeout.get("write"), timeout.get("read")]
    return None if None in parts else sum(parts)


def _session(context: ssl.SSLContext, limits: httpx.Limits) -> aiohttp.ClientSession:
    expiry = limits.keepalive_expiry
    connector = aiohttp.TCPConnector(
        limit=limits.max_connections or 0,  # 0: no limit, as None is for httpx
        keepalive_timeout=15.0 if expiry is None else expiry,  # aiohttp's default
        ssl=context,
    )
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    )


class _Body(httpx.AsyncByteStream):
    """A reply body whose failures mid-stream are reported as httpx's exceptions."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as exc:
            _raise_as_httpx(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except Exception as exc:
            _raise_as_httpx(exc)
            raise


def _raise_as_httpx(exc: Exception) -> None:
    """Raise httpx's exception for an aiohttp failure; return for any other exception."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    if not isinstance(cause, aiohttp.ClientError):
        return
    error: Callable[[str], httpx.TransportError]
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout
    elif isinstance(cause, aiohttp.ServerTimeoutError):
        error = httpx.ReadTimeout
    elif isinstance(cause, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        error = httpx.ProxyError
    elif isinstance(cause, aiohttp.ClientConnectorError):
        error = httpx.ConnectError  # refused, no route, DNS, TLS verification
    elif isinstance(cause, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        error = httpx.UnsupportedProtocol
    elif isinstance(cause, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        error = httpx.ReadError  # reset, hung up, or the body cut short
    else:
        error = httpx.RemoteProtocolError  # a reply that is not well-formed HTTP
    raise error(str(cause) or type(cause).__name__) from cause
