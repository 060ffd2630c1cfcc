"""OpenAI-compatible servers (vLLM, llama.cpp, LM Studio, OpenRouter): the differences."""

from __future__ import annotations

import json

import pytest
import respx

from rlm_async._exceptions import ConfigurationError, RateLimitError
from rlm_async.providers import OpenAICompatibleProvider, RetryPolicy
from rlm_async.providers._settings import Settings
from tests.providers.support import fixture_body, request

URL = "http://compat.test/v1/chat/completions"


async def test_sends_max_tokens_and_keeps_temperature_for_any_model(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    settings = Settings(openai_compatible_base_url="http://compat.test/v1")
    async with OpenAICompatibleProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("o3-local", max_tokens=64, temperature=0.1))
    body = json.loads(route.calls.last.request.content)
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body
    assert body["temperature"] == 0.1
    assert completion.provider == "openai-compatible"


async def test_no_authorization_header_without_a_key(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    settings = Settings(openai_compatible_base_url="http://compat.test/v1")
    async with OpenAICompatibleProvider(settings=settings, retry=retry) as provider:
        await provider.complete(request("local"))
    assert "authorization" not in route.calls.last.request.headers


async def test_optional_key_is_sent_as_bearer(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    async with OpenAICompatibleProvider(settings=settings, retry=retry) as provider:
        await provider.complete(request("local"))
    assert route.calls.last.request.headers["authorization"] == "Bearer compat-test-0123456789"


def test_base_url_is_required() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_COMPATIBLE_BASE_URL"):
        OpenAICompatibleProvider(settings=Settings())


async def test_explicit_base_url_argument_wins(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post("http://localhost:8080/v1/chat/completions").respond(
        200, json=fixture_body("openai_ok")
    )
    async with OpenAICompatibleProvider(
        base_url="http://localhost:8080/v1", settings=Settings(), retry=retry
    ) as provider:
        await provider.complete(request("llama"))
    assert route.called


async def test_unknown_models_cost_none(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, json=fixture_body("openai_ok") | {"model": "my-llama"})
    async with OpenAICompatibleProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("my-llama"))
    assert completion.usage.cost_usd is None


async def test_gateway_error_inside_a_200_is_raised_with_its_status(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    # OpenRouter reports upstream failures as {"error": {"code": 429, ...}} with HTTP 200.
    respx_mock.post(URL).respond(
        200, json={"error": {"code": 429, "message": "Provider returned error: rate limited"}}
    )
    async with OpenAICompatibleProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(RateLimitError, match="rate limited") as info:
            await provider.complete(request("openrouter/auto"))
    assert info.value.status_code == 429


async def test_content_given_as_parts_is_joined(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    body = {
        "choices": [
            {
                "message": {
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
                },
                "finish_reason": "stop",
            }
        ]
    }
    respx_mock.post(URL).respond(200, json=body)
    async with OpenAICompatibleProvider(settings=settings, retry=retry) as provider:
        assert (await provider.complete(request("m"))).text == "ab"
