"""The event loop's longest stall, measured by a ticker task next to the code under test."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

TICK = 0.01


class LoopMeter:
    """How long the event loop went without running a task that asked to wake every 10 ms."""

    def __init__(self) -> None:
        self.longest_stall = 0.0

    async def tick(self) -> None:
        last = time.perf_counter()
        while True:
            await anyio.sleep(TICK)
            now = time.perf_counter()
            self.longest_stall = max(self.longest_stall, now - last - TICK)
            last = now


@asynccontextmanager
async def loop_meter() -> AsyncIterator[LoopMeter]:
    """A :class:`LoopMeter` ticking for the duration of the block."""
    meter = LoopMeter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(meter.tick)
        yield meter
        tg.cancel_scope.cancel()
