"""Retries: our small :class:`RetryPolicy` in front, tenacity (private) behind.

What is retried: connection errors, timeouts, and the statuses 408, 409, 429, 500, 502,
503, 504 and 529, unless the provider said ``x-should-retry: false`` (it can also force a
retry with ``true``) or the 429 is a quota that waiting cannot fix (OpenAI's
``insufficient_quota``). How long to wait, in order: ``retry-after-ms``, ``retry-after``
(seconds or an HTTP date), Gemini's ``RetryInfo.retryDelay``, OpenAI/xAI's
``x-ratelimit-reset-*`` when the exhausted limit is named, else exponential backoff with
jitter. A server asking for longer than ``max_retry_after`` is not retried at all: the
caller gets a :class:`~rlm_async.RateLimitError` with ``retry_after`` set at once instead of
a silent multi-minute stall.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import anyio
import tenacity as _t

from rlm_async._exceptions import ConfigurationError, ProviderError
from rlm_async._logging import get_logger

__all__ = [
    "RateGate",
    "RetryPolicy",
    "RetryableFailure",
    "current_gate",
    "pacing",
    "parse_duration",
    "retry_delay_hint",
    "run_with_retries",
]

_log = get_logger("rlm_async.provider")

T = TypeVar("T")

RETRYABLE_STATUSES: Final = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How provider calls are retried.

    Attributes:
        max_attempts: Attempts in all, the first included (1 = never retry).
        initial_backoff: Seconds before the first retry when the server gave no hint;
            doubled on each further retry.
        max_backoff: Cap on one computed backoff.
        max_total_wait: Cap on the seconds spent waiting across all retries of one call;
            a retry that would pass it is not made.
        max_retry_after: Longest server-requested wait that is honoured; a longer one ends
            the retries at once (the error carries ``retry_after``).
        jitter: Fraction (0-1) of each computed backoff that is randomised away, so many
            concurrent sub-calls that failed together do not retry together.
        sleep: The coroutine used to wait (default: ``anyio.sleep``); swap it to wait on
            a virtual clock or to record the waits.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 16.0
    max_total_wait: float = 120.0
    max_retry_after: float = 90.0
    jitter: float = 0.5
    sleep: Callable[[float], Awaitable[Any]] | None = field(default=None, compare=False)
    _retrying: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("initial_backoff", "max_backoff", "max_total_wait", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0 or math.isnan(value):
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be between 0 and 1, got {self.jitter!r}")

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that makes one attempt only."""
        return cls(max_attempts=1)

    def backoff(self, retry_number: int) -> float:
        """The computed wait before retry ``retry_number`` (1-based), jitter applied."""
        base = min(self.initial_backoff * 2.0 ** (retry_number - 1), self.max_backoff)
        return base * (1 - self.jitter * random.random())


