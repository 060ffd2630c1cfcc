"""Pacing against per-provider limits, on a virtual clock (no real waiting)."""

from __future__ import annotations

import itertools

import anyio
import pytest

from rlm_async import ConfigurationError
from rlm_async._ratelimit import RateLimit, RateLimiter


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
