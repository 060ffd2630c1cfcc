"""Sessions over a real HTTP server on 127.0.0.1 (uvicorn, the app's lifespan running):
their REPL across completions and its end at DELETE, ownership by bearer token, the
per-server limit, idle expiry (a fake clock: no sleeping), and sessions turned off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from rlm_async import RLM, ConfigurationError
from rlm_async.providers import CompletionRequest
from rlm_async.server import create_app, open_server
from rlm_async.server._sessions import SessionRegistry
from rlm_async.testing import ScriptedModel
from tests.helpers import alive, child_pids, repl


def by_query(request: CompletionRequest) -> str:
    """Root model: 'keep' stores a variable in the REPL, 'show' answers with it, with the
    first turn's query and answer and the second context."""
    query = str(request.messages[-1].content)
    if "show" in query:
        return repl("FINAL(f'{kept} {query_1} {answer_1} {context_2}')")
    if "keep" in query:
        return repl("kept = len(context)\nFINAL('stored')")
    return "FINAL(ok)"


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])


@asynccontextmanager
async def served(clock: list[float] | None = None, **app_options: Any) -> AsyncIterator[str]:
    """A real server (lifespan included) over a scripted RLM; with ``clock``, the session
    registry reads that fake clock."""
    app = create_app(lambda: RLM(model=ScriptedModel(by_query)), **app_options)
    if clock is not None:
        service = app.state.rlm_service
        service.sessions = SessionRegistry(
            max_sessions=service.sessions.max_sessions,
            idle_timeout=service.sessions.idle_timeout,
            clock=lambda: clock[0],
        )
        REGISTRIES[id(clock)] = service.sessions
    async with open_server(app) as url:
        yield url


REGISTRIES: dict[int, SessionRegistry] = {}


async def new_repls(before: set[int], count: int) -> set[int]:
    """The REPL processes started since ``before`` (they are this process's children)."""
    with anyio.fail_after(10):
        while len(child_pids() - before) < count:
            await anyio.sleep(0.01)
    return child_pids() - before


async def test_a_session_keeps_one_repl_across_completions_until_delete_kills_it() -> None:
    async with served() as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        before = child_pids()
        made = await client.post("/v1/sessions", json={"context": "abcdef"})
        assert made.status_code == 201, made.text
        session = made.json()
        assert session["object"] == "rlm.session" and session["id"].startswith("sess_")
        assert session["context_names"] == ["context", "context_1"]
        assert session["idle_timeout"] == 600
        (repl_pid,) = await new_repls(before, 1)
        base = f"/v1/sessions/{session['id']}"
        first = await client.post(f"{base}/completions", json={"query": "keep it"})
        added = await client.post(f"{base}/contexts", json={"context": ["more"]})
        second = await client.post(
            f"{base}/completions", json={"query": "show it", "options": {"max_iterations": 3}}
        )
        assert child_pids() - before == {repl_pid}  # the same REPL, no other one
        deleted = await client.delete(base)
        assert not alive(repl_pid)
        assert child_pids() - before == set()
        after = await client.post(f"{base}/completions", json={"query": "show it"})
    assert first.status_code == 200, first.text
    assert first.json()["answer"] == "stored"
    assert (first.json()["session"], first.json()["session_turn"]) == (session["id"], 1)
    assert added.json() == {"session": session["id"], "name": "context_2"}
    assert second.json()["answer"] == "6 keep it stored ['more']"
    assert second.json()["session_turn"] == 2
    assert deleted.status_code == 200
    assert deleted.json() == {"id": session["id"], "object": "rlm.session", "deleted": True}
    assert after.status_code == 404 and error_of(after)["code"] == "session_not_found"


