"""The ``/v1/sessions`` endpoints: a conversation over one REPL, then its completions,
contexts and ``DELETE`` (the sessions themselves are kept by :class:`SessionRegistry`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rlm_async import events as ev
from rlm_async._exceptions import BudgetExceeded, ConfigurationError
from rlm_async._types import RLMResult
from rlm_async.engine._rlm import RLM
from rlm_async.server._body import parse_body
from rlm_async.server._errors import ApiError
from rlm_async.server._limits import RunSlots
from rlm_async.server._native import result_body
from rlm_async.server._options import apply_options
from rlm_async.server._output_schema import checked_schema
from rlm_async.server._runs import until_disconnect
from rlm_async.server._sessions import (
    SessionCompletionRequest,
    SessionContextRequest,
    SessionCreateRequest,
    SessionRegistry,
    owner_of,
)

__all__ = ["SessionRoutes"]


class _Service(Protocol):
    """What the endpoints use of the app's service: its RLM, run slots, body limits."""

    slots: RunSlots
    sessions: SessionRegistry

    def current_rlm(self) -> RLM: ...

    def run_listener(self) -> Callable[[ev.Event], None]: ...

    async def read_body(self, request: Request) -> bytes: ...

    def failed(self, exc: Exception) -> ApiError: ...


class SessionRoutes:
    """The session endpoints of one app, over its service (its RLM, slots and sessions)."""

    def __init__(self, service: _Service) -> None:
        self.service = service
        self._running: set[str] = set()  # ids of sessions with a completion running

    async def create(self, request: Request) -> Response:
        body = await parse_body(SessionCreateRequest, await self.service.read_body(request))
        session_id, session = await self.service.sessions.create(
            self.service.current_rlm(),
            body.context,
            owner_of(request),
            None if body.budget is None else body.budget.budget(),
        )
        return JSONResponse(
            {
                "id": session_id,
                "object": "rlm.session",
                "context_names": session.context_names,
                "idle_timeout": self.service.sessions.idle_timeout,
            },
            status_code=201,
        )

    async def completion(self, request: Request) -> Response:
        body = await parse_body(SessionCompletionRequest, await self.service.read_body(request))
        session_id = request.path_params["session_id"]
        options = apply_options(self.service.current_rlm(), body.options).options
        schema = await checked_schema(body.output_schema, param="output_schema")
        async with self.service.sessions.using(session_id, owner_of(request)) as session:
            # A session runs one completion at a time. A second one is refused before it
            # takes a run slot: waiting for the session while holding a slot would let one
            # client's queue of completions lock every other client out with 429s.
            if session_id in self._running:
                raise ApiError(
                    409,
                    f"session {session_id!r} is already running a completion; send this one "
                    "once that one has been answered",
                    code="session_busy",
                )
            self._running.add(session_id)  # no await since the check: no race

            async def run() -> tuple[RLMResult, str | None]:
                slot = await self.service.slots.acquire()
                try:
                    completion = session.completion(
                        body.query,
                        options=options,
                        output_type=schema,
                        on_event=self.service.run_listener(),
                    )
                    return await completion, None
                except BudgetExceeded as exc:
                    if exc.partial is None:
                        raise self.service.failed(exc) from exc
                    return exc.partial, exc.budget
                except ApiError:
                    raise
                except Exception as exc:
                    raise self.service.failed(exc) from exc
                finally:
                    slot.release()

            try:
                result, budget = await until_disconnect(request, run)
            finally:
                self._running.discard(session_id)
        answer = result_body(result, budget=budget, typed=schema is not None)
        answer["session"] = session_id
        answer["session_turn"] = result.metadata.get("session_turn")
        return JSONResponse(answer)

    async def add_context(self, request: Request) -> Response:
        body = await parse_body(SessionContextRequest, await self.service.read_body(request))
        session_id = request.path_params["session_id"]
        async with self.service.sessions.using(session_id, owner_of(request)) as session:
            try:
                name = await session.add_context(body.context)
            except ConfigurationError as exc:
                raise ApiError(400, str(exc), param="context") from exc
        return JSONResponse({"session": session_id, "name": name})

    async def delete(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        await self.service.sessions.delete(session_id, owner_of(request))
        return JSONResponse({"id": session_id, "object": "rlm.session", "deleted": True})