class RetryableFailure(Exception):
    """Internal: a failed attempt that may be retried, carrying the error to raise at the end."""

    def __init__(self, error: ProviderError, delay: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay


class RateGate(Protocol):
    """What retries tell a shared rate limiter (``rlm_async.RateLimit``'s ``RateLimiter``)."""

    async def acquire(self, tokens: int = 0) -> None: ...

    def backoff(self, seconds: float) -> None: ...


# The rate gate of the call in progress, chosen by the engine per call from the model it
# calls (see ``pacing``). A context variable rather than an argument because
# ``Provider.complete(request)`` is the whole public interface a user's provider implements;
# and not an attribute of the provider, because one Provider object may serve two ``RLM``s
# with different limits.
_gate: ContextVar[RateGate | None] = ContextVar("rlm_async_rate_gate", default=None)


@contextmanager
def pacing(gate: RateGate | None) -> Iterator[None]:
    """Provider calls made in this block retry through ``gate`` (their first attempt is
    the caller's to pace: the engine does, so that providers without retries are paced too)."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


def current_gate() -> RateGate | None:
    """The rate gate that the caller set with :func:`pacing` for this call, if any."""
    return _gate.get()


async def run_with_retries(
    policy: RetryPolicy,
    provider: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    gate: RateGate | None = None,
    tokens: int = 0,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the policy gives up.

    ``attempt`` raises :class:`RetryableFailure` for what may be retried and a
    ``ProviderError`` for what may not; the caller only ever sees the latter.

    With a ``gate`` (the provider's shared rate limiter), a 429 pauses every caller of
    that provider for the server's retry time, not just this one, and each retry queues
    behind the gate like a new request: the whole fan-out slows down together. The first
    attempt is paced by the caller (the engine), so it is not gated twice.
    """
    # The first attempt runs outside tenacity, which costs ~15 µs a call even when nothing
    # fails (it inspects each callback on every call): most calls succeed at once.
    try:
        return await attempt()
    except RetryableFailure as failure:
        first: RetryableFailure | None = failure

    async def gated(*, gate: RateGate | None, provider: str) -> T:
        nonlocal first
        if first is not None:
            # Tenacity's attempt 1 is the one already made: its failure, given again, is
            # what tenacity waits on, stops on and logs, as if it had made it.
            failure, first = first, None
            raise failure
        if gate is not None:
            await gate.acquire(tokens)
        return await attempt()

    try:
        # The tenacity object is the policy's, built once: only ``gated`` is per call, and
        # what the callbacks need of the call (its gate, the provider) rides in its kwargs.
        return await _retrying(policy)(gated, gate=gate, provider=provider)
    except RetryableFailure as failure:
        raise failure.error from failure.error.__cause__


def _retrying(policy: RetryPolicy) -> _t.AsyncRetrying:
    """The policy's tenacity object, built on first use and kept on the policy.

    One object serves concurrent calls safely because every callback here is synchronous:
    tenacity's per-object iteration state is only used inside ``iter()``, which then never
    suspends; everything per call lives in the call's own ``RetryCallState``.
    """
    cached: _t.AsyncRetrying | None = policy._retrying
    if cached is not None:
        return cached

    def wait(state: _t.RetryCallState) -> float:
        failure = _failure(state)
        if failure is not None and failure.delay is not None:
            return failure.delay
        return policy.backoff(state.attempt_number)

    def stop(state: _t.RetryCallState) -> bool:
        failure = _failure(state)
        asked = failure.delay if failure is not None else None
        return (
            state.attempt_number >= policy.max_attempts
            or (asked is not None and asked > policy.max_retry_after)
            or state.idle_for + state.upcoming_sleep > policy.max_total_wait
        )

    def log(state: _t.RetryCallState) -> None:
        failure = _failure(state)
        error = failure.error if failure is not None else None
        gate: RateGate | None = state.kwargs["gate"]
        if gate is not None and getattr(error, "status_code", None) == 429:
            gate.backoff(state.upcoming_sleep)
        _log.warning(
            "rlm_async.provider.retry_scheduled",
            provider=state.kwargs["provider"],
            attempt=state.attempt_number,
            max_attempts=policy.max_attempts,
            wait=round(state.upcoming_sleep, 3),
            status_code=getattr(error, "status_code", None),
            error=type(error).__name__ if error is not None else None,
            message=getattr(error, "message", None),
        )

    built = _t.AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=_t.retry_if_exception_type(RetryableFailure),
        sleep=policy.sleep or anyio.sleep,
        before_sleep=log,
        reraise=True,
    )
    object.__setattr__(policy, "_retrying", built)  # a frozen dataclass: a cache, not state
    return built


def _failure(state: _t.RetryCallState) -> RetryableFailure | None:
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc if isinstance(exc, RetryableFailure) else None


# ---- reading the server's hints --------------------------------------------------------

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``"19s"``, ``"12ms"``, ``"6m0s"``, ``"1.5s"``)."""
    text = text.strip()
    if not text:
        return None
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        value, unit = float(match.group(1)), match.group(2)
        total += value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
        pos = match.end()
    return total if pos == len(text) else None


def retry_delay_hint(
    headers: Mapping[str, str], body: Any, *, status_code: int, now: float | None = None
) -> float | None:
    """Seconds the server asked us to wait before retrying, when it said."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                when = email.utils.mktime_tz(parsed)
                return max(when - (time.time() if now is None else now), 0.0)
    gemini = _gemini_retry_delay(body)
    if gemini is not None:
        return gemini
    if status_code == 429:
        for kind in ("requests", "tokens"):
            if headers.get(f"x-ratelimit-remaining-{kind}") == "0":
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", ""))
                if reset is not None:
                    return reset
    return None


def _gemini_retry_delay(body: Any) -> float | None:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if (
            isinstance(detail, dict)
            and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo")
            and isinstance(detail.get("retryDelay"), str)
        ):
            return parse_duration(detail["retryDelay"])
    return None


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The provider's own verdict from ``x-should-retry``, when it gave one."""
    value = headers.get("x-should-retry", "").strip().lower()
    return True if value == "true" else False if value == "false" else None
