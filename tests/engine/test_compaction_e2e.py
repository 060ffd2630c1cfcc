"""Compaction end to end: ``RLM(...)`` over the real child REPL with a scripted root model,
its trajectory file, the viewer in headless Chromium, and a resume that replays a recorded
compaction with no model call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlm_async import RLM, ProviderResponseError
from rlm_async import events as ev
from rlm_async.engine._compaction import conversation_tokens
from rlm_async.providers import CompletionRequest
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import read_trajectory
from rlm_async.trajectory._viewer import write_html
from tests.test_viewer import assert_rendered, dump_dom

CONTEXT = "a context the model never needs to read"
QUERY = "What is x + 1?"
SUMMARY = "SUMMARY: x holds 41 (set in turn 1); since then only padding was printed."
ASKED = "will be replaced by a summary"
REPLY_TOKENS = 500
PAD = "print('o' * 1200)"


def cell(code: str) -> str:
    return f"```repl\n{code}\n```"


def is_summary_call(request: CompletionRequest) -> bool:
    return ASKED in request.messages[-1].content


def root_model(replies: list[str]) -> ScriptedModel:
    """``replies`` in order for the turns, ``SUMMARY`` when asked for a summary; a turn past
    the replies fails as a provider would (the run stops there)."""
    turns = iter(replies)

    def reply(request: CompletionRequest) -> str:
        if is_summary_call(request):
            return SUMMARY
        try:
            return next(turns)
        except StopIteration:
            raise ProviderResponseError("out of replies", provider="scripted") from None

    return ScriptedModel(reply)


TURNS = [cell(f"x = 41\n{PAD}"), *(cell(PAD) for _ in range(4)), cell("FINAL(str(x + 1))")]


async def threshold_between_turns_4_and_5(tmp_path: Path) -> int:
    """Run the script uncompacted and measure: the tokens between turn 4's conversation
    and turn 5's (the system prompt's length is not hard-coded here)."""
    probe = root_model(TURNS)
    async with RLM(model=probe, max_tokens=REPLY_TOKENS, compact_at=0) as rlm:
        result = await rlm.completion(CONTEXT, QUERY)
    assert result.answer == "42"
    size = [conversation_tokens(r.system or "", r.messages) for r in probe.requests]
    return (size[3] + size[4]) // 2


def options(threshold: int, trajectory_dir: Path) -> dict[str, Any]:
    """A window whose default threshold (0.75 of its room for a prompt) is ``threshold``."""
    window = threshold * 4 // 3 + REPLY_TOKENS
    return {
        "max_tokens": REPLY_TOKENS,
        "context_windows": {"scripted": window},
        "trajectory_dir": trajectory_dir,
    }


def compactions(events: list[ev.Event]) -> list[ev.Compacted]:
    return [e for e in events if isinstance(e, ev.Compacted)]


async def test_a_long_run_is_compacted_and_still_answers_from_its_repl(tmp_path: Path) -> None:
    threshold = await threshold_between_turns_4_and_5(tmp_path)
    root = root_model(TURNS)
    async with RLM(model=root, **options(threshold, tmp_path)) as rlm:
        result = await rlm.completion(CONTEXT, QUERY)

    # x was set in a turn that was folded away: the REPL still has it.
    assert result.answer == "42"
    (compacted,) = compactions(result.trajectory)
    assert compacted.turn == 5 and compacted.summary == SUMMARY
    assert compacted.tokens_after < threshold < compacted.tokens_before
    after = root.requests[[is_summary_call(r) for r in root.requests].index(True) + 1]
    assert "x = 41" not in "\n".join(m.content for m in after.messages)
    assert f"[Earlier turns were compacted: {SUMMARY}]" in after.messages[0].content
    assert result.usage.calls == len(root.requests) == 7  # 6 turns and the summary

    # The trajectory file records it, the tree hangs it on turn 5, the viewer shows it.
    path = Path(result.metadata["trajectory_path"])
    trajectory = read_trajectory(path)
    assert compactions(trajectory.events) == [compacted]
    (run,) = trajectory.tree()
    assert run.turns[4].compaction is not None
    assert run.turns[4].compaction["summary"] == SUMMARY
    assert run.totals().calls == 7
    dom = await dump_dom(write_html(path))
    assert_rendered(dom)
    assert dom.count(">compacted<") == 1
    assert "Earlier turns compacted" in dom and SUMMARY in dom


async def test_a_resumed_run_compacts_where_it_did_with_the_recorded_summary(
    tmp_path: Path,
) -> None:
    threshold = await threshold_between_turns_4_and_5(tmp_path)
    first = root_model(TURNS[:5])  # stops at turn 6, after the compaction before turn 5
    async with RLM(model=first, **options(threshold, tmp_path / "first")) as rlm:
        with pytest.raises(ProviderResponseError, match="out of replies"):
            await rlm.completion(CONTEXT, QUERY)
    (path,) = (tmp_path / "first").glob("*.jsonl")
    recorded = read_trajectory(path).events
    (summary_call,) = compactions(recorded)

    again = root_model(TURNS[5:])
    seen: list[ev.Event] = []
    async with RLM(model=again, on_event=seen.append, **options(threshold, tmp_path)) as rlm:
        result = await rlm.resume(path, context=CONTEXT)

    assert result.answer == "42"
    assert len(again.requests) == 1 and not is_summary_call(again.requests[0])  # no new call
    (replayed,) = compactions(seen)
    assert replayed.replayed and replayed.turn == 5 and replayed.summary == SUMMARY
    assert replayed.input_tokens == 0 and replayed.messages_after == summary_call.messages_after
    # Turn 6 is sent the conversation the recorded run had: compacted, with its summary.
    messages = again.requests[0].messages
    assert f"[Earlier turns were compacted: {SUMMARY}]" in messages[0].content
    assert "x = 41" not in "\n".join(m.content for m in messages)
    paid = [e for e in recorded if isinstance(e, ev.TurnFinished | ev.Compacted)]
    replayed_usage = result.metadata["resumed"]["replayed_usage"]
    assert replayed_usage["input_tokens"] == sum(e.input_tokens for e in paid)


SESSION_TURNS = [
    cell("x = 41\nFINAL('x is set')"),  # the session's first completion
    *(cell(PAD) for _ in range(4)),
    cell("FINAL(str(x + 1))"),
]


async def session_run(model: ScriptedModel, **settings: Any) -> tuple[str, str]:
    rlm = RLM(model=model, max_tokens=REPLY_TOKENS, **settings)
    async with rlm, rlm.session(CONTEXT) as chat:
        first = await chat.completion("Set x to 41.")
        second = await chat.completion(QUERY)
    return first.answer, second.answer


async def test_a_session_completion_is_compacted_and_keeps_the_session_so_far() -> None:
    probe = root_model(SESSION_TURNS)
    assert await session_run(probe, compact_at=0) == ("x is set", "42")
    size = [conversation_tokens(r.system or "", r.messages) for r in probe.requests[1:]]

    root, seen = root_model(SESSION_TURNS), []
    threshold = (size[2] + size[3]) // 2  # between the second completion's turns 3 and 4
    answers = await session_run(root, compact_at=threshold, on_event=seen.append)
    assert answers == ("x is set", "42")  # x from the first completion, after compaction
    (compacted,) = compactions(seen)
    assert compacted.turn == 4
    after = root.requests[[is_summary_call(r) for r in root.requests].index(True) + 1]
    first_message = after.messages[0].content
    # The session's note (its earlier query and answer) and the query stay; turn 1 goes.
    assert "Set x to 41." in first_message and QUERY in first_message
    assert f"[Earlier turns were compacted: {SUMMARY}]" in first_message
    replies = [m for m in after.messages if m.role == "assistant"]
    assert len(replies) == compacted.kept_turns < 3  # of the 3 turns before turn 4
