"""The engine end to end with scripted models (real REPL child, no HTTP)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import anyio
import pytest

from rlm_async import (
    RLM,
    AuthenticationError,
    ConfigurationError,
    ContextTypeError,
    RLMClosed,
    RLMResult,
)
from rlm_async import events as ev
from rlm_async.providers import CompletionRequest
from rlm_async.testing import ScriptedModel
from tests.helpers import alive, child_pids, repl


async def test_a_scripted_run_looks_at_the_context_then_answers() -> None:
    root = ScriptedModel([repl("print(len(context))"), "The context is 11 long.\nFINAL(11)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion("hello world", "How long is the context?")
    assert isinstance(result, RLMResult)
    assert result.answer == "11"
    assert result.iterations == 2
    assert result.usage["scripted"].calls == 2
    # The second root request carries the REPL's output of the first turn.
    second = root.requests[1].messages[-1].content
    assert "11" in second and "How long is the context?" in second


async def test_the_system_prompt_describes_the_context_and_the_repl() -> None:
    root = ScriptedModel(["FINAL(x)"])
    async with RLM(model=root, max_iterations=7) as rlm:
        await rlm.completion(["aa", "bbb", "c"], "q")
    system = root.requests[0].system or ""
    assert "list of 3 items" in system
    assert "llm_query_batched" in system and "FINAL_VAR" in system
    assert "7 turns" in system


async def test_final_called_in_code_ends_the_run_and_skips_later_blocks() -> None:
    reply = "```repl\nFINAL(context.upper())\n```\n```repl\nprint('never')\n```"
    root = ScriptedModel([reply])
    seen: list[ev.Event] = []
    async with RLM(model=root, on_event=seen.append) as rlm:
        result = await rlm.completion("abc", "q")
    assert result.answer == "ABC"
    assert sum(isinstance(e, ev.CellStarted) for e in seen) == 1
    assert any(isinstance(e, ev.FinalAnswer) and e.source == "code" for e in seen)
    assert result.metadata["answer_source"] == "code"


async def test_final_var_in_the_reply_reads_the_variable_after_the_code_ran() -> None:
    root = ScriptedModel(["```repl\nanswer = context[::-1]\n```\nFINAL_VAR(answer)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion("abc", "q")
    assert result.answer == "cba"


async def test_a_final_var_of_a_missing_variable_is_fed_back_and_the_run_goes_on() -> None:
    root = ScriptedModel(["FINAL_VAR(nothing_here)", "FINAL(recovered)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion("abc", "q")
    assert result.answer == "recovered"
    assert "nothing_here" in root.requests[1].messages[-1].content


async def test_a_reply_without_code_or_final_is_told_what_to_do() -> None:
    root = ScriptedModel(["I think the answer is 4.", "FINAL(4)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion("abc", "q")
    assert result.answer == "4"
    told = root.requests[1].messages[-1].content
    assert "no code block" in told and "```repl\n" in told  # and a real block to copy


async def test_when_iterations_run_out_one_last_turn_asks_for_the_answer() -> None:
    root = ScriptedModel([repl("x = 1"), repl("x += 1"), "FINAL(two)"])
    async with RLM(model=root, max_iterations=2) as rlm:
        result = await rlm.completion("abc", "q")
    assert result.answer == "two"
    assert result.iterations == 3
    assert "used all 2 turns" in root.requests[2].messages[-1].content


async def test_without_a_final_line_the_last_reply_is_the_answer() -> None:
    root = ScriptedModel([repl("x = 1"), "Paris, probably."])
    async with RLM(model=root, max_iterations=1) as rlm:
        result = await rlm.completion("abc", "q")
    assert result.answer == "Paris, probably."
    assert result.metadata["answer_source"] == "last_reply"  # no FINAL: the caller can tell


async def test_cell_output_fed_back_is_capped_with_a_marker() -> None:
    root = ScriptedModel([repl("print('x' * 50_000)"), "FINAL(done)"])
    async with RLM(model=root, max_output_chars=1_000) as rlm:
        await rlm.completion("abc", "q")
    feedback = root.requests[1].messages[-1].content
    assert "truncated" in feedback
    assert len(feedback) < 2_000


async def test_sub_calls_go_to_the_sub_model_concurrently_and_usage_is_kept_per_model() -> None:
    code = (
        "answers = llm_query_batched([f'item {i}' for i in range(20)])\n"
        "print(answers[:3], len(answers))"
    )
    root = ScriptedModel([repl(code), "FINAL(ok)"], name="root")
    sub = ScriptedModel(
        lambda request: request.messages[-1].content.upper(), name="sub", latency=0.01
    )
    seen: list[ev.Event] = []
    async with RLM(model=root, sub_model=sub, max_concurrency=8, on_event=seen.append) as rlm:
        result = await rlm.completion("abc", "q")
    assert "['ITEM 0', 'ITEM 1', 'ITEM 2'] 20" in root.requests[1].messages[-1].content
    assert result.usage["sub"].calls == 20
    assert result.usage["root"].calls == 2
    assert result.usage.depths[1].calls == 20
    assert result.metadata["subcalls"] == 20
    started = [e for e in seen if isinstance(e, ev.SubCallStarted)]
    assert len(started) == 20 and all(e.cell == 1 and e.turn == 1 for e in started)


async def test_sub_call_concurrency_never_exceeds_max_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def slow(request: CompletionRequest) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)  # let every task that can start, start
        await asyncio.sleep(0.005)
        in_flight -= 1
        return "ok"

    # Distinct prompts: identical ones would be sent once (the sub-call cache).
    root = ScriptedModel([repl("r = llm_query_batched([f'p{i}' for i in range(40)])"), "FINAL(x)"])
    async with RLM(model=root, sub_model=ScriptedModel(slow), max_concurrency=5) as rlm:
        await rlm.completion("abc", "q")
    assert peak == 5


async def test_a_model_not_allowed_in_llm_query_gets_an_error_string() -> None:
    code = "print(llm_query('hi', model='gpt-4o'))"
    root = ScriptedModel([repl(code), "FINAL(x)"])
    async with RLM(model=root) as rlm:
        await rlm.completion("abc", "q")
    assert "not allowed" in root.requests[1].messages[-1].content


async def test_an_authentication_error_in_a_sub_call_ends_the_run() -> None:
    def bad_key(request: CompletionRequest) -> str:
        raise AuthenticationError("invalid key", provider="sub", status_code=401)

    root = ScriptedModel([repl("llm_query_batched(['a', 'b'])"), "FINAL(x)"])
    before = child_pids()
    async with RLM(model=root, sub_model=ScriptedModel(bad_key, name="sub")) as rlm:
        with pytest.raises(AuthenticationError):
            await rlm.completion("abc", "q")
    assert child_pids() <= before


async def test_concurrent_completions_on_one_rlm_each_have_their_own_repl() -> None:
    def script(request: CompletionRequest) -> str:
        turns = sum(m.role == "assistant" for m in request.messages)
        if turns == 0:
            return repl("mine = context\nprint('other' in globals())")
        return "FINAL_VAR(mine)"

    async with RLM(model=ScriptedModel(script)) as rlm:
        results: dict[int, str] = {}

        async def one(i: int) -> None:
            results[i] = (await rlm.completion(f"context-{i}", "q")).answer

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
    assert results == {i: f"context-{i}" for i in range(8)}


async def test_cancelling_a_completion_kills_its_repl() -> None:
    started = anyio.Event()

    def script(request: CompletionRequest) -> str:
        started.set()
        return repl("import time\ntime.sleep(60)")

    before = child_pids()
    async with RLM(model=ScriptedModel(script)) as rlm:
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rlm.completion, "abc", "q")
                await started.wait()
                # The cell is now running in the child: cancel the whole completion.
                await anyio.sleep(0.2)
                spawned = child_pids() - before
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
    assert spawned, "a REPL child was running"
    assert not any(alive(pid) for pid in spawned)


async def test_a_bug_in_a_sub_model_is_raised_as_itself_and_the_rlm_keeps_working() -> None:
    """Not an ExceptionGroup around it: the caller catches what their provider raised."""

    def broken(request: CompletionRequest) -> str:
        raise ZeroDivisionError("a bug in the user's provider")

    def root_reply(request: CompletionRequest) -> str:
        if any("plain" in m.content for m in request.messages):
            return "FINAL(fine)"
        return repl("llm_query('x')")

    before = child_pids()
    async with RLM(model=ScriptedModel(root_reply), sub_model=ScriptedModel(broken)) as rlm:
        with pytest.raises(ZeroDivisionError, match="user's provider"):
            await rlm.completion("abc", "q")
        assert child_pids() <= before
        assert (await rlm.completion("abc", "plain")).answer == "fine"


async def test_a_bad_context_type_fails_before_any_model_call() -> None:
    root = ScriptedModel(["FINAL(x)"])
    async with RLM(model=root) as rlm:
        with pytest.raises(ContextTypeError):
            await rlm.completion(12345, "q")
    assert root.requests == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_iterations": 0}, "max_iterations"),
        ({"max_concurrency": "many"}, "max_concurrency"),
        ({"model": 42}, "model name"),
        ({"model": ""}, "must not be empty"),
        ({"temperature": "hot"}, "temperature"),
        ({"cell_timeout": -1}, "cell_timeout"),
        ({"cell_timeout": float("nan")}, "cell_timeout"),
        ({"settings": {"openai_api_key": "k"}}, "Settings"),
        ({"rate_limits": ["openai"]}, "mapping of provider name"),
        ({"on_event": 5}, "on_event must be a function"),
        ({"allowed_models": "gpt-5"}, "list of model names"),
        ({"depth_models": None}, "depth_models must be a list"),
        ({"trajectory_dir": 123}, "trajectory_dir must be a path"),
    ],
)
def test_bad_options_raise_configuration_errors_that_say_what_to_do(
    kwargs: dict[str, Any], message: str
) -> None:
    options: dict[str, Any] = {"model": ScriptedModel(["x"]), **kwargs}
    with pytest.raises(ConfigurationError, match=message):
        RLM(**options)


async def test_a_query_that_is_not_a_string_is_a_configuration_error() -> None:
    async with RLM(model=ScriptedModel(["x"])) as rlm:
        with pytest.raises(ConfigurationError, match="query"):
            await rlm.completion("abc", 42)  # type: ignore[arg-type]


async def test_a_closed_rlm_refuses_new_runs() -> None:
    rlm = RLM(model=ScriptedModel(["FINAL(x)"]))
    await rlm.aclose()
    with pytest.raises(ConfigurationError, match="closed"):
        await rlm.completion("abc", "q")


async def test_stream_yields_the_runs_events_in_order() -> None:
    root = ScriptedModel([repl("llm_query('x')"), "FINAL(done)"])
    async with RLM(model=root, sub_model=ScriptedModel(["sub"], name="sub")) as rlm:
        events = [event async for event in rlm.stream("abc", "q")]
    kinds = [e.type for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert (
        kinds.index("cell_started")
        < kinds.index("subcall_started")
        < kinds.index("subcall_finished")
        < kinds.index("cell_finished")
        < kinds.index("final_answer")
    )
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    # Root text arrives as deltas before each turn finishes, and adds up to the reply.
    deltas = [e for e in events if isinstance(e, ev.ModelDelta) and e.turn == 2]
    assert "".join(d.text for d in deltas) == "FINAL(done)"


async def test_leaving_a_stream_early_cancels_the_run_and_its_repl() -> None:
    def script(request: CompletionRequest) -> str:
        return repl("import time\ntime.sleep(60)")

    before = child_pids()
    async with RLM(model=ScriptedModel(script)) as rlm:
        stream = rlm.stream("abc", "q")
        async for event in stream:
            if event.type == "cell_started":
                spawned = child_pids() - before
                break
        await stream.aclose()  # type: ignore[attr-defined]
    assert spawned
    assert not any(alive(pid) for pid in spawned)


async def test_closing_the_rlm_right_after_leaving_a_stream_is_clean(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No explicit aclose() of the stream: the RLM's close must still win the race."""

    def script(request: CompletionRequest) -> str:
        return repl("import time\ntime.sleep(60)")

    before = child_pids()
    async with RLM(model=ScriptedModel(script)) as rlm:
        async for event in rlm.stream("abc", "q"):
            if event.type == "cell_started":
                spawned = child_pids() - before
                break
    gc.collect()  # a task that failed unseen is reported when it is collected
    await anyio.sleep(0)
    assert spawned
    assert not any(alive(pid) for pid in spawned)
    assert "exception was never retrieved" not in caplog.text