async def test_a_session_is_the_bearer_tokens_that_made_it_another_gets_404() -> None:
    # No api_key: the server authenticates nobody (a gateway in front does), and a session
    # still belongs to the token that made it.
    async with (
        served() as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer alice"}) as alice,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer bob"}) as bob,
        httpx.AsyncClient(base_url=url) as anonymous,
    ):
        before = child_pids()
        session_id = (await alice.post("/v1/sessions", json={"context": "x"})).json()["id"]
        (repl_pid,) = await new_repls(before, 1)
        base = f"/v1/sessions/{session_id}"
        refused = [
            await bob.post(f"{base}/completions", json={"query": "keep"}),
            await bob.post(f"{base}/contexts", json={"context": "y"}),
            await bob.delete(base),
            await anonymous.post(f"{base}/completions", json={"query": "keep"}),
            await anonymous.delete(base),
        ]
        assert alive(repl_pid)  # nobody else's DELETE closed it
        own = await alice.post(f"{base}/completions", json={"query": "keep"})
        # The scheme is case-insensitive (RFC 9110): the same token is the same caller.
        same = await anonymous.post(
            f"{base}/completions",
            json={"query": "keep"},
            headers={"authorization": "bearer  alice"},
        )
        gone = await alice.delete(base)
        assert not alive(repl_pid)
    for response in refused:
        assert response.status_code == 404
        error = error_of(response)
        assert error["code"] == "session_not_found" and session_id in error["message"]
    assert own.status_code == 200 and own.json()["answer"] == "stored"
    assert same.status_code == 200, same.text
    assert gone.status_code == 200


async def test_with_an_api_key_another_token_is_refused_before_any_session_is_looked_up() -> None:
    async with (
        served(api_key="k1") as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer k1"}) as owner,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer k2"}) as stranger,
    ):
        session_id = (await owner.post("/v1/sessions", json={"context": "x"})).json()["id"]
        refused = await stranger.post(f"/v1/sessions/{session_id}/completions", json={"query": "q"})
        answered = await owner.post(f"/v1/sessions/{session_id}/completions", json={"query": "q"})
    assert refused.status_code == 401 and error_of(refused)["code"] == "invalid_api_key"
    assert answered.status_code == 200 and answered.json()["answer"] == "ok"


async def test_open_sessions_are_limited_per_server_with_a_429_naming_the_limit() -> None:
    async with (
        served(max_sessions=2) as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer a"}) as one,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer b"}) as other,
    ):
        before = child_pids()
        first = (await one.post("/v1/sessions", json={"context": "a"})).json()["id"]
        await other.post("/v1/sessions", json={"context": "b"})
        await new_repls(before, 2)
        # The limit is the server's, every caller together.
        over = await one.post("/v1/sessions", json={"context": "c"})
        assert len(child_pids() - before) == 2  # the refused one started no REPL
        await one.delete(f"/v1/sessions/{first}")
        again = await one.post("/v1/sessions", json={"context": "c"})
    assert over.status_code == 429
    error = error_of(over)
    assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_sessions")
    assert "2 sessions open" in error["message"] and "DELETE" in error["message"]
    assert again.status_code == 201


