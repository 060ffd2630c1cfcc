"""POST /v1/rlm and /v1/rlm/stream: the native JSON API and the run's events as SSE."""

from __future__ import annotations

import pytest

from rlm_async import RLM, Budget, Settings
from rlm_async.demo import demo_responder, make_haystack
from rlm_async.events import event_adapter
from rlm_async.server import create_app
from rlm_async.testing import MockLLMServer, MockReply, ScriptedModel
from tests.helpers import repl
from tests.server.support import asgi_client, parse_sse, two_turns


async def test_a_run_returns_the_answer_usage_per_model_iterations_and_trajectory_id() -> None:
    async with (
        RLM(model=ScriptedModel(two_turns, name="root")) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        response = await client.post("/v1/rlm", json={"context": "abcdef", "query": "how long?"})
    assert response.status_code == 200
    body = response.json()
    assert body["answer"] == "6"
    assert body["finished"] is True and body["stop_reason"] == "final_answer"
    assert body["iterations"] == 2
    assert body["elapsed"] > 0
    assert body["trajectory_id"] == body["id"] and len(body["id"]) == 12
    assert body["usage"]["models"]["root"]["calls"] == 2
    assert body["usage"]["total_tokens"] == (
        body["usage"]["input_tokens"] + body["usage"]["output_tokens"]
    )


async def test_the_demo_niah_over_the_mock_llm_server_finds_the_needle() -> None:
    text, number = make_haystack(20_000, seed=5)
    async with (
        MockLLMServer(demo_responder) as server,
        RLM(
            model="openai-compatible:root",
            sub_model="openai-compatible:sub",
            settings=Settings(openai_compatible_base_url=server.base_url),
        ) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        response = await client.post(
            "/v1/rlm", json={"context": text, "query": "What is the magic number?"}
        )
    body = response.json()
    assert body["answer"] == str(number)
    assert body["usage"]["models"]["openai-compatible:sub"]["calls"] == body["subcalls"] == 20


async def test_options_tighten_the_servers_limits() -> None:
    root = ScriptedModel(lambda r: repl("print(1)"))
    async with RLM(model=root, max_iterations=10) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post(
            "/v1/rlm", json={"context": "x", "query": "q", "options": {"max_iterations": 2}}
        )
    # Two turns, the "answer now" turn and, since that reply was code, its one retry; the
    # server's own RLM is unchanged.
    assert response.json()["iterations"] == 4
    assert len(root.requests) == 4
    assert rlm.max_iterations == 10


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"max_iterations": 11}, "options.max_iterations"),
        ({"max_depth": 2}, "options.max_depth"),
        ({"max_iterations": 0}, "options.max_iterations"),
        ({"temperature": 2.0}, "options.temperature"),
        ({"max_seconds": 100}, "options.max_seconds"),
    ],
)
async def test_an_option_beyond_the_servers_limit_or_unknown_is_a_400(
    options: dict[str, object], param: str
) -> None:
    root = ScriptedModel(["FINAL(never)"])
    async with (
        RLM(model=root, max_iterations=10, budget=Budget(max_seconds=60)) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        response = await client.post(
            "/v1/rlm", json={"context": "x", "query": "q", "options": options}
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert root.requests == []


async def test_a_budget_stop_returns_the_partial_result_and_which_budget() -> None:
    root = ScriptedModel(lambda r: repl("print(1)"))
    async with RLM(model=root) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post(
            "/v1/rlm",
            json={"context": "x", "query": "q", "options": {"max_total_tokens": 800}},
        )
    body = response.json()
    assert response.status_code == 200
    assert body["finished"] is False and body["stop_reason"] == "budget_exceeded"
    assert body["budget"] == "max_tokens"


async def test_the_stream_sends_every_event_of_the_run_as_typed_sse() -> None:
    async with RLM(model=ScriptedModel(two_turns)) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post("/v1/rlm/stream", json={"context": "abc", "query": "q"})
        query_form = await client.post("/v1/rlm?stream=true", json={"context": "ab", "query": "q"})
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = parse_sse(response.text)
    events = [event_adapter.validate_json(m.data) for m in messages]
    assert [m.event for m in messages] == [e.type for e in events]
    assert events[0].type == "run_started"
    assert "cell_finished" in {e.type for e in events}
    last = events[-1]
    assert last.type == "run_finished" and last.answer == "3"
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert parse_sse(query_form.text)[-1].json()["answer"] == "2"


async def test_a_failure_after_the_stream_started_ends_it_with_an_error_event() -> None:
    root = ScriptedModel(lambda r: MockReply(status=503))
    async with RLM(model=root) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post("/v1/rlm/stream", json={"context": "abc", "query": "q"})
    messages = parse_sse(response.text)
    assert [m.event for m in messages][-2:] == ["run_failed", "error"]
    assert messages[-1].json()["error"]["type"] == "upstream_error"


@pytest.mark.parametrize(
    "body",
    [
        {"query": "q"},
        {"context": "x"},
        {"context": "x", "query": ""},
        {"context": 3.5, "query": "q"},
        {"context": "x", "query": "q", "extra": 1},
    ],
)
async def test_a_bad_native_body_is_a_400(body: dict[str, object]) -> None:
    async with (
        RLM(model=ScriptedModel(["FINAL(never)"])) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        response = await client.post("/v1/rlm", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] is not None


async def test_a_budget_stop_in_a_stream_ends_it_with_a_budget_error_event() -> None:
    root = ScriptedModel(lambda r: repl("print(1)"))
    async with RLM(model=root) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post(
            "/v1/rlm/stream",
            json={"context": "x", "query": "q", "options": {"max_total_tokens": 800}},
        )
    messages = parse_sse(response.text)
    assert messages[-1].event == "error"
    error = messages[-1].json()["error"]
    assert error["type"] == "budget_exceeded" and error["code"] == "max_tokens"


async def test_the_applications_own_event_listener_still_sees_streamed_runs() -> None:
    seen: list[str] = []
    async with (
        RLM(model=ScriptedModel(["FINAL(x)"]), on_event=lambda e: seen.append(e.type)) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        await client.post("/v1/rlm/stream", json={"context": "x", "query": "q"})
    assert seen[0] == "run_started" and seen[-1] == "run_finished"
