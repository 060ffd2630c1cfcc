"""``CompletionRequest.response_schema`` through each provider's native structured-output mode
(issue 16): the request each adapter sends, and the JSON text it returns as the reply.

The reply bodies are recorded replies of each provider with their text replaced by the JSON a
structured reply carries (the reference set holds no structured replies); Anthropic's tool
call is laid into a recorded reply in the documented ``tool_use`` / ``input_json_delta`` shape.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx

from rlm_async._types import Completion
from rlm_async.providers import (
    AnthropicProvider,
    GeminiProvider,
    OllamaProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
    RetryPolicy,
    TextDelta,
    XAIProvider,
)
from rlm_async.providers._schema import object_schema, strict_ready, unwrap_reply
from rlm_async.providers._settings import Settings
from rlm_async.providers.anthropic import to_wire as anthropic_wire
from rlm_async.providers.gemini import to_wire as gemini_wire
from rlm_async.providers.ollama import to_wire as ollama_wire
from rlm_async.providers.openai import to_wire as openai_wire
from tests.providers.recorded import RECORDED, load
from tests.providers.support import fixture_body, request

# What pydantic writes for `class Invoice(BaseModel): total: float; items: list[Item]`.
INVOICE: dict[str, Any] = {
    "$defs": {
        "Item": {
            "properties": {"name": {"title": "Name", "type": "string"}},
            "required": ["name"],
            "title": "Item",
            "type": "object",
        }
    },
    "properties": {
        "total": {"title": "Total", "type": "number"},
        "items": {"items": {"$ref": "#/$defs/Item"}, "title": "Items", "type": "array"},
    },
    "required": ["total", "items"],
    "title": "Invoice",
    "type": "object",
}
CLOSED: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "year": {"type": ["integer", "null"]}},
    "required": ["city", "year"],
    "additionalProperties": False,
}
LIST_OF_ITEMS: dict[str, Any] = {
    "$defs": INVOICE["$defs"],
    "type": "array",
    "items": {"$ref": "#/$defs/Item"},
}
ANSWER = {"total": 5.5, "items": [{"name": "Green Tea"}]}


# ---- the schema as the modes take it ---------------------------------------------------------


def test_only_a_closed_schema_with_every_property_required_is_strict() -> None:
    assert strict_ready(CLOSED)
    assert not strict_ready(INVOICE)  # open objects: OpenAI's strict mode would refuse it
    assert not strict_ready({**CLOSED, "required": ["city"]})
    nested = {**CLOSED, "properties": {**CLOSED["properties"], "where": INVOICE["$defs"]["Item"]}}
    assert not strict_ready({**nested, "required": ["city", "year", "where"]})
    assert not strict_ready({**CLOSED, "oneOf": [{"type": "object"}]})


def test_a_non_object_schema_is_wrapped_with_its_definitions_at_the_root() -> None:
    root, wrapped = object_schema(LIST_OF_ITEMS)
    assert wrapped
    assert root["$defs"] == INVOICE["$defs"]  # where "#/$defs/Item" is looked up
    assert root["properties"]["value"] == {"type": "array", "items": {"$ref": "#/$defs/Item"}}
    assert object_schema(INVOICE) == (INVOICE, False)
    assert unwrap_reply('{"value": [{"name": "a"}]}', True) == '[{"name":"a"}]'
    assert unwrap_reply("not json", True) == "not json"  # left for the engine to report
    assert unwrap_reply('{"other": 1}', True) == '{"other": 1}'


# ---- OpenAI-shaped ---------------------------------------------------------------------------


def test_openai_asks_for_a_json_schema_response_format() -> None:
    body = openai_wire(request("gpt-5", response_schema=INVOICE))
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": INVOICE, "strict": False},
    }
    strict = openai_wire(request("gpt-5", response_schema=CLOSED))["response_format"]
    assert strict["json_schema"]["strict"] is True
    assert "response_format" not in openai_wire(request("gpt-5"))


def _openai_reply(content: str) -> dict[str, Any]:
    body = fixture_body("openai_ok")
    body["choices"][0]["message"]["content"] = content
    return body


def _with_text(stream: str, text: str) -> str:
    """A recorded Chat Completions stream whose text is ``text``, in its first text chunk."""
    lines, first = [], True
    for line in stream.split("\n"):
        if line.startswith("data: {"):
            chunk = json.loads(line.removeprefix("data: "))
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    delta["content"], first = (text if first else ""), False
            line = "data: " + json.dumps(chunk)
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("cls", "url"),
    [
        (OpenAIProvider, "https://api.openai.com/v1/chat/completions"),
        (XAIProvider, "https://api.x.ai/v1/chat/completions"),
        (OpenAICompatibleProvider, "http://compat.test/v1/chat/completions"),
    ],
    ids=["openai", "xai", "compatible"],
)
async def test_openai_shaped_providers_send_the_schema_and_return_the_json(
    cls: type[OpenAIProvider],
    url: str,
    settings: Settings,
    retry: RetryPolicy,
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(url).respond(200, json=_openai_reply(json.dumps(ANSWER)))
    async with cls(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("m", response_schema=INVOICE))
    sent = json.loads(route.calls.last.request.content)
    assert sent["response_format"]["json_schema"]["schema"] == INVOICE
    assert json.loads(completion.text) == ANSWER


async def test_openai_unwraps_a_list_reply_whole_and_streams_no_wrapper(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = load(RECORDED / "openai_stream_gpt4o_mini_usage_chunk.json")
    body = _with_text(exchange.body, '{"value": [{"name": "a"}]}')
    route = respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=exchange.response(body)
    )
    async with OpenAIProvider(settings=settings, retry=retry) as provider:
        items = [i async for i in provider.stream(request("m", response_schema=LIST_OF_ITEMS))]
    sent = json.loads(route.calls.last.request.content)
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["value"]["type"] == (
        "array"
    )
    assert not any(isinstance(i, TextDelta) for i in items)
    completion = items[-1]
    assert isinstance(completion, Completion)
    assert json.loads(completion.text) == [{"name": "a"}]


# ---- Gemini and Ollama -----------------------------------------------------------------------


def test_gemini_asks_for_json_with_the_json_schema() -> None:
    body = gemini_wire(request("gemini-2.5-flash", max_tokens=50, response_schema=INVOICE))
    assert body["generationConfig"] == {
        "maxOutputTokens": 50,
        "responseMimeType": "application/json",
        "responseJsonSchema": INVOICE,
    }


async def test_gemini_returns_the_json_text(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    body = fixture_body("gemini_ok")
    body["candidates"][0]["content"]["parts"] = [{"text": json.dumps(ANSWER)}]
    route = respx_mock.route().respond(200, json=body)
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("gemini-2.5-flash", response_schema=INVOICE))
    sent = json.loads(route.calls.last.request.content)
    assert sent["generationConfig"]["responseJsonSchema"] == INVOICE
    assert json.loads(completion.text) == ANSWER


def test_ollama_constrains_the_output_with_format() -> None:
    assert ollama_wire(request("qwen3", response_schema=INVOICE))["format"] == INVOICE
    assert "format" not in ollama_wire(request("qwen3"))


async def test_ollama_returns_the_json_text(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    body = fixture_body("ollama_ok")
    body["message"]["content"] = json.dumps(ANSWER)
    route = respx_mock.route().respond(200, json=body)
    async with OllamaProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("qwen3", response_schema=INVOICE))
    assert json.loads(route.calls.last.request.content)["format"] == INVOICE
    assert json.loads(completion.text) == ANSWER


# ---- Anthropic: a forced tool ----------------------------------------------------------------

ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"


def test_anthropic_forces_the_answer_tool() -> None:
    body = anthropic_wire(request("claude-sonnet-4-5", response_schema=INVOICE))
    assert body["tools"] == [
        {"name": "answer", "description": body["tools"][0]["description"], "input_schema": INVOICE}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}
    wrapped = anthropic_wire(request("claude-sonnet-4-5", response_schema=LIST_OF_ITEMS))
    assert wrapped["tools"][0]["input_schema"]["type"] == "object"


def test_anthropic_with_thinking_offers_the_tool_without_forcing_it() -> None:
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    body = anthropic_wire(request("claude-sonnet-4-5", response_schema=INVOICE, extra=thinking))
    assert body["tool_choice"] == {"type": "auto"}


def _tool_reply(tool_input: Any) -> dict[str, Any]:
    body = fixture_body("anthropic_ok")
    body["content"] = [
        {"type": "tool_use", "id": "toolu_01", "name": "answer", "input": tool_input}
    ]
    body["stop_reason"] = "tool_use"
    return body


@pytest.mark.parametrize(
    ("schema", "tool_input", "expected"),
    [
        (INVOICE, ANSWER, ANSWER),
        (LIST_OF_ITEMS, {"value": [{"name": "a"}]}, [{"name": "a"}]),
    ],
    ids=["object", "wrapped-list"],
)
async def test_anthropic_returns_the_tool_input_as_the_json_text(
    schema: dict[str, Any],
    tool_input: Any,
    expected: Any,
    settings: Settings,
    retry: RetryPolicy,
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(ANTHROPIC_URL).respond(200, json=_tool_reply(tool_input))
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("claude-sonnet-4-5", response_schema=schema))
    assert json.loads(route.calls.last.request.content)["tool_choice"]["name"] == "answer"
    assert json.loads(completion.text) == expected
    assert completion.finish_reason == "tool_use"


async def test_anthropic_reply_in_text_is_returned_for_the_engine_to_check(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(ANTHROPIC_URL).respond(200, json=fixture_body("anthropic_ok"))
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("claude-sonnet-4-5", response_schema=INVOICE))
    assert completion.text == fixture_body("anthropic_ok")["content"][0]["text"]


def _tool_stream(pieces: list[str]) -> str:
    """The recorded haiku 4.5 stream with its text block turned into an answer tool call."""
    body = load(RECORDED / "anthropic_stream_haiku45_text.json").body
    start = '{"type":"text","text":""}'
    tool = '{"type":"tool_use","id":"toolu_01","name":"answer","input":{}}'
    text_delta = (
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}'
    )
    deltas = "}\n\n".join(
        "event: content_block_delta\ndata: "
        + json.dumps(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
        )[:-1]
        for piece in pieces
    )
    assert start in body and text_delta in body
    body = body.replace(start, tool).replace('"stop_reason":"end_turn"', '"stop_reason":"tool_use"')
    return body.replace("event: content_block_delta\ndata: " + text_delta, deltas)


async def test_anthropic_streams_the_tool_input_as_the_deltas(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = load(RECORDED / "anthropic_stream_haiku45_text.json")
    pieces = ['{"total": 5', '.5, "items": [{"na', 'me": "Green Tea"}]}']
    respx_mock.post(ANTHROPIC_URL).mock(return_value=exchange.response(_tool_stream(pieces)))
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        items = [i async for i in provider.stream(request(exchange.model, response_schema=INVOICE))]
    *deltas, completion = items
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == pieces
    assert isinstance(completion, Completion)
    assert completion.text == "".join(pieces)
    assert json.loads(completion.text) == ANSWER
    assert (completion.finish_reason, completion.usage.output_tokens) == ("tool_use", 4)
