"""Resuming a session (``RLM.resume_session``) whose parent died: its finished completions
are replayed into one fresh REPL (the real child) from their trajectories, the completion it
stopped inside is resumed, and the conversation goes on. The scripted models' and the tool's
calls are counted: nothing recorded is asked again."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_async import RLM, ProviderResponseError, ResumeError
from rlm_async import events as ev
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import read_trajectory
from tests.helpers import repl

CONTEXT = ["acme", "bolt", "corp"]
FIRST = "How many customers, times the sub-model's number?"
SECOND = "And with the tool's bonus?"
THIRD = "What do you remember?"


class Bonus:
    """A tool that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def bonus(self, n: int) -> int:
        """A bonus for n."""
        self.calls += 1
        return n + 1


def tools_of(counter: Bonus) -> list[object]:
    def bonus(n: int) -> int:
        """A bonus for n."""
        return counter.bonus(n)

    return [bonus]


async def recorded_session(directory: Path, *, cut: bool) -> tuple[str, ScriptedModel]:
    """A session of one finished completion, then (``cut``) a second one its parent stopped
    inside (the root model fails at its second turn, after a cell with a tool call)."""
    replies = [
        repl("x = int(llm_query('a number, digits only')) * len(context)\nprint('x is', x)"),
        repl("FINAL(str(x))"),
    ]
    if cut:
        replies.append(repl("y = x + bonus(2)\nprint('y is', y)"))
    root = ScriptedModel(replies)
    bonus = Bonus()
    async with (
        RLM(
            model=root,
            sub_model=ScriptedModel(["7"]),
            tools=tools_of(bonus),
            trajectory_dir=directory,
        ) as rlm,
        rlm.session(CONTEXT) as chat,
    ):
        first = await chat.completion(FIRST)
        assert first.answer == "21"
        if cut:
            with pytest.raises(ProviderResponseError, match="ran out of replies"):
                await chat.completion(SECOND)
    assert bonus.calls == (1 if cut else 0)
    session = first.metadata["session"]
    headers = [read_trajectory(p).header for p in sorted(directory.glob("*.jsonl"))]
    assert [(h.session, h.session_turn) for h in headers] == [(session, 1)] + (
        [(session, 2)] if cut else []
    )
    return session, root


async def test_a_session_stopped_inside_its_second_completion_resumes(tmp_path: Path) -> None:
    first_dir = tmp_path / "first"
    session, _ = await recorded_session(first_dir, cut=True)
    (last,) = [p for p in first_dir.glob("*.jsonl") if read_trajectory(p).header.session_turn == 2]
    root = ScriptedModel(
        [
            repl("FINAL(str(y))"),  # the rest of the second completion
            repl("FINAL(f'{x} {y} {answer_1} {answer_2} | {query_1}')"),  # the third
        ]
    )
    sub = ScriptedModel([])  # any call of it fails: the recorded answer is used
    bonus = Bonus()
    events: list[ev.Event] = []
    again = tmp_path / "again"
    async with (
        RLM(
            model=root,
            sub_model=sub,
            tools=tools_of(bonus),
            trajectory_dir=again,
            on_event=events.append,
        ) as rlm,
        rlm.resume_session(last, context=CONTEXT) as chat,
    ):
        # Replayed: the first completion whole, the second up to where it stopped, then on.
        assert len(root.requests) == 1 and len(sub.requests) == 0 and bonus.calls == 0
        replayed_first, resumed_second = chat.resumed
        assert replayed_first.answer == "21" and resumed_second.answer == "24"
        assert replayed_first.metadata["resumed"]["replayed_turns"] == 2
        assert resumed_second.metadata["resumed"]["replayed_calls"] == 1
        assert chat.history == [(FIRST, "21"), (SECOND, "24")]
        third = await chat.completion(THIRD)
    assert third.answer == f"21 24 21 24 | {FIRST}"
    assert len(root.requests) == 2 and len(sub.requests) == 0 and bonus.calls == 0
    # The third completion's opening message summarises the two replayed ones.
    opening = root.requests[1].messages[0].content
    assert "This is completion 3 of a session" in opening and "answer_2: 24" in opening
    turns = [(e.turn, e.replayed) for e in events if isinstance(e, ev.TurnFinished)]
    assert turns == [(1, True), (2, True), (1, True), (2, False), (1, False)]
    # The resumed session is a session of its own, whose files link its completions again.
    headers = [read_trajectory(p).header for p in again.glob("*.jsonl")]
    assert sorted(h.session_turn or 0 for h in headers) == [1, 2, 3]
    assert {h.session for h in headers} == {chat.session_id} != {session}


async def test_a_session_found_by_its_id_resumes_after_its_finished_completion(
    tmp_path: Path,
) -> None:
    session, _ = await recorded_session(tmp_path, cut=False)
    (tmp_path / "notes.jsonl").write_text("not a trajectory\n", encoding="utf-8")  # skipped
    root = ScriptedModel([repl("FINAL(f'{x} from {query_1}')")])
    async with (
        RLM(model=root, sub_model=ScriptedModel([]), trajectory_dir=tmp_path) as rlm,
        rlm.resume_session(session, context=CONTEXT) as chat,
    ):
        assert len(root.requests) == 0  # the finished completion is replayed, not asked
        assert [r.answer for r in chat.resumed] == ["21"]
        second = await chat.completion(SECOND)
    assert second.answer == f"21 from {FIRST}"
    assert second.metadata["session_turn"] == 2


async def test_resuming_a_session_checks_the_context_and_the_file(tmp_path: Path) -> None:
    session, _ = await recorded_session(tmp_path / "s", cut=False)
    async with RLM(model=ScriptedModel([]), sub_model=ScriptedModel([])) as rlm:
        with pytest.raises(ResumeError, match="not the one recorded"):
            async with rlm.resume_session(next((tmp_path / "s").glob("*.jsonl")), context=["x"]):
                pass
        with pytest.raises(ResumeError, match="no trajectory_dir"):
            async with rlm.resume_session(session, context=CONTEXT):
                pass
    async with RLM(model=ScriptedModel([]), trajectory_dir=tmp_path / "s") as rlm:
        with pytest.raises(ResumeError, match="no trajectory of session 'nope'"):
            async with rlm.resume_session("nope", context=CONTEXT):
                pass
    single = tmp_path / "single"
    async with RLM(model=ScriptedModel([repl("FINAL('1')")]), trajectory_dir=single) as rlm:
        await rlm.completion(CONTEXT, FIRST)
    async with RLM(model=ScriptedModel([])) as rlm:
        with pytest.raises(ResumeError, match="not a session's completion"):
            async with rlm.resume_session(next(single.glob("*.jsonl")), context=CONTEXT):
                pass
