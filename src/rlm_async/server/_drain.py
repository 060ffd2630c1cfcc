"""A delay between SIGTERM and the server's graceful shutdown, with readiness failing in it.

uvicorn stops accepting connections as soon as SIGTERM arrives, then gives the requests in
flight ``timeout_graceful_shutdown`` seconds. A load balancer that has not yet noticed the
replica is going (Kubernetes removes a terminating pod from its Service's endpoints at the
same time as it sends SIGTERM; kube-proxy and ingresses catch up a moment later) still
sends it new connections, which are refused.

:class:`DrainOnSigterm` puts a window in front: the first SIGTERM makes ``/readyz`` answer
503 (``begin_drain``) and the server keeps serving for ``delay`` seconds, time for the
load balancers to take it out, before the SIGTERM reaches uvicorn's handler and the usual
drain starts. A second SIGTERM (or SIGINT, which is not delayed: a terminal's Ctrl-C)
during the window starts the shutdown at once.

It wraps the handler the server installed (``uvicorn.Server`` sets its own while it runs,
from the main thread; the app's lifespan start-up runs inside that), so it needs nothing
from uvicorn but that, and puts the server's handler back at the lifespan's shutdown.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rlm_async._logging import get_logger

__all__ = ["DrainOnSigterm"]

_log = get_logger("rlm_async.server")


class DrainOnSigterm:
    """Wraps an ASGI app: the first SIGTERM calls ``on_drain`` and is passed on ``delay``
    seconds later.

    Args:
        app: The ASGI app (its lifespan start-up is where the handler is put in place).
        delay: Seconds between the first SIGTERM and the server seeing it (> 0).
        on_drain: Called at once on the first SIGTERM (``create_app``'s service's
            ``begin_drain``: readiness answers 503 from then on).
    """

    def __init__(self, app: ASGIApp, *, delay: float, on_drain: Callable[[], None]) -> None:
        self.app = app
        self.delay = delay
        self.on_drain = on_drain
        self._installed: Any = None  # the handler we put in place, to know it is still ours
        self._server_handler: Any = None
        self._draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_hooked(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._install(asyncio.get_running_loop())
            await send(message)

        try:
            await self.app(scope, receive, send_hooked)
        finally:
            self._uninstall()

    def _install(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; whoever runs us there handles them
        server_handler = signal.getsignal(signal.SIGTERM)
        if not callable(server_handler):
            # SIG_DFL or SIG_IGN: no server is waiting for the signal to shut down gracefully.
            return

        def handler(sig: int, frame: FrameType | None) -> None:
            if self._draining:
                server_handler(sig, frame)  # a second SIGTERM: now
                return
            self._draining = True
            self.on_drain()
            # A signal handler runs between two bytecodes of whatever the loop was doing
            # (holding a lock, maybe): the rest is done by the loop, reached through its
            # thread-safe door.
            loop.call_soon_threadsafe(self._pass_on_later, loop, server_handler, sig)

        self._server_handler = server_handler
        self._installed = handler
        signal.signal(signal.SIGTERM, handler)

    def _pass_on_later(
        self, loop: asyncio.AbstractEventLoop, server_handler: Callable[..., Any], sig: int
    ) -> None:
        _log.info("rlm_async.server.draining", delay=self.delay)
        loop.call_later(self.delay, server_handler, sig, None)

    def _uninstall(self) -> None:
        if self._installed is None:
            return
        if signal.getsignal(signal.SIGTERM) is self._installed:
            signal.signal(signal.SIGTERM, self._server_handler)
        self._installed = self._server_handler = None
