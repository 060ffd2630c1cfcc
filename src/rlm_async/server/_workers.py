"""Serving on every core: N worker processes, each a replica of the app, behind one socket.

This is uvicorn's own multi-worker model (its ``Multiprocess`` supervisor, what
``uvicorn --workers N`` runs): the socket is bound once, by the caller, and handed to every
worker; each worker is a fresh interpreter (``spawn``) with its own event loop, app,
``RLM`` and warm REPL pool, and the kernel gives each new connection to one of them. The
workers share nothing: a run lives and ends in the worker that accepted its connection.
The supervisor restarts a worker that dies, and stops them all when one fails to start.

What a worker needs to make its app travels as a :class:`ReplicaApp`: plain values (model
names, ``RLMOptions``, ``Settings``, the app's limits) that pickle, where an ``RLM`` (HTTP
clients, processes) or a closure would not.

Shutdown: SIGINT or SIGTERM to the supervisor (or to every process, as a terminal's Ctrl-C
does) reaches each worker as SIGTERM; each stops accepting, lets its runs in flight finish
for up to ``timeout_graceful_shutdown`` seconds, cancels what is left, and closes its
``RLM`` in the app's lifespan, which kills every REPL process it started. The supervisor
returns once every worker has exited.
"""

from __future__ import annotations

import inspect
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors import multiprocess as _multiprocess

from rlm_async._options import check_int
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._rlm import RLM
from rlm_async.providers._settings import Settings
from rlm_async.server._app import create_app
from rlm_async.server._drain import DrainOnSigterm
from rlm_async.server._heap import SettleHeapAfterStartup
from rlm_async.server._metrics_peers import PeerMetrics
from rlm_async.server._session_affinity import SessionAffinity
from rlm_async.server._tool_specs import import_tools
from rlm_async.server._uvicorn import server_config
from rlm_async.tools import MCPServer

__all__ = ["CloseAfterResponse", "ReplicaApp", "serve_workers"]

# Seconds a worker may take to answer the supervisor's ping before it is killed as hung.
# It answers from a thread, which needs the GIL: a big JSON body parsed in C holds that for
# seconds (docs/serving.md), and uvicorn's 5 s would kill a busy worker with its runs.
WORKER_HEALTHCHECK_TIMEOUT = 30


@dataclass(frozen=True)
class ReplicaApp:
    """How each worker makes its app, as values that survive ``spawn`` (they pickle).

    Calling it makes the app (``create_app``) around a fresh ``RLM``, which the app's
    lifespan opens in the worker (starting its warm pool) and closes at shutdown.

    Attributes:
        model: The root model.
        sub_model: The sub-calls' model (``None``: the root model).
        options: The served ``RLM``'s options; requests may only tighten them.
        settings: Keys and endpoints, read once by the process that starts the workers.
        warm_repls: REPL processes each worker keeps pre-started.
        app_options: Keyword arguments of :func:`create_app` (``api_key``, the limits).
        tools: The application's tools as ``module:attr`` names, imported by each worker
            (``rlm-async serve --tools``; see ``server._tool_specs``).
        mcp_servers: MCP servers whose tools are exposed too; each worker starts its own.
        session_dir: A directory for the workers' Unix sockets, through which a session's
            requests reach the worker holding it (``server._session_affinity``); ``None``
            with one worker.
        drain_delay: Seconds between SIGTERM and the drain, readiness failing in them
            (``rlm-async serve --drain-delay``; 0: none).
        cache: The sub-call store's file (``RLM(cache=...)``; ``None``: in memory only).
            Every worker opens the same file: SQLite's WAL mode lets them read while one
            writes, and a write waits for another's (``engine._subcall_cache``).
    """

    model: str
    sub_model: str | None
    options: RLMOptions
    settings: Settings
    warm_repls: int = 0
    app_options: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    mcp_servers: tuple[MCPServer, ...] = ()
    session_dir: str | None = None
    drain_delay: float = 0.0
    cache: str | None = None

    def make_rlm(self) -> RLM:
        """The ``RLM`` to serve, not opened yet.

        Raises:
            ConfigurationError: a bad model name, a missing key, or a tool that cannot be
                imported.
        """
        return RLM(
            model=self.model,
            sub_model=self.sub_model,
            options=self.options,
            warm_repls=self.warm_repls,
            settings=self.settings,
            tools=[tool for spec in self.tools for tool in import_tools(spec)],
            mcp_servers=self.mcp_servers,
            cache=self.cache,
        )

    def __call__(self) -> ASGIApp:
        made = create_app(self.make_rlm, **self.app_options)
        # With a session directory, a session's requests reach the worker holding its REPL,
        # and a scrape of /metrics gathers every worker's through the same sockets.
        if self.session_dir is not None:
            made.state.rlm_service.peer_metrics = PeerMetrics(self.session_dir)
        inner: ASGIApp = (
            made if self.session_dir is None else SessionAffinity(made, directory=self.session_dir)
        )
        if self.drain_delay:
            service = made.state.rlm_service
            inner = DrainOnSigterm(inner, delay=self.drain_delay, on_drain=service.begin_drain)
        # A worker is a serving process and nothing else: its start-up heap is frozen.
        return SettleHeapAfterStartup(CloseAfterResponse(inner))


