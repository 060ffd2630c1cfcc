"""Garbage collection for a serving process: start-up's objects frozen, fewer young passes.

A server's heap is mostly what start-up made and never frees (modules, classes, pydantic
validators, the ``RLM`` and its warm pool) plus the suspended call stacks of the runs in
flight (each HTTP call, each REPL request). CPython's full collections walk all of it: with
100 runs at once a full pass over ~160,000 live objects takes ~115 ms and the collector
spends ~7 ms of CPU a completion (benchmarks/README.md, "Where a completion's CPU goes").

:func:`settle_heap` does what long-running CPython servers do for this (Instagram's
``gc.freeze()``, added to CPython for them): collect once, move every survivor to the
permanent generation, which no later collection walks, and raise the youngest generation's
threshold so that the short bursts of a request (a JSON body, a prompt's messages) are
mostly freed by reference counting before a collection starts. It is process-wide, so the
library never does it on its own: ``rlm-async serve`` does it once its app has started
(:class:`SettleHeapAfterStartup`), and an application embedding the server may call it too.
"""

from __future__ import annotations

import gc
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["YOUNG_THRESHOLD", "SettleHeapAfterStartup", "settle_heap"]

#: Allocations (net of frees) between two young-generation collections: CPython's default
#: is 700, a few of a run's HTTP calls; 10,000 is a whole root turn's worth.
YOUNG_THRESHOLD: Final = 10_000


def settle_heap(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze the objects alive now out of garbage collection, and collect the young less often.

    Call it once, when start-up is over (modules imported, the app and its ``RLM`` made):
    what is alive then lives as long as the process, and no later collection walks it.
    Objects frozen stay collectable by reference counting; only cycles among them leak,
    which is why start-up's garbage is collected first.

    Args:
        young_threshold: The youngest generation's threshold (CPython's default: 700);
            the older generations keep theirs.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


class SettleHeapAfterStartup:
    """Wraps an ASGI app: calls :func:`settle_heap` once its lifespan start-up has completed.

    The app's start-up opens its ``RLM`` (HTTP clients, the warm REPL pool): those objects
    are frozen with the rest, and nothing else changes about the app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_settling(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                settle_heap()
            await send(message)

        await self.app(scope, receive, send_settling)
