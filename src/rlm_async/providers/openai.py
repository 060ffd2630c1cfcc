"""OpenAI Chat Completions (``POST {base}/chat/completions``), and the OpenAI-shaped base.

Beyond the wire basics: ``max_completion_tokens`` (``max_tokens`` is refused by the o-series
and gpt-5), temperature left out for reasoning models (they accept only the default),
cached and reasoning tokens read into :class:`~rlm_async.Usage`, streaming with
``stream_options.include_usage`` so a streamed call is billed as exactly as a plain one,
errors sent inside a 200 stream raised as errors, and an empty, refused or truncated
reply raised as :class:`~rlm_async.ProviderResponseError` rather than returned as ``""``.
A ``response_schema`` is sent as ``response_format`` ``json_schema`` (strict when the schema
qualifies, see ``_schema.py``); a ``cache_key`` as ``prompt_cache_key``, so a run's turns are
routed to the same prompt cache (OpenAI caches prefixes of 1024+ tokens by itself).

:mod:`rlm_async.providers.xai` and :mod:`rlm_async.providers.openai_compatible` reuse
:class:`OpenAIStyleProvider` with their own small differences.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx

from rlm_async._exceptions import ProviderResponseError
from rlm_async._types import Completion, Usage
from rlm_async.providers._base import CompletionRequest, TextDelta
from rlm_async.providers._framing import iter_sse, loads_object
from rlm_async.providers._http import HTTPProvider, merge_extra
from rlm_async.providers._schema import ANSWER_NAME, object_schema, strict_ready, unwrap_reply

__all__ = ["OpenAIProvider", "OpenAIStyleProvider", "from_wire", "is_reasoning_model", "to_wire"]

_REASONING = re.compile(r"^(ft:)?(o\d|gpt-5)(?!-chat)", re.IGNORECASE)


def is_reasoning_model(model: str) -> bool:
    """o1/o3/o4 and gpt-5 models (not ``gpt-5-chat``): they take only the default temperature."""
    return _REASONING.match(model) is not None


def wire_messages(request: CompletionRequest) -> list[dict[str, str]]:
    """Chat messages with the system prompt first, as OpenAI-shaped APIs take them."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.content} for m in request.messages]
    return messages


def to_wire(
    request: CompletionRequest,
    *,
    stream: bool = False,
    max_tokens_field: str = "max_completion_tokens",
    drop_temperature_for_reasoning: bool = True,
    cache_key_field: str | None = "prompt_cache_key",
) -> dict[str, Any]:
    """The Chat Completions body for ``request``; ``request.extra`` is laid over it last.

    ``cache_key_field`` names the body field ``request.cache_key`` goes in (``None``: the
    server takes no such field, and the key is not sent in the body).
    """
    payload: dict[str, Any] = {"model": request.model, "messages": wire_messages(request)}
    if request.max_tokens is not None:
        payload[max_tokens_field] = request.max_tokens
    if request.temperature is not None and not (
        drop_temperature_for_reasoning and is_reasoning_model(request.model)
    ):
        payload["temperature"] = request.temperature
    if request.response_schema is not None:
        payload["response_format"] = response_format(request.response_schema)
    if request.cache_key is not None and cache_key_field is not None:
        payload[cache_key_field] = request.cache_key
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return merge_extra(payload, request.extra)


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``response_format`` asking for JSON matching ``schema`` (wrapped if not an object)."""
    root, _ = object_schema(schema)
    return {
        "type": "json_schema",
        "json_schema": {"name": ANSWER_NAME, "schema": root, "strict": strict_ready(root)},
    }


def usage_from_wire(raw: Any, *, reasoning_excluded: bool = False) -> Usage:
    """Usage from an OpenAI-shaped ``usage`` object.

    OpenAI counts reasoning inside ``completion_tokens``; xAI does not (its total is
    prompt + completion + reasoning). ``total_tokens`` tells the two apart when present;
    ``reasoning_excluded`` is the provider's convention for when it is not.
    """
    if not isinstance(raw, dict):
        return Usage()
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    cached = _int(_dig(raw, "prompt_tokens_details", "cached_tokens"))
    written = _int(_dig(raw, "prompt_tokens_details", "cache_write_tokens"))
    reasoning = _int(_dig(raw, "completion_tokens_details", "reasoning_tokens"))
    total = raw.get("total_tokens")
    if isinstance(total, int) and reasoning > 0:
        reasoning_excluded = total == prompt + completion + reasoning
    output = completion + reasoning if reasoning_excluded else completion
    return Usage(
        input_tokens=prompt,
        output_tokens=output,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        cache_write_tokens=written,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _dig(raw: dict[str, Any], *keys: str) -> Any:
    value: Any = raw
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some compatible servers send content parts
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def check_text(
    text: str,
    finish_reason: str | None,
    provider: str,
    *,
    refusal: Any = None,
    request_id: str | None = None,
    body: Any = None,
) -> None:
    """Raise :class:`ProviderResponseError` for an empty reply, saying why it is empty."""
    if text:
        return
    if refusal:
        message = f"the model refused: {refusal}"
    elif finish_reason == "length":
        message = (
            "the output limit was reached before any text (a reasoning model may have spent "
            "max_tokens thinking: raise max_tokens)"
        )
    elif finish_reason == "content_filter":
        message = "the reply was withheld by the provider's content filter"
    else:
        message = f"empty reply (finish_reason={finish_reason!r})"
    raise ProviderResponseError(message, provider=provider, request_id=request_id, body=body)


def from_wire(
    body: dict[str, Any],
    *,
    provider: str = "openai",
    request_model: str = "",
    request_id: str | None = None,
    reasoning_excluded: bool = False,
) -> Completion:
    """A :class:`Completion` from a Chat Completions reply body."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderResponseError(
            "the reply has no choices", provider=provider, request_id=request_id, body=body
        )
    choice = choices[0]
    message = _dict(choice.get("message"))
    text = _content_text(message.get("content"))
    finish = choice.get("finish_reason")
    check_text(
        text, finish, provider, refusal=message.get("refusal"), request_id=request_id, body=body
    )
    return Completion(
        text=text,
        finish_reason=finish if isinstance(finish, str) else None,
        usage=usage_from_wire(body.get("usage"), reasoning_excluded=reasoning_excluded),
        model=str(body.get("model") or request_model),
        provider=provider,
        request_id=request_id or (body.get("id") if isinstance(body.get("id"), str) else None),
    )


