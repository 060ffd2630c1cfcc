"""OpenAI Chat Completions: request shape, parsing, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from rlm_async._exceptions import (
    AuthenticationError,
    NotFoundError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm_async._types import Completion, Message
from rlm_async.providers import CompletionRequest, OpenAIProvider, RetryPolicy, TextDelta
from rlm_async.providers._settings import Settings
from rlm_async.providers.openai import from_wire, is_reasoning_model, to_wire
from tests.providers.support import KEYS, SleepRecorder, fixture_body, request, sse

URL = "https://api.openai.com/v1/chat/completions"


@pytest.fixture
async def provider(settings: Settings, retry: RetryPolicy) -> AsyncIterator[OpenAIProvider]:
    async with OpenAIProvider(settings=settings, retry=retry) as p:
        yield p


# ---- to_wire -----------------------------------------------------------------------------


def test_to_wire_puts_the_system_prompt_first_and_uses_max_completion_tokens() -> None:
    body = to_wire(request("gpt-4o", system="Be brief.", max_tokens=50, temperature=0.2))
    assert body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What's 2 + 2?"},
        ],
        "max_completion_tokens": 50,
        "temperature": 0.2,
    }


@pytest.mark.parametrize("model", ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-nano"])
def test_to_wire_omits_temperature_for_reasoning_models(model: str) -> None:
    assert "temperature" not in to_wire(request(model, temperature=0.3))


def test_gpt_5_chat_is_not_a_reasoning_model() -> None:
    assert not is_reasoning_model("gpt-5-chat-latest")
    assert is_reasoning_model("gpt-5-mini")


def test_to_wire_streaming_asks_for_usage() -> None:
    body = to_wire(request(), stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_to_wire_lays_extra_over_the_body() -> None:
    body = to_wire(request("gpt-5", extra={"reasoning_effort": "low", "model": "gpt-5-mini"}))
    assert body["reasoning_effort"] == "low"
    assert body["model"] == "gpt-5-mini"


# ---- from_wire ---------------------------------------------------------------------------


def test_from_wire_reads_text_finish_reason_usage_and_model() -> None:
    completion = from_wire(fixture_body("openai_ok"), request_model="gpt-4o")
    assert completion.text.startswith("I'm unable to provide real-time weather")
    assert completion.finish_reason == "stop"
    assert completion.model == "gpt-4o-2024-08-06"
    assert completion.provider == "openai"
    assert completion.usage.input_tokens == 14
    assert completion.usage.output_tokens == 37


def test_from_wire_reads_cached_and_reasoning_tokens_without_double_counting() -> None:
    body = fixture_body("openai_ok")
    body["usage"] = {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    usage = from_wire(body).usage
    assert (usage.input_tokens, usage.output_tokens) == (100, 50)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (64, 30)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"id": "x", "choices": []}, "no choices"),
        ({"id": "x"}, "no choices"),
        (
            {
                "choices": [
                    {"message": {"content": None, "refusal": "I can't"}, "finish_reason": "stop"}
                ]
            },
            "refused",
        ),
        ({"choices": [{"message": {"content": ""}, "finish_reason": "length"}]}, "max_tokens"),
        ({"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}, "empty reply"),
    ],
)
def test_from_wire_never_returns_empty_text(body: dict[str, object], match: str) -> None:
    with pytest.raises(ProviderResponseError, match=match):
        from_wire(body)


# ---- complete() over HTTP ----------------------------------------------------------------


async def test_complete_sends_bearer_key_and_json_body(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(
        200, json=fixture_body("openai_ok"), headers={"x-request-id": "req_abc"}
    )
    completion = await provider.complete(request("gpt-4o", system="sys"))
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {KEYS['openai_api_key']}"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content)["messages"][0] == {"role": "system", "content": "sys"}
    assert completion.request_id == "req_abc"


async def test_complete_fills_the_cost_from_the_price_table(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    completion = await provider.complete(request("gpt-4o"))
    assert completion.usage.cost_usd == pytest.approx((14 * 2.50 + 37 * 10.0) / 1e6)


async def test_base_url_from_settings_is_used(
    retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post("https://proxy.test/openai/chat/completions").respond(
        200, json=fixture_body("openai_ok")
    )
    settings = Settings(openai_api_key="k-1234", openai_base_url="https://proxy.test/openai/")
    async with OpenAIProvider(settings=settings, retry=retry) as provider:
        await provider.complete(request())
    assert route.called


async def test_unauthorised_is_an_authentication_error_without_the_key(
    respx_mock: respx.MockRouter, retry: RetryPolicy
) -> None:
    respx_mock.post(URL).respond(401, json=fixture_body("openai_401"))
    async with OpenAIProvider(api_key="sk-mock", retry=retry, settings=Settings()) as provider:
        with pytest.raises(AuthenticationError) as info:
            await provider.complete(request())
    assert info.value.status_code == 401
    assert "sk-mock" not in str(info.value)
    assert "sk-mock" not in repr(info.value.body)
    assert respx_mock.calls.call_count == 1


async def test_unknown_model_is_not_found(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(
        404,
        json={"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}},
    )
    with pytest.raises(NotFoundError, match="gpt-9"):
        await provider.complete(request("gpt-9"))


async def test_insufficient_quota_is_a_rate_limit_error_that_is_not_retried(
    provider: OpenAIProvider, respx_mock: respx.MockRouter, sleeps: SleepRecorder
) -> None:
    respx_mock.post(URL).respond(429, json=fixture_body("openai_429_quota"))
    with pytest.raises(RateLimitError, match="quota"):
        await provider.complete(request())
    assert respx_mock.calls.call_count == 1


async def test_rate_limit_is_retried_then_succeeds(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(429, json=fixture_body("openai_429_rate"), headers={"retry-after": "1"}),
            httpx.Response(200, json=fixture_body("openai_ok")),
        ]
    )
    completion = await provider.complete(request())
    assert completion.text
    assert respx_mock.calls.call_count == 2


async def test_html_error_page_with_200_is_a_response_error(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(
        200,
        text="<html><title>Gateway says hi</title></html>",
        headers={"content-type": "text/html"},
    )
    with pytest.raises(ProviderResponseError, match="Gateway says hi"):
        await provider.complete(request())


async def test_truncated_json_is_a_response_error(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, text='{"choices": [{"message": {"content": "hal')
    with pytest.raises(ProviderResponseError, match="not a JSON object"):
        await provider.complete(request())


async def test_empty_body_is_a_response_error(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, text="")
    with pytest.raises(ProviderResponseError, match="empty reply body"):
        await provider.complete(request())


async def test_server_errors_become_unavailable_after_the_retries(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(503, text="upstream connect error")
    with pytest.raises(ProviderUnavailableError, match="upstream connect error") as info:
        await provider.complete(request())
    assert info.value.status_code == 503
    assert respx_mock.calls.call_count == 3


async def test_connection_errors_are_mapped_and_chained(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(ProviderUnavailableError, match="connection refused") as info:
        await provider.complete(request())
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert respx_mock.calls.call_count == 3


async def test_timeouts_are_mapped_to_provider_timeout_error(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(ProviderTimeoutError) as info:
        await provider.complete(request())
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert "Settings(read_timeout=...)" in str(info.value)


async def test_a_redirect_says_the_base_url_is_probably_wrong(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(
        return_value=httpx.Response(302, headers={"location": "https://example.com/login"})
    )
    with pytest.raises(ProviderError, match=r"redirect to https://example\.com/login.*base URL"):
        await provider.complete(request())


# ---- streaming ---------------------------------------------------------------------------


def _chunk(
    content: str | None = None, finish: str | None = None, **extra: object
) -> dict[str, object]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": None,
        **extra,
    }


async def test_stream_yields_deltas_then_the_completion_with_usage(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    body = sse(
        _chunk("Hel"),
        _chunk("lo"),
        _chunk(finish="stop"),
        {
            "id": "chatcmpl-1",
            "model": "gpt-4o-2024-08-06",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        },
        "[DONE]",
    )
    route = respx_mock.post(URL).respond(200, content=body, headers={"x-request-id": "req_s"})
    items = [item async for item in provider.stream(request())]
    assert items[:2] == [TextDelta(text="Hel"), TextDelta(text="lo")]
    final = items[-1]
    assert isinstance(final, Completion)
    assert (final.text, final.finish_reason, final.request_id) == ("Hello", "stop", "req_s")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 2)
    assert final.usage.cost_usd is not None
    assert json.loads(route.calls.last.request.content)["stream_options"] == {"include_usage": True}


async def test_stream_error_chunk_after_200_is_raised(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    body = sse(
        _chunk("Hi"), {"error": {"message": "The server had an error", "type": "server_error"}}
    )
    respx_mock.post(URL).respond(200, content=body)
    with pytest.raises(ProviderUnavailableError, match="server had an error"):
        [item async for item in provider.stream(request())]


async def test_stream_cut_before_the_end_is_a_response_error(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, content=sse(_chunk("Hi")))
    with pytest.raises(ProviderResponseError, match="ended before"):
        [item async for item in provider.stream(request())]


async def test_stream_status_errors_are_retried_before_the_first_byte(
    provider: OpenAIProvider, respx_mock: respx.MockRouter, sleeps: SleepRecorder
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(503, json={"error": {"message": "busy"}}),
            httpx.Response(200, content=sse(_chunk("ok", finish="stop"), "[DONE]")),
        ]
    )
    items = [item async for item in provider.stream(request())]
    assert isinstance(items[-1], Completion)
    assert items[-1].text == "ok"


async def test_stream_malformed_chunk_is_a_response_error(
    provider: OpenAIProvider, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, content=b"data: {not json\n\n")
    with pytest.raises(ProviderResponseError, match="malformed"):
        [item async for item in provider.stream(request())]


# ---- construction ------------------------------------------------------------------------


def test_missing_key_fails_at_construction_naming_the_variable() -> None:
    from rlm_async._exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIProvider(settings=Settings())


async def test_repr_never_shows_the_key(settings: Settings) -> None:
    async with OpenAIProvider(settings=settings, model="gpt-5") as provider:
        assert KEYS["openai_api_key"] not in repr(provider)
        assert "gpt-5" in repr(provider)


async def test_messages_with_system_role_are_passed_through() -> None:
    req = CompletionRequest(
        model="gpt-4o",
        messages=[Message(role="system", content="s"), Message(role="user", content="u")],
    )
    assert [m["role"] for m in to_wire(req)["messages"]] == ["system", "user"]
