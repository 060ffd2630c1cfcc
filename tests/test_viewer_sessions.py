"""The viewer and the tree for sessions and resumed runs: which completion of which session a
trajectory is, and what a resume replayed (turns, cells, sub-calls, tool calls), as data and
in a real headless Chromium (see ``tests/test_viewer.py``)."""

from __future__ import annotations

from pathlib import Path

from rlm_async import RLM
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import read_trajectory
from rlm_async.trajectory._viewer import write_html
from tests.engine.test_session_resume import CONTEXT, Bonus, recorded_session, tools_of
from tests.helpers import repl
from tests.test_viewer import assert_rendered, dump_dom


async def resumed_session(tmp_path: Path) -> tuple[str, dict[int, Path]]:
    """A session stopped inside its second completion, resumed: the resumed session's
    files by completion number (the first replayed whole, the second resumed)."""
    await recorded_session(tmp_path / "first", cut=True)
    last = max((tmp_path / "first").glob("*.jsonl"))
    again = tmp_path / "again"
    async with (
        RLM(
            model=ScriptedModel([repl("FINAL(str(y))")]),
            sub_model=ScriptedModel([]),
            tools=tools_of(Bonus()),
            trajectory_dir=again,
        ) as rlm,
        rlm.resume_session(last, context=CONTEXT) as chat,
    ):
        assert [r.answer for r in chat.resumed] == ["21", "24"]
    files = {read_trajectory(p).header.session_turn or 0: p for p in again.glob("*.jsonl")}
    return chat.session_id, files


def rendered_app(dom: str) -> str:
    """The page as the script drew it (the DOM dump holds the script's own text too)."""
    assert_rendered(dom)
    return dom.split('<main id="app">', 1)[1].split("</main>", 1)[0]


async def test_the_tree_says_the_session_and_what_was_replayed(tmp_path: Path) -> None:
    session, files = await resumed_session(tmp_path)
    (first,) = read_trajectory(files[1]).tree()
    assert (first.session, first.session_turn) == (session, 1)
    assert [t.replayed for t in first.turns] == [True, True]
    assert all(cell.replayed for turn in first.turns for cell in turn.cells)
    assert [s.replayed for s in first.subcalls()] == [True]
    (second,) = read_trajectory(files[2]).tree()
    assert (second.session, second.session_turn) == (session, 2)
    assert [t.replayed for t in second.turns] == [True, False]  # the second turn is live
    assert [c.replayed for t in second.turns for c in t.cells] == [True, False]
    (call,) = second.turns[0].cells[0].tool_calls
    assert call.replayed and call.result == "3"


async def test_the_page_marks_session_turns_and_replayed_parts(tmp_path: Path) -> None:
    session, files = await resumed_session(tmp_path)
    dom = rendered_app(await dump_dom(write_html(files[2])))
    assert f"session {session} · completion 2 (query_2)" in dom  # the page's header
    assert "session turn 2" in dom and f"completion 2 of session {session}" in dom
    assert dom.count('data-replayed="turn"') == 1  # turn 1 replayed, turn 2 asked
    assert dom.count('data-replayed="cell"') == 1
    assert dom.count('data-replayed="toolcall"') == 1
    assert dom.count('data-replayed="subcall"') == 0
    dom = rendered_app(await dump_dom(write_html(files[1])))
    assert f"session {session} · completion 1 (query_1)" in dom
    assert dom.count('data-replayed="turn"') == 2 and dom.count('data-replayed="subcall"') == 1


async def test_a_plain_run_has_no_session_or_replayed_marks(tmp_path: Path) -> None:
    async with RLM(model=ScriptedModel([repl("FINAL('1')")]), trajectory_dir=tmp_path) as rlm:
        await rlm.completion(CONTEXT, "q")
    (path,) = tmp_path.glob("*.jsonl")
    dom = rendered_app(await dump_dom(write_html(path)))
    assert "data-replayed" not in dom and "data-session" not in dom and "session turn" not in dom