async def test_closing_an_rlm_cancels_its_running_completions() -> None:
    started = anyio.Event()

    def script(request: CompletionRequest) -> str:
        started.set()
        return repl("import time\ntime.sleep(60)")

    failures: list[BaseException] = []
    before = child_pids()

    async def run(rlm: RLM) -> None:
        try:
            await rlm.completion("abc", "q")
        except RLMClosed as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        rlm = RLM(model=ScriptedModel(script))
        tg.start_soon(run, rlm)
        tg.start_soon(run, rlm)
        await started.wait()
        with anyio.fail_after(5):
            await rlm.aclose()
    assert len(failures) == 2
    assert all("closed" in str(f) for f in failures)
    assert child_pids() <= before


async def test_a_second_aclose_waits_for_the_first_to_finish() -> None:
    started = anyio.Event()

    def script(request: CompletionRequest) -> str:
        started.set()
        return repl("import time\ntime.sleep(60)")

    before = child_pids()
    rlm = RLM(model=ScriptedModel(script))
    task = asyncio.ensure_future(rlm.completion("abc", "q"))
    await started.wait()
    first = asyncio.ensure_future(rlm.aclose())
    await asyncio.sleep(0)  # the first close has begun
    await rlm.aclose()  # e.g. a second shutdown path: returns when the RLM is closed
    assert first.done()
    assert child_pids() <= before
    with pytest.raises(RLMClosed, match="closed"):
        await task


