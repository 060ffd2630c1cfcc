"""Retries: which failures are retried, how long we wait, the caps, and the log lines."""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from rlm_async._exceptions import (
    BadRequestError,
    ConfigurationError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from rlm_async.providers import OpenAIProvider, RetryPolicy
from rlm_async.providers._retry import parse_duration, retry_delay_hint
from rlm_async.providers._settings import Settings
from tests.providers.support import KEYS, SleepRecorder, call, fixture_body, request

URL = "https://api.openai.com/v1/chat/completions"
OK = httpx.Response(200, json=fixture_body("openai_ok"))


def _provider(settings: Settings, policy: RetryPolicy) -> OpenAIProvider:
    return OpenAIProvider(settings=settings, retry=policy)


# ---- the policy --------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=3.0, jitter=0.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_only_shortens_the_backoff_within_its_fraction() -> None:
    policy = RetryPolicy(initial_backoff=2.0, jitter=0.5)
    waits = [policy.backoff(1) for _ in range(200)]
    assert all(1.0 <= w <= 2.0 for w in waits)
    assert len(set(waits)) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_backoff": -1},
        {"jitter": 1.5},
        {"max_total_wait": float("nan")},
    ],
)
def test_invalid_policy_is_a_configuration_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_never_makes_a_single_attempt() -> None:
    assert RetryPolicy.never().max_attempts == 1


# ---- reading hints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("19s", 19.0), ("12ms", 0.012), ("6m0s", 360.0), ("1.5s", 1.5), ("1h2m3s", 3723.0)],
)
def test_parse_duration_reads_go_style_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5", "5x", "s5"])
def test_parse_duration_rejects_what_it_cannot_read(text: str) -> None:
    assert parse_duration(text) is None


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = {"retry-after-ms": "250", "retry-after": "9"}
    assert retry_delay_hint(headers, None, status_code=429) == 0.25


def test_retry_after_seconds_are_read() -> None:
    assert retry_delay_hint({"retry-after": "7"}, None, status_code=503) == 7.0


def test_retry_after_http_date_is_read_relative_to_now() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_delay_hint({"retry-after": date}, None, status_code=429, now=now) == 30.0


def test_gemini_retry_info_is_read_from_the_body() -> None:
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "19s"},
            ],
        }
    }
    assert retry_delay_hint({}, body, status_code=429) == 19.0


def test_exhausted_openai_rate_limit_reset_is_used_on_429() -> None:
    headers = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1.5s"}
    assert retry_delay_hint(headers, None, status_code=429) == 1.5
    assert retry_delay_hint(headers, None, status_code=503) is None