async def test_an_idle_session_expires_and_its_repl_is_killed_one_in_use_does_not() -> None:
    now = [0.0]
    async with (
        served(clock=now, session_idle_timeout=60) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        registry = REGISTRIES.pop(id(now))
        before = child_pids()
        made_first = await client.post("/v1/sessions", json={"context": "a"})
        assert made_first.json()["idle_timeout"] == 60
        first = made_first.json()["id"]
        (first_pid,) = await new_repls(before, 1)
        now[0] = 30.0
        second = (await client.post("/v1/sessions", json={"context": "b"})).json()["id"]
        (second_pid,) = await new_repls(before, 2) - {first_pid}
        now[0] = 59.0
        used = await client.post(f"/v1/sessions/{first}/completions", json={"query": "keep"})
        assert used.status_code == 200  # used at 59: its idle time starts again
        now[0] = 90.0  # second: 60 s unused; every session request sweeps first
        still = await client.post(f"/v1/sessions/{first}/completions", json={"query": "keep"})
        assert not alive(second_pid) and alive(first_pid)
        expired = await client.post(f"/v1/sessions/{second}/completions", json={"query": "q"})
        # The lifespan's sweeper calls the same sweep every few seconds.
        now[0] = 149.0
        assert await registry.sweep() == 0
        now[0] = 150.0
        assert await registry.sweep() == 1
        assert not alive(first_pid) and child_pids() - before == set()
        gone = await client.delete(f"/v1/sessions/{first}")
    assert still.status_code == 200 and still.json()["answer"] == "stored"
    assert expired.status_code == 404 and error_of(expired)["code"] == "session_not_found"
    assert gone.status_code == 404


async def test_a_session_running_a_completion_does_not_expire() -> None:
    now = [0.0]
    entered, release = anyio.Event(), anyio.Event()

    async def held(request: CompletionRequest) -> str:
        entered.set()
        await release.wait()
        return "FINAL(done)"

    async with RLM(model=ScriptedModel(held)) as rlm:
        app = create_app(rlm, session_idle_timeout=10)
        registry = SessionRegistry(max_sessions=4, idle_timeout=10, clock=lambda: now[0])
        app.state.rlm_service.sessions = registry
        async with open_server(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            session_id = (await client.post("/v1/sessions", json={"context": "a"})).json()["id"]
            answers: list[httpx.Response] = []

            async def complete() -> None:
                answers.append(
                    await client.post(f"/v1/sessions/{session_id}/completions", json={"query": "q"})
                )

            async with anyio.create_task_group() as group:
                group.start_soon(complete)
                with anyio.fail_after(10):
                    await entered.wait()
                now[0] = 1000.0
                assert await registry.sweep() == 0  # busy: not idle, however long it runs
                release.set()
            now[0] = 1009.0  # idle from the completion's end (1000), not from its start
            assert await registry.sweep() == 0
            now[0] = 1010.0
            assert await registry.sweep() == 1
    assert answers[0].status_code == 200 and answers[0].json()["answer"] == "done"


async def test_with_sessions_off_a_new_one_is_a_501_that_says_why() -> None:
    async with served(max_sessions=0) as url, httpx.AsyncClient(base_url=url) as client:
        before = child_pids()
        refused = await client.post("/v1/sessions", json={"context": "a"})
        assert child_pids() - before == set()
    assert refused.status_code == 501
    error = error_of(refused)
    assert error["code"] == "sessions_disabled" and "max_sessions=0" in error["message"]


async def test_with_one_api_key_per_caller_each_callers_sessions_are_its_own() -> None:
    async with (
        served(api_key=["alice-token", "bob-token"]) as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer alice-token"}) as alice,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer bob-token"}) as bob,
        httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer eve"}) as eve,
    ):
        theirs = (await alice.post("/v1/sessions", json={"context": "x"})).json()["id"]
        refused = await bob.post(f"/v1/sessions/{theirs}/completions", json={"query": "q"})
        deleted = await bob.delete(f"/v1/sessions/{theirs}")
        own = await bob.post("/v1/sessions", json={"context": "y"})
        stranger = await eve.post("/v1/sessions", json={"context": "z"})
        answered = await alice.post(f"/v1/sessions/{theirs}/completions", json={"query": "q"})
    assert refused.status_code == 404 and error_of(refused)["code"] == "session_not_found"
    assert deleted.status_code == 404
    assert own.status_code == 201
    assert stranger.status_code == 401 and error_of(stranger)["code"] == "invalid_api_key"
    assert answered.status_code == 200 and answered.json()["answer"] == "ok"


def test_a_list_of_api_keys_must_hold_non_empty_tokens() -> None:
    rlm = RLM(model=ScriptedModel(["FINAL(x)"]))
    for api_key in ([], ["alice-token", ""], ["alice-token", 7], ("",)):
        with pytest.raises(ConfigurationError, match="api_key must be a non-empty str"):
            create_app(rlm, api_key=api_key)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_sessions"):
        create_app(rlm, max_sessions=-1)
    create_app(rlm, api_key=("alice-token", "bob-token"), max_sessions=0)
