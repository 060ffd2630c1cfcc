"""Optional bearer-token authentication, as plain ASGI middleware.

The token is compared in constant time (``hmac.compare_digest`` on bytes), is never
logged, and is never echoed in an error. Health checks (``/health``, ``/healthz``) stay
open so a load balancer needs no secret; they reveal only counters.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.datastructures import Secret
from starlette.types import ASGIApp, Receive, Scope, Send

from rlm_async._exceptions import ConfigurationError
from rlm_async.server._errors import ApiError, error_response

__all__ = ["BearerAuth", "api_keys"]

OPEN_PATHS = frozenset({"/health", "/healthz"})


def api_keys(api_key: object) -> list[str] | None:
    """``create_app``'s ``api_key`` as a list of tokens (``None``: no authentication).

    Raises:
        ConfigurationError: not a non-empty str, nor a non-empty list of them.
    """
    if api_key is None:
        return None
    keys = [api_key] if isinstance(api_key, str) else api_key
    if (
        not isinstance(keys, list | tuple)
        or not keys
        or not all(isinstance(key, str) and key for key in keys)
    ):
        raise ConfigurationError(
            "api_key must be a non-empty str, a non-empty list of them (one per caller), or None"
        )
    return list(keys)


class BearerAuth:
    """Refuse HTTP requests without ``Authorization: Bearer <token>`` with 401.

    Args:
        app: The application to protect.
        token: The expected token, or several (one per caller: sessions belong to the
            token that made them); pass them as ``starlette.datastructures.Secret`` so
            that reprs of the middleware stack do not show them.
        open_paths: Paths served without a token.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | Secret | Sequence[str | Secret],
        open_paths: frozenset[str] = OPEN_PATHS,
    ) -> None:
        tokens = [token] if isinstance(token, str | Secret) else list(token)
        values = [str(each) for each in tokens]
        if not values or not all(values):
            raise ValueError("the bearer token must not be empty")
        self.app = app
        self._expected = [b"Bearer " + value.encode("utf-8") for value in values]
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
        # Every token is compared, so the time taken does not say which one matched.
        matched = [hmac.compare_digest(given, expected) for expected in self._expected]
        if any(matched):
            await self.app(scope, receive, send)
            return
        error = ApiError(
            401,
            "missing or invalid bearer token (send 'Authorization: Bearer <token>')",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await error_response(error)(scope, receive, send)
