"""Helpers for the provider tests: recorded bodies, stream bodies, fake keys, a sleep recorder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from rlm_async._types import Message
from rlm_async.providers import CompletionRequest, Provider

FIXTURES = Path(__file__).parent / "fixtures"

KEYS = {
    "openai_api_key": "sk-test-openai-0123456789",
    "anthropic_api_key": "sk-ant-test-0123456789",
    "google_api_key": "AIza-test-0123456789",
    "xai_api_key": "xai-test-0123456789",
    "openai_compatible_api_key": "compat-test-0123456789",
}


def pool_size(client: httpx.AsyncClient) -> int:
    """The most connections ``client``'s pool opens, on either transport."""
    transport = client._transport  # type: ignore[attr-defined]
    if isinstance(transport, httpx.AsyncHTTPTransport):
        return int(transport._pool._max_connections)
    return int(transport.limits.max_connections)  # httpx-aiohttp's


def fixture_body(name: str) -> dict[str, Any]:
    """A recorded provider body from tests/providers/fixtures/."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def sse(*events: dict[str, Any] | str, named: bool = False) -> bytes:
    """An SSE body: each event a ``data:`` line (JSON-encoded unless a str) and a blank line.

    With ``named``, each dict's ``type`` is also sent as the ``event:`` line (Anthropic).
    """
    out = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        if named and isinstance(event, dict):
            out.append(f"event: {event['type']}\n")
        out.append(f"data: {data}\n\n")
    return "".join(out).encode()


def ndjson(*objects: dict[str, Any]) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objects).encode()


class SleepRecorder:
    """A stand-in for ``anyio.sleep`` that records the requested waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def request(
    model: str = "gpt-4o",
    prompt: str = "What's 2 + 2?",
    **kwargs: Any,
) -> CompletionRequest:
    return CompletionRequest(model=model, messages=[Message(role="user", content=prompt)], **kwargs)


async def call(provider: Provider, sent: CompletionRequest, *, stream: bool) -> None:
    """``provider.complete(sent)``, or its whole stream."""
    if not stream:
        await provider.complete(sent)
        return
    async for _ in provider.stream(sent):
        pass