class OpenAIStyleProvider(HTTPProvider):
    """The Chat Completions wire format; subclasses set the name and the small differences."""

    name: str = "openai-style"
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    drop_temperature_for_reasoning: ClassVar[bool] = True
    reasoning_excluded: ClassVar[bool] = False
    #: The body field a request's ``cache_key`` goes in; ``None``: not sent in the body.
    cache_key_field: ClassVar[str | None] = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _url(self, request: CompletionRequest, *, stream: bool) -> str:
        return f"{self.base_url}/chat/completions"

    def _to_wire(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        return to_wire(
            request,
            stream=stream,
            max_tokens_field=self.max_tokens_field,
            drop_temperature_for_reasoning=self.drop_temperature_for_reasoning,
            cache_key_field=self.cache_key_field,
        )

    def _from_wire(
        self, body: dict[str, Any], request: CompletionRequest, request_id: str | None
    ) -> Completion:
        completion = from_wire(
            body,
            provider=self.name,
            request_model=request.model,
            request_id=request_id,
            reasoning_excluded=self.reasoning_excluded,
        )
        return _unwrapped(completion, request)

    async def _parse_stream(
        self, lines: AsyncIterator[str], response: httpx.Response, request: CompletionRequest
    ) -> AsyncIterator[TextDelta | Completion]:
        request_id = response.headers.get("x-request-id")
        # A wrapped schema's reply is unwrapped whole at the end: no deltas of the wrapper.
        wrapped = _wrapped(request)
        parts: list[str] = []
        finish: str | None = None
        usage = Usage()
        model = request.model
        done = False
        async for event in iter_sse(lines, self.name):
            if event.data.strip() == "[DONE]":
                done = True
                break
            chunk = loads_object(event.data, self.name)
            if chunk.get("error"):
                raise self._stream_error(chunk, request_id)
            model = str(chunk.get("model") or model)
            if request_id is None and isinstance(chunk.get("id"), str):
                request_id = chunk["id"]
            if chunk.get("usage"):
                usage = usage_from_wire(chunk["usage"], reasoning_excluded=self.reasoning_excluded)
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = _dict(choice.get("delta"))
                text = _content_text(delta.get("content"))
                if text:
                    parts.append(text)
                    if not wrapped:
                        yield TextDelta(text=text)
                if choice.get("finish_reason"):
                    finish = str(choice["finish_reason"])
        if not done and finish is None:
            raise ProviderResponseError(
                "the stream ended before the reply was complete",
                provider=self.name,
                request_id=request_id,
            )
        text = "".join(parts)
        check_text(text, finish, self.name, request_id=request_id)
        yield Completion(
            text=unwrap_reply(text, wrapped),
            finish_reason=finish,
            usage=usage,
            model=model,
            provider=self.name,
            request_id=request_id,
        )


def _wrapped(request: CompletionRequest) -> bool:
    schema = request.response_schema
    return schema is not None and object_schema(schema)[1]


def _unwrapped(completion: Completion, request: CompletionRequest) -> Completion:
    if not _wrapped(request):
        return completion
    return completion.model_copy(update={"text": unwrap_reply(completion.text, True)})


class OpenAIProvider(OpenAIStyleProvider):
    """OpenAI's Chat Completions API (key: ``OPENAI_API_KEY``, URL: ``OPENAI_BASE_URL``)."""

    name: str = "openai"
    cache_key_field: ClassVar[str | None] = "prompt_cache_key"
