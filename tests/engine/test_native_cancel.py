"""Native asyncio cancellation (``task.cancel()``, ``asyncio.timeout``) must not leak a REPL.

anyio's shielded scopes do not stop a native cancel, so these go through the paths where one
used to cut clean-up short: a REPL process still being started in the spawner thread, a
stream consumer cancelled twice, a warm pool closed while it refills. The spawner thread is
held on purpose (a blocking job queued in front) so the cancel lands inside the spawn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import random
import threading
from collections.abc import Iterator

import pytest

from rlm_async import RLM
from rlm_async.providers import CompletionRequest
from rlm_async.repl import _spawn
from rlm_async.testing import ScriptedModel
from tests.helpers import alive, child_pids, repl


@contextlib.contextmanager
def spawner_held() -> Iterator[threading.Event]:
    """Queue a blocking job on the REPL spawner thread; set the event to let spawns run."""
    if _spawn._spawner is None:
        _spawn._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rlm-spawner")
    release = threading.Event()
    held = _spawn._spawner.submit(release.wait, 10)
    try:
        yield release
    finally:
        release.set()
        held.result(timeout=10)


async def wait_until_no_children(before: set[int]) -> set[int]:
    """Children of ours that are still alive after the kill had time to land (<= 5 s)."""
    for _ in range(500):
        left = {pid for pid in child_pids() - before if alive(pid)}
        if not left:
            return left
        await asyncio.sleep(0.01)
    return left


def busy(request: CompletionRequest) -> str:
    return repl("import time\ntime.sleep(60)")


async def test_task_cancel_while_the_repl_is_being_started_leaves_no_process() -> None:
    before = child_pids()
    async with RLM(model=ScriptedModel(busy)) as rlm:
        with spawner_held() as release:
            task = asyncio.ensure_future(rlm.completion("abc", "q"))
            for _ in range(20):  # let the run reach the (held) spawn
                await asyncio.sleep(0)
            task.cancel()
            release.set()  # the process starts now, after its caller was cancelled
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await wait_until_no_children(before) == set()


async def test_asyncio_timeout_around_a_completion_kills_its_repl() -> None:
    before = child_pids()
    async with RLM(model=ScriptedModel(busy)) as rlm:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await rlm.completion("abc", "q")
        assert await wait_until_no_children(before) == set()


async def test_a_stream_consumer_cancelled_twice_still_kills_the_repl() -> None:
    before = child_pids()
    cell_running = asyncio.Event()

    async def consume(rlm: RLM) -> None:
        async for event in rlm.stream("abc", "q"):
            if event.type == "cell_started":
                cell_running.set()

    async with RLM(model=ScriptedModel(busy)) as rlm:
        task = asyncio.ensure_future(consume(rlm))
        await cell_running.wait()
        task.cancel()
        for _ in range(3):
            await asyncio.sleep(0)  # the consumer is now waiting for the run's clean-up
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await wait_until_no_children(before) == set()


async def test_closing_a_warm_pool_while_it_starts_a_process_leaves_none() -> None:
    before = child_pids()
    with spawner_held() as release:
        rlm = RLM(model=ScriptedModel(busy), warm_repls=2)
        await rlm.__aenter__()
        for _ in range(20):  # the refill is now waiting for the held spawner
            await asyncio.sleep(0)
        closing = asyncio.ensure_future(rlm.aclose())
        await asyncio.sleep(0)
        release.set()
        await closing
    assert await wait_until_no_children(before) == set()


def crashing_root(request: CompletionRequest) -> str:
    """Each turn fans out, then crashes the REPL: the run keeps restarting (spawning)."""
    turns = sum(1 for m in request.messages if m.role == "assistant")
    if turns >= 3:
        return "FINAL(ok)"
    return repl("r = llm_query_batched(['a'] * 50)\nimport os\nos._exit(3)")


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.mark.parametrize("cancels", [1, 2], ids=["cancelled-once", "cancelled-twice"])
async def test_native_cancels_at_random_moments_leak_nothing(cancels: int) -> None:
    """Seeded random cancel points over runs that restart their REPL again and again.

    Before the engine ran each completion in a task of its own, 6% of such cancels (once)
    and 18% (twice, e.g. asyncio.timeout inside a cancelled task) left a process or pipes.
    """
    rng = random.Random(20261124 + cancels)
    root = ScriptedModel(crashing_root, latency=0.005)
    sub = ScriptedModel(lambda r: "x", name="sub", latency=0.002)
    async with RLM(model=root, sub_model=sub) as rlm:
        await rlm.completion("ctx", "q")  # warm-up: imports, the first spawn
        before, fds = child_pids(), open_fds()
        for iteration in range(40):
            task = asyncio.ensure_future(rlm.completion("ctx", "q"))
            await asyncio.sleep(rng.uniform(0, 0.15))
            for _ in range(cancels):
                task.cancel()
                await asyncio.sleep(rng.uniform(0, 0.01))
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await wait_until_no_children(before) == set(), iteration
            assert open_fds() - fds == set(), iteration


async def test_a_close_cancelled_natively_still_closes_everything() -> None:
    """A second Ctrl-C during aclose(): the pool, sessions and clients are closed anyway."""
    before = child_pids()
    rlm = RLM(model=ScriptedModel(busy), warm_repls=2)
    await rlm.__aenter__()
    assert rlm.repl_pool is not None
    await rlm.repl_pool.wait_ready()
    task = asyncio.ensure_future(rlm.completion("abc", "q"))
    for _ in range(50):  # the run is under way (its REPL taken from the pool)
        await asyncio.sleep(0)
    closing = asyncio.ensure_future(rlm.aclose())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await rlm.aclose()  # already closed: returns
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task
    assert await wait_until_no_children(before) == set()
    assert rlm.closed
