"""Gemini generateContent: roles, thoughts, blocked prompts, the MAX_TOKENS trap, errors."""

from __future__ import annotations

import json

import pytest
import respx

from rlm_async._exceptions import (
    AuthenticationError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm_async._types import Completion, Message
from rlm_async.providers import CompletionRequest, GeminiProvider, RetryPolicy, TextDelta
from rlm_async.providers._settings import Settings
from rlm_async.providers.gemini import from_wire, to_wire
from tests.providers.support import KEYS, SleepRecorder, fixture_body, request, sse

BASE = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
URL = f"{BASE}:generateContent"
STREAM_URL = f"{BASE}:streamGenerateContent"
MODEL = "gemini-2.5-flash"


def test_to_wire_maps_roles_and_the_system_instruction() -> None:
    req = CompletionRequest(
        model=MODEL,
        system="Be brief.",
        messages=[
            Message(role="user", content="hi"),
            Message(role="assistant", content="hello"),
            Message(role="user", content="2+2?"),
        ],
        max_tokens=256,
        temperature=0.4,
    )
    assert to_wire(req) == {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hello"}]},
            {"role": "user", "parts": [{"text": "2+2?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 256, "temperature": 0.4},
    }


def test_extra_generation_config_merges_with_ours() -> None:
    req = request(
        MODEL, max_tokens=10, extra={"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}
    )
    assert to_wire(req)["generationConfig"] == {
        "maxOutputTokens": 10,
        "thinkingConfig": {"thinkingBudget": 0},
    }


def test_from_wire_counts_thoughts_as_output_and_uses_the_response_id() -> None:
    completion = from_wire(fixture_body("gemini_ok"))
    usage = completion.usage
    assert completion.text == "2 + 2 = **4**"
    assert completion.finish_reason == "STOP"
    assert completion.model == "gemini-2.5-flash"
    assert completion.request_id == "Cr-FaqLbNpfYkdUP-bmpoAw"
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (10, 31, 23)
    assert usage.total_tokens == fixture_body("gemini_ok")["usageMetadata"]["totalTokenCount"]


def test_thought_parts_are_skipped() -> None:
    body = fixture_body("gemini_ok")
    body["candidates"][0]["content"]["parts"] = [
        {"text": "Let me think...", "thought": True},
        {"text": "4"},
    ]
    assert from_wire(body).text == "4"


def test_blocked_prompt_is_a_response_error_naming_the_reason() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}
    with pytest.raises(ProviderResponseError, match=r"blocked \(SAFETY\)"):
        from_wire(body)


def test_no_candidates_is_a_response_error() -> None:
    with pytest.raises(ProviderResponseError, match="no candidates"):
        from_wire({"candidates": []})


def test_max_tokens_with_empty_text_is_an_error_about_thinking() -> None:
    body = fixture_body("gemini_ok")
    body["candidates"][0] = {"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}
    with pytest.raises(ProviderResponseError, match="thinking tokens count"):
        from_wire(body)


def test_safety_stop_with_no_text_is_an_error() -> None:
    body = fixture_body("gemini_ok")
    body["candidates"][0] = {"finishReason": "SAFETY"}
    with pytest.raises(ProviderResponseError, match="SAFETY"):
        from_wire(body)


async def test_complete_sends_the_key_header_to_the_model_url(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("gemini_ok"))
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request(MODEL))
    sent = route.calls.last.request
    assert sent.headers["x-goog-api-key"] == KEYS["google_api_key"]
    assert KEYS["google_api_key"] not in str(sent.url)
    assert json.loads(sent.content)["contents"][0]["role"] == "user"
    assert completion.usage.cost_usd == pytest.approx((10 * 0.30 + 31 * 2.50) / 1e6)


async def test_bad_key_400_is_an_authentication_error(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(400, json=fixture_body("gemini_400_badkey"))
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(AuthenticationError, match="API key not valid"):
            await provider.complete(request(MODEL))


async def test_503_is_retried_then_unavailable(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(503, json=fixture_body("gemini_503"))
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderUnavailableError, match="overloaded"):
            await provider.complete(request(MODEL))
    assert len(sleeps.waits) == 2


async def test_429_waits_for_the_retry_info_delay(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    quota = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "19s"}],
        }
    }
    respx_mock.post(URL).respond(429, json=quota)
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(RateLimitError) as info:
            await provider.complete(request(MODEL))
    assert sleeps.waits == [19.0, 19.0]
    assert info.value.retry_after == 19.0


def _chunk(text: str | None, finish: str | None = None, **extra: object) -> dict[str, object]:
    candidate: dict[str, object] = {
        "content": {"role": "model", "parts": [{"text": text}] if text else []}
    }
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": MODEL, "responseId": "resp_1", **extra}


async def test_stream_yields_deltas_and_the_last_usage(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 3, "thoughtsTokenCount": 5}
    body = sse(_chunk("2 + 2"), _chunk(" = 4", "STOP", usageMetadata=usage))
    route = respx_mock.post(STREAM_URL).respond(200, content=body)
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        items = [i async for i in provider.stream(request(MODEL))]
    assert items[:2] == [TextDelta(text="2 + 2"), TextDelta(text=" = 4")]
    final = items[-1]
    assert isinstance(final, Completion)
    assert (final.text, final.finish_reason, final.request_id) == ("2 + 2 = 4", "STOP", "resp_1")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, 8)
    assert route.calls.last.request.url.params["alt"] == "sse"


async def test_stream_of_a_blocked_prompt_is_a_response_error(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(STREAM_URL).respond(
        200, content=sse({"promptFeedback": {"blockReason": "OTHER"}})
    )
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="blocked"):
            [i async for i in provider.stream(request(MODEL))]


async def test_stream_ending_with_max_tokens_and_no_text_is_an_error(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(STREAM_URL).respond(200, content=sse(_chunk(None, "MAX_TOKENS")))
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="maxOutputTokens"):
            [i async for i in provider.stream(request(MODEL))]


async def test_stream_cut_before_finish_reason_is_an_error(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(STREAM_URL).respond(200, content=sse(_chunk("partial")))
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="finishReason"):
            [i async for i in provider.stream(request(MODEL))]
