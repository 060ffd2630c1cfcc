"""Ollama native /api/chat: stream false, num_ctx sizing, NDJSON streams, missing counts."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from rlm_async._exceptions import NotFoundError, ProviderResponseError, ProviderUnavailableError
from rlm_async._types import Completion
from rlm_async.providers import OllamaProvider, RetryPolicy, TextDelta
from rlm_async.providers._settings import Settings
from rlm_async.providers.ollama import context_window_for, from_wire, to_wire
from tests.providers.support import fixture_body, ndjson, request

URL = "http://localhost:11434/api/chat"


def test_to_wire_asks_for_one_json_body_and_maps_options() -> None:
    body = to_wire(request("llama3.1", system="sys", max_tokens=64, temperature=0.0))
    assert body == {
        "model": "llama3.1",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "What's 2 + 2?"},
        ],
        "stream": False,
        "options": {"num_predict": 64, "temperature": 0.0},
    }


def test_short_prompts_leave_the_servers_context_window_alone() -> None:
    assert context_window_for(request("llama3.1", "hi")) is None
    assert "options" not in to_wire(request("llama3.1", "hi"))


@pytest.mark.parametrize(("chars", "window"), [(20_000, 16384), (60_000, 32768), (10**7, 131072)])
def test_long_prompts_get_a_context_window_in_large_steps(chars: int, window: int) -> None:
    req = request("llama3.1", "x" * chars)
    assert context_window_for(req) == window
    assert to_wire(req)["options"]["num_ctx"] == window


def test_pinned_num_ctx_wins() -> None:
    assert to_wire(request("llama3.1", "x" * 60_000), num_ctx=4096)["options"]["num_ctx"] == 4096


def test_from_wire_reads_the_recorded_reply() -> None:
    completion = from_wire(fixture_body("ollama_ok"))
    assert completion.text == '{"age": 22, "available": false}'
    assert completion.finish_reason == "stop"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (34, 12)


def test_missing_eval_counts_are_zero() -> None:
    body = fixture_body("ollama_ok")
    del body["prompt_eval_count"], body["eval_count"]
    usage = from_wire(body).usage
    assert (usage.input_tokens, usage.output_tokens) == (0, 0)


def test_empty_content_at_length_is_an_error_about_num_predict() -> None:
    body = fixture_body("ollama_ok") | {
        "message": {"role": "assistant", "content": ""},
        "done_reason": "length",
    }
    with pytest.raises(ProviderResponseError, match="num_predict"):
        from_wire(body)


async def test_complete_posts_to_api_chat_with_stream_false_and_costs_nothing(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("ollama_ok"))
    async with OllamaProvider(settings=Settings(), retry=retry) as provider:
        completion = await provider.complete(request("llama3.1"))
    sent = route.calls.last.request
    assert json.loads(sent.content)["stream"] is False
    assert "authorization" not in sent.headers
    assert completion.usage.cost_usd == 0.0


async def test_unknown_model_is_not_found_with_a_pull_hint(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(404, json={"error": "model 'nope' not found"})
    async with OllamaProvider(settings=Settings(), retry=retry) as provider:
        with pytest.raises(NotFoundError, match="ollama pull"):
            await provider.complete(request("nope"))


async def test_refused_connection_says_how_to_start_ollama(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(side_effect=httpx.ConnectError("All connection attempts failed"))
    async with OllamaProvider(settings=Settings(), retry=retry) as provider:
        with pytest.raises(ProviderUnavailableError, match="ollama serve"):
            await provider.complete(request("llama3.1"))


async def test_ollama_host_setting_is_used(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post("http://gpu-box:11434/api/chat").respond(
        200, json=fixture_body("ollama_ok")
    )
    async with OllamaProvider(settings=Settings(ollama_host="gpu-box"), retry=retry) as provider:
        await provider.complete(request("llama3.1"))
    assert route.called


def _line(text: str) -> dict[str, object]:
    return {"model": "llama3.1", "message": {"role": "assistant", "content": text}, "done": False}


async def test_stream_reads_ndjson_deltas_and_the_final_counts(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    final = {
        "model": "llama3.1",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 8,
        "eval_count": 2,
    }
    route = respx_mock.post(URL).respond(200, content=ndjson(_line("4"), _line("."), final))
    async with OllamaProvider(settings=Settings(), retry=retry) as provider:
        items = [i async for i in provider.stream(request("llama3.1"))]
    assert items[:2] == [TextDelta(text="4"), TextDelta(text=".")]
    last = items[-1]
    assert isinstance(last, Completion)
    assert (last.text, last.finish_reason) == ("4.", "stop")
    assert (last.usage.input_tokens, last.usage.output_tokens) == (8, 2)
    assert json.loads(route.calls.last.request.content)["stream"] is True


async def test_stream_error_line_after_200_is_raised(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    body = ndjson(_line("4"), {"error": "an error was encountered while running the model"})
    respx_mock.post(URL).respond(200, content=body)
    async with OllamaProvider(settings=Settings(), retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="while running the model"):
            [i async for i in provider.stream(request("llama3.1"))]


async def test_stream_without_a_done_line_is_an_error(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, content=ndjson(_line("4")))
    async with OllamaProvider(settings=Settings(), retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="done"):
            [i async for i in provider.stream(request("llama3.1"))]
