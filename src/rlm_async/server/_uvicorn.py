"""Running the app under uvicorn, programmatically, on a socket we bind ourselves.

Binding the socket here (rather than letting uvicorn do it) means ``port=0`` works: the
OS picks a free port and we know which one before the first request. uvicorn is given
``log_config=None`` unless the caller passes one, so embedding the server configures no
logging for the host application.

:func:`server_config` is the one place a ``uvicorn.Config`` is made (``open_server`` and
``rlm-async serve``): it adds the connection limits uvicorn lacks (``_connections.py``:
a header-read timeout and a connection cap) and its keep-alive timeout. The config it makes
can be pickled, so uvicorn's worker processes (``_workers.py``, started with ``spawn``) can
be given it.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from starlette.types import ASGIApp

from rlm_async._exceptions import ConfigurationError
from rlm_async._options import check_int
from rlm_async.server._connections import default_max_connections, guarded_protocol

__all__ = ["base_url_of", "bind_socket", "open_server", "server_config"]

HEADER_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5.0


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


class _Config(uvicorn.Config):
    """uvicorn's ``Config``, picklable (before ``load()``) with the guarded protocol in it.

    That protocol is a class made at run time (``guarded_protocol``), which pickle cannot
    name; it travels as its two limits and is made again on the other side.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        http = state.pop("http")
        state["_guard"] = (http.header_timeout, http.max_connections)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        header_timeout, max_connections = state.pop("_guard")
        self.__dict__.update(state)
        self.http = guarded_protocol(header_timeout=header_timeout, max_connections=max_connections)


def server_config(
    app: ASGIApp | Callable[[], ASGIApp],
    *,
    header_timeout: float = HEADER_TIMEOUT,
    max_connections: int | None = None,
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT,
    **config: Any,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app`` with connection limits.

    Args:
        app: The ASGI app (with ``factory=True``: a function making it, called once in
            each worker process).
        header_timeout: Seconds a request's headers may take to arrive, counted from the
            connection's opening (or from the first byte after the previous response).
            Then the connection is closed (408 when part of a request had come).
        max_connections: Connections held at once; more are answered 503 and closed at
            once. ``None``: half the process's open-file limit, at most 1,024.
        keep_alive_timeout: Seconds an idle keep-alive connection is kept between requests.
        **config: More ``uvicorn.Config`` options.

    Raises:
        ConfigurationError: a limit is out of range.
    """
    for name, seconds in (
        ("header_timeout", header_timeout),
        ("keep_alive_timeout", keep_alive_timeout),
    ):
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ConfigurationError(f"{name} must be a positive number, got {seconds!r}")
    if max_connections is None:
        max_connections = default_max_connections()
    check_int("max_connections", max_connections, 1)
    http = guarded_protocol(header_timeout=header_timeout, max_connections=max_connections)
    config.setdefault("lifespan", "on")
    # uvicorn takes whole seconds here (its type says int); it passes the value to
    # call_later, so a fraction works the same.
    return _Config(app, http=http, timeout_keep_alive=keep_alive_timeout, **config)  # type: ignore[arg-type]


@asynccontextmanager
async def open_server(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    graceful_timeout: int = 5,
    header_timeout: float = HEADER_TIMEOUT,
    max_connections: int | None = None,
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT,
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
        header_timeout: Seconds a request's headers may take to arrive (see
            :func:`server_config`).
        max_connections: Connections held at once, more are refused (default: half the
            open-file limit, at most 1,024).
        keep_alive_timeout: Seconds an idle keep-alive connection is kept.
        **config: More ``uvicorn.Config`` options (``log_config``, ``log_level``...).

    Raises:
        ConfigurationError: a limit is out of range.

    Example:
        async with open_server(create_app(rlm)) as url:
            response = await httpx.AsyncClient().get(f"{url}/health")
    """
    config.setdefault("log_config", None)
    config.setdefault("access_log", False)
    server = uvicorn.Server(
        server_config(
            app,
            header_timeout=header_timeout,
            max_connections=max_connections,
            keep_alive_timeout=keep_alive_timeout,
            timeout_graceful_shutdown=graceful_timeout,
            **config,
        )
    )
    sock = bind_socket(host, port)
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