# ---- retries through a provider ----------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
async def test_retryable_statuses_are_retried_with_exponential_backoff(
    status: int,
    settings: Settings,
    retry: RetryPolicy,
    sleeps: SleepRecorder,
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(side_effect=[httpx.Response(status), httpx.Response(status), OK])
    async with _provider(settings, retry) as provider:
        await provider.complete(request())
    assert sleeps.waits == [0.5, 1.0]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_failing_every_attempt_sends_max_attempts_requests_and_no_more(
    settings: Settings,
    retry: RetryPolicy,
    sleeps: SleepRecorder,
    respx_mock: respx.MockRouter,
    stream: bool,
) -> None:
    """The first attempt runs before tenacity: its failure is handed over, never re-sent."""
    route = respx_mock.post(URL).mock(side_effect=[httpx.Response(503)] * 3 + [OK])
    async with _provider(settings, retry) as provider:
        with pytest.raises(ProviderUnavailableError):
            await call(provider, request(), stream=stream)
    assert route.call_count == 3
    assert sleeps.waits == [0.5, 1.0]


async def test_bad_request_is_not_retried(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(400, json={"error": {"message": "bad param"}})
    async with _provider(settings, retry) as provider:
        with pytest.raises(BadRequestError, match="bad param"):
            await provider.complete(request())
    assert sleeps.waits == []


async def test_retry_after_header_sets_the_wait(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(side_effect=[httpx.Response(429, headers={"retry-after": "3"}), OK])
    async with _provider(settings, retry) as provider:
        await provider.complete(request())
    assert sleeps.waits == [3.0]


async def test_retry_after_ms_header_sets_the_wait(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(503, headers={"retry-after-ms": "120"}), OK]
    )
    async with _provider(settings, retry) as provider:
        await provider.complete(request())
    assert sleeps.waits == [0.12]


async def test_x_should_retry_true_retries_an_otherwise_final_status(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(400, headers={"x-should-retry": "true"}), OK]
    )
    async with _provider(settings, retry) as provider:
        await provider.complete(request())
    assert sleeps.waits == [0.5]


async def test_x_should_retry_false_stops_an_otherwise_retryable_status(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(503, headers={"x-should-retry": "false"})
    async with _provider(settings, retry) as provider:
        with pytest.raises(ProviderUnavailableError):
            await provider.complete(request())
    assert sleeps.waits == []


async def test_rate_limit_error_after_retries_carries_retry_after(
    settings: Settings, retry: RetryPolicy, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(
        429, json=fixture_body("openai_429_rate"), headers={"retry-after": "2"}
    )
    async with _provider(settings, retry) as provider:
        with pytest.raises(RateLimitError) as info:
            await provider.complete(request())
    assert info.value.retry_after == 2.0
    assert info.value.status_code == 429
    assert sleeps.waits == [2.0, 2.0]
    assert respx_mock.calls.call_count == 3


async def test_a_wait_longer_than_max_retry_after_fails_at_once(
    settings: Settings, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    policy = RetryPolicy(max_retry_after=60, max_total_wait=10_000, jitter=0, sleep=sleeps)
    respx_mock.post(URL).respond(429, headers={"retry-after": "3600"})
    async with _provider(settings, policy) as provider:
        with pytest.raises(RateLimitError) as info:
            await provider.complete(request())
    assert info.value.retry_after == 3600.0
    assert sleeps.waits == []


async def test_total_wait_cap_stops_retrying_early(
    settings: Settings, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    policy = RetryPolicy(max_attempts=10, max_total_wait=5.0, jitter=0, sleep=sleeps)
    respx_mock.post(URL).respond(503, headers={"retry-after": "2"})
    async with _provider(settings, policy) as provider:
        with pytest.raises(ProviderUnavailableError):
            await provider.complete(request())
    assert sleeps.waits == [2.0, 2.0]
    assert respx_mock.calls.call_count == 3


async def test_max_attempts_one_never_retries(
    settings: Settings, sleeps: SleepRecorder, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    async with _provider(settings, RetryPolicy(max_attempts=1, sleep=sleeps)) as provider:
        with pytest.raises(ProviderTimeoutError):
            await provider.complete(request())
    assert respx_mock.calls.call_count == 1
    assert sleeps.waits == []


async def test_retries_are_logged_without_the_key(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(429, json={"error": {"message": f"slow down {KEYS['openai_api_key']}"}}),
            OK,
        ]
    )
    with capture_logs() as logs:
        async with _provider(settings, retry) as provider:
            await provider.complete(request())
    scheduled = [e for e in logs if e["event"] == "rlm_async.provider.retry_scheduled"]
    assert len(scheduled) == 1
    assert scheduled[0]["provider"] == "openai"
    assert scheduled[0]["status_code"] == 429
    assert scheduled[0]["wait"] == 0.5
    assert KEYS["openai_api_key"] not in str(logs)


async def test_cancellation_during_a_retry_wait_propagates_untouched(
    settings: Settings, respx_mock: respx.MockRouter
) -> None:
    async def never_returns(seconds: float) -> None:
        await asyncio.Event().wait()

    respx_mock.post(URL).respond(503)
    async with _provider(settings, RetryPolicy(sleep=never_returns)) as provider:
        task = asyncio.create_task(provider.complete(request()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_default_policy_sleeps_with_anyio_when_no_hook_is_given(
    settings: Settings, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(side_effect=[httpx.Response(503, headers={"retry-after": "0"}), OK])
    async with _provider(settings, RetryPolicy()) as provider:
        assert (await provider.complete(request())).text
