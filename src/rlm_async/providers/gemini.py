"""Google Gemini (``POST {base}/v1beta/models/{model}:generateContent``).

Beyond the wire basics: roles mapped to ``user`` / ``model`` with the system prompt in
``systemInstruction``; thought parts skipped in the text but their tokens counted as
output (``Usage.output_tokens`` = candidates + thoughts, what is billed); a blocked prompt
(no candidates, ``promptFeedback.blockReason``), a reply with no text, and the thinking
trap (``MAX_TOKENS`` with empty text, because thoughts count against
``maxOutputTokens``) raised as :class:`~rlm_async.ProviderResponseError` with a message
saying what to change; a 400 for a bad key is an authentication error and a 429's
``RetryInfo.retryDelay`` is honoured (both in the shared error handling); ``responseId``
becomes the request id. Streaming uses ``:streamGenerateContent?alt=sse``.

A ``response_schema`` is sent as ``generationConfig.responseMimeType: application/json`` with
``responseJsonSchema`` (standard JSON Schema, ``$ref`` and ``anyOf`` included, since the API's
November 2025 update) rather than ``responseSchema``, whose OpenAPI subset refuses what
pydantic writes (``$defs``, ``additionalProperties``, ``title``). Prompt caching is implicit
on Gemini 2.5 and later: nothing is sent, and ``cachedContentTokenCount`` is read into
``Usage.cached_tokens``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from rlm_async._exceptions import ProviderResponseError
from rlm_async._types import Completion, Usage
from rlm_async.providers._base import CompletionRequest, TextDelta
from rlm_async.providers._framing import iter_sse, loads_object
from rlm_async.providers._http import HTTPProvider, merge_extra

__all__ = ["GeminiProvider", "from_wire", "to_wire"]


def to_wire(request: CompletionRequest) -> dict[str, Any]:
    """The generateContent body for ``request``; ``request.extra`` is laid over it last."""
    system = [request.system] if request.system else []
    contents: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            system.append(message.content)
            continue
        role = "model" if message.role == "assistant" else "user"
        contents.append({"role": role, "parts": [{"text": message.content}]})
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.response_schema is not None:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = request.response_schema
    if config:
        payload["generationConfig"] = config
    return merge_extra(payload, request.extra)


def usage_from_wire(raw: Any) -> Usage:
    """Usage from ``usageMetadata``: output includes thoughts (total = prompt + both)."""
    if not isinstance(raw, dict):
        return Usage()

    def n(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and value > 0 else 0

    thoughts = n("thoughtsTokenCount")
    return Usage(
        input_tokens=n("promptTokenCount"),
        output_tokens=n("candidatesTokenCount") + thoughts,
        cached_tokens=n("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def _candidate_text(candidate: dict[str, Any]) -> str:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    return "".join(
        p["text"]
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    )


def _blocked(body: dict[str, Any], request_id: str | None) -> ProviderResponseError:
    feedback = body.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    message = f"the prompt was blocked ({reason})" if reason else "the reply has no candidates"
    return ProviderResponseError(message, provider="gemini", request_id=request_id, body=body)


def _check_text(text: str, finish: Any, *, request_id: str | None, body: Any) -> None:
    if text:
        return
    if finish == "MAX_TOKENS":
        message = (
            "maxOutputTokens was reached before any answer text (thinking tokens count "
            "against the limit: raise max_tokens or lower the thinking budget)"
        )
    else:
        message = f"the reply has no text (finishReason={finish!r})"
    raise ProviderResponseError(message, provider="gemini", request_id=request_id, body=body)


def from_wire(
    body: dict[str, Any], *, request_model: str = "", request_id: str | None = None
) -> Completion:
    """A :class:`Completion` from a generateContent reply body."""
    request_id = request_id or (
        body.get("responseId") if isinstance(body.get("responseId"), str) else None
    )
    candidates = body.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        raise _blocked(body, request_id)
    candidate = candidates[0]
    text = _candidate_text(candidate)
    finish = candidate.get("finishReason")
    _check_text(text, finish, request_id=request_id, body=body)
    return Completion(
        text=text,
        finish_reason=finish if isinstance(finish, str) else None,
        usage=usage_from_wire(body.get("usageMetadata")),
        model=str(body.get("modelVersion") or request_model),
        provider="gemini",
        request_id=request_id,
    )


class GeminiProvider(HTTPProvider):
    """Gemini API (key: ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``, URL: ``GEMINI_BASE_URL``)."""

    name: str = "gemini"

    def _headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key or ""}

    def _url(self, request: CompletionRequest, *, stream: bool) -> str:
        model = request.model.removeprefix("models/")
        if stream:
            return f"{self.base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse"
        return f"{self.base_url}/v1beta/models/{model}:generateContent"

    def _to_wire(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        return to_wire(request)

    def _from_wire(
        self, body: dict[str, Any], request: CompletionRequest, request_id: str | None
    ) -> Completion:
        return from_wire(body, request_model=request.model, request_id=request_id)

    async def _parse_stream(
        self, lines: AsyncIterator[str], response: httpx.Response, request: CompletionRequest
    ) -> AsyncIterator[TextDelta | Completion]:
        request_id: str | None = None
        parts: list[str] = []
        usage, finish, model = Usage(), None, request.model
        seen_candidate = False
        last: dict[str, Any] = {}
        async for event in iter_sse(lines, self.name):
            chunk = loads_object(event.data, self.name)
            if chunk.get("error"):
                raise self._stream_error(chunk, request_id)
            last = chunk
            if isinstance(chunk.get("responseId"), str):
                request_id = chunk["responseId"]
            model = str(chunk.get("modelVersion") or model)
            if chunk.get("usageMetadata"):
                usage = usage_from_wire(chunk["usageMetadata"])
            candidates = chunk.get("candidates")
            if not isinstance(candidates, list) or not candidates:
                continue
            seen_candidate = True
            candidate = candidates[0] if isinstance(candidates[0], dict) else {}
            text = _candidate_text(candidate)
            if text:
                parts.append(text)
                yield TextDelta(text=text)
            if candidate.get("finishReason"):
                finish = candidate["finishReason"]
        if not seen_candidate:
            raise _blocked(last, request_id)
        if finish is None:
            raise ProviderResponseError(
                "the stream ended before a finishReason", provider=self.name, request_id=request_id
            )
        text = "".join(parts)
        _check_text(text, finish, request_id=request_id, body=None)
        yield Completion(
            text=text,
            finish_reason=finish,
            usage=usage,
            model=model,
            provider=self.name,
            request_id=request_id,
        )
