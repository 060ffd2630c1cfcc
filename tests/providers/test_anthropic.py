"""Anthropic Messages: request shape, parsing, SSE streaming, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx

from rlm_async._exceptions import (
    AuthenticationError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm_async._types import Completion, Message
from rlm_async.providers import AnthropicProvider, CompletionRequest, RetryPolicy, TextDelta
from rlm_async.providers._settings import Settings
from rlm_async.providers.anthropic import default_max_tokens, from_wire, to_wire
from tests.providers.support import KEYS, SleepRecorder, fixture_body, request, sse

URL = "https://api.anthropic.com/v1/messages"
MODEL = "claude-sonnet-4-5"


def test_to_wire_puts_system_top_level_and_always_sends_max_tokens() -> None:
    body = to_wire(request(MODEL, system="Be brief."))
    assert body == {
        "model": MODEL,
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": "What's 2 + 2?"}],
        "system": "Be brief.",
    }


def test_default_max_tokens_fits_older_models() -> None:
    assert default_max_tokens("claude-3-haiku-20240307") == 4096
    assert default_max_tokens("claude-3-5-haiku-latest") == 8192


def test_explicit_max_tokens_is_kept() -> None:
    assert to_wire(request(MODEL, max_tokens=100))["max_tokens"] == 100


@pytest.mark.parametrize(("given", "sent"), [(1.7, 1.0), (-0.5, 0.0), (0.3, 0.3)])
def test_temperature_is_clamped_into_anthropics_range(given: float, sent: float) -> None:
    assert to_wire(request(MODEL, temperature=given))["temperature"] == sent


def test_system_messages_are_folded_and_same_role_turns_merged() -> None:
    req = CompletionRequest(
        model=MODEL,
        system="A",
        messages=[
            Message(role="system", content="B"),
            Message(role="user", content="u1"),
            Message(role="user", content="u2"),
            Message(role="assistant", content="a"),
        ],
    )
    body = to_wire(req)
    assert body["system"] == "A\n\nB"
    assert body["messages"] == [
        {"role": "user", "content": "u1\n\nu2"},
        {"role": "assistant", "content": "a"},
    ]


def test_from_wire_reads_the_recorded_reply() -> None:
    completion = from_wire(fixture_body("anthropic_ok"))
    assert completion.text == '{"product_name": "Green Tea", "price": 5.50, "quantity": 2}'
    assert completion.finish_reason == "end_turn"
    assert completion.model == "claude-sonnet-4-5-20250929"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (249, 26)


def test_cache_reads_and_writes_count_as_input() -> None:
    body = fixture_body("anthropic_ok")
    body["usage"].update(
        {"input_tokens": 10, "cache_read_input_tokens": 200, "cache_creation_input_tokens": 50}
    )
    usage = from_wire(body).usage
    assert (usage.input_tokens, usage.cached_tokens) == (260, 200)


def test_thinking_blocks_are_not_part_of_the_text() -> None:
    body = fixture_body("anthropic_ok")
    body["content"] = [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "answer"},
    ]
    assert from_wire(body).text == "answer"


@pytest.mark.parametrize(
    ("stop", "match"),
    [("max_tokens", "raise max_tokens"), ("refusal", "refused"), ("end_turn", "empty reply")],
)
def test_empty_replies_are_errors_that_say_why(stop: str, match: str) -> None:
    body = fixture_body("anthropic_ok") | {"content": [], "stop_reason": stop}
    with pytest.raises(ProviderResponseError, match=match):
        from_wire(body)


async def test_complete_sends_the_key_version_and_reads_the_request_id(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(
        200, json=fixture_body("anthropic_ok"), headers={"request-id": "req_1"}
    )
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request(MODEL))
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == KEYS["anthropic_api_key"]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert json.loads(sent.content)["max_tokens"] == 8192
    assert completion.request_id == "req_1"
    assert completion.usage.cost_usd == pytest.approx((249 * 3 + 26 * 15) / 1e6)


async def test_invalid_key_is_an_authentication_error_with_the_body_request_id(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(401, json=fixture_body("anthropic_401"))
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(AuthenticationError, match="invalid x-api-key") as info:
            await provider.complete(request(MODEL))
    assert info.value.request_id == "req_011CeCGmBjaWkq37Sf5iU7so"


async def test_overloaded_529_is_retried_then_unavailable(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(529, json=fixture_body("anthropic_529"))
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderUnavailableError, match="Overloaded") as info:
            await provider.complete(request(MODEL))
    assert info.value.status_code == 529
    assert sleeps.waits == [0.5, 1.0]


def _events(*texts: str, stop: str = "end_turn") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 4},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
        for t in texts
    ]
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]
    return events


async def test_stream_yields_text_deltas_and_a_final_completion(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(
        200, content=sse(*_events("Hel", "lo"), named=True), headers={"request-id": "req_s"}
    )
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        items = [i async for i in provider.stream(request(MODEL))]
    assert items[:2] == [TextDelta(text="Hel"), TextDelta(text="lo")]
    final = items[-1]
    assert isinstance(final, Completion)
    assert (final.text, final.finish_reason, final.request_id) == ("Hello", "end_turn", "req_s")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (16, 7)
    assert final.usage.cached_tokens == 4
    assert json.loads(route.calls.last.request.content)["stream"] is True


async def test_stream_error_event_after_200_is_raised_as_its_type(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    events = [
        *_events("partial")[:4],
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    respx_mock.post(URL).respond(200, content=sse(*events, named=True))
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderUnavailableError, match="Overloaded"):
            [i async for i in provider.stream(request(MODEL))]


async def test_stream_rate_limit_error_event_is_a_rate_limit_error(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    events = [{"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}]
    respx_mock.post(URL).respond(200, content=sse(*events, named=True))
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(RateLimitError):
            [i async for i in provider.stream(request(MODEL))]


async def test_stream_without_message_stop_is_a_response_error(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, content=sse(*_events("cut")[:-1], named=True))
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="message_stop"):
            [i async for i in provider.stream(request(MODEL))]
