"""Anthropic Messages (``POST {base}/v1/messages``).

Beyond the wire basics: the system prompt goes top-level (system-role messages in the
list are folded into it, consecutive same-role messages are merged), ``max_tokens`` is
always sent (the API requires it) with a default that fits the model, temperature is
clamped into Anthropic's 0-1 range instead of being refused, cache reads and writes are
counted as input (``Usage.input_tokens`` is the whole prompt, ``cached_tokens`` the cache
reads), and the SSE stream is checked to the end: an ``event: error`` after the 200 (for
example ``overloaded_error``) is raised as the matching error, and a stream cut before
``message_stop`` is a :class:`~rlm_async.ProviderResponseError`.

Prompt caching (a request with a ``cache_key``: a run's root conversation, which grows by
one turn at a time): ``cache_control`` breakpoints go on the system prompt and on the two
latest user turns, 3 of the API's 4. The latest writes the whole prompt to the cache for the
next turn to read; the one before is where the previous request wrote, so the read still
hits when the newest turn is rewritten (the engine's last turn extends it). Requests without
a key are sent unmarked: a cache write costs 1.25x input and a one-off prompt never reads it.
Prompts under the model's minimum (1024-4096 tokens) are simply not cached by the API.

Structured output (a ``response_schema``): the Messages API has no JSON mode, so the schema
is a tool the model is made to call (``tool_choice`` names it) and the tool call's input, as
JSON text, is the reply's text; streamed, its ``input_json_delta`` pieces are the deltas.
With extended thinking (``extra={"thinking": ...}``), which refuses a forced tool, the tool
is offered instead, and a reply in plain text is returned as it is for the engine to check.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import orjson

from rlm_async._exceptions import ProviderResponseError
from rlm_async._logging import get_logger
from rlm_async._types import Completion, Usage
from rlm_async.providers._base import CompletionRequest, TextDelta
from rlm_async.providers._errors import request_id_from
from rlm_async.providers._framing import iter_sse, loads_object
from rlm_async.providers._http import HTTPProvider, merge_extra
from rlm_async.providers._schema import ANSWER_NAME, object_schema, unwrap_reply

__all__ = ["ANTHROPIC_VERSION", "AnthropicProvider", "default_max_tokens", "from_wire", "to_wire"]

_log = get_logger("rlm_async.provider")

ANTHROPIC_VERSION: Final = "2023-06-01"
DEFAULT_MAX_TOKENS: Final = 8192
# Claude 3 (not 3.5/3.7) models cap output at 4096 tokens.
_SMALL_OUTPUT = re.compile(r"^claude-3-(opus|sonnet|haiku)-\d")
#: The API allows 4 cache breakpoints; one goes on the system prompt.
MAX_BREAKPOINTS: Final = 4
_TURN_BREAKPOINTS: Final = 2
_EPHEMERAL: Final = {"type": "ephemeral"}


def default_max_tokens(model: str) -> int:
    """The ``max_tokens`` sent when the request gives none (Anthropic requires one)."""
    return 4096 if _SMALL_OUTPUT.match(model) else DEFAULT_MAX_TOKENS


def to_wire(
    request: CompletionRequest, *, stream: bool = False, cache_prompts: bool = True
) -> dict[str, Any]:
    """The Messages body for ``request``; ``request.extra`` is laid over it last.

    ``cache_prompts=False`` sends no cache breakpoints even for a request with a
    ``cache_key``.
    """
    system = [request.system] if request.system else []
    messages: list[dict[str, Any]] = []
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
    caching = cache_prompts and request.cache_key is not None
    if system:
        text = "\n\n".join(system)
        payload["system"] = [_cached_block(text)] if caching else text
    if caching:
        _mark_latest_turns(messages)
    if request.response_schema is not None:
        payload.update(_answer_tool(request.response_schema, request.extra))
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


def _cached_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": dict(_EPHEMERAL)}


def _mark_latest_turns(messages: list[dict[str, Any]]) -> None:
    """Put a cache breakpoint on the last ``_TURN_BREAKPOINTS`` user messages."""
    marked = 0
    for message in reversed(messages):
        if marked == _TURN_BREAKPOINTS:
            break
        # An empty text block is refused by the API, with or without cache_control.
        if message["role"] == "user" and isinstance(message["content"], str) and message["content"]:
            message["content"] = [_cached_block(message["content"])]
            marked += 1


def _answer_tool(schema: dict[str, Any], extra: dict[str, object]) -> dict[str, Any]:
    """The forced tool whose input is the structured reply."""
    root, _ = object_schema(schema)
    tool = {
        "name": ANSWER_NAME,
        "description": "Give your answer: its input is the answer, in the required shape.",
        "input_schema": root,
    }
    thinking = extra.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in {"enabled", "adaptive"}:
        choice: dict[str, str] = {"type": "auto"}  # thinking refuses a forced tool
    else:
        choice = {"type": "tool", "name": ANSWER_NAME}
    return {"tools": [tool], "tool_choice": choice}


def _wrapped(request: CompletionRequest) -> bool:
    schema = request.response_schema
    return schema is not None and object_schema(schema)[1]


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
        cache_write_tokens=written,
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
    body: dict[str, Any],
    *,
    request_model: str = "",
    request_id: str | None = None,
    structured: bool = False,
    wrapped: bool = False,
) -> Completion:
    """A :class:`Completion` from a Messages reply body (text blocks joined, thinking skipped).

    ``structured``: the request asked for a schema, so the text is the answer tool's input
    as JSON (unwrapped if ``wrapped``), or the text blocks when the model wrote no call.
    """
    content = body.get("content")
    if not isinstance(content, list):
        raise ProviderResponseError(
            "the reply has no content", provider="anthropic", request_id=request_id, body=body
        )
    text = "".join(
        b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
    )
    if structured:
        calls = [
            b
            for b in content
            if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") == ANSWER_NAME
        ]
        if calls:
            text = unwrap_reply(orjson.dumps(calls[0].get("input", {})).decode(), wrapped)
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
    """Anthropic's API (key: ``ANTHROPIC_API_KEY``, URL: ``ANTHROPIC_BASE_URL``).

    Args:
        cache_prompts: Mark a run's root conversation for Anthropic's prompt cache (cache
            reads cost 0.1x input, writes 1.25x); ``False`` sends no breakpoints.
        **kwargs: As for every adapter (``base_url``, ``settings``, ``client``, ...).
    """

    name: str = "anthropic"

    def __init__(self, *, cache_prompts: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cache_prompts = cache_prompts

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key or "", "anthropic-version": ANTHROPIC_VERSION}

    def _url(self, request: CompletionRequest, *, stream: bool) -> str:
        return f"{self.base_url}/v1/messages"

    def _to_wire(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        return to_wire(request, stream=stream, cache_prompts=self.cache_prompts)

    def _from_wire(
        self, body: dict[str, Any], request: CompletionRequest, request_id: str | None
    ) -> Completion:
        return from_wire(
            body,
            request_model=request.model,
            request_id=request_id,
            structured=request.response_schema is not None,
            wrapped=_wrapped(request),
        )

    async def _parse_stream(
        self, lines: AsyncIterator[str], response: httpx.Response, request: CompletionRequest
    ) -> AsyncIterator[TextDelta | Completion]:
        request_id = request_id_from(response.headers)
        structured, wrapped = request.response_schema is not None, _wrapped(request)
        parts: list[str] = []
        answer: list[str] | None = None  # the answer tool's input JSON, once its block starts
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
            elif kind == "content_block_start" and structured and answer is None:
                block = data.get("content_block")
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    answer = [] if block.get("name") == ANSWER_NAME else None
            elif kind == "content_block_delta" and isinstance(data.get("delta"), dict):
                delta = data["delta"]
                if delta.get("type") == "text_delta" and delta.get("text"):
                    parts.append(delta["text"])
                    yield TextDelta(text=delta["text"])
                elif delta.get("type") == "input_json_delta" and answer is not None:
                    piece = delta.get("partial_json")
                    if isinstance(piece, str) and piece:
                        answer.append(piece)
                        if not wrapped:
                            yield TextDelta(text=piece)
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
        if answer is not None:  # no pieces: the tool was called with an empty input
            text = unwrap_reply("".join(answer) or "{}", wrapped)
        _check_text(text, stop, request_id=request_id, body=None)
        yield Completion(
            text=text,
            finish_reason=stop,
            usage=usage_from_wire(raw_usage),
            model=model,
            provider=self.name,
            request_id=request_id,
        )
