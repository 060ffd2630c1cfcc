"""What carries a provider's requests under httpx: aiohttp (the default) or httpcore.

Every adapter is written against ``httpx.AsyncClient``; only the transport under it changes.

- ``"aiohttp"``, the default: httpx-aiohttp's ``AiohttpTransport`` (the one the official
  OpenAI SDK offers for high concurrency). aiohttp's pool hands out a connection in constant
  time, where httpcore's re-examines every connection against every waiting request
  (encode/httpcore#1035); on 100 concurrent completions it halved the parent's CPU per
  completion (``benchmarks/``). HTTP/1.1 only.
- ``"httpcore"``: httpx's own transport. Use it for HTTP/2 (``Settings(http2=True)``, with
  the ``h2`` package: ``pip install "rlm-async[http2]"``), which aiohttp does not speak, or
  where something only httpcore offers is needed (SOCKS proxies, with ``socksio``).

On both: one TLS context per process (certifi's CAs; loading them costs ~17 ms a client),
proxies from the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``: httpx reads them
for both), and failures raised as httpx's exceptions, which
:func:`~rlm_async.providers._errors.map_transport_errors` turns into ours.
"""

from __future__ import annotations

import functools
import importlib
import ssl
from typing import Final, Literal

import httpx

from rlm_async._exceptions import ConfigurationError
from rlm_async._options import check_int

__all__ = [
    "DEFAULT_TRANSPORT",
    "TRANSPORTS",
    "TransportName",
    "build_client",
    "resolve_transport",
    "tls_context",
]

TransportName = Literal["aiohttp", "httpcore"]
TRANSPORTS: Final = ("aiohttp", "httpcore")

#: What ``Settings(transport=None)`` means without HTTP/2. A module global, not a constant:
#: the provider tests run the whole suite once per transport by changing it.
DEFAULT_TRANSPORT: TransportName = "aiohttp"


def resolve_transport(transport: TransportName | None, *, http2: bool) -> TransportName:
    """The transport to use: ``transport``, else httpcore for HTTP/2, else the default.

    Raises:
        ConfigurationError: HTTP/2 asked of aiohttp, or of httpcore without ``h2``.
    """
    if http2:
        if transport == "aiohttp":
            raise ConfigurationError(
                "aiohttp does not speak HTTP/2: use Settings(transport='httpcore', http2=True) "
                "(or leave transport unset), or drop http2"
            )
        try:
            importlib.import_module("h2")
        except ImportError:
            raise ConfigurationError(
                'HTTP/2 needs the h2 package: pip install "rlm-async[http2]"'
            ) from None
        return "httpcore"
    return transport or DEFAULT_TRANSPORT


def build_client(
    *,
    transport: TransportName = "httpcore",
    max_connections: int = 64,
    connect_timeout: float = 10.0,
    read_timeout: float = 600.0,
    http2: bool = False,
    verify: ssl.SSLContext | bool | None = None,
) -> httpx.AsyncClient:
    """One pooled client: ``max_connections`` in flight, kept alive 30 s.

    The read timeout is long on purpose: a reasoning model can think for minutes before
    its first byte. Waiting for a free pooled connection is bounded by the same value.

    Args:
        transport: ``"aiohttp"`` or ``"httpcore"`` (see the module's docstring).
        max_connections: The pool's size.
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds to wait for the next bytes of a reply.
        http2: Offer HTTP/2 (httpcore only; needs ``h2``).
        verify: The TLS context; default :func:`tls_context`, shared by every client.
    """
    check_int("max_connections", max_connections, 1)
    if http2 and transport != "httpcore":
        raise ConfigurationError("HTTP/2 needs transport='httpcore'; aiohttp speaks HTTP/1.1")
    cls = httpx.AsyncClient if transport == "httpcore" else _aiohttp_client_class()
    return cls(
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        ),
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=60.0, pool=read_timeout
        ),
        http2=http2,
        follow_redirects=False,
        verify=tls_context() if verify is None else verify,
    )


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The TLS context every provider client shares (certificate verification on)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


# ---- the aiohttp path ----------------------------------------------------------------------


def _aiohttp_client_class() -> type[httpx.AsyncClient]:
    """``httpx.AsyncClient`` on aiohttp, imported on first use (aiohttp takes ~130 ms)."""
    try:
        from rlm_async.providers._transport_aiohttp import AiohttpClient
    except ImportError as exc:  # a broken or partial install: say which way out there is
        raise ConfigurationError(
            f"the aiohttp transport needs httpx-aiohttp ({exc}): pip install httpx-aiohttp, "
            "or use Settings(transport='httpcore')"
        ) from exc
    return AiohttpClient
