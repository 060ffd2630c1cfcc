"""The whole engine once on each provider, through respx: root turns and a sub-call."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from rlm_async import RLM, Settings
from rlm_async.events import ModelDelta, RunFinished

ROOT_CODE = "Let me ask.\n```repl\nprint(llm_query('say hi'))\n```"
FINAL = "FINAL(done)"


def reply_for(body: dict[str, Any], *, has_system: bool, assistant_turns: int) -> str:
    if not has_system:
        return "hi from the sub-model"
    return ROOT_CODE if assistant_turns == 0 else FINAL


def openai_like(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    text = reply_for(
        body,
        has_system=messages[0]["role"] in ("system", "developer"),
        assistant_turns=sum(m["role"] == "assistant" for m in messages),
    )
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def anthropic(body: dict[str, Any]) -> dict[str, Any]:
    text = reply_for(
        body,
        has_system=bool(body.get("system")),
        assistant_turns=sum(m["role"] == "assistant" for m in body["messages"]),
    )
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 11, "output_tokens": 7},
    }


def gemini(body: dict[str, Any]) -> dict[str, Any]:
    text = reply_for(
        body,
        has_system="systemInstruction" in body,
        assistant_turns=sum(c.get("role") == "model" for c in body["contents"]),
    )
    return {
        "candidates": [
            {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18},
        "responseId": "resp-1",
    }


def ollama(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    text = reply_for(
        body,
        has_system=messages[0]["role"] == "system",
        assistant_turns=sum(m["role"] == "assistant" for m in messages),
    )
    return {
        "model": body["model"],
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 11,
        "eval_count": 7,
    }


CASES: list[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("openai:gpt-4o", "https://api.openai.com/v1/chat/completions", openai_like),
    ("anthropic:claude-sonnet-4-5", "https://api.anthropic.com/v1/messages", anthropic),
    (
        "gemini:gemini-2.5-flash",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
        gemini,
    ),
    ("xai:grok-4", "https://api.x.ai/v1/chat/completions", openai_like),
    ("ollama:llama3.1", "http://ollama.test:11434/api/chat", ollama),
    ("openai-compatible:local", "https://compat.test/v1/chat/completions", openai_like),
]

SETTINGS = Settings(
    openai_api_key="sk-test-0123456789",
    anthropic_api_key="sk-ant-test-0123456789",
    google_api_key="AIza-test-0123456789",
    xai_api_key="xai-test-0123456789",
    ollama_host="http://ollama.test:11434",
    openai_compatible_base_url="https://compat.test/v1",
)


@pytest.mark.parametrize(("model", "url", "shape"), CASES, ids=[c[0].split(":")[0] for c in CASES])
async def test_a_whole_run_works_on_each_provider(
    model: str, url: str, shape: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=shape(json.loads(request.content)))

    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(url).mock(side_effect=handler)
        async with RLM(model=model, settings=SETTINGS) as rlm:
            result = await rlm.completion("some context", "Say hi, then finish.")
    assert result.answer == "done"
    assert route.call_count == 3  # two root turns and one sub-call
    usage = result.usage[model]
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (3, 33, 21)
    cell = next(e for e in result.trajectory if e.type == "cell_finished")
    assert "hi from the sub-model" in cell.output


@pytest.mark.parametrize(("model", "url", "shape"), CASES, ids=[c[0].split(":")[0] for c in CASES])
async def test_rlm_stream_works_when_the_server_ignores_stream_true(
    model: str, url: str, shape: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Every request, streaming or not, is answered with one JSON body (issue 11, item 14)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=shape(json.loads(request.content)))

    endpoint = url.removesuffix(":generateContent")  # Gemini streams at another path
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(url__startswith=endpoint).mock(side_effect=handler)
        async with RLM(model=model, settings=SETTINGS) as rlm:
            events = [event async for event in rlm.stream("some context", "Say hi, then finish.")]
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.answer == "done"
    deltas = "".join(e.text for e in events if isinstance(e, ModelDelta))
    assert ROOT_CODE in deltas
    assert route.call_count == 3
