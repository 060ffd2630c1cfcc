"""Typed answers over HTTP: OpenAI's ``response_format`` on /v1/chat/completions and
``output_schema`` on /v1/rlm, through the real child REPL and a scripted model."""

from __future__ import annotations

import json
from typing import Any

from rlm_async import RLM
from rlm_async.providers import CompletionRequest
from rlm_async.server import create_app
from rlm_async.testing import ScriptedModel
from tests.helpers import repl
from tests.loop_meter import loop_meter
from tests.server.support import asgi_client, parse_sse

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
    "required": ["city", "count"],
    "additionalProperties": False,
}


def counting(request: CompletionRequest) -> str:
    """Root model: a wrong answer first (count 0), then the right one, from code."""
    if not any(m.role == "assistant" for m in request.messages):
        return repl("FINAL({'city': context.split()[0], 'count': 0})")
    return repl("FINAL({'city': context.split()[0], 'count': context.count('Oslo')})")


async def post(path: str, body: dict[str, Any], model: ScriptedModel) -> Any:
    async with RLM(model=model) as rlm, asgi_client(create_app(rlm)) as client:
        return await client.post(path, json=body)


async def test_output_schema_on_v1_rlm_gives_the_validated_output() -> None:
    model = ScriptedModel(counting)
    response = await post(
        "/v1/rlm",
        {"context": "Oslo Bergen Oslo", "query": "Which city, how often?", "output_schema": SCHEMA},
        model,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["output"] == {"city": "Oslo", "count": 2}
    assert json.loads(body["answer"]) == body["output"]
    assert body["iterations"] == 2  # the first answer (count 0) was sent back
    assert "minimum of 1" in model.requests[1].messages[-1].content
    assert '"minimum": 1' in (model.requests[0].system or "")


async def test_without_a_schema_the_output_is_null() -> None:
    response = await post(
        "/v1/rlm", {"context": "x", "query": "q"}, ScriptedModel(["FINAL(plain)"])
    )
    assert response.json()["output"] is None and response.json()["answer"] == "plain"


async def test_response_format_json_schema_on_chat_completions() -> None:
    # The answer written as a Python literal in text: the content is still JSON.
    model = ScriptedModel(["FINAL({'city': 'Oslo', 'count': 2})"])
    body = {
        "messages": [{"role": "user", "content": "Which city, how often?"}],
        "context": "Oslo Bergen Oslo",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "CityCount", "schema": SCHEMA, "strict": True},
        },
    }
    response = await post("/v1/chat/completions", body, model)
    assert response.status_code == 200
    content = response.json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"city": "Oslo", "count": 2}
    assert "CityCount" in (model.requests[0].system or "")


async def test_response_format_while_streaming_sends_the_json_text() -> None:
    model = ScriptedModel(['FINAL({"city": "Oslo", "count": 2})'])
    body = {
        "messages": [{"role": "user", "content": "q"}],
        "stream": True,
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}},
    }
    response = await post("/v1/chat/completions", body, model)
    chunks = [m.json() for m in parse_sse(response.text) if m.data != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert json.loads(text) == {"city": "Oslo", "count": 2}


async def test_a_bad_schema_is_a_400_naming_its_field_and_no_run_starts() -> None:
    model = ScriptedModel([])
    response = await post(
        "/v1/rlm", {"context": "x", "query": "q", "output_schema": {"type": 7}}, model
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "output_schema"
    chat = await post(
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "q"}], "response_format": {"type": "xml"}},
        model,
    )
    assert chat.status_code == 400 and "response_format" in chat.json()["error"]["message"]
    assert model.requests == []


async def test_answers_that_never_match_are_a_422() -> None:
    model = ScriptedModel(["FINAL({'city': 'Oslo'})"] * 3)
    response = await post("/v1/rlm", {"context": "x", "query": "q", "output_schema": SCHEMA}, model)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "output_validation_failed"
    assert "'count' is a required property" in error["message"]


async def test_a_session_completion_takes_an_output_schema() -> None:
    model = ScriptedModel(counting)
    async with RLM(model=model) as rlm, asgi_client(create_app(rlm)) as client:
        made = await client.post("/v1/sessions", json={"context": "Oslo Oslo Bergen"})
        session_id = made.json()["id"]
        response = await client.post(
            f"/v1/sessions/{session_id}/completions",
            json={"query": "Which city, how often?", "output_schema": SCHEMA},
        )
        await client.delete(f"/v1/sessions/{session_id}")
    assert response.status_code == 200
    assert response.json()["output"] == {"city": "Oslo", "count": 2}


async def test_a_big_schema_is_checked_without_stalling_the_loop() -> None:
    # jsonschema checks a schema at ~0.2 ms a property: this one's 8,000 held the loop
    # seconds, twice (the request's check, then the run's). Now once, in a worker thread.
    properties = {f"p{i}": {"type": "string"} for i in range(8000)}
    schema = {"type": "object", "properties": properties, "required": ["p0"]}
    model = ScriptedModel(["FINAL({'p0': 'a'})"])
    async with loop_meter() as meter:
        response = await post(
            "/v1/rlm", {"context": "x", "query": "q", "output_schema": schema}, model
        )
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"p0": "a"}
    assert meter.longest_stall < 0.5, f"the loop stalled {meter.longest_stall:.2f} s"