async def test_a_failed_run_streams_run_failed_then_raises() -> None:
    root = ScriptedModel([])  # runs out of replies at once
    events: list[ev.Event] = []

    async def consume(rlm: RLM) -> None:
        async for event in rlm.stream("abc", "q"):
            events.append(event)

    async with RLM(model=root) as rlm:
        with pytest.raises(Exception, match="ran out of replies"):
            await consume(rlm)
    assert events[-1].type == "run_failed"


async def test_trajectory_dir_writes_one_readable_file_per_completion(tmp_path: Path) -> None:
    from rlm_async import read_trajectory

    root = ScriptedModel([repl("llm_query('x')"), "FINAL(done)"])
    async with RLM(
        model=root, sub_model=ScriptedModel(["sub"], name="sub"), trajectory_dir=tmp_path
    ) as rlm:
        result = await rlm.completion("abc", "q")
    path = Path(result.metadata["trajectory_path"])
    assert path.parent == tmp_path and path.suffix == ".jsonl"
    written = read_trajectory(path)
    assert [e.type for e in written.events] == [e.type for e in result.trajectory]


async def test_closing_an_rlm_with_a_warm_pool_leaves_the_task_usable() -> None:
    async with RLM(model=ScriptedModel(["FINAL(1)"]), warm_repls=1):
        pass
    await anyio.sleep(0.01)  # raised CancelledError when the pool leaked its cancel scope


