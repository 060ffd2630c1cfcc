"""Through the server: a request's traceparent makes its run a span of the caller's trace
(real HTTP on 127.0.0.1)."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason='the tracing tests need the extra: pip install "rlm-async[otel]"'
)
pytest.importorskip("uvicorn")

import httpx

from rlm_async import RLM
from rlm_async.server import create_app, open_server
from rlm_async.testing import ScriptedModel
from tests.server.support import parse_sse, two_turns
from tests.tracing.support import SpanTree, memory_provider

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{CALLER_SPAN_ID:016x}-01"


async def test_a_requests_traceparent_is_the_parent_of_its_runs() -> None:
    provider, exporter = memory_provider()
    app = create_app(RLM(model=ScriptedModel(two_turns), tracer_provider=provider))
    headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    async with open_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        plain = await client.post("/v1/rlm", json={"context": "abc", "query": "q"})
        traced = await client.post(
            "/v1/rlm", json={"context": "abcd", "query": "q"}, headers=headers
        )
        async with client.stream(
            "POST", "/v1/rlm/stream", json={"context": "ab", "query": "q"}, headers=headers
        ) as stream:
            text = "".join([chunk async for chunk in stream.aiter_text()])
    assert [plain.json()["answer"], traced.json()["answer"]] == ["3", "4"]
    assert parse_sse(text)[-1].json()["answer"] == "2"

    runs = SpanTree(exporter.get_finished_spans()).named("invoke_agent rlm")
    assert len(runs) == 3
    under_caller = [s for s in runs if s.parent is not None]
    assert len(under_caller) == 2  # the two requests with a traceparent, streamed or not
    for span in under_caller:
        assert span.parent is not None and span.parent.is_remote
        assert span.parent.span_id == CALLER_SPAN_ID
        assert span.context is not None and span.context.trace_id == TRACE_ID
        assert span.context.trace_state.get("vendor") == "1"
    (alone,) = [s for s in runs if s.parent is None]  # no header: a trace of its own
    assert alone.context is not None and alone.context.trace_id != TRACE_ID
