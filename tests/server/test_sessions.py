"""POST /v1/sessions: a conversation over one REPL through the server (httpx.ASGITransport)."""

from __future__ import annotations

from typing import Any

import anyio

from rlm_async import RLM
from rlm_async.providers import CompletionRequest
from rlm_async.server import create_app
from rlm_async.server._sessions import SessionRegistry
from rlm_async.testing import ScriptedModel
from tests.helpers import alive, repl
from tests.server.support import asgi_client


def by_query(request: CompletionRequest) -> str:
    """Root model: a session's first completion keeps a variable, a later one answers with
    it and the earlier turn."""
    if "This is completion" not in request.messages[0].content:
        return repl("kept = len(context)\nFINAL('stored')")
    return repl("FINAL(f'{kept} {query_1} {answer_1} {context_2}')")


def pid_of(app: object, session_id: str) -> int:
    registry: SessionRegistry = app.state.rlm_service.sessions  # type: ignore[attr-defined]
    pid = registry._entries[session_id].session.pid
    assert pid is not None
    return pid


async def test_a_session_keeps_its_repl_across_completions_and_is_deleted() -> None:
    async with RLM(model=ScriptedModel(by_query)) as rlm:
        app = create_app(rlm)
        async with asgi_client(app) as client:
            made = await client.post("/v1/sessions", json={"context": "abcdef"})
            assert made.status_code == 201
            session_id = made.json()["id"]
            assert made.json()["context_names"] == ["context", "context_1"]
            pid = pid_of(app, session_id)
            first = await client.post(
                f"/v1/sessions/{session_id}/completions", json={"query": "set it"}
            )
            added = await client.post(
                f"/v1/sessions/{session_id}/contexts", json={"context": ["more"]}
            )
            second = await client.post(
                f"/v1/sessions/{session_id}/completions", json={"query": "get it"}
            )
            assert pid_of(app, session_id) == pid
            deleted = await client.delete(f"/v1/sessions/{session_id}")
            assert deleted.status_code == 200 and deleted.json()["deleted"] is True
            assert not alive(pid)
            gone = await client.post(
                f"/v1/sessions/{session_id}/completions", json={"query": "get it"}
            )
    assert first.status_code == 200, first.text
    assert first.json()["answer"] == "stored" and first.json()["session_turn"] == 1
    assert added.json()["name"] == "context_2"
    assert second.json()["answer"] == "6 set it stored ['more']"
    assert second.json()["session_turn"] == 2 and second.json()["session"] == session_id
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "session_not_found"


async def test_a_session_belongs_to_the_bearer_token_that_made_it() -> None:
    async with RLM(model=ScriptedModel(by_query)) as rlm:
        app = create_app(rlm, api_key="k1")
        async with (
            asgi_client(app, authorization="Bearer k1") as owner,
            asgi_client(app, authorization="Bearer k2") as stranger,
            asgi_client(app) as anonymous,
        ):
            session_id = (await owner.post("/v1/sessions", json={"context": "x"})).json()["id"]
            # The middleware knows one token; a session is still checked against its maker.
            registry: SessionRegistry = app.state.rlm_service.sessions
            registry._entries[session_id].owner = "someone else"
            theirs = await owner.post(
                f"/v1/sessions/{session_id}/completions", json={"query": "set"}
            )
            refused = await stranger.delete(f"/v1/sessions/{session_id}")
            unauthenticated = await anonymous.post("/v1/sessions", json={"context": "x"})
            assert len(registry) == 1
    assert theirs.status_code == 404
    assert refused.status_code == 401
    assert unauthenticated.status_code == 401


async def test_open_sessions_are_limited_and_idle_ones_expire_with_their_repl() -> None:
    now = [0.0]
    async with RLM(model=ScriptedModel(by_query)) as rlm:
        app = create_app(rlm, max_sessions=2, session_idle_timeout=60)
        service = app.state.rlm_service
        service.sessions = SessionRegistry(max_sessions=2, idle_timeout=60, clock=lambda: now[0])
        async with asgi_client(app) as client:
            one = (await client.post("/v1/sessions", json={"context": "a"})).json()["id"]
            now[0] = 30.0
            two = (await client.post("/v1/sessions", json={"context": "b"})).json()["id"]
            third = await client.post("/v1/sessions", json={"context": "c"})
            assert third.status_code == 429
            assert third.json()["error"]["code"] == "too_many_sessions"
            first_pid = pid_of(app, one)
            now[0] = 61.0  # one is idle past its limit; two was made at 30
            kept = await client.post(f"/v1/sessions/{two}/completions", json={"query": "set"})
            assert kept.status_code == 200
            assert not alive(first_pid)
            expired = await client.post(f"/v1/sessions/{one}/completions", json={"query": "set"})
            assert expired.status_code == 404
            again = await client.post("/v1/sessions", json={"context": "c"})
            assert again.status_code == 201
            second_pid = pid_of(app, two)
    assert not alive(second_pid)  # closing the RLM closed the sessions still open


async def test_a_busy_session_refuses_a_second_completion_before_it_takes_a_run_slot() -> None:
    started, release = anyio.Event(), anyio.Event()

    async def held(request: CompletionRequest) -> str:
        if any("hold on" in str(message.content) for message in request.messages):
            started.set()
            await release.wait()
        return repl("FINAL('ok')")

    async with RLM(model=ScriptedModel(held)) as rlm:
        app = create_app(rlm, max_concurrent_runs=2, max_queue=0)
        slots = app.state.rlm_service.slots
        answers: dict[str, Any] = {}
        async with (
            asgi_client(app) as client,
            asgi_client(app) as other_client,
            anyio.create_task_group() as group,
        ):
            session_id = (await client.post("/v1/sessions", json={"context": "x"})).json()["id"]
            url = f"/v1/sessions/{session_id}/completions"

            async def complete(key: str) -> None:
                answers[key] = await client.post(url, json={"query": "hold on"})

            group.start_soon(complete, "first")
            with anyio.fail_after(10):
                await started.wait()
            group.start_soon(complete, "second")
            with anyio.fail_after(10):  # answered, or (the bug) holding the other run slot
                while "second" not in answers and slots.in_flight < 2:
                    await anyio.sleep(0)
            other = await other_client.post("/v1/rlm", json={"context": "y", "query": "q"})
            release.set()
    assert other.status_code == 200, other.text
    assert answers["first"].status_code == 200, answers["first"].text
    second = answers["second"]
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "session_busy"
    assert "already running a completion" in second.json()["error"]["message"]
