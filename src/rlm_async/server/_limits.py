"""Admission control: run slots with an optional short queue, and request-size limits.

A service that accepts every request and queues it behind running ones answers nobody in
time once it is overloaded. :class:`RunSlots` admits up to ``limit`` runs at once; when
all are taken a request may wait in a queue of at most ``max_queue`` (default 0: no
queue), for at most ``queue_timeout`` seconds. Anything beyond is refused at once with
429, so a client or load balancer can go elsewhere instead of waiting.
"""

from __future__ import annotations

import math

import anyio
from starlette.requests import Request

from rlm_async._exceptions import ConfigurationError
from rlm_async._options import check_int
from rlm_async.server._errors import ApiError

__all__ = ["RunSlot", "RunSlots", "check_limits", "read_body"]


class RunSlot:
    """One admitted run. ``release()`` is idempotent and may be called from any task."""

    __slots__ = ("_released", "_slots")

    def __init__(self, slots: RunSlots) -> None:
        self._slots = slots
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._slots._release()


class RunSlots:
    """At most ``limit`` runs at once, with a bounded, time-limited queue behind them.

    Args:
        limit: Runs in flight at once.
        max_queue: Requests that may wait for a slot (0: refuse at once when full).
        queue_timeout: Seconds a queued request waits before it is refused with 503.
    """

    def __init__(self, limit: int, *, max_queue: int = 0, queue_timeout: float = 30.0) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        # A semaphore, not a CapacityLimiter: a streamed response releases its slot from
        # another task than the one that took it.
        self._semaphore = anyio.Semaphore(limit)
        self.queued = 0

    @property
    def in_flight(self) -> int:
        """Runs holding a slot now."""
        return self.limit - self._semaphore.value

    async def acquire(self) -> RunSlot:
        """A slot, at once or after a short wait in the queue.

        Raises:
            ApiError: 429 when every slot and the queue are taken; 503 when the wait in the
                queue ran past ``queue_timeout``.
        """
        try:
            self._semaphore.acquire_nowait()
        except anyio.WouldBlock:
            if self.queued >= self.max_queue:
                raise self._full() from None
            self.queued += 1
            try:
                with anyio.move_on_after(self.queue_timeout):
                    await self._semaphore.acquire()
                    return RunSlot(self)
            finally:
                self.queued -= 1
            raise ApiError(
                503,
                f"no run slot became free within {self.queue_timeout:g} s; retry later",
                type="server_error",
                code="queue_timeout",
                headers={"Retry-After": "1"},
            ) from None
        return RunSlot(self)

    def _release(self) -> None:
        self._semaphore.release()

    def _full(self) -> ApiError:
        queue = f" and {self.max_queue} queued" if self.max_queue else ""
        return ApiError(
            429,
            f"the server is running its limit of {self.limit} runs{queue}; retry later",
            type="rate_limit_error",
            code="server_busy",
            headers={"Retry-After": "1"},
        )


async def read_body(request: Request, limit: int, *, within: float | None = None) -> bytes:
    """The request body, refusing more than ``limit`` bytes (declared or actually sent).

    Args:
        request: The request.
        limit: The most bytes accepted.
        within: Seconds the whole body may take to arrive (``None``: no limit). A client
            that sends a body slowly, or stops half-way, would otherwise hold its
            connection (and a file descriptor) for as long as it likes.

    Raises:
        ApiError: 413 when the body is (or says it is) over the limit; 400 for a bad
            ``Content-Length``; 408 (and ``Connection: close``) when it took longer than
            ``within``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if size > limit:
            raise _too_large(limit)
    body = bytearray()
    with anyio.move_on_after(within if within is not None else math.inf) as scope:
        # The declared length is checked above, but a chunked body declares none: count too.
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
    if scope.cancelled_caught:
        raise ApiError(
            408,
            f"the request body did not arrive within {within:g} s; send it faster, "
            "or ask the operator to raise the server's body_timeout",
            code="request_timeout",
            # The rest of the body may still be on its way: this connection is done.
            headers={"Connection": "close"},
        )
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is over the limit of {limit:,} bytes",
        code="request_too_large",
    )


def check_limits(
    *,
    ints: dict[str, tuple[int, int]],
    seconds: dict[str, float],
    optional_seconds: dict[str, float | None],
) -> None:
    """Refuse a limit out of range with a ``ConfigurationError`` naming it.

    Args:
        ints: name -> (value, minimum) of whole-number limits.
        seconds: name -> value of durations that must be positive.
        optional_seconds: the same, where ``None`` means no limit.
    """
    for name, (value, minimum) in ints.items():
        check_int(name, value, minimum)
    for name, duration in {**seconds, **optional_seconds}.items():
        optional = name in optional_seconds
        if (duration is None and not optional) or (
            duration is not None
            and (
                isinstance(duration, bool)
                or not isinstance(duration, int | float)
                or duration <= 0
            )
        ):
            allowed = "a positive number or None" if optional else "a positive number"
            raise ConfigurationError(f"{name} must be {allowed}, got {duration!r}")
