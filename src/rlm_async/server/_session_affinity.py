"""Sessions across worker processes: a session's requests reach the worker holding its REPL.

With ``rlm-async serve --workers N`` every request is a new connection that any worker may
accept, but a session's REPL lives in the worker that made it. So each worker also serves
its app on a Unix socket of its own, ``<directory>/<worker>.sock`` (a directory only this
user can enter, made by the command), names its sessions ``sess_w<worker>_...``, and
forwards a request for another worker's session to that worker's socket: headers (the
bearer token: ownership is checked by the owner) and body as they came, the answer back
as it comes. A client that disconnects closes the forwarded request, so the owner cancels
the completion as it would for its own client. A worker that has gone (its sessions with
it) is a 404, as for any session that does not exist.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import uvicorn
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from rlm_async._logging import get_logger
from rlm_async.server._errors import ApiError, error_response

__all__ = ["FORWARDED_HEADER", "SessionAffinity"]

_log = get_logger("rlm_async.server")

# On a forwarded answer: the worker (pid) that holds the session.
FORWARDED_HEADER = "x-rlm-session-worker"
_SESSION_PATH = re.compile(r"^/v1/sessions/sess_w(\d+)_[0-9a-f]+(?:/[a-z]+)?$")
# Headers of one connection, not of the request (RFC 9110 7.6.1), and the host.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"host"}
    | {b"proxy-authenticate", b"proxy-authorization", b"trailer"}
)


class SessionAffinity:
    """ASGI middleware of one worker among several: its sessions are named after it, its app
    is served on its own Unix socket too, and another worker's session is forwarded there.

    Args:
        app: The app made by ``create_app`` (its session registry gets the worker's name).
        directory: Where the workers' sockets are (one directory for all of them).
        worker: This worker's number (default: its pid).
        drain_timeout: At shutdown, seconds forwarded requests in flight get to finish.
    """

    def __init__(
        self,
        app: Starlette,
        *,
        directory: str,
        worker: int | None = None,
        drain_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.directory = directory
        self.worker = os.getpid() if worker is None else worker
        self.drain_timeout = drain_timeout
        app.state.rlm_service.sessions.id_prefix = f"w{self.worker}_"

    def socket_path(self, worker: int) -> str:
        """The Unix socket of ``worker``."""
        return os.path.join(self.directory, f"{worker}.sock")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        owner = self._owner_of(scope)
        if owner is None or owner == self.worker:
            await self.app(scope, receive, send)
            return
        await self._forward(owner, scope, receive, send)

    def _owner_of(self, scope: Scope) -> int | None:
        if scope["type"] != "http":
            return None
        found = _SESSION_PATH.match(scope.get("path", ""))
        return int(found.group(1)) if found else None

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's lifespan, with this worker's socket served from the end of its start-up
        until its shutdown (which waits for the forwarded requests, as uvicorn does for its
        own, for up to ``drain_timeout``)."""
        async with anyio.create_task_group() as tg:
            server: list[uvicorn.Server] = []
            stopped = anyio.Event()

            async def serve_socket(*, task_status: TaskStatus[uvicorn.Server]) -> None:
                try:
                    await self._serve_socket(task_status)
                finally:
                    stopped.set()

            async def send_on(message: Message) -> None:
                if message["type"] == "lifespan.startup.complete":
                    server.append(await tg.start(serve_socket))
                await send(message)

            async def receive_on() -> Message:
                message = await receive()
                if message["type"] == "lifespan.shutdown" and server:
                    server[0].should_exit = True
                    await stopped.wait()
                return message

            try:
                await self.app(scope, receive_on, send_on)
            finally:
                if server:
                    server[0].should_exit = True

    async def _serve_socket(self, task_status: TaskStatus[uvicorn.Server]) -> None:
        with _unix_socket(self.socket_path(self.worker)) as sock:
            config = uvicorn.Config(
                self.app,
                lifespan="off",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=max(1, math.ceil(self.drain_timeout)),
            )
            server = _QuietServer(config)
            task_status.started(server)
            await server.serve(sockets=[sock])

    async def _forward(self, owner: int, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        transport = httpx.AsyncHTTPTransport(uds=self.socket_path(owner))
        answering = False
        async with anyio.create_task_group() as tg:
            body_read = anyio.Event()

            async def body() -> AsyncIterator[bytes]:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        tg.cancel_scope.cancel()  # gone while sending its body
                        return
                    yield message.get("body", b"")
                    if not message.get("more_body", False):
                        break
                body_read.set()

            async def watch_client() -> None:
                await body_read.wait()
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()  # closes the forwarded request: the owner cancels

            tg.start_soon(watch_client)
            try:
                async with (
                    httpx.AsyncClient(transport=transport, timeout=None) as client,
                    client.stream(
                        scope["method"], f"http://worker{path}", headers=headers, content=body()
                    ) as answer,
                ):
                    answering = True
                    await send(
                        {
                            "type": "http.response.start",
                            "status": answer.status_code,
                            "headers": _answer_headers(answer, owner),
                        }
                    )
                    async for chunk in answer.aiter_raw():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
            except httpx.TransportError as exc:
                if answering:
                    raise
                # No socket, or nobody behind it: that worker, and its sessions, are gone.
                _log.info("rlm_async.server.session_worker_gone", worker=owner, error=str(exc))
                session_id = scope["path"].split("/")[3]
                gone = ApiError(404, f"no session {session_id!r}", code="session_not_found")
                await error_response(gone)(scope, receive, send)
            finally:
                tg.cancel_scope.cancel()


def _answer_headers(answer: httpx.Response, owner: int) -> list[tuple[bytes, bytes]]:
    headers = [
        (name, value) for name, value in answer.headers.raw if name.lower() not in _HOP_BY_HOP
    ]
    headers.append((FORWARDED_HEADER.encode("ascii"), str(owner).encode("ascii")))
    return headers


class _QuietServer(uvicorn.Server):
    """uvicorn's server without its signal handlers: the worker's main server has them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _unix_socket(path: str) -> Iterator[socket.socket]:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a worker that died in place of this one
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
