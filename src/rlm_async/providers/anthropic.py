"""Anthropic Messages (``POST {base}/v1/messages``).

Beyond the wire basics: the system prompt goes top-level (system-role messages in the
list are folded into it, consecutive same-role messages are merged), ``max_tokens`` is
always sent (the API requires it) with a default that fits the model, temperature is
clamped into Anthropic's 0-1 range instead of being refused, cache reads and writes are
counted as input (``Usage.input_tokens`` is the whole prompt, ``cached_tokens`` the cache
reads), and the SSE stream is checked to the end: an ``event: error`` after the 200 (for
example ``overloaded_error``) is raised as the matching error, and a stream cut before
``message_stop`` is a :class:`~rlm_async.ProviderResponseError`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx

from rlm_async._exceptions import ProviderResponseError
from rlm_async._logging import get_logger
from rlm_async._types import Completion, Usage
from rlm_async.providers._base import CompletionRequest, TextDelta
from rlm_async.providers._errors import request_id_from
from rlm_async.providers._framing import iter_sse, loads_object
from rlm_async.providers._http import HTTPProvider, merge_extra

__all__ = ["ANTHROPIC_VERSION", "AnthropicProvider", "default_max_tokens", "from_wire", "to_wire"]

_log = get_logger("rlm_async.provider")

ANTHROPIC_VERSION: Final = "2023-06-01"
DEFAULT_MAX_TOKENS: Final = 8192
# Claude 3 (not 3.5/3.7) models cap output at 4096 tokens.
_SMALL_OUTPUT = re.compile(r"^claude-3-(opus|sonnet|haiku)-\d")


def default_max_tokens(model: str) -> int:
    """The ``max_tokens`` sent when the request gives none (Anthropic requires one)."""
    return 4096 if _SMALL_OUTPUT.match(model) else DEFAULT_MAX_TOKENS


def to_wire(request: CompletionRequest, *, stream: bool = False) -> dict[str, Any]:
    """The Messages body for ``request``; ``request.extra`` is laid over it last."""
    system = [request.system] if request.system else []
    messages: list[dict[str, str]] = []
    for message in request.messages:
        if message.role == "system":
            system.append(message.content)
        elif messages and messages[-1]["role"] == message.role:
            messages[-1]["content"] += "\n\n" + message.content
        else:
            messages.append({"role": message.role, "content": message.content})
    payload: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or default_max_tokens(request.model),
        "messages": messages,
    }
    if system:
        payload["system"] = "\n\n".join(system)
    if request.temperature is not None:
        temperature = min(max(float(request.temperature), 0.0), 1.0)
        if temperature != request.temperature:
            _log.debug(
                "rlm_async.provider.temperature_clamped",
                provider="anthropic",
                requested=request.temperature,
                sent=temperature,
            )
        payload["temperature"] = temperature
    if stream:
        payload["stream"] = True
    return merge_extra(payload, request.extra)


def usage_from_wire(raw: Any) -> Usage:
    """Usage from a Messages ``usage`` object (cache reads and writes are input too)."""
    if not isinstance(raw, dict):
        return Usage()

    def n(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and value > 0 else 0

    read, written = n("cache_read_input_tokens"), n("cache_creation_input_tokens")
    return Usage(
        input_tokens=n("input_tokens") + read + written,
        output_tokens=n("output_tokens"),
        cached_tokens=read,
    )


def _check_text(text: str, stop_reason: Any, *, request_id: str | None, body: Any) -> None:
    if text:
        return
    if stop_reason == "max_tokens":
        message = "max_tokens was reached before any text (raise max_tokens)"
    elif stop_reason == "refusal":
        message = "the model refused to answer (stop_reason=refusal)"
    else:
        message = f"empty reply (stop_reason={stop_reason!r})"
    raise ProviderResponseError(message, provider="anthropic", request_id=request_id, body=body)


def from_wire(
    body: dict[str, Any], *, request_model: str = "", request_id: str | None = None
) -> Completion:
    """A :class:`Completion` from a Messages reply body (text blocks joined, thinking skipped)."""
    content = body.get("content")
    if not isinstance(content, list):
        raise ProviderResponseError(
            "the reply has no content", provider="anthropic", request_id=request_id, body=body
        )
    text = "".join(
        b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
    )
    stop = body.get("stop_reason")
    _check_text(text, stop, request_id=request_id, body=body)
    return Completion(
        text=text,
        finish_reason=stop if isinstance(stop, str) else None,
        usage=usage_from_wire(body.get("usage")),
        model=str(body.get("model") or request_model),
        provider="anthropic",
        request_id=request_id,
    )


class AnthropicProvider(HTTPProvider):
    """Anthropic's API (key: ``ANTHROPIC_API_KEY``, URL: ``ANTHROPIC_BASE_URL``)."""

    name: str = "anthropic"

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key or "", "anthropic-version": ANTHROPIC_VERSION}

    def _url(self, request: CompletionRequest, *, stream: bool) -> str:
        return f"{self.base_url}/v1/messages"

    def _to_wire(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        return to_wire(request, stream=stream)

    def _from_wire(
        self, body: dict[str, Any], request: CompletionRequest, request_id: str | None
    ) -> Completion:
        return from_wire(body, request_model=request.model, request_id=request_id)

    async def _parse_stream(
        self, lines: AsyncIterator[str], response: httpx.Response, request: CompletionRequest
    ) -> AsyncIterator[TextDelta | Completion]:
        request_id = request_id_from(response.headers)
        parts: list[str] = []
        raw_usage: dict[str, Any] = {}
        model, stop = request.model, None
        finished = False
        async for event in iter_sse(lines, self.name):
            if event.event == "ping":
                continue
            data = loads_object(event.data, self.name)
            kind = data.get("type", event.event)
            if kind == "error":
                raise self._stream_error(data, request_id)
            if kind == "message_start" and isinstance(data.get("message"), dict):
                message = data["message"]
                model = str(message.get("model") or model)
                if isinstance(message.get("usage"), dict):
                    raw_usage.update(message["usage"])
            elif kind == "content_block_delta" and isinstance(data.get("delta"), dict):
                delta = data["delta"]
                if delta.get("type") == "text_delta" and delta.get("text"):
                    parts.append(delta["text"])
                    yield TextDelta(text=delta["text"])
            elif kind == "message_delta":
                if isinstance(data.get("delta"), dict) and data["delta"].get("stop_reason"):
                    stop = data["delta"]["stop_reason"]
                if isinstance(data.get("usage"), dict):  # cumulative counts
                    raw_usage.update({k: v for k, v in data["usage"].items() if v is not None})
            elif kind == "message_stop":
                finished = True
                break
        if not finished:
            raise ProviderResponseError(
                "the stream ended before message_stop", provider=self.name, request_id=request_id
            )
        text = "".join(parts)
        _check_text(text, stop, request_id=request_id, body=None)
        yield Completion(
            text=text,
            finish_reason=stop,
            usage=usage_from_wire(raw_usage),
            model=model,
            provider=self.name,
            request_id=request_id,
        )
