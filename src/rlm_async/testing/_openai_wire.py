"""The OpenAI Chat Completions wire format, as ``MockLLMServer`` speaks it over HTTP/1.1.

A request head and JSON body in; a JSON reply or a chunked server-sent-event stream (16
characters a chunk, then the usage, then ``[DONE]``) out. Written on asyncio streams by
hand so the mock needs no web framework.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rlm_async._types import Message
from rlm_async.providers._base import CompletionRequest

__all__ = ["parse_head", "to_request", "write_json", "write_sse"]


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, path, headers) of an HTTP/1.1 request head; header names lower-cased."""
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return method, path, headers


def to_request(payload: dict[str, Any]) -> CompletionRequest:
    """A ``CompletionRequest`` from a Chat Completions body (system/developer into ``system``)."""
    system_parts: list[str] = []
    messages: list[Message] = []
    for message in payload["messages"]:
        content = message.get("content") or ""
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        role = message["role"]
        if role in ("system", "developer"):
            system_parts.append(content)
        else:
            messages.append(
                Message(role="assistant" if role == "assistant" else "user", content=content)
            )
    max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
    return CompletionRequest(
        model=str(payload.get("model", "")),
        messages=messages,
        system="\n".join(system_parts) or None,
        max_tokens=max_tokens,
        temperature=payload.get("temperature"),
    )


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


async def write_json(
    writer: asyncio.StreamWriter, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    """Write one HTTP/1.1 response with a JSON body."""
    data = json.dumps(body).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "content-type: application/json",
        f"content-length: {len(data)}",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
    await writer.drain()


async def write_sse(
    writer: asyncio.StreamWriter, model: str, text: str, usage: dict[str, int], created: int
) -> None:
    """Write ``text`` as a streamed completion: chunked server-sent events, then ``[DONE]``."""
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )

    def chunk(payload: str) -> bytes:
        data = f"data: {payload}\n\n".encode()
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    base = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    for start in range(0, max(len(text), 1), 16):
        piece = text[start : start + 16]
        delta = {
            **base,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
        writer.write(chunk(json.dumps(delta)))
    done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    writer.write(chunk(json.dumps(done)))
    writer.write(chunk(json.dumps({**base, "choices": [], "usage": usage})))
    writer.write(chunk("[DONE]"))
    writer.write(b"0\r\n\r\n")
    await writer.drain()
