"""Ollama's native chat API (``POST {host}/api/chat``).

Beyond the wire basics (and beyond Ollama's own client, which has no retries and no
timeout): ``"stream": false`` is always sent for one JSON body (the endpoint streams by
default); ``options.num_ctx`` is raised for long prompts, because Ollama's default context
window is small and it silently truncates what does not fit; it is sized in a few large
steps (8k, 16k, 32k, ... 128k) since every change of ``num_ctx`` reloads the model, and
never sent for short prompts, so a server's own larger ``OLLAMA_CONTEXT_LENGTH`` is left
alone. ``max_tokens`` goes to ``options.num_predict``. Missing ``prompt_eval_count`` /
``eval_count`` (a cached prompt omits the first) count as 0; the ``thinking`` of reasoning
models is not part of the text. Streaming reads NDJSON, and an ``{"error": ...}`` line
after the 200 is raised, not swallowed. A refused connection says how to start Ollama.
A ``response_schema`` is sent as ``format`` (Ollama constrains the output to the schema).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import httpx

from rlm_async._exceptions import ProviderResponseError
from rlm_async._types import Completion, Usage
from rlm_async.providers._base import CompletionRequest, TextDelta
from rlm_async.providers._errors import ErrorInfo, error_for_type
from rlm_async.providers._framing import iter_ndjson
from rlm_async.providers._http import HTTPProvider, merge_extra

__all__ = ["OllamaProvider", "context_window_for", "from_wire", "to_wire"]

#: Below this many (estimated) tokens no ``num_ctx`` is sent: the server's default applies.
SMALL_CONTEXT: Final = 4096
MAX_CONTEXT: Final = 131072
_DEFAULT_OUTPUT_ALLOWANCE: Final = 2048


def context_window_for(request: CompletionRequest) -> int | None:
    """The ``num_ctx`` to send for ``request``, or ``None`` when the default fits.

    Prompt tokens are over-estimated at one per 3 characters (code and numbers tokenise
    densely), plus room for the reply.
    """
    chars = sum(len(m.content) for m in request.messages) + len(request.system or "")
    needed = chars // 3 + (request.max_tokens or _DEFAULT_OUTPUT_ALLOWANCE) + 64
    if needed <= SMALL_CONTEXT:
        return None
    window = 8192
    while window < needed and window < MAX_CONTEXT:
        window *= 2
    return window


def to_wire(
    request: CompletionRequest, *, stream: bool = False, num_ctx: int | None = None
) -> dict[str, Any]:
    """The ``/api/chat`` body; ``num_ctx`` pins the context window (else it is sized)."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.content} for m in request.messages]
    options: dict[str, Any] = {}
    window = num_ctx or context_window_for(request)
    if window is not None:
        options["num_ctx"] = window
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    payload: dict[str, Any] = {"model": request.model, "messages": messages, "stream": stream}
    if request.response_schema is not None:
        payload["format"] = request.response_schema
    if options:
        payload["options"] = options
    return merge_extra(payload, request.extra)


def usage_from_wire(body: dict[str, Any]) -> Usage:
    """Usage from the final object's counts; a missing count is 0."""

    def n(key: str) -> int:
        value = body.get(key)
        return value if isinstance(value, int) and value > 0 else 0

    return Usage(input_tokens=n("prompt_eval_count"), output_tokens=n("eval_count"))


def _check_text(text: str, done_reason: Any, *, body: Any) -> None:
    if text:
        return
    if done_reason == "length":
        message = "num_predict (max_tokens) was reached before any text (raise max_tokens)"
    else:
        message = f"empty reply (done_reason={done_reason!r})"
    raise ProviderResponseError(message, provider="ollama", body=body)


def from_wire(body: dict[str, Any], *, request_model: str = "") -> Completion:
    """A :class:`Completion` from an ``/api/chat`` reply sent with ``stream: false``."""
    message = body.get("message")
    if not isinstance(message, dict) or body.get("done") is False:
        raise ProviderResponseError(
            "the reply has no complete message", provider="ollama", body=body
        )
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    reason = body.get("done_reason")
    _check_text(text, reason, body=body)
    return Completion(
        text=text,
        finish_reason=reason if isinstance(reason, str) else None,
        usage=usage_from_wire(body),
        model=str(body.get("model") or request_model),
        provider="ollama",
    )


class OllamaProvider(HTTPProvider):
    """A local or remote Ollama server (``OLLAMA_HOST``, default ``http://localhost:11434``).

    Args:
        num_ctx: Pin the context window for every request instead of sizing it.
        **kwargs: As for every adapter (``base_url``, ``settings``, ``client``, ...).
    """

    name: str = "ollama"
    connect_hint = " (is Ollama running? start it with `ollama serve`, or set OLLAMA_HOST)"
    sse_streams = False  # NDJSON: every line is a JSON object, one reply is one line

    def __init__(self, *, num_ctx: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_ctx = num_ctx

    def _headers(self) -> dict[str, str]:
        # A remote Ollama behind a proxy may want a bearer token; a local one ignores it.
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _url(self, request: CompletionRequest, *, stream: bool) -> str:
        return f"{self.base_url}/api/chat"

    def _to_wire(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        return to_wire(request, stream=stream, num_ctx=self.num_ctx)

    def _from_wire(
        self, body: dict[str, Any], request: CompletionRequest, request_id: str | None
    ) -> Completion:
        return from_wire(body, request_model=request.model)

    async def _parse_stream(
        self, lines: AsyncIterator[str], response: httpx.Response, request: CompletionRequest
    ) -> AsyncIterator[TextDelta | Completion]:
        parts: list[str] = []
        final: dict[str, Any] | None = None
        async for chunk in iter_ndjson(lines, self.name):
            if chunk.get("error"):
                raise error_for_type(self.name, ErrorInfo(message=str(chunk["error"])), body=chunk)
            message = chunk.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            if isinstance(text, str) and text:
                parts.append(text)
                yield TextDelta(text=text)
            if chunk.get("done"):
                final = chunk
                break
        if final is None:
            raise ProviderResponseError(
                "the stream ended before the final (done) line", provider=self.name
            )
        text = "".join(parts)
        reason = final.get("done_reason")
        _check_text(text, reason, body=None)
        yield Completion(
            text=text,
            finish_reason=reason if isinstance(reason, str) else None,
            usage=usage_from_wire(final),
            model=str(final.get("model") or request.model),
            provider=self.name,
        )
