"""Pacing against per-provider limits, on a virtual clock (no real waiting)."""

from __future__ import annotations

import itertools

import anyio
import httpx
import pytest
import respx

from rlm_async import RLM, ConfigurationError, Settings
from rlm_async.providers import OpenAIProvider
from rlm_async.providers._ratelimit import RateLimit, RateLimiter


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def limiter(limit: RateLimit) -> tuple[RateLimiter, VirtualClock]:
    clock = VirtualClock()
    return RateLimiter(limit, clock=clock, sleep=clock.sleep), clock


async def test_requests_are_paced_to_the_requests_per_minute_after_a_small_burst() -> None:
    gate, clock = limiter(RateLimit(requests_per_minute=600, burst_seconds=0.25))
    starts = []
    for _ in range(10):
        await gate.acquire()
        starts.append(clock.now - 1000.0)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    # 600/min = one every 0.1 s; 0.25 s of burst lets the first three go at once.
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert gaps[3:] == [0.1] * 6


async def test_concurrent_callers_are_served_in_order_at_the_paced_rate() -> None:
    gate, clock = limiter(RateLimit(requests_per_minute=60, burst_seconds=0))
    order: list[tuple[int, float]] = []

    async def call(i: int) -> None:
        await gate.acquire()
        order.append((i, clock.now - 1000.0))

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(call, i)
    assert [t for _, t in order] == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_tokens_per_minute_spaces_large_prompts() -> None:
    gate, clock = limiter(RateLimit(tokens_per_minute=60_000, burst_seconds=0))
    await gate.acquire(tokens=10_000)  # 10 s worth of tokens
    await gate.acquire(tokens=10_000)
    assert clock.now - 1000.0 == pytest.approx(10.0)


async def test_a_429_pauses_everyone_and_slows_the_pace_then_it_recovers() -> None:
    gate, clock = limiter(RateLimit(requests_per_minute=600, burst_seconds=0))
    await gate.acquire()
    gate.backoff(5.0)
    await gate.acquire()
    assert clock.now - 1000.0 == pytest.approx(5.0)
    assert gate.slowdown == 2.0
    before = clock.now
    await gate.acquire()
    assert clock.now - before == pytest.approx(0.2)  # twice the 0.1 s interval
    for _ in range(40):
        gate.succeeded()
    assert gate.slowdown == 1.0


async def test_without_limits_acquire_never_waits() -> None:
    gate, clock = limiter(RateLimit())
    for _ in range(100):
        await gate.acquire(tokens=1_000_000)
    assert clock.now == 1000.0


def test_limits_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="requests_per_minute"):
        RateLimit(requests_per_minute=0)


# ---- one path: every attempt of a call passes its model's limiter (issue 13 item 3) ----

URL = "https://api.openai.com/v1/chat/completions"


def _openai_mock() -> respx.Route:
    """A 429 (retry at once), then a reply that answers the run."""
    too_many = httpx.Response(
        429,
        headers={"retry-after": "0"},
        json={"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
    )
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "FINAL(1)"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
    return respx.post(URL).mock(side_effect=[too_many, httpx.Response(200, json=answer)])


async def test_a_per_model_limit_paces_the_retries_of_that_model_too() -> None:
    settings = Settings(openai_api_key="sk-test-openai-0123456789")
    limits = {"openai:gpt-4o": RateLimit(requests_per_minute=6_000)}
    with respx.mock:
        route = _openai_mock()
        async with RLM(model="openai:gpt-4o", settings=settings, rate_limits=limits) as rlm:
            result = await rlm.completion("abc", "q")
    assert result.answer == "1"
    assert route.call_count == 2
    # The retry's 429 reached the per-model limiter: the whole fan-out slows down.
    # (Halved pace, then the success recovers a little of it.)
    assert rlm._resources.rate_limiters["openai:gpt-4o"].slowdown == pytest.approx(1.95)


async def test_two_rlms_sharing_one_provider_object_each_keep_their_own_limits() -> None:
    settings = Settings(openai_api_key="sk-test-openai-0123456789")
    provider = OpenAIProvider(settings=settings, model="gpt-4o")
    first = RLM(model=provider, rate_limits={"openai": RateLimit(requests_per_minute=6_000)})
    second = RLM(model=provider, rate_limits={"openai": RateLimit(requests_per_minute=6_000)})
    with respx.mock:
        _openai_mock()
        async with provider, first, second:
            assert (await first.completion("abc", "q")).answer == "1"
    assert first._resources.rate_limiters["openai"].slowdown == pytest.approx(1.95)
    assert second._resources.rate_limiters["openai"].slowdown == 1.0
