"""A 429 inside an adapter's retries slows every caller of that provider down together."""

from __future__ import annotations

import anyio
import httpx
import respx

from rlm_async import RateLimitError
from rlm_async.providers import OpenAIProvider, RetryPolicy
from rlm_async.providers._ratelimit import RateLimit, RateLimiter
from rlm_async.providers._retry import RetryableFailure, pacing, run_with_retries
from rlm_async.providers._settings import Settings
from tests.providers.support import KEYS, fixture_body, request

URL = "https://api.openai.com/v1/chat/completions"


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def test_a_429_pauses_the_shared_gate_and_the_retry_queues_behind_it() -> None:
    clock = VirtualClock()
    gate = RateLimiter(RateLimit(requests_per_minute=600), clock=clock, sleep=clock.sleep)
    retry = RetryPolicy(sleep=clock.sleep, jitter=0)
    settings = Settings(openai_api_key=KEYS["openai_api_key"])
    with respx.mock:
        route = respx.post(URL).mock(
            side_effect=[
                httpx.Response(
                    429,
                    headers={"retry-after": "7"},
                    json={
                        "error": {
                            "message": "slow down",
                            "type": "requests",
                            "code": "rate_limit_exceeded",
                        }
                    },
                ),
                httpx.Response(200, json=fixture_body("openai_ok")),
            ]
        )
        async with OpenAIProvider(settings=settings, retry=retry) as provider:
            with pacing(gate):  # the engine hands each call its model's gate this way
                completion = await provider.complete(request("gpt-4o"))
    assert route.call_count == 2
    assert completion.text
    # Every caller of the provider is held until the server's retry time has passed.
    assert gate.slowdown == 2.0
    await gate.acquire()
    assert clock.now >= 7.0


async def test_without_a_gate_retries_keep_their_own_schedule() -> None:
    clock = VirtualClock()
    retry = RetryPolicy(sleep=clock.sleep, jitter=0)
    settings = Settings(openai_api_key=KEYS["openai_api_key"])
    with respx.mock:
        respx.post(URL).mock(
            side_effect=[
                httpx.Response(
                    429,
                    headers={"retry-after": "2"},
                    json={
                        "error": {"message": "x", "type": "requests", "code": "rate_limit_exceeded"}
                    },
                ),
                httpx.Response(200, json=fixture_body("openai_ok")),
            ]
        )
        async with OpenAIProvider(settings=settings, retry=retry) as provider:
            await provider.complete(request("gpt-4o"))
    assert clock.now == 2.0


class CountingGate:
    def __init__(self) -> None:
        self.acquired = 0
        self.backoffs: list[float] = []

    async def acquire(self, tokens: int = 0) -> None:
        self.acquired += 1
        await anyio.lowlevel.checkpoint()  # a retry queues here: other calls run meanwhile

    def backoff(self, seconds: float) -> None:
        self.backoffs.append(seconds)


async def test_one_policy_serves_concurrent_calls_each_with_its_own_gate() -> None:
    # The policy's tenacity object is built once and shared: each call's gate and
    # provider must still be its own, even while the calls interleave.
    retry = RetryPolicy(sleep=lambda s: anyio.lowlevel.checkpoint(), jitter=0)
    gates = [CountingGate() for _ in range(3)]

    async def call(index: int) -> str:
        tries = 0

        async def attempt() -> str:
            nonlocal tries
            tries += 1
            await anyio.lowlevel.checkpoint()
            if tries <= index + 1:
                error = RateLimitError("slow down", provider=f"p{index}", status_code=429)
                raise RetryableFailure(error, delay=float(index))
            return f"ok {index}"

        return await run_with_retries(retry, f"p{index}", attempt, gate=gates[index])

    results: list[str] = []

    async def record(index: int) -> None:
        results.append(await call(index))

    async with anyio.create_task_group() as tg:
        for index in range(3):
            tg.start_soon(record, index)
    assert sorted(results) == ["ok 0", "ok 1", "ok 2"]
    assert [g.backoffs for g in gates] == [[0.0], [1.0, 1.0], [2.0, 2.0, 2.0]]
    assert [g.acquired for g in gates] == [1, 2, 3]
    assert retry._retrying is not None  # built once, on first use
