"""A lean loopback server with one canned OpenAI-style reply: ``python benchmarks/fast_server.py``.

``MockLLMServer`` (``rlm_async.testing``) parses every request into pydantic models and runs
a responder; that costs ~0.1-0.2 ms of CPU a request, i.e. 10-20 ms per wave of 100 sub-calls,
which is 10-20% of a 100 ms latency: the harness would eat the budget it is measuring. This
server answers every ``POST .../chat/completions`` with the same small completion after
``--latency`` seconds, straight from an ``asyncio.Protocol`` (a few µs a request), so the
fan-out and overhead figures measure the library, not the server.

Same interface as ``mock_server.py``: the base URL on the first stdout line, ``stats`` on stdin
answered with one JSON line, exit when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from _common import serve_until_stdin_closes

_BODY = json.dumps(
    {
        "id": "chatcmpl-fast",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()
_REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class Stats:
    requests = 0
    in_flight = 0
    max_in_flight = 0


class _Connection(asyncio.Protocol):
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            ok = b"/chat/completions" in head[: head.find(b"\r\n")]
            self.buffer = self.buffer[total:]
            Stats.requests += 1
            Stats.in_flight += 1
            Stats.max_in_flight = max(Stats.max_in_flight, Stats.in_flight)
            reply = _REPLY if ok else _NOT_FOUND
            if self.latency:
                self.loop.call_later(self.latency, self._send, reply)
            else:
                self._send(reply)

    def _send(self, reply: bytes) -> None:
        Stats.in_flight -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(latency: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(latency), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]

    def counters() -> dict[str, int]:
        return {"requests": Stats.requests, "max_in_flight": Stats.max_in_flight}

    try:
        await serve_until_stdin_closes(f"http://127.0.0.1:{port}/v1", counters)
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.latency))


if __name__ == "__main__":
    main()
