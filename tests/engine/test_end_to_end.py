"""The whole stack over real loopback HTTP: engine, REPL child, OpenAI-compatible adapter."""

from __future__ import annotations

import re

import anyio

from rlm_async import RLM, RLM_REPL, Settings
from rlm_async.demo import demo_responder, make_haystack, run_demo
from rlm_async.providers import CompletionRequest
from rlm_async.testing import MockLLMServer
from tests.helpers import child_pids


def settings_for(server: MockLLMServer) -> Settings:
    return Settings(openai_compatible_base_url=server.base_url)


async def test_the_demo_strategy_finds_the_needle_in_a_million_lines_over_http() -> None:
    text, number = make_haystack(1_000_000, seed=7)
    async with MockLLMServer(demo_responder) as server:
        async with RLM(
            model="openai-compatible:root",
            sub_model="openai-compatible:sub",
            settings=settings_for(server),
            max_concurrency=32,
        ) as rlm:
            result = await rlm.completion(text, "What is the magic number?")
        roots = [r for _, r in server.requests if r.system is not None]
        subs = [r for _, r in server.requests if r.system is None]
    assert result.answer == str(number)
    assert len(subs) == result.metadata["subcalls"] == 100
    assert len(roots) == result.iterations == 3
    # Usage per model equals what the server reported.
    assert result.usage["openai-compatible:sub"].calls == 100
    assert result.usage["openai-compatible:root"].calls == 3
    # The root model never saw the context: its prompts are far smaller than the haystack.
    assert max(sum(len(m.content) for m in r.messages) for r in roots) < 20_000


async def test_sub_calls_are_in_flight_together_over_http() -> None:
    async with (
        MockLLMServer(demo_responder, latency=0.3) as server,
        RLM(
            model="openai-compatible:root",
            settings=settings_for(server),
            max_concurrency=16,
        ) as rlm,
    ):
        text, number = make_haystack(50_000, seed=1)
        result = await rlm.completion(text, "magic number?")
    assert result.answer == str(number)
    assert server.max_in_flight == 16


async def test_the_offline_demo_reports_a_correct_answer_and_its_numbers() -> None:
    report = await run_demo(lines=20_000, seed=3, offline=True, root_latency=0, sub_latency=0)
    assert report.correct and report.offline
    assert report.subcalls == 20
    rendered = report.render()
    assert "OFFLINE DEMO MODEL" in rendered and "CORRECT" in rendered
    assert re.search(r"Sequential: +\d", rendered)


async def test_concurrent_completions_over_http_do_not_share_state() -> None:
    def script(request: CompletionRequest) -> str:
        if request.system is None:
            return "sub"
        turns = sum(m.role == "assistant" for m in request.messages)
        if turns == 0:
            return "```repl\nprint('leak' in globals())\nleak = context\n```"
        return "FINAL_VAR(leak)" if "True" not in request.messages[-1].content else "FINAL(leaked)"

    answers: list[str] = []
    async with (
        MockLLMServer(script) as server,
        RLM(model="openai-compatible:m", settings=settings_for(server)) as rlm,
    ):

        async def one(i: int) -> None:
            answers.append((await rlm.completion(f"doc {i}", "q")).answer)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, i)
    assert sorted(answers) == sorted(f"doc {i}" for i in range(10))


async def test_the_seed_compatible_interface_returns_the_answer_text() -> None:
    async with MockLLMServer(lambda r: "FINAL(seed ok)") as server:
        rlm = RLM_REPL(
            model="openai-compatible:m",
            recursive_model="openai-compatible:m",
            max_iterations=3,
            settings=settings_for(server),
        )
        try:
            answer = await rlm.completion(context="abc", query="q")
        finally:
            await rlm.aclose()
    assert answer == "seed ok"


def test_completion_sync_runs_without_an_event_loop() -> None:
    from rlm_async.testing import ScriptedModel

    before = child_pids()
    rlm = RLM(model=ScriptedModel(["FINAL(sync ok)"]))
    assert rlm.completion_sync("abc", "q").answer == "sync ok"
    assert child_pids() <= before
