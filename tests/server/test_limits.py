"""Admission control and size limits: 429 at once when full, a bounded queue, 413."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import anyio
import pytest

from rlm_async import RLM, ConfigurationError
from rlm_async.server import create_app
from rlm_async.testing import ScriptedModel
from tests.server.support import Gate, asgi_client

CHAT = {"messages": [{"role": "user", "content": "q"}]}


async def test_a_request_beyond_the_run_limit_is_refused_at_once_with_429() -> None:
    gate = Gate()
    statuses: list[int] = []
    async with (
        RLM(model=ScriptedModel(gate)) as rlm,
        asgi_client(create_app(rlm, max_concurrent_runs=1)) as client,
    ):

        async def first() -> None:
            statuses.append((await client.post("/v1/chat/completions", json=CHAT)).status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await gate.entered.wait()  # the first run holds the only slot
            with anyio.fail_after(5):  # "at once": well before the held run could end
                refused = await client.post("/v1/chat/completions", json=CHAT)
                streamed = await client.post("/v1/rlm/stream", json={"context": "", "query": "q"})
            health = (await client.get("/health")).json()
            gate.release()
        after = await client.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 429 and streamed.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "server_busy"
    assert health["runs_in_flight"] == 1
    assert statuses == [200]
    assert after.status_code == 200  # the slot was given back


async def test_a_queued_request_waits_for_a_slot_and_one_more_is_refused() -> None:
    gate = Gate()
    statuses: list[int] = []
    async with (
        RLM(model=ScriptedModel(gate)) as rlm,
        asgi_client(create_app(rlm, max_concurrent_runs=1, max_queue=1)) as client,
    ):

        async def post() -> None:
            statuses.append((await client.post("/v1/chat/completions", json=CHAT)).status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(post)
            await gate.entered.wait()
            tg.start_soon(post)
            while (await client.get("/health")).json()["queued"] == 0:
                await anyio.sleep(0.001)
            refused = await client.post("/v1/chat/completions", json=CHAT)
            gate.release()
    assert refused.status_code == 429
    assert statuses == [200, 200]


async def test_a_queued_request_that_waits_too_long_gets_503() -> None:
    gate = Gate()
    async with (
        RLM(model=ScriptedModel(gate)) as rlm,
        asgi_client(
            create_app(rlm, max_concurrent_runs=1, max_queue=1, queue_timeout=0.05)
        ) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(functools.partial(client.post, "/v1/chat/completions", json=CHAT))
        await gate.entered.wait()
        late = await client.post("/v1/chat/completions", json=CHAT)
        gate.release()
    assert late.status_code == 503
    assert late.json()["error"]["code"] == "queue_timeout"


async def test_a_body_over_the_limit_is_a_413_by_content_length_and_by_counting() -> None:
    root = ScriptedModel(["FINAL(never)"])
    big = {"context": "x" * 2_000, "query": "q"}

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the server counts
        for _ in range(30):
            yield b" " * 100

    async with (
        RLM(model=root) as rlm,
        asgi_client(create_app(rlm, max_request_bytes=1_000)) as client,
    ):
        declared = await client.post("/v1/rlm", json=big)
        streamed = await client.post("/v1/rlm", content=chunked())
        small = await client.post("/v1/rlm", json={"context": "x", "query": "q"})
    assert declared.status_code == 413 == streamed.status_code
    assert declared.json()["error"]["code"] == "request_too_large"
    assert "content-length" not in streamed.request.headers
    assert small.status_code == 200
    assert len(root.requests) == 1


async def test_health_reports_status_and_runs_without_a_token() -> None:
    async with (
        RLM(model=ScriptedModel(["FINAL(x)"])) as rlm,
        asgi_client(create_app(rlm, max_concurrent_runs=3, api_key="t0ken")) as client,
    ):
        health = await client.get("/health")
        healthz = await client.get("/healthz")
    body = health.json()
    assert health.status_code == 200 == healthz.status_code
    assert body["status"] == "ok" and body["model"] == "scripted"
    assert body["runs_in_flight"] == 0 and body["max_concurrent_runs"] == 3
    assert body["warm_repls"] is None  # see test_http for a warm pool


async def test_an_app_made_from_a_factory_answers_503_until_its_lifespan_opened_the_rlm() -> None:
    app = create_app(lambda: RLM(model=ScriptedModel(["FINAL(x)"])))
    async with asgi_client(app) as client:
        health = await client.get("/health")
        run = await client.post("/v1/chat/completions", json=CHAT)
    assert health.status_code == 503 and health.json()["status"] == "starting"
    assert run.status_code == 503 and run.json()["error"]["code"] == "unavailable"


def test_limits_are_checked_when_the_app_is_made() -> None:
    rlm = RLM(model=ScriptedModel(["FINAL(x)"]))
    for kwargs in (
        {"max_concurrent_runs": 0},
        {"max_queue": -1},
        {"api_key": ""},
        {"queue_timeout": True},  # a bool is not a duration (it was accepted)
        {"session_idle_timeout": None},
        {"body_timeout": -1},
    ):
        with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
            create_app(rlm, **kwargs)
    with pytest.raises(ConfigurationError):
        create_app("gpt-5")  # type: ignore[arg-type]


async def test_a_client_gone_while_sending_its_body_is_a_quiet_499() -> None:
    """Straight through the ASGI interface: part of the body, then the client is gone."""
    messages = iter(
        [
            {"type": "http.request", "body": b'{"context": "aaaa', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/rlm",
        "raw_path": b"/v1/rlm",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    root = ScriptedModel(["FINAL(never)"])
    async with RLM(model=root) as rlm:
        await create_app(rlm)(scope, receive, send)  # raises if the disconnect is unhandled
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499
    assert root.requests == []
