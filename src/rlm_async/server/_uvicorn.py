"""Running the app under uvicorn, programmatically, on a socket we bind ourselves.

Binding the socket here (rather than letting uvicorn do it) means ``port=0`` works: the
OS picks a free port and we know which one before the first request. uvicorn is given
``log_config=None`` unless the caller passes one, so embedding the server configures no
logging for the host application.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from starlette.types import ASGIApp

__all__ = ["base_url_of", "bind_socket", "open_server"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port`` (``port=0``: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def open_server(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    graceful_timeout: int = 5,
    **config: Any,
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop; yields the base URL.

    The app's lifespan runs (so an app made with an RLM factory opens its RLM). On exit
    the server stops accepting, gives open requests ``graceful_timeout`` seconds, then
    cancels them and runs the lifespan's shutdown.

    Args:
        app: The ASGI app.
        host: The address to bind (default loopback).
        port: The port (0: a free one).
        graceful_timeout: Seconds open requests get to finish at exit.
        **config: More ``uvicorn.Config`` options (``log_config``, ``log_level``...).

    Example:
        async with open_server(create_app(rlm)) as url:
            response = await httpx.AsyncClient().get(f"{url}/health")
    """
    sock = bind_socket(host, port)
    config.setdefault("log_config", None)
    config.setdefault("access_log", False)
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", timeout_graceful_shutdown=graceful_timeout, **config)
    )
    failed: list[BaseException] = []

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits like this when the lifespan fails
            failed.append(exc)

    error: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            # uvicorn offers a flag, not an event, for "listening"; this is start-up only.
            while not server.started and not failed:  # noqa: ASYNC110
                await anyio.sleep(0.005)
            try:
                if not failed:
                    yield base_url_of(sock)
            except Exception as exc:
                # Re-raised below as itself, not wrapped in the task group's ExceptionGroup.
                error = exc
            finally:
                server.should_exit = True
    finally:
        sock.close()
    if error is not None:
        raise error
    if failed:
        raise RuntimeError("the server failed to start (its lifespan raised)")
