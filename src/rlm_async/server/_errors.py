"""HTTP errors in the OpenAI shape, and the mapping from the library's errors to them.

Every error response of the service has the body OpenAI's clients already parse::

    {"error": {"message": "...", "type": "...", "param": null, "code": "..."}}

Statuses: 400 a body we cannot use (or a root conversation past its model's context window:
OpenAI's ``context_length_exceeded``), 401 a missing or wrong bearer token, 413 a body over
the size limit, 422 answers that never matched the requested schema, 429 every run slot
(and the queue) taken, 502 the upstream model provider failed, 503 the service is not open
(starting, shutting down) or a queued request waited too long, 500 anything else. Messages
that come from a provider are scrubbed of anything that looks like a key; messages of
unexpected errors are not sent at all.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from rlm_async._exceptions import (
    AuthenticationError,
    BudgetExceeded,
    ConfigurationError,
    ContextTypeError,
    ContextWindowExceeded,
    NotFoundError,
    OutputValidationError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ReplError,
)
from rlm_async.trajectory import scrub_secrets

__all__ = ["ApiError", "error_body", "error_response", "from_run_error"]


class ApiError(Exception):
    """An error the service answers with, in the OpenAI error shape.

    Not an ``RLMError``: it never leaves the server package; it is turned into a response.

    Attributes:
        status: The HTTP status.
        message: What went wrong, for the client (never a secret, never a traceback).
        type: OpenAI's error ``type`` (``"invalid_request_error"``, ``"server_error"``...).
        code: A short machine-readable code, or ``None``.
        param: The request field at fault, or ``None``.
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # OpenAI's field name
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The response body: ``{"error": {...}}``."""
        return error_body(self.message, type=self.type, code=self.code, param=self.param)


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",  # OpenAI's field name
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """An OpenAI-shaped error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: ApiError) -> JSONResponse:
    """The JSON response for ``error``."""
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def from_run_error(exc: Exception) -> ApiError:
    """Map an error raised by a run to the response the client gets.

    ``BudgetExceeded`` is normally answered with the partial result instead (see the
    endpoints); it maps here only for streams, where the answer is already on its way.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ProviderError):
        return ApiError(
            502,
            f"the upstream model provider failed: {scrub_secrets(str(exc))}",
            type="upstream_error",
            code=_provider_code(exc),
        )
    if isinstance(exc, ContextTypeError):
        return ApiError(400, str(exc), param="context", code="invalid_context")
    if isinstance(exc, BudgetExceeded):
        return ApiError(
            400 if exc.partial is None else 200,
            str(exc),
            type="budget_exceeded",
            code=exc.budget,
        )
    if isinstance(exc, ContextWindowExceeded):  # OpenAI's code: its clients recognise it
        return ApiError(400, str(exc), code="context_length_exceeded")
    if isinstance(exc, OutputValidationError):  # the model's answers, not the request
        return ApiError(
            422, str(exc)[:4000], type="output_validation_error", code="output_validation_failed"
        )
    if isinstance(exc, ConfigurationError) and "closed" in str(exc):
        return ApiError(503, "the service is shutting down", type="server_error", code="closed")
    if isinstance(exc, ReplError):
        return ApiError(
            500,
            f"the REPL failed: {type(exc).__name__}",
            type="server_error",
            code="repl_error",
        )
    return ApiError(500, "internal server error", type="server_error", code="internal_error")


def _provider_code(exc: ProviderError) -> str:
    if isinstance(exc, AuthenticationError):
        return "upstream_authentication"
    if isinstance(exc, RateLimitError):
        return "upstream_rate_limited"
    if isinstance(exc, ProviderTimeoutError):
        return "upstream_timeout"
    if isinstance(exc, NotFoundError):
        return "upstream_not_found"
    return "upstream_error"
