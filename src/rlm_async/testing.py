"""Test helpers for users' own tests: a scripted model and a loopback mock LLM server.

``ScriptedModel`` is a ``Provider`` that answers from a list of replies or a function, with
no network at all. ``MockLLMServer`` is a real HTTP server on 127.0.0.1 speaking the OpenAI
Chat Completions API (``POST /v1/chat/completions``, streaming too) with a configurable
latency, so the whole stack, HTTP adapter included, runs as it would in production.

Example:
    from rlm_async import RLM
    from rlm_async.testing import ScriptedModel

    root = ScriptedModel(["```repl\\nprint(len(context))\\n```", "FINAL(5)"])
    async with RLM(model=root) as rlm:
        assert (await rlm.completion("hello", "How long?")).answer == "5"
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rlm_async import _tokens
from rlm_async._exceptions import ProviderResponseError
from rlm_async._types import Completion, Message, Usage
from rlm_async.providers._base import CompletionRequest, TextDelta

__all__ = ["MockLLMServer", "MockReply", "Responder", "ScriptedModel", "estimate_tokens"]


@dataclass
class MockReply:
    """A reply with full control: an HTTP error, headers, or a custom usage."""

    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # a raw JSON body to send instead of a completion
    usage: Usage | None = None


Responder = Callable[[CompletionRequest], "str | MockReply | Awaitable[str | MockReply]"]
"""Answers one request: returns the reply text (or a ``MockReply``), sync or async."""


def estimate_tokens(text: str) -> int:
    """A rough token count for fake usage: the engine's own estimate (4 characters a token)."""
    return _tokens.estimate_tokens(len(text))


async def _respond(responder: Responder, request: CompletionRequest) -> str | MockReply:
    reply = responder(request)
    if inspect.isawaitable(reply):
        reply = await reply
    if not isinstance(reply, str | MockReply):
        raise TypeError(f"a responder must return str or MockReply, got {type(reply).__name__}")
    return reply


class ScriptedModel:
    """A fake model for tests: replies from a list (in order) or from a function.

    Args:
        replies: The replies (text, or :class:`MockReply` for set usage or an error status),
            in order, or a function of the request returning the reply.
        name: The provider name (used as the usage key).
        latency: Seconds to wait before each reply (0 for none).

    Attributes:
        requests: Every request received, in order.
    """

    def __init__(
        self,
        replies: Sequence[str | MockReply] | Responder,
        *,
        name: str = "scripted",
        latency: float = 0.0,
    ) -> None:
        self.name = name
        self.model = name
        self.latency = latency
        self.requests: list[CompletionRequest] = []
        if callable(replies):
            self._responder: Responder = replies
        else:
            queue = list(replies)
            counter = itertools.count()

            def from_list(request: CompletionRequest) -> str | MockReply:
                index = next(counter)
                if index >= len(queue):
                    raise ProviderResponseError(
                        f"ScriptedModel {name!r} ran out of replies: {len(queue)} were given and "
                        f"request {index + 1} arrived; add more replies to the script",
                        provider=name,
                    )
                return queue[index]

            self._responder = from_list

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        reply = await _respond(self._responder, request)
        if isinstance(reply, MockReply):
            if reply.status != 200:
                raise ProviderResponseError(
                    f"scripted error {reply.status}", provider=self.name, status_code=reply.status
                )
            text, usage = reply.text, reply.usage
        else:
            text, usage = reply, None
        if usage is None:
            usage = Usage(
                input_tokens=_tokens.request_tokens(request),
                output_tokens=estimate_tokens(text),
            )
        return Completion(
            text=text, finish_reason="stop", usage=usage, model=self.model, provider=self.name
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[TextDelta | Completion]:
        completion = await self.complete(request)
        for start in range(0, len(completion.text), 16):
            yield TextDelta(text=completion.text[start : start + 16])
        yield completion

    async def aclose(self) -> None:
        return None


class MockLLMServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 answering with a responder function.

    Args:
        responder: Answers each request (see ``Responder``).
        latency: Seconds before each reply, or a function of the request returning it.
        host: The loopback address to bind.
        port: 0 picks a free port.

    Attributes:
        base_url: ``http://127.0.0.1:PORT/v1`` once started.
        requests: Every request received: ``(arrival time, CompletionRequest)``.
        max_in_flight: The most requests that were being answered at the same time.

    Example:
        async with MockLLMServer(lambda request: "FINAL(42)", latency=0.05) as server:
            settings = Settings(openai_compatible_base_url=server.base_url)
            ...
    """

    def __init__(
        self,
        responder: Responder,
        *,
        latency: float | Callable[[CompletionRequest], float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("MockLLMServer only binds loopback addresses")
        self._responder = responder
        self._latency = latency
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.requests: list[tuple[float, CompletionRequest]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.base_url = ""

    async def __aenter__(self) -> MockLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self._host, self._port, limit=1 << 26
        )
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://{self._host}:{port}/v1"

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Close the connections rather than cancel their tasks: asyncio's stream protocol
        # reports a cancelled connection task as an unhandled error.
        for writer in list(self._connections.values()):
            writer.close()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
        await self._server.wait_closed()
        self._server = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, path, headers = _parse_head(head)
                body = b""
                length = int(headers.get("content-length", "0"))
                if length:
                    body = await reader.readexactly(length)
                await self._handle(method, path, body, writer)
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(
        self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter
    ) -> None:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            await _write_json(
                writer, 200, {"object": "list", "data": [{"id": "mock", "object": "model"}]}
            )
            return
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await _write_json(
                writer,
                404,
                {"error": {"message": f"no route {method} {path}", "type": "not_found"}},
            )
            return
        try:
            payload = json.loads(body)
            request = _to_request(payload)
        except (ValueError, KeyError, TypeError) as exc:
            await _write_json(
                writer,
                400,
                {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}},
            )
            return
        self.requests.append((time.perf_counter(), request))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            latency = self._latency(request) if callable(self._latency) else self._latency
            if latency:
                await asyncio.sleep(latency)
            reply = await _respond(self._responder, request)
        finally:
            self.in_flight -= 1
        if isinstance(reply, str):
            reply = MockReply(text=reply)
        if reply.status != 200 or reply.body is not None:
            await _write_json(
                writer,
                reply.status,
                reply.body or {"error": {"message": "mock error"}},
                reply.headers,
            )
            return
        usage = reply.usage or Usage(
            input_tokens=_tokens.request_tokens(request),
            output_tokens=estimate_tokens(reply.text),
        )
        usage_body = {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }
        created = int(time.time())
        if payload.get("stream"):
            await _write_sse(writer, request.model, reply.text, usage_body, created)
            return
        await _write_json(
            writer,
            200,
            {
                "id": f"chatcmpl-mock-{len(self.requests)}",
                "object": "chat.completion",
                "created": created,
                "model": request.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage_body,
            },
            {"x-request-id": f"req-mock-{len(self.requests)}", **reply.headers},
        )


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return method, path, headers


def _to_request(payload: dict[str, Any]) -> CompletionRequest:
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


async def _write_json(
    writer: asyncio.StreamWriter, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "content-type: application/json",
        f"content-length: {len(data)}",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
    await writer.drain()


async def _write_sse(
    writer: asyncio.StreamWriter, model: str, text: str, usage: dict[str, int], created: int
) -> None:
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