async def test_cancelling_a_stream_consumer_from_outside_kills_the_repl_at_once() -> None:
    def script(request: CompletionRequest) -> str:
        return repl("import time\ntime.sleep(60)")

    before = child_pids()
    async with RLM(model=ScriptedModel(script)) as rlm:

        async def consume(started: anyio.Event) -> None:
            async for event in rlm.stream("abc", "q"):
                if event.type == "cell_started":
                    started.set()

        started = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, started)
            await started.wait()
            spawned = child_pids() - before
            tg.cancel_scope.cancel()  # the consumer is waiting for the next event
        # Before the RLM closes: the run's own clean-up must have killed its REPL.
        assert spawned
        assert not any(alive(pid) for pid in spawned)


async def test_completion_takes_a_per_call_event_callback() -> None:
    seen: list[str] = []
    async with RLM(model=ScriptedModel(["FINAL(x)"])) as rlm:
        await rlm.completion("abc", "q", on_event=lambda e: seen.append(e.type))
    assert seen[0] == "run_started" and seen[-1] == "run_finished"


def test_constructing_an_rlm_creates_no_directory_until_a_completion_runs(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet"
    rlm = RLM(model=ScriptedModel(["FINAL(1)"]), trajectory_dir=directory)
    assert not (tmp_path / "not").exists()
    result = rlm.completion_sync("abc", "q")
    assert directory.is_dir()
    assert result.metadata["trajectory_path"].startswith(str(directory))


async def test_a_trajectory_dir_that_cannot_be_made_fails_the_completion_saying_so() -> None:
    rlm = RLM(model=ScriptedModel(["FINAL(1)"]), trajectory_dir="/proc/no-such-place")
    try:
        with pytest.raises(ConfigurationError, match="cannot be used as a directory"):
            await rlm.completion("abc", "q")
        with pytest.raises(ConfigurationError, match="cannot be used as a directory"):
            await rlm.__aenter__()
    finally:
        await rlm.aclose()


def test_an_rlm_of_provider_instances_reads_no_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlm_async.providers._settings as settings_module

    read: list[object] = []
    real = settings_module._read_dotenv

    def recording(path: str | None) -> dict[str, str]:
        read.append(path)
        return real(path)

    monkeypatch.setattr(settings_module, "_read_dotenv", recording)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    rlm = RLM(model=ScriptedModel(["FINAL(1)"]), load_dotenv=True)
    assert rlm.completion_sync("abc", "q").answer == "1"
    assert read == []
    RLM(model="openai:gpt-5", load_dotenv=True)  # a name needs its key: read now
    assert read == [None]
