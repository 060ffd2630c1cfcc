"""The event loop's longest stall and the parent's peak memory, measured by a ticker task
next to the code under test."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

TICK = 0.01


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


class LoopMeter:
    """How long the event loop went without running a task that asked to wake every 10 ms,
    and how far the resident memory rose above what it was when the meter was made."""

    def __init__(self) -> None:
        self.longest_stall = 0.0
        self.baseline = rss_mib()
        self.peak = self.baseline
        self._last = time.perf_counter()

    async def tick(self) -> None:
        # Not restarted here: a block that holds the loop before the ticker first runs is
        # a stall since the meter was made.
        while True:
            await anyio.sleep(TICK)
            self.measure()

    def measure(self) -> None:
        """Count the time since the last tick (also called as the block ends: a stall just
        before that would otherwise be cancelled with the ticker, never seen)."""
        now = time.perf_counter()
        self.longest_stall = max(self.longest_stall, now - self._last - TICK)
        self.peak = max(self.peak, rss_mib())
        self._last = now

    @property
    def growth(self) -> float:
        """MiB of resident memory gained at the peak."""
        return self.peak - self.baseline


@asynccontextmanager
async def loop_meter() -> AsyncIterator[LoopMeter]:
    """A :class:`LoopMeter` ticking for the duration of the block."""
    meter = LoopMeter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(meter.tick)
        yield meter
        meter.measure()
        tg.cancel_scope.cancel()
