"""xAI: OpenAI-shaped, but reasoning tokens outside completion_tokens and its own error body."""

from __future__ import annotations

import json

import pytest
import respx

from rlm_async._exceptions import AuthenticationError, BadRequestError
from rlm_async._types import Completion
from rlm_async.providers import RetryPolicy, XAIProvider
from rlm_async.providers._settings import Settings
from rlm_async.providers.openai import from_wire
from tests.providers.support import KEYS, fixture_body, request, sse

URL = "https://api.x.ai/v1/chat/completions"


def test_reasoning_tokens_are_added_to_output_tokens() -> None:
    completion = from_wire(fixture_body("xai_ok"), provider="xai", reasoning_excluded=True)
    usage = completion.usage
    assert completion.text == "4"
    assert usage.input_tokens == 137
    assert usage.output_tokens == 1 + 116
    assert usage.reasoning_tokens == 116
    assert usage.cached_tokens == 128
    assert (
        usage.input_tokens + usage.output_tokens == fixture_body("xai_ok")["usage"]["total_tokens"]
    )


def test_reasoning_content_is_not_part_of_the_text() -> None:
    completion = from_wire(fixture_body("xai_ok"), provider="xai", reasoning_excluded=True)
    assert "straightforward" not in completion.text


def test_total_tokens_decides_when_it_contradicts_the_convention() -> None:
    body = fixture_body("xai_ok")
    body["usage"]["completion_tokens"] = 117  # a future API that includes reasoning
    body["usage"]["total_tokens"] = 254
    assert from_wire(body, reasoning_excluded=True).usage.output_tokens == 117


async def test_complete_sends_bearer_key_to_the_xai_endpoint(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("xai_ok"))
    async with XAIProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("grok-4", temperature=0.5, max_tokens=100))
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {KEYS['xai_api_key']}"
    body = json.loads(sent.content)
    assert body["temperature"] == 0.5
    assert body["max_completion_tokens"] == 100
    assert completion.provider == "xai"
    assert completion.usage.output_tokens == 117


async def test_wrong_key_400_is_an_authentication_error(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(400, json=fixture_body("xai_400_badkey"))
    async with XAIProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(AuthenticationError, match="Incorrect API key") as info:
            await provider.complete(request("grok-4"))
    assert info.value.status_code == 400


async def test_other_400_is_a_bad_request_with_the_message(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(
        400, json={"code": "invalid-argument", "error": "presencePenalty is not supported"}
    )
    async with XAIProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(BadRequestError, match="presencePenalty"):
            await provider.complete(request("grok-4"))


async def test_stream_counts_reasoning_in_the_final_usage(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    chunk = {"id": "x", "model": "grok-4", "choices": [{"index": 0, "delta": {"content": "4"}}]}
    done = {
        "id": "x",
        "model": "grok-4",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    usage = {
        "id": "x",
        "choices": [],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "total_tokens": 31,
            "completion_tokens_details": {"reasoning_tokens": 20},
        },
    }
    respx_mock.post(URL).respond(200, content=sse(chunk, done, usage, "[DONE]"))
    async with XAIProvider(settings=settings, retry=retry) as provider:
        items = [i async for i in provider.stream(request("grok-4"))]
    final = items[-1]
    assert isinstance(final, Completion)
    assert final.usage.output_tokens == 21
