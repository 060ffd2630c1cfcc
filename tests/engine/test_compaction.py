"""Compaction of a root conversation that outgrows its model's window (issue 15), and
``ContextWindowExceeded`` when even the compacted one would not fit (issue 16).

The run loop in-process (a scripted model, a fake REPL; see ``test_run_loop``), with the
windows sized from a probe run: the conversation's size at each turn is measured first
(with compaction off), so the tests do not hang on the system prompt's exact length.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from rlm_async import ContextWindowExceeded, RLMOptions
from rlm_async import events as ev
from rlm_async._types import Message
from rlm_async.engine._compaction import conversation_tokens
from rlm_async.engine._resources import EngineResources
from rlm_async.engine._routes import ModelRoutes
from rlm_async.engine._run import run_rlm
from rlm_async.engine._state import CompletionState
from rlm_async.providers import ProviderRegistry
from rlm_async.providers._base import CompletionRequest
from rlm_async.providers._windows import ContextWindows
from rlm_async.repl import CellResult
from rlm_async.testing import ScriptedModel
from tests.engine.test_run_loop import FakeRepl
from tests.helpers import repl

ASKED = "will be replaced by a summary"  # in the request that asks for the summary
REPLY_TOKENS = 500  # max_tokens of the runs: the window's room for the reply


def is_summary_call(request: CompletionRequest) -> bool:
    return ASKED in request.messages[-1].content


def script(turns: int, *, summary: str = "SUMMARY: x holds the total, 7 so far") -> ScriptedModel:
    """``print(1)``, ``print(2)``... for ``turns`` turns, then ``FINAL(done)``; a request
    asking for a summary gets ``summary``."""
    replies = iter([*(repl(f"print({n})") for n in range(1, turns + 1)), "FINAL(done)"])

    def reply(request: CompletionRequest) -> str:
        return summary if is_summary_call(request) else next(replies)

    return ScriptedModel(reply)


def fake_repl(output: str = "o" * 1200) -> FakeRepl:
    async def cell(fake: FakeRepl, code: str) -> CellResult:
        return CellResult(cell=1, stdout=output)

    return FakeRepl(cell)


async def run(
    root: ScriptedModel,
    fake: FakeRepl,
    *,
    query: str = "the query",
    window: int | None = None,
    events: list[ev.Event] | None = None,
    **options: Any,
) -> Any:
    registry = ProviderRegistry()
    windows = ContextWindows(None if window is None else {"scripted": window})
    shared = CompletionState(
        options=RLMOptions(max_tokens=REPLY_TOKENS, **options),
        models=ModelRoutes.resolve(registry, root, None, (), ()),
        resources=EngineResources(providers=registry, windows=windows, repl_factory=fake),
        emit=(events if events is not None else []).append,
    )
    with anyio.fail_after(10):
        return await run_rlm(shared, "the context", query)


async def sizes(turns: int, *, query: str = "the query", output: str = "o" * 1200) -> list[int]:
    """The conversation's tokens at each root turn of an uncompacted run."""
    root = script(turns)
    await run(root, fake_repl(output), query=query, compact_at=None)
    return [conversation_tokens(r.system or "", r.messages) for r in root.requests]


def window_for(room: int) -> int:
    """The window whose room for a prompt (less the reply's) is ``room`` tokens."""
    return room + REPLY_TOKENS


def texts(messages: list[Message]) -> str:
    return "\n".join(m.content for m in messages)


