"""Sessions over HTTP: ``POST /v1/sessions``, then completions on one REPL.

Routes::

    POST   /v1/sessions                    {"context", "budget"} -> {"id", "object": ...}
    POST   /v1/sessions/{id}/completions   {"query", "options"} -> as /v1/rlm, + "session_turn"
    POST   /v1/sessions/{id}/contexts      {"context"} -> {"name": "context_2"}
    DELETE /v1/sessions/{id}               kills the session's REPL

A session belongs to the caller that made it: the bearer token it sent (kept as a hash),
or nobody in particular when the server has no ``api_key``; another caller gets a 404, as
for a session that does not exist. At most ``max_sessions`` are open at once (429 past
them; 0 turns sessions off: 501); one left unused for ``idle_timeout`` seconds is closed
(its REPL killed), by a sweep that runs on every session request and, while the app's
lifespan runs, every few seconds.

A session lives in the process that made it: with several worker processes
(``rlm-async serve --workers N``), ``server._session_affinity`` names each session after
its worker and forwards its requests there.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from rlm_async._exceptions import ConfigurationError, RLMClosed
from rlm_async._logging import get_logger
from rlm_async.engine._budget import Budget
from rlm_async.engine._rlm import RLM
from rlm_async.engine._session import Session
from rlm_async.server._errors import ApiError
from rlm_async.server._options import RunOptions

__all__ = [
    "SessionCompletionRequest",
    "SessionContextRequest",
    "SessionCreateRequest",
    "SessionRegistry",
    "owner_of",
]

_log = get_logger("rlm_async.server")


class SessionBudgetRequest(BaseModel):
    """A budget for all of a session's completions together (``rlm.session(budget=...)``):
    it can only tighten, as each completion also runs under the server's own budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_seconds: float | None = Field(default=None, gt=0)
    max_subcalls: int | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_total_tokens: int | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)

    def budget(self) -> Budget:
        chosen = self.model_dump(exclude_none=True)
        if "max_total_tokens" in chosen:
            chosen["max_tokens"] = chosen.pop("max_total_tokens")
        return Budget(**chosen)


class SessionContextRequest(BaseModel):
    """The body of ``POST /v1/sessions/{id}/contexts``: one more context."""

    model_config = ConfigDict(extra="forbid")

    context: str | list[Any] | dict[str, Any]


class SessionCreateRequest(SessionContextRequest):
    """The body of ``POST /v1/sessions``: the session's first context, and a budget for the
    whole session (optional)."""

    budget: SessionBudgetRequest | None = None


