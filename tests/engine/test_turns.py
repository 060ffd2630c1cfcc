"""Turns that go nowhere (issue 12, items 9-11): repeated cells, empty prompts, and a batch
cut short by the cell's time limit. The real REPL child runs every cell."""

from __future__ import annotations

import itertools
from typing import Literal

import anyio
import pytest

from rlm_async import RLM, ReplOptions, SandboxOptions
from rlm_async import events as ev
from rlm_async.providers import CompletionRequest
from rlm_async.testing import ScriptedModel
from tests.helpers import repl
from tests.loop_meter import loop_meter

# The cell one small model wrote for all six turns of twelve runs: a sub-call holding the
# question and none of the context.
ASK_WITHOUT_CONTEXT = repl(
    'query = "What is the magic number?"\nanswer = llm_query(query)\nprint(answer)'
)


async def test_a_repeated_cell_is_called_out_with_what_to_try() -> None:
    root = ScriptedModel([ASK_WITHOUT_CONTEXT] * 3 + ["FINAL(x)"], name="root")
    sub = ScriptedModel(["I need more information."] * 3, name="sub")
    async with RLM(model=root, sub_model=sub, max_iterations=4) as rlm:
        await rlm.completion("the magic number is 42\n" * 50, "What is the magic number?")
    first = root.requests[1].messages[-1].content
    second = root.requests[2].messages[-1].content
    assert "same code" not in first
    assert "same code as in turn 1" in second
    assert "same output" in second
    # What to try: the sub-model read only the prompt, which held none of the context.
    assert "sees only the prompt" in second
    assert "25 characters" in second  # the longest prompt sent: the question alone
    assert "context[" in second  # an example that passes a piece of the context
    third = root.requests[3].messages[-1].content
    assert "same code as in turns 1 and 2" in third


async def test_the_same_output_from_different_code_is_called_out() -> None:
    root = ScriptedModel(
        [repl("print('nothing found')"), repl("x = 1\nprint('nothing found')"), "FINAL(x)"]
    )
    async with RLM(model=root) as rlm:
        await rlm.completion("text", "q")
    second = root.requests[2].messages[-1].content
    assert "same output as in turn 1" in second
    assert "same code" not in second


async def test_an_empty_prompt_is_an_error_item_and_never_a_request() -> None:
    code = (
        "print(repr(llm_query('')))\n"
        "print(llm_query_batched(['', '   \\n', 'real question']))\n"
        "print(repr(rlm_query(' ')))"
    )
    root = ScriptedModel([repl(code), "FINAL(x)"], name="root")
    sub = ScriptedModel(["an answer"], name="sub")
    events: list[ev.Event] = []
    async with RLM(model=root, sub_model=sub, on_event=events.append) as rlm:
        await rlm.completion("text", "q")
    assert [r.messages[-1].content for r in sub.requests] == ["real question"]
    feedback = root.requests[1].messages[-1].content
    assert feedback.count("Error: the prompt is empty") == 4
    assert "'an answer'" in feedback
    started = [e for e in events if isinstance(e, ev.SubCallStarted)]
    assert len(started) == 1


@pytest.mark.parametrize("bwrap", ["auto", "never"])
async def test_a_batch_cut_short_by_the_cell_limit_keeps_the_answers_that_finished(
    bwrap: Literal["auto", "never"],
) -> None:
    never = anyio.Event()

    async def answer(request: CompletionRequest) -> str:
        prompt = request.messages[-1].content
        if prompt.startswith("slow"):
            await never.wait()  # answered only by the cell's time limit
        return f"answer to {prompt}"

    prompts = [f"fast {i}" for i in range(3)] + ["slow 1", "slow 2"]
    root = ScriptedModel(
        [
            repl(f"answers = llm_query_batched({prompts!r})\nprint('done')"),
            repl("print(partial_answers)"),
            "FINAL(x)",
        ],
        name="root",
    )
    sub = ScriptedModel(answer, name="sub")
    events: list[ev.Event] = []
    async with RLM(
        model=root,
        sub_model=sub,
        max_concurrency=5,
        cell_timeout=1.5,
        repl=ReplOptions(interrupt_grace=5),
        sandbox=SandboxOptions(bwrap=bwrap),
        on_event=events.append,
    ) as rlm:
        result = await rlm.completion("text", "q")
    assert result.answer == "x"
    timed_out = root.requests[1].messages[-1].content
    assert "3 of 5" in timed_out and "partial_answers" in timed_out
    kept = root.requests[2].messages[-1].content
    assert "answer to fast 0" in kept and "answer to fast 2" in kept
    assert kept.count("Error: timed out") == 2
    # The REPL kept its state: no restart, and the answers were not asked for again.
    assert result.metadata["repl_restarts"] == 0
    assert len(sub.requests) == 5
    # The calls in flight at the limit were timed out, not "cancelled by its caller".
    finished = [e for e in events if isinstance(e, ev.SubCallFinished) and not e.ok]
    assert len(finished) == 2
    for event in finished:
        assert "timed out" in event.answer
        assert "cancelled" not in event.answer


