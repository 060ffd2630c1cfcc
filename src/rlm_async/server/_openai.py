"""The OpenAI Chat Completions wire mapping, as pure functions (no I/O).

The "model" behind ``POST /v1/chat/completions`` is an RLM:

- the **query** is the last ``user`` message;
- the **context** is every other message, as a list of chat messages
  (``[{"role": ..., "content": ...}, ...]``), so a long conversation or a document pasted
  in an earlier message is something the RLM explores in its REPL rather than reads;
- or, when the body has a non-standard ``context`` field (a string, list or object), that
  is the context; then the ``system``/``developer`` messages are put in front of the query
  as instructions and earlier ``user``/``assistant`` turns are not used.

The answer is the assistant message. ``usage`` covers the whole tree of the run:
``prompt_tokens`` is every input token of every root turn and sub-call, ``completion_tokens``
every output token. ``finish_reason`` is ``"stop"``, or ``"length"`` when a budget ended
the run before a final answer (the answer is then the best partial one).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rlm_async._types import RLMResult, UsageSummary
from rlm_async.server._errors import ApiError
from rlm_async.server._options import RunOptions
from rlm_async.server._output_schema import answer_text

__all__ = [
    "ChatCompletionRequest",
    "chat_chunk",
    "chat_completion",
    "context_and_query",
    "openai_usage",
    "rlm_summary",
]


class ChatMessage(BaseModel):
    """One message of the request; fields we do not use (``name``, ``tool_calls``) are kept."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``.

    Sampling fields (``temperature``, ``max_tokens``, ``tools``...) are accepted and
    ignored: the server's ``RLM`` decides how its models are called.

    Attributes:
        model: Echoed back in the response; the server serves one RLM whatever it says.
        messages: The conversation; the last ``user`` message is the query.
        stream: Answer as server-sent ``chat.completion.chunk`` events.
        stream_options: ``include_usage`` adds a last chunk with the usage.
        n: Must be 1.
        context: Non-standard: the context itself (string, list or object).
        rlm_options: Non-standard: per-request options (see ``RunOptions``).
        response_format: ``{"type": "json_schema", "json_schema": {"name": ..., "schema":
            {...}}}``: the answer must match the schema (the run's ``output_type``); the
            message content is the JSON text of the validated answer.
    """

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    context: str | list[Any] | dict[str, Any] | None = None
    rlm_options: RunOptions | None = None
    response_format: dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def _text(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ApiError(
                400,
                f"only text content parts are supported, got type {part.get('type')!r}",
                param=f"messages.{index}.content",
                code="unsupported_content",
            )
        parts.append(part["text"])
    return "".join(parts)


def context_and_query(request: ChatCompletionRequest) -> tuple[Any, str]:
    """The RLM's context and query for a chat request (see the module docstring).

    Raises:
        ApiError: 400 when there is no user message, it is empty, or ``n`` is not 1.
    """
    if request.n != 1:
        raise ApiError(400, "only n=1 is supported", param="n", code="unsupported_value")
    last = next(
        (i for i in range(len(request.messages) - 1, -1, -1) if request.messages[i].role == "user"),
        None,
    )
    if last is None:
        raise ApiError(400, "the request needs a user message: it is the query", param="messages")
    query = _text(request.messages[last], last)
    if not query.strip():
        raise ApiError(400, "the last user message is empty", param=f"messages.{last}.content")
    if request.context is not None:
        instructions = [
            _text(m, i)
            for i, m in enumerate(request.messages[:last])
            if m.role in ("system", "developer")
        ]
        return request.context, "\n\n".join([*instructions, query])
    context = [
        {"role": m.role, "content": _text(m, i)}
        for i, m in enumerate(request.messages)
        if i != last
    ]
    return context, query


def openai_usage(usage: UsageSummary) -> dict[str, Any]:
    """Usage of the whole run tree in OpenAI's shape."""
    models = usage.models.values()
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": sum(m.cached_tokens for m in models)},
        "completion_tokens_details": {"reasoning_tokens": sum(m.reasoning_tokens for m in models)},
    }


FinishReason = Literal["stop", "length"]


def rlm_summary(result: RLMResult, run_id: str | None) -> dict[str, Any]:
    """The non-standard ``rlm`` object added to responses: what the run did."""
    return {
        "run_id": run_id,
        "iterations": result.iterations,
        "elapsed": round(result.elapsed, 6),
        "finished": result.finished,
        "subcalls": result.metadata.get("subcalls"),
        "cost_usd": result.usage.cost_usd,
    }


def chat_completion(
    result: RLMResult,
    *,
    completion_id: str,
    model: str,
    created: int,
    run_id: str | None,
    typed: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion`` object for a finished (or budget-stopped) run (``typed``: its
    content is the JSON text of the validated answer)."""
    finish: FinishReason = "stop" if result.finished else "length"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": answer_text(result, typed=typed),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": openai_usage(result.usage),
        "system_fingerprint": None,
        "rlm": rlm_summary(result, run_id),
    }


def chat_chunk(
    *,
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None = None,
    finish_reason: FinishReason | None = None,
    usage: dict[str, Any] | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; with ``delta=None`` the usage-only last chunk."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        chunk["usage"] = usage
    return chunk
