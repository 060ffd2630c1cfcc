"""Per-provider pacing shared by every completion of an ``RLM``.

Two limits, each a generic cell rate algorithm (GCRA): requests per minute and tokens per
minute, with a small burst allowance. Waiters queue on one lock, so a fan-out of a thousand
sub-calls is paced in arrival order rather than woken all at once.

Adaptive backoff: when a provider answers 429, :meth:`RateLimiter.backoff` pauses *every*
caller until the provider's retry time, and slows the request pace (multiplicative
decrease); each success speeds it back up a little (additive increase). The whole fan-out
slows down together instead of every request retrying on its own schedule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pydantic import Field

from rlm_async._options import OptionsModel

__all__ = ["RateLimit", "RateLimiter"]

_MAX_SLOWDOWN = 8.0


class RateLimit(OptionsModel):
    """Limits for one provider, shared by all completions of an ``RLM``.

    Attributes:
        requests_per_minute: Requests started per minute (``None``: no limit).
        tokens_per_minute: Prompt tokens (estimated from characters) per minute.
        burst_seconds: How many seconds' worth of the limit may go out at once.
    """

    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    burst_seconds: float = Field(default=1.0, ge=0)


class RateLimiter:
    """Paces calls to one provider; see the module docstring."""

    def __init__(
        self,
        limit: RateLimit | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        self.limit = limit or RateLimit()
        self._clock = clock
        self._sleep = sleep
        self._lock = anyio.Lock()
        self._request_tat = -math.inf  # GCRA "theoretical arrival time" of the next request
        self._token_tat = -math.inf
        self._paused_until = -math.inf
        self.slowdown = 1.0
        self.waited = 0.0  # total seconds callers spent waiting here (for reports)

    def _request_interval(self) -> float:
        rpm = self.limit.requests_per_minute
        return 0.0 if rpm is None else 60.0 / rpm * self.slowdown

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until a request of ``tokens`` prompt tokens may start, then count it."""
        async with self._lock:
            interval = self._request_interval()
            tpm = self.limit.tokens_per_minute
            token_cost = 0.0 if tpm is None else tokens * 60.0 / tpm
            request_tolerance = self.limit.burst_seconds if interval else 0.0
            token_tolerance = self.limit.burst_seconds if tpm is not None else 0.0
            while True:
                now = self._clock()
                ready = max(
                    self._paused_until,
                    self._request_tat - request_tolerance if interval else -math.inf,
                    self._token_tat - token_tolerance if tpm is not None else -math.inf,
                )
                if ready <= now:
                    break
                self.waited += ready - now
                await self._sleep(ready - now)
            if interval:
                self._request_tat = max(self._request_tat, now) + interval
            if tpm is not None:
                self._token_tat = max(self._token_tat, now) + token_cost

    def backoff(self, seconds: float) -> None:
        """A provider said 429: pause everyone for ``seconds`` and slow the pace down."""
        now = self._clock()
        self._paused_until = max(self._paused_until, now + max(seconds, 0.0))
        self.slowdown = min(self.slowdown * 2.0, _MAX_SLOWDOWN)

    def succeeded(self) -> None:
        """A call went through: recover the pace gradually."""
        if self.slowdown > 1.0:
            self.slowdown = max(1.0, self.slowdown - 0.05)
