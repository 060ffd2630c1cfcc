"""The server's session registry at shutdown: a session still being created is closed too."""

from __future__ import annotations

import anyio
import pytest

from rlm_async import RLM
from rlm_async.repl import ReplOptions, _start
from rlm_async.repl import _session as _repl_session
from rlm_async.repl._start import StartedChild
from rlm_async.server._errors import ApiError
from rlm_async.server._sessions import SessionRegistry
from rlm_async.testing import ScriptedModel
from tests.helpers import child_pids


async def test_the_registry_closes_a_session_being_created_when_it_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spawned, release = anyio.Event(), anyio.Event()

    async def start_then_wait(options: ReplOptions, work_dir: str) -> StartedChild:
        started = await _start.start_child(options, work_dir)
        spawned.set()
        with anyio.CancelScope(shield=True):  # the child is not ours to lose here
            await release.wait()
        return started

    monkeypatch.setattr(_repl_session, "start_child", start_then_wait)
    before = child_pids()
    registry = SessionRegistry(max_sessions=4, idle_timeout=60)
    errors: list[Exception] = []
    async with RLM(model=ScriptedModel(["FINAL(1)"])) as rlm:

        async def create() -> None:
            try:
                await registry.create(rlm, "hello", owner="")
            except Exception as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await spawned.wait()
            tg.start_soon(registry.aclose)
            await anyio.wait_all_tasks_blocked()  # the close is under way, waiting on the start
            release.set()
        assert len(errors) == 1 and isinstance(errors[0], ApiError), errors
        assert errors[0].status == 503
        assert len(registry) == 0
        # Still inside the RLM's block: only the registry's close can have ended the REPL.
        with anyio.fail_after(5):
            while child_pids() - before:
                await anyio.sleep(0.01)
