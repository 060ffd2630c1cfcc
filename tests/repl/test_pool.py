"""The warm pool: fresh pre-started children, each used by one session only."""

from __future__ import annotations

from rlm_async import RLM, ReplOptions, ReplSession
from rlm_async.repl._pool import ReplPool
from rlm_async.testing import ScriptedModel
from tests.helpers import alive


async def test_a_session_takes_a_warm_child_and_loads_its_context_into_it() -> None:
    async with ReplPool(ReplOptions(), size=2) as pool:
        await pool.wait_ready()
        async with ReplSession("warm context", pool=pool) as repl:
            result = await repl.execute("context")
            assert repl.warm
        assert pool.taken == 1
    assert result.stdout == "'warm context'\n"


async def test_two_sessions_never_share_a_process_or_variables() -> None:
    async with ReplPool(ReplOptions(), size=1) as pool:
        await pool.wait_ready()
        async with ReplSession("a", pool=pool) as first:
            await first.execute("secret = 'from the first user'")
            first_pid = first.pid
        await pool.wait_ready()
        async with ReplSession("b", pool=pool) as second:
            seen = await second.execute("'secret' in globals()")
            second_pid = second.pid
    assert first_pid != second_pid
    assert seen.stdout == "False\n"


async def test_an_empty_pool_falls_back_to_a_cold_start() -> None:
    async with ReplPool(ReplOptions(), size=1) as pool:
        await pool.wait_ready()
        async with ReplSession("x", pool=pool) as warm, ReplSession("y", pool=pool) as cold:
            assert warm.warm
            assert not cold.warm
            assert (await cold.execute("context")).stdout == "'y'\n"
        assert pool.missed == 1


async def test_closing_the_pool_kills_every_waiting_child() -> None:
    pool = ReplPool(ReplOptions(), size=3)
    async with pool:
        await pool.wait_ready()
        pids = [started.child.pid for started in pool._ready]
    assert len(pids) == 3
    assert not any(alive(pid) for pid in pids)


async def test_rlm_with_warm_repls_runs_completions_on_warm_processes() -> None:
    async with RLM(model=ScriptedModel(lambda r: "FINAL(ok)"), warm_repls=2) as rlm:
        assert rlm.repl_pool is not None
        await rlm.repl_pool.wait_ready()
        result = await rlm.completion("abc", "q")
    assert result.metadata["repl_warm"] is True