class CloseAfterResponse:
    """Ends every connection with its response (``Connection: close``), so that each
    request is a new connection, which goes to the worker that accepts it first.

    Without it a keep-alive connection stays with the worker that accepted it, and a
    client opening its connections in a burst (a pool filling up at once) hands them all to
    one worker: the first one awake accepts every connection in the queue. A new connection
    per request lets the kernel's accept race spread them instead, and the worker that wins
    it is the one whose event loop is free, the least busy one. A run takes seconds; a new
    loopback or LAN connection costs well under a millisecond.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_closing)


async def serve_workers(
    app: Callable[[], ASGIApp], sock: socket.socket, *, workers: int, **config: Any
) -> int:
    """Serve the app ``app`` makes in ``workers`` processes on ``sock``, until SIGINT/SIGTERM.

    Call it from the main thread: the supervisor installs its signal handlers there (the
    ones in place before are put back when it returns). It runs in a worker thread, so
    this event loop stays free (``rlm-async serve --demo`` serves its mock model from it).

    Args:
        app: Makes the ASGI app, once in each worker; it must pickle (a :class:`ReplicaApp`
            or a module-level function).
        sock: A bound socket (``bind_socket``); every worker accepts on it.
        workers: Worker processes, at least 1.
        **config: :func:`server_config` options (limits, ``timeout_graceful_shutdown``,
            ``log_level``...).

    Returns:
        0 once every worker has exited, or 3 (uvicorn's start-up failure) when a worker
        failed to start (its lifespan raised); the others are then stopped too.

    Raises:
        ConfigurationError: ``workers`` or a limit is out of range.
    """
    check_int("workers", workers, 1)
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        config.setdefault("timeout_worker_healthcheck", WORKER_HEALTHCHECK_TIMEOUT)
    spawnable = server_config(app, factory=True, workers=workers, **config)
    handled = getattr(_multiprocess, "SIGNALS", (signal.SIGINT, signal.SIGTERM))
    before = {sig: signal.getsignal(sig) for sig in handled}
    supervisor = _supervisor(spawnable, sock)
    try:
        await anyio.to_thread.run_sync(supervisor.run)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    exits = [getattr(process, "exitcode", None) for process in supervisor.processes]
    return STARTUP_FAILURE if STARTUP_FAILURE in exits else 0


def _supervisor(config: uvicorn.Config, sock: socket.socket) -> Multiprocess:
    # Before uvicorn 0.3x the supervisor was also given what each worker runs.
    if "target" in inspect.signature(Multiprocess).parameters:
        target = uvicorn.Server(config).run
        return Multiprocess(config, target=target, sockets=[sock])  # type: ignore[call-arg]
    return Multiprocess(config, sockets=[sock])
