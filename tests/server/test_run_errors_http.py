"""Errors a run raises, as a client gets them over a real HTTP server on 127.0.0.1
(uvicorn, the app's lifespan running): a root conversation too big for its model's window
is OpenAI's 400 ``context_length_exceeded`` (was a 500 ``internal_error``), answers that
never match the requested schema a 422, on every route that runs a completion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from rlm_async import RLM
from rlm_async.server import create_app, open_server
from rlm_async.testing import ScriptedModel
from tests.server.support import parse_sse

WINDOW = 2_000  # tokens: the root model's window, set in context_windows
TOO_BIG = "q" * 20_000  # a query of ~5,000 tokens: the first message alone does not fit


@asynccontextmanager
async def served(model: ScriptedModel, window: int = WINDOW) -> AsyncIterator[httpx.AsyncClient]:
    rlm = RLM(model=model, context_windows={"root": window})
    async with (
        open_server(create_app(rlm)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


async def test_a_conversation_over_the_window_is_a_400_context_length_exceeded() -> None:
    model = ScriptedModel(["FINAL(never)"], name="root")
    async with served(model) as client:
        native = await client.post("/v1/rlm", json={"context": "x", "query": TOO_BIG})
        chat = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": TOO_BIG}], "context": "x"},
        )
        stream = await client.post("/v1/rlm/stream", json={"context": "x", "query": TOO_BIG})
    for response in (native, chat):
        assert response.status_code == 400, response.text
        error = error_of(response)
        assert error["code"] == "context_length_exceeded"
        assert error["type"] == "invalid_request_error"
        # The message says how big, what the window holds, and what to change.
        assert f"window of {WINDOW:,} tokens" in error["message"]
        assert "context_windows" in error["message"]
    # A stream has already started: its error event carries the same code.
    errors = [m.json() for m in parse_sse(stream.text) if m.event == "error"]
    assert [e["error"]["code"] for e in errors] == ["context_length_exceeded"], stream.text
    assert model.requests == []  # refused before anything was sent


async def test_answers_that_never_match_the_schema_are_a_422_over_http() -> None:
    schema = {"type": "object", "required": ["count"]}
    model = ScriptedModel(["FINAL({'city': 'Oslo'})"] * 3, name="root")
    async with served(model, window=400_000) as client:
        response = await client.post(
            "/v1/rlm", json={"context": "x", "query": "q", "output_schema": schema}
        )
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "output_validation_failed"
