"""A serving process freezes its start-up heap once its app has started (server._heap)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette

from rlm_async.server._heap import YOUNG_THRESHOLD, SettleHeapAfterStartup, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was: these tests change a process-wide state."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_heap_freezes_what_is_alive_and_raises_the_young_threshold(
    restored_gc: None,
) -> None:
    gc.unfreeze()
    _, older, oldest = gc.get_threshold()
    alive_before = [object() for _ in range(10)]  # noqa: F841 - alive at the freeze
    settle_heap()
    assert gc.get_freeze_count() > 1_000  # at least the modules this process imported
    assert gc.get_threshold() == (YOUNG_THRESHOLD, older, oldest)


async def test_the_heap_is_settled_after_the_apps_startup_not_before(restored_gc: None) -> None:
    gc.unfreeze()
    frozen_during_startup: list[int] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        frozen_during_startup.append(gc.get_freeze_count())
        yield

    app = SettleHeapAfterStartup(Starlette(lifespan=lifespan))
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append({**message, "frozen": gc.get_freeze_count()})

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    assert frozen_during_startup == [0]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert sent[0]["frozen"] > 1_000
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
