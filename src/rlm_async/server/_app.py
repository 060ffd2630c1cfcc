"""The ASGI application: ``create_app(rlm)`` serves an RLM over HTTP.

Routes (see ``docs/serving.md``)::

    POST /v1/chat/completions   OpenAI-compatible; the "model" is the RLM (see _openai.py)
    POST /v1/rlm                {"context", "query", "options"} -> the result as JSON
    POST /v1/rlm/stream         the run's events as server-sent events (also ?stream=true)
    GET  /v1/models             the one model this server serves
    GET  /health, /healthz      status, runs in flight, warm REPLs (see _status.py)
    GET  /livez, /readyz        liveness and readiness probes (see _probes.py)
    GET  /metrics               Prometheus metrics (see _metrics.py)
    POST /v1/sessions           a conversation over one REPL, then its completions,
                                contexts and DELETE (see _sessions.py)

Every run holds one slot of :class:`RunSlots` (429 at once when they are all taken) and
is cancelled when its client disconnects, which kills its REPL processes and in-flight
sub-calls: a non-streaming request watches for ``http.disconnect`` next to the run, a
streaming one does the same in :class:`SSEResponse`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rlm_async import events as ev
from rlm_async._exceptions import BudgetExceeded, ConfigurationError
from rlm_async._logging import get_logger
from rlm_async._types import RLMResult
from rlm_async.engine._completion import stream_run
from rlm_async.engine._listeners import fan_out
from rlm_async.engine._rlm import RLM
from rlm_async.server._auth import OPEN_PATHS, BearerAuth, api_keys
from rlm_async.server._body import parse_body
from rlm_async.server._errors import ApiError, error_response, from_run_error
from rlm_async.server._limits import RunSlots, check_limits, read_body
from rlm_async.server._metrics import CONTENT_TYPE, MeteredSlots, ServerMetrics, ServiceGauges
from rlm_async.server._metrics_peers import LOCAL_HEADER, PeerMetrics
from rlm_async.server._native import RLMRequest, result_body, run_id_of
from rlm_async.server._openai import (
    ChatCompletionRequest,
    chat_chunk,
    chat_completion,
    context_and_query,
    openai_usage,
)
from rlm_async.server._options import apply_options
from rlm_async.server._output_schema import answer_text, checked_schema, schema_of_response_format
from rlm_async.server._probes import liveness_body, readiness_body
from rlm_async.server._runs import ClientGone, until_disconnect
from rlm_async.server._session_routes import SessionRoutes
from rlm_async.server._sessions import SessionRegistry
from rlm_async.server._sse import SSEResponse, SSESend, sse_data, sse_event
from rlm_async.server._status import health_body, models_body
from rlm_async.server._trace_context import TraceContext
from rlm_async.trajectory import scrub_secrets

__all__ = ["create_app"]

_log = get_logger("rlm_async.server")

MIB = 1024 * 1024


def create_app(
    rlm: RLM | Callable[[], RLM],
    *,
    api_key: str | Sequence[str] | None = None,
    max_concurrent_runs: int = 8,
    max_request_bytes: int = 64 * MIB,
    max_queue: int = 0,
    queue_timeout: float = 30.0,
    heartbeat: float | None = 15.0,
    model_name: str = "rlm",
    body_timeout: float | None = 60.0,
    max_sessions: int = 16,
    session_idle_timeout: float = 600.0,
    metrics_auth: bool = True,
) -> Starlette:
    """An ASGI app (Starlette) serving ``rlm`` over HTTP.

    Args:
        rlm: The RLM to serve, or a function that makes one. Given a function, the app's
            lifespan opens the RLM (``async with``, starting its warm REPL pool) and closes
            it at shutdown; given an instance, its owner opens and closes it.
        api_key: When set, every route but the health checks and probes needs
            ``Authorization: Bearer <api_key>`` (compared in constant time, never logged).
            A list of tokens, one per caller, lets each one's sessions be its own.
        max_concurrent_runs: Runs in flight at once; more are refused with 429.
        max_request_bytes: The largest request body accepted (413 beyond).
        max_queue: Requests that may wait for a run slot instead of a 429 (default 0).
        queue_timeout: Seconds a queued request waits before a 503.
        heartbeat: Seconds between keep-alive comments in event streams (``None``: none).
        model_name: The model id ``/v1/models`` lists and chat responses default to.
        body_timeout: Seconds a request body may take to arrive in full (408 beyond, and
            the connection is closed); ``None``: no limit. The default, 60 s, asks ~1.1
            MB/s of a client sending the largest body allowed by default.
        max_sessions: Sessions (``POST /v1/sessions``, one REPL process each) open at
            once; more are refused with 429. 0 turns sessions off (501).
        session_idle_timeout: Seconds a session may go unused before it is closed and
            its REPL killed.
        metrics_auth: With ``api_key`` set, ``GET /metrics`` needs the token too (the
            default: it shows models, token counts and spend); ``False`` leaves it open
            for a Prometheus that scrapes without credentials (keep the port private).

    Returns:
        A Starlette application; run it with any ASGI server (``uvicorn``), mount it in
        another app, or test it with ``httpx.ASGITransport``.

    Raises:
        ConfigurationError: an argument is out of range.

    Example:
        app = create_app(lambda: RLM(model="gpt-5", sub_model="gpt-5-mini", warm_repls=4),
                         api_key=os.environ["RLM_SERVER_TOKEN"])
        # uvicorn module:app, or: await uvicorn.Server(uvicorn.Config(app)).serve()
    """
    check_limits(
        ints={
            "max_concurrent_runs": (max_concurrent_runs, 1),
            "max_request_bytes": (max_request_bytes, 1),
            "max_queue": (max_queue, 0),
            "max_sessions": (max_sessions, 0),
        },
        seconds={"queue_timeout": queue_timeout, "session_idle_timeout": session_idle_timeout},
        optional_seconds={"heartbeat": heartbeat, "body_timeout": body_timeout},
    )
    keys = api_keys(api_key)
    if not isinstance(rlm, RLM) and not callable(rlm):
        raise ConfigurationError(
            f"rlm must be an RLM or a function returning one, got {type(rlm).__name__}"
        )
    metrics = ServerMetrics(lambda: service.gauges())
    service = _Service(
        rlm,
        metrics=metrics,
        slots=MeteredSlots(
            metrics, max_concurrent_runs, max_queue=max_queue, queue_timeout=queue_timeout
        ),
        max_request_bytes=max_request_bytes,
        heartbeat=heartbeat,
        model_name=model_name,
        body_timeout=body_timeout,
        sessions=SessionRegistry(max_sessions=max_sessions, idle_timeout=session_idle_timeout),
    )
    routes = [
        Route("/v1/chat/completions", _endpoint(service.chat_completions), methods=["POST"]),
        Route("/v1/rlm", _endpoint(service.rlm_run), methods=["POST"]),
        Route("/v1/rlm/stream", _endpoint(service.rlm_stream), methods=["POST"]),
        Route("/v1/models", _endpoint(service.models), methods=["GET"]),
        Route("/v1/sessions", _endpoint(service.session_routes.create), methods=["POST"]),
        Route(
            "/v1/sessions/{session_id}/completions",
            _endpoint(service.session_routes.completion),
            methods=["POST"],
        ),
        Route(
            "/v1/sessions/{session_id}/contexts",
            _endpoint(service.session_routes.add_context),
            methods=["POST"],
        ),
        Route(
            "/v1/sessions/{session_id}",
            _endpoint(service.session_routes.delete),
            methods=["DELETE"],
        ),
        Route("/health", service.health, methods=["GET"]),
        Route("/healthz", service.health, methods=["GET"]),
        Route("/livez", service.livez, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_page, methods=["GET"]),
    ]
    open_paths = OPEN_PATHS | {"/livez", "/readyz"} | (set() if metrics_auth else {"/metrics"})
    middleware = (
        []
        if keys is None
        else [
            Middleware(
                BearerAuth, token=[Secret(key) for key in keys], open_paths=frozenset(open_paths)
            )
        ]
    )
    app = Starlette(
        routes=routes,
        # Outermost: a request's traceparent is the context of all its handling.
        middleware=[Middleware(TraceContext), *middleware],
        lifespan=service.lifespan,
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
    )
    app.state.rlm_service = service
    return app


def _endpoint(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except (ClientGone, ClientDisconnect):
            # Gone during the run or while sending the body. Nobody will read this; 499
            # ("client closed request") is for the access log.
            return Response(status_code=499)

    return endpoint


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    code = {404: "not_found", 405: "method_not_allowed"}.get(status)
    message = f"{detail}: {request.method} {request.url.path}"
    return error_response(ApiError(status, message, code=code))


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_response(from_run_error(exc))


class _Service:
    """The state behind the routes: the RLM, the run slots and the limits."""

    def __init__(
        self,
        rlm: RLM | Callable[[], RLM],
        *,
        metrics: ServerMetrics,
        slots: MeteredSlots,
        max_request_bytes: int,
        heartbeat: float | None,
        model_name: str,
        body_timeout: float | None,
        sessions: SessionRegistry,
    ) -> None:
        self.sessions = sessions
        self.rlm: RLM | None = rlm if isinstance(rlm, RLM) else None
        self._factory = None if isinstance(rlm, RLM) else rlm
        self.slots: RunSlots = slots
        self.max_request_bytes = max_request_bytes
        self.heartbeat = heartbeat
        self.model_name = model_name
        self.body_timeout = body_timeout
        self.state = "open" if self.rlm is not None else "starting"
        self.metrics = metrics
        # Under serve --workers N: the other workers, whose metrics a scrape includes.
        self.peer_metrics: PeerMetrics | None = None
        # Set once shutting down (readiness answers 503 from then on): see begin_drain.
        self.draining = False
        self.session_routes = SessionRoutes(self)

    def begin_drain(self) -> None:
        """Stop being ready: load balancers take the replica out while its runs finish.

        Called at the app's shutdown, and by ``rlm-async serve --drain-delay`` as soon as
        SIGTERM arrives (the server then keeps serving for the delay before it stops
        accepting). Idempotent; a drained app is not made ready again.
        """
        self.draining = True

    def run_listener(self) -> Callable[[ev.Event], None]:
        """The listener every run of the app gets: the metrics' (``/metrics``)."""
        return self.metrics.on_event

    def gauges(self) -> ServiceGauges:
        """The state ``/metrics`` reports at scrape time."""
        pool = self.rlm.repl_pool if self.rlm is not None else None
        return ServiceGauges(
            runs_in_flight=self.slots.in_flight,
            runs_queued=self.slots.queued,
            warm_repls_ready=pool.ready if pool is not None else 0,
            draining=self.draining,
        )

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.sessions.run_sweeper)
            try:
                async with self._rlm_for_lifespan():
                    yield
                    self.begin_drain()
            finally:
                tg.cancel_scope.cancel()
                await self.sessions.aclose()

    @asynccontextmanager
    async def _rlm_for_lifespan(self) -> AsyncIterator[None]:
        if self._factory is None:
            yield
            return
        rlm = self._factory()
        if not isinstance(rlm, RLM):
            raise ConfigurationError(
                f"the RLM factory must return an RLM, got {type(rlm).__name__}"
            )
        async with rlm:
            self.rlm, self.state = rlm, "open"
            try:
                yield
            finally:
                self.rlm, self.state = None, "closed"

    def current_rlm(self) -> RLM:
        if self.rlm is None:
            message = (
                "the service is shutting down"
                if self.state == "closed"
                else "the service is not open yet (its lifespan has not started the RLM)"
            )
            raise ApiError(503, message, type="server_error", code="unavailable")
        return self.rlm

    # ---- runs --------------------------------------------------------------------------

    async def _run(
        self, rlm: RLM, context: Any, query: str, schema: dict[str, Any] | None = None
    ) -> tuple[RLMResult, str | None]:
        """The run's result and, when a budget stopped it, which one (``schema``: the
        answer's JSON schema, its ``output_type``)."""
        try:
            result = await rlm.completion(
                context, query, output_type=schema, on_event=self.metrics.on_event
            )
            return result, None
        except BudgetExceeded as exc:
            if exc.partial is None:
                raise self.failed(exc) from exc
            return exc.partial, exc.budget
        except Exception as exc:
            raise self.failed(exc) from exc

    def failed(self, exc: Exception) -> ApiError:
        error = from_run_error(exc)
        fields: dict[str, Any] = {"error_type": type(exc).__name__, "status": error.status}
        if error.status >= 500 and error.code == "internal_error":
            fields["message"] = scrub_secrets(str(exc))[:500]
            _log.error("rlm_async.server.run_failed", **fields)
        else:
            _log.warning("rlm_async.server.run_failed", **fields)
        return error

    async def _slotted_run(
        self, rlm: RLM, context: Any, query: str, schema: dict[str, Any] | None = None
    ) -> tuple[RLMResult, str | None]:
        slot = await self.slots.acquire()
        try:
            return await self._run(rlm, context, query, schema)
        finally:
            slot.release()

    async def read_body(self, request: Request) -> bytes:
        return await read_body(request, self.max_request_bytes, within=self.body_timeout)

    # ---- routes ------------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        chat = await parse_body(ChatCompletionRequest, await self.read_body(request))
        context, query = context_and_query(chat)
        schema = await checked_schema(
            schema_of_response_format(chat.response_format), param="response_format"
        )
        typed = schema is not None
        rlm = apply_options(self.current_rlm(), chat.rlm_options, param="rlm_options")
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        model = chat.model or self.model_name
        created = int(time.time())
        if not chat.stream:
            result, _ = await until_disconnect(
                request, lambda: self._slotted_run(rlm, context, query, schema)
            )
            body = chat_completion(
                result,
                completion_id=completion_id,
                model=model,
                created=created,
                run_id=run_id_of(result),
                typed=typed,
            )
            return JSONResponse(body)

        include_usage = chat.include_usage

        async def produce(send: SSESend) -> None:
            def chunk(**fields: Any) -> bytes:
                return sse_data(
                    chat_chunk(
                        completion_id=completion_id,
                        model=model,
                        created=created,
                        include_usage=include_usage,
                        **fields,
                    )
                )

            await send(chunk(delta={"role": "assistant", "content": ""}))
            try:
                result, _ = await self._run(rlm, context, query, schema)
            except ApiError as exc:
                await send(sse_data(exc.body()))
                await send(sse_data("[DONE]"))
                return
            await send(chunk(delta={"content": answer_text(result, typed=typed)}))
            await send(chunk(delta={}, finish_reason="stop" if result.finished else "length"))
            if include_usage:
                await send(chunk(delta=None, usage=openai_usage(result.usage)))
            await send(sse_data("[DONE]"))

        slot = await self.slots.acquire()
        return SSEResponse(produce, heartbeat=self.heartbeat, on_close=slot.release)

    async def rlm_run(self, request: Request) -> Response:
        body = await parse_body(RLMRequest, await self.read_body(request))
        if body.stream or request.query_params.get("stream", "").lower() in ("1", "true"):
            return await self._stream(body)
        rlm = apply_options(self.current_rlm(), body.options)
        schema = await checked_schema(body.output_schema, param="output_schema")
        result, budget = await until_disconnect(
            request, lambda: self._slotted_run(rlm, body.context, body.query, schema)
        )
        return JSONResponse(result_body(result, budget=budget, typed=schema is not None))

    async def rlm_stream(self, request: Request) -> Response:
        body = await parse_body(RLMRequest, await self.read_body(request))
        return await self._stream(body)

    async def _stream(self, body: RLMRequest) -> Response:
        rlm = apply_options(self.current_rlm(), body.options)
        schema = await checked_schema(body.output_schema, param="output_schema")

        def start(emit: Callable[[ev.Event], None]) -> Awaitable[RLMResult]:
            listener = fan_out(self.metrics.on_event, emit)
            return rlm.completion(body.context, body.query, on_event=listener, output_type=schema)

        async def produce(send: SSESend) -> None:
            error: Exception | None = None
            # The engine's own run-to-events stream; closing it (the client went away)
            # cancels the run and kills its REPLs before this returns.
            events = stream_run(start, None)
            async with aclosing(events):
                while True:
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        break
                    except Exception as exc:  # BudgetExceeded too: the stream ends with `error`
                        error = exc
                        break
                    await send(sse_event(event.type, event.model_dump_json()))
            if error is not None:
                failure = self.failed(error)
                await send(sse_event("error", json.dumps(failure.body())))

        slot = await self.slots.acquire()
        return SSEResponse(produce, heartbeat=self.heartbeat, on_close=slot.release)

    async def models(self, request: Request) -> Response:
        return JSONResponse(models_body(self.model_name, self.current_rlm()))

    async def health(self, request: Request) -> Response:
        body, status = health_body(self.rlm, self.slots, self.state)
        return JSONResponse(body, status_code=status)

    async def livez(self, request: Request) -> Response:
        return JSONResponse(liveness_body())

    async def readyz(self, request: Request) -> Response:
        body, status = readiness_body(self.rlm, self.state, draining=self.draining)
        return JSONResponse(body, status_code=status)

    async def metrics_page(self, request: Request) -> Response:
        body = self.metrics.exposition()
        if self.peer_metrics is not None and LOCAL_HEADER not in request.headers:
            body = await self.peer_metrics.gather(body, request.headers.get("authorization"))
        return Response(body, media_type=CONTENT_TYPE)
