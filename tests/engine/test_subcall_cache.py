"""The sub-call cache and the prompt-size guard, through the real child REPL (issue 16)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from rlm_async import RLM, ConfigurationError, Settings
from rlm_async import events as ev
from rlm_async._types import Message
from rlm_async.engine._subcall_cache import cache_key
from rlm_async.providers import CompletionRequest, ResolvedModel
from rlm_async.testing import MockLLMServer, MockReply, ScriptedModel
from rlm_async.trajectory import read_trajectory
from rlm_async.trajectory._viewer import viewer_data
from tests.helpers import repl


def finished(result_or_events: object) -> list[ev.SubCallFinished]:
    events = getattr(result_or_events, "trajectory", result_or_events)
    assert isinstance(events, list)
    return [e for e in events if isinstance(e, ev.SubCallFinished)]


def sub_model() -> ScriptedModel:
    return ScriptedModel(lambda request: f"answer to {request.messages[-1].content}", name="sub")


async def test_a_batch_asking_one_prompt_twice_sends_it_once_and_both_get_the_answer() -> None:
    sub = sub_model()
    root = ScriptedModel(
        [repl("print(llm_query_batched(['same', 'same', 'other']))"), "FINAL(done)"], name="root"
    )
    async with RLM(model=root, sub_model=sub) as rlm:
        result = await rlm.completion("ctx", "q")
    assert [r.messages[-1].content for r in sub.requests] in (
        ["same", "other"],
        ["other", "same"],
    )
    output = root.requests[1].messages[-1].content
    assert "['answer to same', 'answer to same', 'answer to other']" in output
    assert sorted(e.cached for e in finished(result)) == [False, False, True]
    assert result.usage["sub"].calls == 2  # the hit is not counted: nothing was paid for it
    assert result.metadata["subcalls_cached"] == 1


async def test_concurrent_duplicates_wait_for_the_first_call() -> None:
    # The first call is held until both duplicates have started: the second arrives while
    # the first is in flight, and must wait for it rather than send its own.
    both_started = anyio.Event()
    started = 0

    def on_event(event: ev.Event) -> None:
        nonlocal started
        if isinstance(event, ev.SubCallStarted):
            started += 1
            if started == 2:
                both_started.set()

    async def held(request: CompletionRequest) -> str:
        await both_started.wait()
        return "the answer"

    sub = ScriptedModel(held, name="sub")
    code = "import asyncio\nprint(await asyncio.gather(allm_query('same'), allm_query('same')))"
    root = ScriptedModel([repl(code), "FINAL(done)"], name="root")
    with anyio.fail_after(60):
        async with RLM(model=root, sub_model=sub, on_event=on_event) as rlm:
            result = await rlm.completion("ctx", "q")
    assert len(sub.requests) == 1
    assert "['the answer', 'the answer']" in root.requests[1].messages[-1].content
    assert sorted(e.cached for e in finished(result)) == [False, True]


async def test_cache_false_sends_every_duplicate() -> None:
    sub = sub_model()
    root = ScriptedModel([repl("print(llm_query_batched(['same'] * 3))"), "FINAL(done)"])
    async with RLM(model=root, sub_model=sub, cache=False) as rlm:
        result = await rlm.completion("ctx", "q")
    assert len(sub.requests) == 3
    assert not any(e.cached for e in finished(result))


async def test_an_error_is_not_cached() -> None:
    sub = ScriptedModel([MockReply(text="", status=500), "second try"], name="sub")
    code = "print(llm_query('same'))\nprint(llm_query('same'))"
    root = ScriptedModel([repl(code), "FINAL(done)"], name="root")
    async with RLM(model=root, sub_model=sub) as rlm:
        result = await rlm.completion("ctx", "q")
    assert len(sub.requests) == 2
    output = root.requests[1].messages[-1].content
    assert "Error: [sub HTTP 500] scripted error 500\nsecond try" in output
    assert [(e.ok, e.cached) for e in finished(result)] == [(False, False), (True, False)]


async def test_a_session_shares_one_cache_across_its_completions() -> None:
    sub = sub_model()
    root = ScriptedModel(
        [
            repl("print(llm_query('same'))"),
            "FINAL(one)",
            repl("print(llm_query('same'))"),
            "FINAL(two)",
        ],
        name="root",
    )
    async with RLM(model=root, sub_model=sub) as rlm, rlm.session("ctx") as chat:
        await chat.completion("q1")
        second = await chat.completion("q2")
    assert len(sub.requests) == 1
    assert [e.cached for e in finished(second)] == [True]
    assert "answer to same" in root.requests[3].messages[-1].content


async def test_a_second_rlm_with_the_same_cache_file_pays_nothing_and_the_file_holds_no_key(
    tmp_path: Path,
) -> None:
    key = "sk-test-the-secret-key-7f3a9c"
    sub_prompts: list[str] = []

    def responder(request: CompletionRequest) -> MockReply:
        if request.system is None:  # a sub-call
            sub_prompts.append(request.messages[-1].content)
            return MockReply(text="cached answer")
        done = any(m.role == "assistant" for m in request.messages)
        return MockReply(text="FINAL(done)" if done else repl("print(llm_query('chunk one'))"))

    store = tmp_path / "cache" / "subcalls.sqlite3"
    async with MockLLMServer(responder) as server:
        settings = Settings(
            openai_compatible_base_url=server.base_url, openai_compatible_api_key=key
        )
        for _ in range(2):
            async with RLM(
                model="openai-compatible:root",
                sub_model="openai-compatible:sub",
                settings=settings,
                cache=store,
                trajectory_dir=tmp_path / "runs",
            ) as rlm:
                result = await rlm.completion("ctx", "q")
    assert sub_prompts == ["chunk one"], "the second run must not send the sub-call again"
    hits = finished(result)
    assert [(e.cached, e.input_tokens, e.output_tokens, e.cost_usd) for e in hits] == [
        (True, 0, 0, None)
    ]
    assert "openai-compatible:sub" not in result.usage.models  # nothing paid for it
    assert result.metadata["subcalls_cached"] == 1
    stored = b"".join(p.read_bytes() for p in store.parent.iterdir())
    assert b"cached answer" in stored
    assert key.encode() not in stored and b"Bearer" not in stored
    assert store.stat().st_mode & 0o077 == 0, "the store is private to its owner"
    # The viewer's tree marks the hit (its node label shows a "cached" pill).
    tree = viewer_data(read_trajectory(result.metadata["trajectory_path"]))
    [subcall] = tree["runs"][0]["turns"][0]["cells"][0]["subcalls"]
    assert subcall["cached"] is True and subcall["totals"]["calls"] == 0


async def test_a_prompt_over_the_sub_models_window_is_refused_unsent() -> None:
    sub = sub_model()
    code = "print(llm_query('x' * 1_000))\nprint(llm_query('y' * 400))"
    root = ScriptedModel([repl(code), "FINAL(done)"], name="root")
    async with RLM(model=root, sub_model=sub, context_windows={"sub": 100}) as rlm:
        result = await rlm.completion("ctx", "q")
    output = root.requests[1].messages[-1].content
    assert "Error: prompt of 250 tokens exceeds sub's window of 100; split it" in output
    assert [r.messages[-1].content for r in sub.requests] == ["y" * 400]  # 100 tokens: fits
    assert len(finished(result)) == 1


async def test_an_assumed_window_refuses_nothing() -> None:
    # A model missing from the table is assumed to read 8,192 tokens: a guess, not a limit.
    sub = sub_model()
    root = ScriptedModel([repl("print(llm_query('x' * 40_000)[:9])"), "FINAL(done)"])
    async with RLM(model=root, sub_model=sub) as rlm:
        await rlm.completion("ctx", "q")
    assert len(sub.requests) == 1


@pytest.mark.parametrize("bad", [3, b"path", ""])
def test_a_bad_cache_value_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="cache must be a file path"):
        RLM(model=ScriptedModel(["x"]), cache=bad)  # type: ignore[arg-type]


def test_a_directory_as_the_cache_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        RLM(model=ScriptedModel(["x"]), cache=tmp_path)


async def test_cache_true_keeps_the_store_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for _ in range(2):
        sub = sub_model()
        root = ScriptedModel([repl("print(llm_query('same'))"), "FINAL(done)"], name="root")
        async with RLM(model=root, sub_model=sub, cache=True) as rlm:
            await rlm.completion("ctx", "q")
    assert sub.requests == []  # the second RLM's sub-model was not asked
    assert (tmp_path / "rlm-async" / "subcalls.sqlite3").is_file()


async def test_the_key_covers_every_setting_of_the_request() -> None:
    target = ResolvedModel(provider=sub_model(), model="sub", label="sub")
    base = CompletionRequest(model="sub", messages=[Message(role="user", content="p")])
    variants = [
        base.model_copy(update={"response_schema": {"type": "object"}}),
        base.model_copy(update={"temperature": 0.7}),
        base.model_copy(update={"max_tokens": 10}),
        base.model_copy(update={"system": "s"}),
        base.model_copy(update={"extra": {"top_p": 0.5}}),
        base.model_copy(update={"messages": [Message(role="user", content="q")]}),
    ]
    keys = {await cache_key(target, request) for request in [base, *variants]}
    assert len(keys) == 1 + len(variants)
    other = ResolvedModel(provider=sub_model(), model="sub", label="other:sub")
    assert await cache_key(other, base) != await cache_key(target, base)
    assert await cache_key(target, base.model_copy()) == await cache_key(target, base)


def test_a_kept_answer_comes_back_whole_and_is_not_walked_by_the_collector() -> None:
    import gc

    from rlm_async._types import Completion, Usage
    from rlm_async.engine._subcall_cache import _keep, _unkeep

    usage = Usage(input_tokens=3, output_tokens=2, cached_tokens=1, cost_usd=0.25)
    completion = Completion(
        text="ok", finish_reason="stop", usage=usage, model="m", provider="p", request_id="r1"
    )
    kept = _keep(completion)
    gc.collect()  # untracks tuples of atoms
    assert not gc.is_tracked(kept)
    assert _unkeep(kept) == completion