async def test_a_conversation_past_the_threshold_is_folded_into_the_models_summary() -> None:
    size = await sizes(6)
    # The default threshold (0.75 of the room) falls between turn 4's size and turn 5's.
    threshold = (size[3] + size[4]) // 2
    root, events = script(6), []
    result = await run(root, fake_repl(), window=window_for(threshold * 4 // 3), events=events)
    assert result.answer == "done"

    compactions = [e for e in events if isinstance(e, ev.Compacted)]
    assert [e.turn for e in compactions] == [5]
    compacted = compactions[0]
    assert compacted.summary == "SUMMARY: x holds the total, 7 so far"
    assert compacted.tokens_before == size[4] > threshold >= compacted.tokens_after
    assert compacted.messages_after < compacted.messages_before
    # It comes before turn 5 starts, and is paid for like a root turn.
    order = [(type(e).__name__, getattr(e, "turn", None)) for e in events]
    assert order.index(("Compacted", 5)) == order.index(("TurnStarted", 5)) - 1
    assert compacted.input_tokens > 0 and compacted.output_tokens > 0
    assert result.usage.calls == len(root.requests) == 7 + 1  # 7 turns, 1 summary

    asked = next(r for r in root.requests if is_summary_call(r))
    turn_5 = root.requests[root.requests.index(asked) + 1]
    assert asked.system == turn_5.system  # the same prefix as the turns before
    assert "print(1)" in texts(asked.messages)  # the folded turns are what it summarises
    # Turn 5's request: the query, the summary and the kept turn(s); turn 1 is gone.
    first = turn_5.messages[0].content
    assert "the query" in first
    assert "[Earlier turns were compacted: SUMMARY: x holds the total, 7 so far]" in first
    assert "still in the REPL" in first
    assert "print(1)" not in texts(turn_5.messages)
    assert "print(4)" in texts(turn_5.messages)  # the last turn is kept word for word
    assert len(turn_5.messages) == compacted.messages_after
    assert [m.role for m in turn_5.messages[:2]] == ["user", "assistant"]


async def test_compacting_again_summarises_the_earlier_summary_too() -> None:
    size = await sizes(8)
    threshold = (size[3] + size[4]) // 2
    root, events = script(8), []
    await run(root, fake_repl(), window=window_for(threshold * 4 // 3), events=events)
    compactions = [e for e in events if isinstance(e, ev.Compacted)]
    assert len(compactions) >= 2
    second_ask = [r for r in root.requests if is_summary_call(r)][1]
    assert "[Earlier turns were compacted:" in second_ask.messages[0].content
    last = root.requests[-1].messages[0].content
    assert last.count("[Earlier turns were compacted:") == 1  # replaced, not stacked


async def test_with_compaction_off_a_conversation_too_big_raises_context_window_exceeded() -> None:
    size = await sizes(6)
    room = (size[3] + size[4]) // 2
    root, events = script(6), []
    with pytest.raises(ContextWindowExceeded) as raised:
        await run(root, fake_repl(), window=window_for(room), events=events, compact_at=None)
    message = str(raised.value)
    # What the message tells to do works on RLM(...) too, where compact_at=None is the default.
    assert "compaction is off (compact_at=0)" in message and "None" not in message
    assert "context_windows" in message and "bigger window" in message
    assert f"{size[4]:,} tokens" in message and f"{room:,}" in message
    assert raised.value.model == "scripted" and raised.value.limit == room
    assert len(root.requests) == 4  # turn 5 was never sent
    assert not any(isinstance(e, ev.Compacted) for e in events)
    assert isinstance(events[-1], ev.RunFailed)
    assert events[-1].error_type == "ContextWindowExceeded"


async def test_compaction_off_sends_what_fits_unchanged() -> None:
    root = script(6)
    result = await run(root, fake_repl(), window=400_000, compact_at=None)
    assert result.answer == "done"
    assert all(not is_summary_call(r) for r in root.requests)
    assert "print(1)" in texts(root.requests[-1].messages)


async def test_a_window_the_table_does_not_know_is_never_compacted_on_a_guess() -> None:
    root = script(6)
    result = await run(root, fake_repl("o" * 20_000))  # far past 0.75 of the 8,192 guessed
    assert result.answer == "done"
    assert all(not is_summary_call(r) for r in root.requests)


async def test_compact_at_in_tokens_works_for_any_window() -> None:
    size = await sizes(6)
    root, events = script(6), []
    await run(root, fake_repl(), events=events, compact_at=(size[3] + size[4]) // 2)
    assert [e.turn for e in events if isinstance(e, ev.Compacted)] == [5]


async def test_a_conversation_that_does_not_fit_even_compacted_raises() -> None:
    # A long query: what is left after compaction (the query, the summary, the last turn)
    # is past the room of a window that held turn 2.
    query = "q" * 20_000
    size = await sizes(4, query=query, output="o" * 200)
    room = size[1] + 5
    root, events = script(4, summary="s" * 3_000), []
    with pytest.raises(ContextWindowExceeded) as raised:
        await run(root, fake_repl("o" * 200), query=query, window=window_for(room), events=events)
    assert "even after its earlier turns were compacted" in str(raised.value)
    assert [e.turn for e in events if isinstance(e, ev.Compacted)] == [3]
    assert raised.value.tokens > room


async def test_a_first_message_alone_too_big_raises_before_any_call() -> None:
    size = await sizes(1, query="q" * 20_000)
    root = script(1)
    with pytest.raises(ContextWindowExceeded) as raised:
        await run(root, fake_repl(), query="q" * 20_000, window=window_for(size[0] - 10))
    assert "no earlier turns to compact" in str(raised.value)
    assert root.requests == []


@pytest.mark.parametrize("value", [1, 50, 1.5, -0.5, True, "half"])
def test_compact_at_refuses_values_that_are_neither_a_fraction_nor_tokens(value: object) -> None:
    from rlm_async import ConfigurationError

    with pytest.raises(ConfigurationError, match="compact_at"):
        RLMOptions().merged({"compact_at": value})


@pytest.mark.parametrize(("value", "read"), [(0, None), (None, None), (0.5, 0.5), (5000, 5000)])
def test_compact_at_reads_off_fractions_and_tokens(value: object, read: object) -> None:
    assert RLMOptions().merged({"compact_at": value}).compact_at == read


async def test_the_summary_calls_usage_is_recorded_with_its_cached_prefix() -> None:
    from rlm_async import Usage
    from rlm_async.testing import MockReply
    from rlm_async.trajectory import build_tree

    size = await sizes(6)
    replies = iter([*(repl(f"print({n})") for n in range(1, 7)), "FINAL(done)"])
    paid = Usage(input_tokens=3_000, cached_tokens=2_700, output_tokens=40)

    def reply(request: CompletionRequest) -> str | MockReply:
        return MockReply(text="SUMMARY", usage=paid) if is_summary_call(request) else next(replies)

    events: list[ev.Event] = []
    threshold = (size[3] + size[4]) // 2
    result = await run(
        ScriptedModel(reply), fake_repl(), window=window_for(threshold * 4 // 3), events=events
    )
    (compacted,) = [e for e in events if isinstance(e, ev.Compacted)]
    assert (compacted.input_tokens, compacted.cached_tokens) == (3_000, 2_700)
    assert result.usage.models["scripted"].cached_tokens == 2_700
    (tree,) = build_tree(events)
    assert tree.turns[4].compaction is not None
    assert tree.totals().cached_tokens == 2_700 and tree.totals().calls == 8
