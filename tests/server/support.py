"""Helpers for the server tests: an in-process client, an SSE parser, scripted models."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette

from rlm_async.providers import CompletionRequest
from tests.helpers import repl


@asynccontextmanager
async def asgi_client(app: Starlette, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client calling ``app`` in-process (ASGITransport runs no lifespan)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as client:
        yield client


@dataclass
class SSE:
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(text: str) -> list[SSE]:
    """Messages of an event stream; comment lines (``: ping``) are skipped."""
    messages: list[SSE] = []
    for block in text.split("\n\n"):
        event: str | None = None
        data: list[str] = []
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
        if event is not None or data:
            messages.append(SSE(event, "\n".join(data)))
    return messages


def two_turns(request: CompletionRequest) -> str:
    """Root model: look at the context once, then answer with its length."""
    if not any(m.role == "assistant" for m in request.messages):
        return repl("n = len(context)\nprint(n)")
    return "FINAL_VAR(n)"


class Gate:
    """A responder that blocks every root turn until ``release()``: holds a run's slot."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.released = anyio.Event()

    async def __call__(self, request: CompletionRequest) -> str:
        self.entered.set()
        await self.released.wait()
        return "FINAL(released)"

    def release(self) -> None:
        self.released.set()
