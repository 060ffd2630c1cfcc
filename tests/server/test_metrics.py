"""``GET /metrics`` over real loopback HTTP, read back with the Prometheus client's own parser."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from rlm_async import RLM
from rlm_async._types import Usage
from rlm_async.providers import CompletionRequest
from rlm_async.server import create_app, open_server
from rlm_async.server._metrics import repls_alive
from rlm_async.testing import MockReply, ScriptedModel
from tests.helpers import repl
from tests.server.support import Gate

ROOT_USAGE = Usage(input_tokens=100, output_tokens=10, cached_tokens=40, cost_usd=0.002)
SUB_USAGE = Usage(input_tokens=20, output_tokens=5, cost_usd=0.0005)


def root(request: CompletionRequest) -> MockReply:
    """Two root turns: one sub-call, then its answer as the final one."""
    if not any(m.role == "assistant" for m in request.messages):
        return MockReply(repl('a = llm_query("say hi")\nprint(a)'), usage=ROOT_USAGE)
    return MockReply("FINAL_VAR(a)", usage=ROOT_USAGE)


def sub(request: CompletionRequest) -> MockReply:
    return MockReply("hi", usage=SUB_USAGE)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of ``/metrics``, parsed by ``prometheus_client.parser``."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_runs_tokens_cost_and_sub_calls_of_every_kind_of_request() -> None:
    app = create_app(
        lambda: RLM(
            model=ScriptedModel(root, name="root"), sub_model=ScriptedModel(sub, name="sub")
        )
    )
    async with open_server(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        before = await scrape(client)
        native = await client.post("/v1/rlm", json={"context": "doc", "query": "q"})
        chat = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}
        )
        async with client.stream(
            "POST", "/v1/rlm/stream", json={"context": "doc", "query": "q"}
        ) as stream:
            events = "".join([chunk async for chunk in stream.aiter_text()])
        samples = await scrape(client)
    assert native.json()["answer"] == "hi" and chat.status_code == 200
    assert "event: run_finished" in events
    assert value(before, "rlm_runs_total", outcome="ok") == 0

    runs = 3
    assert value(samples, "rlm_runs_total", outcome="ok") == runs
    # Two root turns and one sub-call a run, each with the usage its model reported.
    root_model, sub_model = "root", "sub"
    assert value(samples, "rlm_tokens_total", model=root_model, kind="input") == runs * 2 * 100
    assert value(samples, "rlm_tokens_total", model=root_model, kind="output") == runs * 2 * 10
    assert value(samples, "rlm_tokens_total", model=root_model, kind="cached") == runs * 2 * 40
    assert value(samples, "rlm_tokens_total", model=sub_model, kind="input") == runs * 20
    assert value(samples, "rlm_tokens_total", model=sub_model, kind="output") == runs * 5
    assert value(samples, "rlm_cost_usd_total", model=root_model) == pytest.approx(runs * 0.004)
    assert value(samples, "rlm_cost_usd_total", model=sub_model) == pytest.approx(runs * 0.0005)
    assert value(samples, "rlm_subcalls_total", kind="llm", cached="false", ok="true") == runs
    assert value(samples, "rlm_run_duration_seconds_count") == runs
    assert value(samples, "rlm_run_queue_seconds_count") == runs
    assert value(samples, "rlm_run_duration_seconds_sum") > 0
    assert value(samples, "rlm_runs_in_flight") == 0
    assert value(samples, "rlm_runs_queued") == 0
    assert value(samples, "rlm_repls_alive") == 0  # every run's REPL was killed at its end
    assert value(samples, "rlm_draining") == 0


async def test_gauges_while_a_run_is_in_flight_and_a_refused_run() -> None:
    gate = Gate()
    app = create_app(lambda: RLM(model=ScriptedModel(gate)), max_concurrent_runs=1)
    async with open_server(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with anyio.create_task_group() as tg:
            answers: list[httpx.Response] = []

            async def ask() -> None:
                answers.append(await client.post("/v1/rlm", json={"context": "c", "query": "q"}))

            tg.start_soon(ask)
            with anyio.fail_after(20):
                await gate.entered.wait()  # its root turn is waiting: the REPL is up
            during = await scrape(client)
            refused = await client.post("/v1/rlm", json={"context": "c", "query": "q"})
            gate.release()
        after = await scrape(client)
    assert answers[0].status_code == 200
    assert value(during, "rlm_runs_in_flight") == 1
    assert value(during, "rlm_repls_alive") == 1
    assert value(during, "rlm_runs_total", outcome="ok") == 0
    assert refused.status_code == 429
    assert value(after, "rlm_runs_rejected_total", reason="busy") == 1
    assert value(after, "rlm_runs_in_flight") == 0
    assert value(after, "rlm_repls_alive") == 0
    assert value(after, "rlm_runs_total", outcome="ok") == 1


async def test_a_run_whose_client_gave_up_is_counted_cancelled() -> None:
    gate = Gate()
    app = create_app(lambda: RLM(model=ScriptedModel(gate)))
    async with open_server(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with anyio.create_task_group() as tg:

            async def give_up() -> None:
                await client.post("/v1/rlm", json={"context": "c", "query": "q"})

            tg.start_soon(give_up)
            with anyio.fail_after(20):
                await gate.entered.wait()
            tg.cancel_scope.cancel()  # closes the connection mid-run
        # Nothing tells the client when the server has seen it go: poll (bounded).
        deadline = time.monotonic() + 20
        samples = await scrape(client)
        while not value(samples, "rlm_runs_total", outcome="cancelled"):
            assert time.monotonic() < deadline, "the cancelled run was never counted"
            await anyio.sleep(0.02)
            samples = await scrape(client)
    assert value(samples, "rlm_runs_total", outcome="cancelled") == 1
    assert value(samples, "rlm_runs_total", outcome="ok") == 0


async def test_metrics_need_the_token_unless_metrics_auth_is_off() -> None:
    guarded = create_app(lambda: RLM(model=ScriptedModel([])), api_key="t0ken")
    open_metrics = create_app(
        lambda: RLM(model=ScriptedModel([])), api_key="t0ken", metrics_auth=False
    )
    async with open_server(guarded) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/metrics")).status_code == 401
        authorized = await client.get("/metrics", headers={"Authorization": "Bearer t0ken"})
        assert authorized.status_code == 200
        assert (await client.get("/v1/models")).status_code == 401  # the rest is unchanged
    async with open_server(open_metrics) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/v1/models")).status_code == 401


def test_each_app_has_its_own_registry_and_the_global_one_is_left_alone() -> None:
    first = create_app(lambda: RLM(model=ScriptedModel([])))
    second = create_app(lambda: RLM(model=ScriptedModel([])))
    first.state.rlm_service.metrics.runs.labels(outcome="ok").inc()
    assert b'rlm_runs_total{outcome="ok"} 1.0' in first.state.rlm_service.metrics.exposition()
    assert b"rlm_runs_total{" not in second.state.rlm_service.metrics.exposition()
    assert REGISTRY.get_sample_value("rlm_runs_total", {"outcome": "ok"}) is None


def test_repls_alive_counts_only_repl_children() -> None:
    assert repls_alive() == 0  # the test process has no REPL child now
    assert repls_alive(2**22 + 7) is None  # no such process: /proc cannot tell
