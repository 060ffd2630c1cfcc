"""``/livez`` and ``/readyz``: what they answer while starting, serving, warming and draining."""

from __future__ import annotations

import time

import anyio
import httpx

from rlm_async import RLM
from rlm_async.server import create_app, open_server
from rlm_async.testing import ScriptedModel
from tests.server.support import asgi_client


async def test_before_the_lifespan_opens_the_rlm_it_is_alive_but_not_ready() -> None:
    app = create_app(lambda: RLM(model=ScriptedModel([])), api_key="t0ken")
    async with asgi_client(app) as client:  # no lifespan: the RLM is never opened
        live = await client.get("/livez")
        ready = await client.get("/readyz")
    # Open without the token, as /health is: a probe carries no secret.
    assert live.status_code == 200 and live.json()["status"] == "alive"
    assert ready.status_code == 503 and ready.json()["status"] == "starting"


async def test_ready_once_the_warm_pool_has_filled_and_not_once_draining() -> None:
    app = create_app(lambda: RLM(model=ScriptedModel([]), warm_repls=2))
    service = app.state.rlm_service
    async with open_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        deadline = time.monotonic() + 30
        while True:
            ready = await client.get("/readyz")
            if ready.status_code == 200:
                break
            assert ready.json()["status"] == "warming", ready.text
            assert time.monotonic() < deadline, "the warm pool never filled"
            await anyio.sleep(0.01)
        assert ready.json()["warm_repls"]["started"] >= 2
        assert service.rlm.repl_pool.started >= 2

        # What a SIGTERM with --drain-delay, or the app's shutdown, does first.
        service.begin_drain()
        draining = await client.get("/readyz")
        live = await client.get("/livez")
        runs = await client.get("/health")
        metrics = await client.get("/metrics")
    assert draining.status_code == 503 and draining.json()["status"] == "draining"
    assert live.status_code == 200
    assert runs.status_code == 200  # /health is as it was: the RLM still serves runs
    assert "rlm_draining 1.0" in metrics.text
    assert service.draining and service.state == "closed"


async def test_the_apps_shutdown_marks_it_draining() -> None:
    app = create_app(lambda: RLM(model=ScriptedModel([])))
    async with open_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert not app.state.rlm_service.draining
    assert app.state.rlm_service.draining
