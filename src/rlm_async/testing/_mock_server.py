"""``MockLLMServer``: an OpenAI-compatible HTTP server on loopback, answering with a responder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from rlm_async import _tokens
from rlm_async._types import Usage
from rlm_async.providers._base import CompletionRequest
from rlm_async.testing._openai_wire import parse_head, to_request, write_json, write_sse
from rlm_async.testing._replies import MockReply, Responder, estimate_tokens, respond

__all__ = ["MockLLMServer"]


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
                method, path, headers = parse_head(head)
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
            await write_json(
                writer, 200, {"object": "list", "data": [{"id": "mock", "object": "model"}]}
            )
            return
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await write_json(
                writer,
                404,
                {"error": {"message": f"no route {method} {path}", "type": "not_found"}},
            )
            return
        try:
            payload = json.loads(body)
            request = to_request(payload)
        except (ValueError, KeyError, TypeError) as exc:
            await write_json(
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
            reply = await respond(self._responder, request)
        finally:
            self.in_flight -= 1
        if isinstance(reply, str):
            reply = MockReply(text=reply)
        if reply.status != 200 or reply.body is not None:
            await write_json(
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
            await write_sse(writer, request.model, reply.text, usage_body, created)
            return
        await write_json(
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
