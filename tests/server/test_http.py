"""Once over real loopback HTTP (uvicorn): a normal request, and disconnect-cancels-the-run."""

from __future__ import annotations

import json
import time

import anyio
import httpx

from rlm_async import RLM
from rlm_async import events as ev
from rlm_async.providers import CompletionRequest
from rlm_async.server import create_app, open_server
from rlm_async.testing import ScriptedModel
from tests.helpers import alive, child_pids, repl
from tests.server.support import parse_sse, two_turns


def sleeper(request: CompletionRequest) -> str:
    """Root model whose first cell runs for a minute."""
    return repl("import time\ntime.sleep(60)")


async def wait_until_gone(pids: set[int], within: float = 10.0) -> bool:
    """Poll (bounded) until none of ``pids`` is alive."""
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.02)
    return True


async def test_a_request_over_loopback_http_with_the_lifespan_opening_the_rlm() -> None:
    app = create_app(lambda: RLM(model=ScriptedModel(two_turns), warm_repls=1))
    async with open_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        health = (await client.get("/health")).json()
        response = await client.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "doc"}, {"role": "user", "content": "q"}]
            },
        )
        async with client.stream(
            "POST", "/v1/rlm/stream", json={"context": "abcd", "query": "q"}
        ) as stream:
            text = "".join([chunk async for chunk in stream.aiter_text()])
    assert url.startswith("http://127.0.0.1:")
    assert health["status"] == "ok" and health["warm_repls"]["size"] == 1
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "1"
    assert parse_sse(text)[-1].json()["answer"] == "4"
    assert app.state.rlm_service.state == "closed"  # the lifespan closed the RLM


async def test_closing_the_connection_cancels_the_run_and_kills_its_repl() -> None:
    cell_started = anyio.Event()

    def on_event(event: ev.Event) -> None:
        if event.type == "cell_started":
            cell_started.set()

    before = child_pids()
    app = create_app(lambda: RLM(model=ScriptedModel(sleeper), on_event=on_event))
    async with open_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        body = json.dumps({"messages": [{"role": "user", "content": "q"}]}).encode()
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        with anyio.fail_after(10):
            async with await anyio.connect_tcp(host, int(port)) as connection:
                await connection.send(request)
                await cell_started.wait()  # the REPL child is running time.sleep(60)
                spawned = child_pids() - before
            # The connection is closed here, long before the cell could end.
        assert spawned, "a REPL child was running"
        assert await wait_until_gone(spawned), "the REPL child outlived its client"
        async with httpx.AsyncClient(base_url=url) as client:
            deadline = time.monotonic() + 10
            while (await client.get("/health")).json()["runs_in_flight"]:
                assert time.monotonic() < deadline, "the run's slot was never released"
                await anyio.sleep(0.02)


async def test_leaving_an_event_stream_cancels_the_run_and_kills_its_repl() -> None:
    before = child_pids()
    app = create_app(lambda: RLM(model=ScriptedModel(sleeper)))
    async with open_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        with anyio.fail_after(10):
            async with client.stream(
                "POST", "/v1/rlm/stream", json={"context": "abc", "query": "q"}
            ) as stream:
                async for line in stream.aiter_lines():
                    if line == "event: cell_started":
                        break
                spawned = child_pids() - before
        # Leaving the block without reading the rest closes the connection.
        assert spawned, "a REPL child was running"
        assert await wait_until_gone(spawned), "the REPL child outlived its client"
        deadline = time.monotonic() + 10
        while (await client.get("/health")).json()["runs_in_flight"]:
            assert time.monotonic() < deadline, "the run's slot was never released"
            await anyio.sleep(0.02)
