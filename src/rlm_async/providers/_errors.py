"""Turning HTTP failures into our error tree, at one boundary.

Every provider's error body is read by one function (:func:`describe_error_body`), which
knows the shapes in use: OpenAI/Ollama-``/v1`` ``{"error": {"message", "type", "code"}}``,
Anthropic ``{"type": "error", "error": {"type", "message"}, "request_id"}``, Gemini
``{"error": {"code", "message", "status", "details"}}``, xAI ``{"code", "error": "..."}``,
Ollama ``{"error": "..."}``, and non-JSON pages (a proxy's HTML 502).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from rlm_async._exceptions import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm_async.providers._body import parse_json
from rlm_async.providers._retry import (
    RETRYABLE_STATUSES,
    RetryableFailure,
    retry_delay_hint,
    should_retry_header,
)

__all__ = [
    "ErrorInfo",
    "describe_error_body",
    "error_for_type",
    "failure_from_response",
    "map_transport_errors",
    "request_id_from",
]

_BODY_LIMIT: Final = 4000
_REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-goog-request-id", "cf-ray")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an error body says, whatever its shape."""

    message: str
    type: str | None = None
    code: str | None = None
    reason: str | None = None
    request_id: str | None = None


def parse_body(text: str) -> Any:
    """The JSON value of ``text``, or the (truncated) text itself when it is not JSON."""
    try:
        return parse_json(text)
    except ValueError:
        return text[:_BODY_LIMIT]


def describe_error_body(body: Any, *, status_code: int | None = None) -> ErrorInfo:
    """Read the message, type, code and reason out of any provider's error body."""
    if isinstance(body, dict):
        error = body.get("error")
        request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
        if isinstance(error, dict):
            reason = None
            for detail in error.get("details") or []:
                if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
                    reason = detail["reason"]
                    break
            code = error.get("code")
            return ErrorInfo(
                message=str(error.get("message") or error.get("type") or "unknown error"),
                type=_str(error.get("type")) or _str(error.get("status")),
                code=None if code is None else str(code),
                reason=reason,
                request_id=request_id,
            )
        if isinstance(error, str):
            return ErrorInfo(message=error, code=_str(body.get("code")), request_id=request_id)
        if isinstance(body.get("message"), str):
            return ErrorInfo(message=body["message"], code=_str(body.get("code")))
        if isinstance(body.get("detail"), str):  # FastAPI-based servers (vLLM's errors)
            return ErrorInfo(message=body["detail"])
    if isinstance(body, str) and body.strip():
        return ErrorInfo(message=_page_summary(body))
    return ErrorInfo(message=f"HTTP {status_code}" if status_code else "empty error body")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _page_summary(text: str) -> str:
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        return f"non-JSON reply: {title.group(1).strip()[:200]}"
    flat = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    return flat[:300] if flat else "non-JSON reply"


def request_id_from(headers: Mapping[str, str], info: ErrorInfo | None = None) -> str | None:
    """The provider's request id, from the headers or the error body."""
    for name in _REQUEST_ID_HEADERS[:3]:
        if headers.get(name):
            return headers[name]
    return info.request_id if info is not None else None


def _is_bad_key(info: ErrorInfo) -> bool:
    # Gemini and xAI answer 400 (not 401) for a wrong key.
    if info.reason == "API_KEY_INVALID" or info.code in {"invalid_api_key", "API_KEY_INVALID"}:
        return True
    text = info.message.lower()
    return "api key" in text and any(w in text for w in ("invalid", "incorrect", "not valid"))


def error_class_for_status(status: int, info: ErrorInfo) -> type[ProviderError]:
    """The error class for an HTTP status and what the body says."""
    if status in (401, 403) or (status == 400 and _is_bad_key(info)):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitError
    if status in (408, 504):
        return ProviderTimeoutError
    if status == 409 or status >= 500:
        return ProviderUnavailableError
    return BadRequestError


def _is_quota(info: ErrorInfo) -> bool:
    return "insufficient_quota" in {info.code, info.type}


def failure_from_response(
    provider: str, response: httpx.Response, text: str, *, now: float | None = None
) -> ProviderError | RetryableFailure:
    """The error for a non-2xx response: retryable (wrapped) or final.

    ``text`` is the already-scrubbed body text.
    """
    status = response.status_code
    body = parse_body(text)
    info = describe_error_body(body, status_code=status)
    cls = error_class_for_status(status, info)
    request_id = request_id_from(response.headers, info)
    delay = retry_delay_hint(response.headers, body, status_code=status, now=now)
    message = info.message
    if provider == "ollama" and status == 404 and "not found" in message:
        message += " (pull it first: ollama pull <model>)"
    if 300 <= status < 400:
        where = response.headers.get("location")
        message += (
            f" (a redirect{f' to {where}' if where else ''}: the base URL is probably wrong; "
            "point it at the API itself, e.g. https://api.openai.com/v1)"
        )
    kwargs: dict[str, Any] = {
        "provider": provider,
        "status_code": status,
        "request_id": request_id,
        "body": body,
    }
    error = (
        RateLimitError(message, retry_after=delay, **kwargs)
        if cls is RateLimitError
        else cls(message, **kwargs)
    )
    verdict = should_retry_header(response.headers)
    retryable = status in RETRYABLE_STATUSES if verdict is None else verdict
    if _is_quota(info):
        retryable = False
    if retryable:
        return RetryableFailure(error, delay)
    return error


# Error "type" strings carried inside a 200 stream (Anthropic SSE, OpenAI mid-stream).
_TYPE_CLASSES: Final[dict[str, type[ProviderError]]] = {
    "overloaded_error": ProviderUnavailableError,
    "api_error": ProviderUnavailableError,
    "server_error": ProviderUnavailableError,
    "rate_limit_error": RateLimitError,
    "rate_limit_exceeded": RateLimitError,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "not_found_error": NotFoundError,
    "invalid_request_error": BadRequestError,
    "request_too_large": BadRequestError,
    "timeout_error": ProviderTimeoutError,
}


def error_for_type(
    provider: str, info: ErrorInfo, *, body: Any = None, request_id: str | None = None
) -> ProviderError:
    """The error for an error object that arrived inside a successful (200) stream."""
    cls = _TYPE_CLASSES.get(info.type or "") or _TYPE_CLASSES.get(info.code or "")
    if cls is None:
        cls = ProviderResponseError
    return cls(
        info.message,
        provider=provider,
        request_id=request_id or info.request_id,
        body=body,
    )


@contextlib.contextmanager
def map_transport_errors(provider: str, *, hint: str = "") -> Iterator[None]:
    """Translate httpx's transport exceptions into ours (``raise ... from exc``).

    Cancellation is not an httpx exception and passes through untouched.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        setting = "connect_timeout" if isinstance(exc, httpx.ConnectTimeout) else "read_timeout"
        raise ProviderTimeoutError(
            f"request timed out ({type(exc).__name__}); if the server is just slow, raise "
            f"Settings({setting}=...) or RLM_ASYNC_{setting.upper()} (seconds)",
            provider=provider,
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise ConfigurationError(
            f"{provider}: the base URL must start with http:// or https:// ({exc})"
        ) from exc
    except httpx.DecodingError as exc:
        raise ProviderResponseError(
            f"could not decode the reply ({exc})", provider=provider
        ) from exc
    except httpx.TransportError as exc:
        detail = str(exc) or type(exc).__name__
        raise ProviderUnavailableError(
            f"connection failed: {detail}{hint}", provider=provider
        ) from exc