class SessionCompletionRequest(BaseModel):
    """The body of ``POST /v1/sessions/{id}/completions`` (``output_schema``: a JSON schema
    the answer must match, as on ``/v1/rlm``)."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    options: RunOptions | None = None
    output_schema: dict[str, Any] | None = None


def owner_of(request: Request) -> str:
    """Who makes the request: a hash of its bearer token ("" without one).

    Read as ``BearerAuth`` reads it: the scheme is case-insensitive (RFC 9110) and the
    spaces around the token are not part of it, so ``bearer  t`` is the caller ``Bearer t``.
    """
    given = request.headers.get("authorization", "").strip()
    if not given:
        return ""
    scheme, _, token = given.partition(" ")
    if scheme.lower() == "bearer":
        given = "Bearer " + token.strip()
    return hashlib.sha256(given.encode("utf-8")).hexdigest()


@dataclass(eq=False)
class _Entry:
    session: Session
    owner: str
    last_used: float
    busy: int = 0


class SessionRegistry:
    """The open sessions of one app: who owns each, when each was last used.

    Args:
        max_sessions: Sessions open at once (all callers together); 0: none, sessions are
            off.
        idle_timeout: Seconds a session may go unused before it is closed.
        clock: Monotonic seconds (tests give their own).
    """

    def __init__(
        self,
        *,
        max_sessions: int,
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self._clock = clock
        # Put in front of the ids' random part: a worker among several names its sessions
        # after itself (server._session_affinity).
        self.id_prefix = ""
        self._entries: dict[str, _Entry] = {}
        # Sessions being created: they count against the limit, and aclose() closes them.
        self._creating: set[Session] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    async def create(
        self, rlm: RLM, context: Any, owner: str, budget: Budget | None = None
    ) -> tuple[str, Session]:
        """Start a session for ``owner`` (``budget``: for all its completions together).

        Raises:
            ApiError: 429 when ``max_sessions`` are open, 501 when sessions are off.
        """
        await self.sweep()
        if self._closed:
            raise ApiError(503, "the service is shutting down", type="server_error", code="closed")
        if self.max_sessions == 0:
            raise ApiError(
                501,
                "this server keeps no sessions (max_sessions=0; `rlm-async serve "
                "--max-sessions N` turns them on): use POST /v1/rlm, one completion a request",
                code="sessions_disabled",
            )
        if len(self._entries) + len(self._creating) >= self.max_sessions:
            raise ApiError(
                429,
                f"this server has {self.max_sessions} sessions open, its limit; close one "
                "(DELETE /v1/sessions/{id}) or wait for an idle one to expire",
                type="rate_limit_error",
                code="too_many_sessions",
            )
        session = rlm.session(context, budget=budget)
        self._creating.add(session)
        try:
            await session.start()  # aclose() meanwhile closes it: RLMClosed, a 503
        except ConfigurationError as exc:
            raise ApiError(400, str(exc), param="context") from exc
        except RLMClosed as exc:
            raise ApiError(
                503, "the service is shutting down", type="server_error", code="closed"
            ) from exc
        finally:
            self._creating.discard(session)
        if self._closed:  # closed as the start ended: not registered, so close it here
            await session.aclose()
            raise ApiError(503, "the service is shutting down", type="server_error", code="closed")
        session_id = f"sess_{self.id_prefix}{secrets.token_hex(12)}"
        self._entries[session_id] = _Entry(session, owner, self._clock())
        return session_id, session

    @contextlib.asynccontextmanager
    async def using(self, session_id: str, owner: str) -> AsyncIterator[Session]:
        """The caller's session for the block: not expired while the block runs.

        Raises:
            ApiError: 404 for a session that does not exist, is closed, or is another's.
        """
        await self.sweep()
        entry = self._entries.get(session_id)
        if entry is None or not hmac.compare_digest(entry.owner, owner):
            raise ApiError(404, f"no session {session_id!r}", code="session_not_found")
        if entry.session.closed:  # closed with its RLM
            self._entries.pop(session_id, None)
            raise ApiError(404, f"no session {session_id!r}", code="session_not_found")
        entry.busy += 1
        try:
            yield entry.session
        finally:
            entry.busy -= 1
            entry.last_used = self._clock()

    async def delete(self, session_id: str, owner: str) -> None:
        """Close the caller's session (its REPL killed, a completion in progress cancelled).

        Raises:
            ApiError: 404, as for ``using``.
        """
        entry = self._entries.get(session_id)
        if entry is None or not hmac.compare_digest(entry.owner, owner):
            raise ApiError(404, f"no session {session_id!r}", code="session_not_found")
        del self._entries[session_id]
        await entry.session.aclose()

    async def sweep(self) -> int:
        """Close the sessions unused for ``idle_timeout`` seconds; how many were closed."""
        now = self._clock()
        idle = [
            (session_id, entry)
            for session_id, entry in self._entries.items()
            if entry.busy == 0 and now - entry.last_used >= self.idle_timeout
        ]
        for session_id, entry in idle:
            self._entries.pop(session_id, None)
            _log.info("rlm_async.server.session_expired", session=session_id)
            await entry.session.aclose()
        return len(idle)

    async def run_sweeper(self) -> None:
        """Sweep every few seconds, until cancelled (the app's lifespan runs it)."""
        while True:
            await anyio.sleep(min(max(self.idle_timeout / 4, 0.5), 30.0))
            await self.sweep()

    async def aclose(self) -> None:
        """Close every session, those being created too (the app is shutting down)."""
        self._closed = True
        entries, self._entries = list(self._entries.values()), {}
        for session in [*(entry.session for entry in entries), *self._creating]:
            await session.aclose()
