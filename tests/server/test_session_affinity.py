"""Sessions across workers: two apps, as two workers would be, each on real HTTP and on its
own Unix socket; a session's requests sent to the other one are forwarded to its holder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx

from rlm_async import RLM
from rlm_async.providers import CompletionRequest
from rlm_async.server import create_app, open_server
from rlm_async.server._session_affinity import FORWARDED_HEADER, SessionAffinity
from rlm_async.testing import ScriptedModel
from tests.helpers import child_pids, repl

held = anyio.Event()


async def by_query(request: CompletionRequest) -> str:
    """Root model: 'keep' stores a variable, 'show' reads it, 'hold' waits (until cancelled)."""
    query = str(request.messages[-1].content)
    if "hold" in query:
        held.set()
        await anyio.Event().wait()
    if "show" in query:
        return repl("FINAL(f'{kept} {context_2}')")
    return repl("kept = len(context)\nFINAL('stored')")


@asynccontextmanager
async def two_workers(directory: Path) -> AsyncIterator[tuple[str, str]]:
    """Two apps (workers 1 and 2) over one RLM, each served on loopback TCP."""
    async with RLM(model=ScriptedModel(by_query)) as rlm, AsyncExitStack() as stack:
        urls = []
        for worker in (1, 2):
            app = SessionAffinity(create_app(rlm), directory=str(directory), worker=worker)
            urls.append(await stack.enter_async_context(open_server(app)))
        yield urls[0], urls[1]


async def test_a_sessions_requests_reach_the_worker_that_holds_it(tmp_path: Path) -> None:
    token = {"authorization": "Bearer alice"}
    async with (
        two_workers(tmp_path) as (first, second),
        httpx.AsyncClient(base_url=first, headers=token, timeout=30) as one,
        httpx.AsyncClient(base_url=second, headers=token, timeout=30) as other,
        httpx.AsyncClient(base_url=second, timeout=30) as stranger,
    ):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["1.sock", "2.sock"]
        before = child_pids()
        made = await one.post("/v1/sessions", json={"context": "abcdef"})
        session_id = made.json()["id"]
        base = f"/v1/sessions/{session_id}"
        kept = await other.post(f"{base}/completions", json={"query": "keep"})
        added = await other.post(f"{base}/contexts", json={"context": "more"})
        shown = await other.post(f"{base}/completions", json={"query": "show"})
        local = await one.post(f"{base}/completions", json={"query": "show"})
        refused = await stranger.post(f"{base}/completions", json={"query": "show"})
        assert len(child_pids() - before) == 1  # one REPL, in the first worker
        deleted = await other.delete(base)
        assert child_pids() - before == set()
        after = await other.post(f"{base}/completions", json={"query": "show"})
        gone_worker = await other.post(
            "/v1/sessions/sess_w99_0123456789abcdef01234567/completions", json={"query": "q"}
        )
    assert made.status_code == 201 and session_id.startswith("sess_w1_")
    assert kept.status_code == 200, kept.text
    assert kept.headers[FORWARDED_HEADER] == "1"
    assert (kept.json()["answer"], kept.json()["session_turn"]) == ("stored", 1)
    assert added.json() == {"session": session_id, "name": "context_2"}
    assert shown.json()["answer"] == "6 more" and shown.json()["session_turn"] == 2
    assert FORWARDED_HEADER not in local.headers and local.json()["session_turn"] == 3
    assert refused.status_code == 404  # ownership is checked by the holder
    assert refused.json()["error"]["code"] == "session_not_found"
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert after.status_code == 404
    assert gone_worker.status_code == 404
    assert gone_worker.json()["error"]["code"] == "session_not_found"


async def test_a_client_leaving_a_forwarded_completion_cancels_it_at_its_holder(
    tmp_path: Path,
) -> None:
    async with (
        two_workers(tmp_path) as (first, second),
        httpx.AsyncClient(base_url=first, timeout=30) as one,
        httpx.AsyncClient(base_url=second, timeout=30) as other,
    ):
        session_id = (await one.post("/v1/sessions", json={"context": "x"})).json()["id"]
        url = f"/v1/sessions/{session_id}/completions"

        async def hold() -> None:
            await other.post(url, json={"query": "hold"})

        async with anyio.create_task_group() as group:
            group.start_soon(hold)
            with anyio.fail_after(10):
                await held.wait()
            group.cancel_scope.cancel()  # the client leaves the second worker
        # The holder cancelled the completion: the session takes another (409 while busy).
        with anyio.fail_after(10):
            while True:
                answer = await one.post(url, json={"query": "keep"})
                if answer.status_code != 409:
                    break
                await anyio.sleep(0.02)
    assert answer.status_code == 200, answer.text
    assert answer.json()["answer"] == "stored"
