"""Optional bearer-token authentication, as plain ASGI middleware.

The token is compared in constant time (``hmac.compare_digest`` on bytes), is never
logged, and is never echoed in an error. Health checks (``/health``, ``/healthz``) stay
open so a load balancer needs no secret; they reveal only counters.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Secret
from starlette.types import ASGIApp, Receive, Scope, Send

from rlm_async.server._errors import ApiError, error_response

__all__ = ["BearerAuth"]

OPEN_PATHS = frozenset({"/health", "/healthz"})


class BearerAuth:
    """Refuse HTTP requests without ``Authorization: Bearer <token>`` with 401.

    Args:
        app: The application to protect.
        token: The expected token; pass it as a ``starlette.datastructures.Secret`` so
            that reprs of the middleware stack do not show it.
        open_paths: Paths served without a token.
    """

    def __init__(
        self, app: ASGIApp, *, token: str | Secret, open_paths: frozenset[str] = OPEN_PATHS
    ) -> None:
        value = str(token)
        if not value:
            raise ValueError("the bearer token must not be empty")
        self.app = app
        self._expected = b"Bearer " + value.encode("utf-8")
        self._open_paths = open_paths

    def __repr__(self) -> str:  # never show the token
        return f"{type(self).__name__}(app={self.app!r}, token=***)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._open_paths:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        # compare_digest takes time independent of where the values differ; the scheme
        # is matched case-insensitively as RFC 9110 asks.
        if given[:7].lower() == b"bearer ":
            given = b"Bearer " + given[7:].strip()
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        error = ApiError(
            401,
            "missing or invalid bearer token (send 'Authorization: Bearer <token>')",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await error_response(error)(scope, receive, send)