async def test_an_answer_written_as_a_sentence_in_a_code_block_is_told_where_answers_go() -> None:
    # Qwen2.5-Coder-1.5B, 20 cities: this exact block for six turns, a SyntaxError each time.
    prose = repl("The largest city by population is Tokyo.")
    root = ScriptedModel([prose, "FINAL(Tokyo)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion("Tokyo: population 9", "Which city is largest?")
    assert result.answer == "Tokyo"
    feedback = root.requests[1].messages[-1].content
    assert "SyntaxError" in feedback
    assert "holds a sentence, not Python" in feedback
    assert "FINAL(your answer) on a line of its own outside any code block" in feedback


async def test_a_sentence_after_an_invented_output_line_is_noticed_too() -> None:
    # The same model's first block in another run: the output it expected, then a paragraph.
    invented = repl("492\nThe history of the city of Paris, which has been the capital of France.")
    root = ScriptedModel([invented, "FINAL(x)"])
    async with RLM(model=root) as rlm:
        await rlm.completion("Tokyo: population 9", "Which city is largest?")
    assert "holds a sentence, not Python" in root.requests[1].messages[-1].content


async def test_a_syntax_error_in_real_code_gets_no_sentence_note() -> None:
    root = ScriptedModel([repl("for line in context.splitlines()\n    print(line)"), "FINAL(x)"])
    async with RLM(model=root) as rlm:
        await rlm.completion("text", "q")
    feedback = root.requests[1].messages[-1].content
    assert "SyntaxError" in feedback
    assert "holds a sentence" not in feedback


@pytest.mark.parametrize(
    "last_reply", [repl("print(len(context))"), "Let me think about it first."]
)
async def test_the_last_turn_is_one_user_message_that_never_asks_for_more_code(
    last_reply: str,
) -> None:
    # After the last turn the model was told "Turn 5 of 4 ... Write another code block" and,
    # in a second user message, "No more code will run".
    root = ScriptedModel([repl("print(1)"), last_reply, "FINAL(done)"])
    async with RLM(model=root, max_iterations=2) as rlm:
        result = await rlm.completion("text", "q")
    assert result.answer == "done"
    final_request = root.requests[-1].messages
    roles = [message.role for message in final_request]
    assert all(a != b for a, b in itertools.pairwise(roles)), roles
    last = final_request[-1].content
    assert "No more code will run" in last
    assert "Turn 3 of 2" not in last
    assert "Write another code block" not in last


async def test_the_output_a_model_expected_in_a_plain_fence_is_told_it_did_not_run() -> None:
    # Qwen2.5-Coder-1.5B's reply to the first prompt's example block, six turns running: the
    # output it expected, in a fence with no language word.
    invented = (
        "```\n492 characters\nThe quick brown fox jumps over the lazy dog. There are no "
        "specific city names mentioned in the provided context.\n```"
    )
    root = ScriptedModel([invented, "FINAL(x)"])
    async with RLM(model=root) as rlm:
        await rlm.completion("Tokyo: population 9", "Which city is largest?")
    feedback = root.requests[1].messages[-1].content
    assert "no word repl after its opening backticks, so nothing ran" in feedback
    assert "Do not write the output you expect" in feedback
    assert "```repl\n" in feedback  # with an example of a block that runs


async def test_a_huge_reply_is_read_without_stalling_the_loop() -> None:
    # 720 KB of empty fences stalled the loop 1.3 s (reading a reply costs ~2 µs a character);
    # this 1.2 MB one 3-4 s.
    huge = "```repl\n```\n" * 100_000
    root = ScriptedModel([huge, "FINAL(done)"])
    async with RLM(model=root) as rlm, loop_meter() as meter:
        result = await rlm.completion("text", "q")
    assert result.answer == "done"
    assert meter.longest_stall < 1.0, f"the loop stalled {meter.longest_stall:.2f} s"


async def test_a_flood_of_sub_calls_is_counted_not_kept_in_the_results_trajectory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 50,000 sub-calls in one cell kept 100,000 events on the result: +200 MiB and
    # second-long garbage collections. Past the cap they are counted; listeners see all.
    import rlm_async.engine._state

    monkeypatch.setattr(rlm_async.engine._state, "MAX_KEPT_EVENTS", 10)
    root = ScriptedModel([repl("print(len(llm_query_batched(['a'] * 20)))"), "FINAL(x)"])
    seen: list[ev.Event] = []
    sub = ScriptedModel(lambda request: "ok")
    async with RLM(model=root, sub_model=sub, on_event=seen.append) as rlm:
        result = await rlm.completion("text", "q")
    kept_subcalls = [e for e in result.trajectory if isinstance(e, ev.SubCallStarted)]
    all_subcalls = [e for e in seen if isinstance(e, ev.SubCallStarted)]
    assert len(all_subcalls) == 20
    assert len(kept_subcalls) < 20
    assert result.metadata["trajectory_dropped"] == len(seen) - len(result.trajectory)
    # The run's own events are always kept: its cells, its answer, its end.
    assert isinstance(result.trajectory[-1], ev.RunFinished)
    assert any(isinstance(e, ev.CellFinished) for e in result.trajectory)
