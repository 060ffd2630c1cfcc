"""Prompt caching from the engine's side (issue 16): every root turn of a run asks for the
run's cache, one-off sub-calls do not, and cached input tokens are reported per turn and per
sub-call (events, trajectory tree, viewer). The real REPL child runs every cell."""

from __future__ import annotations

from pathlib import Path

from rlm_async import RLM
from rlm_async import events as ev
from rlm_async._types import Usage
from rlm_async.providers import CompletionRequest
from rlm_async.testing import MockReply, ScriptedModel
from rlm_async.trajectory import TrajectoryWriter
from rlm_async.trajectory._tree import build_tree
from rlm_async.trajectory._viewer import write_html
from tests.helpers import repl
from tests.test_viewer import assert_rendered, dump_dom

CELL = repl("print(llm_query('summarise: ' + context[:20]))")


def _root(request: CompletionRequest) -> MockReply:
    turn = sum(m.role == "assistant" for m in request.messages)
    # A warm cache from the second turn on: the previous turn's prompt was read back.
    usage = Usage(
        input_tokens=3000 + 500 * turn,
        output_tokens=40,
        cached_tokens=2900 + 500 * (turn - 1) if turn else 0,
        cache_write_tokens=100 if turn else 3000,
        cost_usd=0.001,
    )
    return MockReply(CELL if turn < 2 else "FINAL(done)", usage=usage)


def _sub(request: CompletionRequest) -> MockReply:
    return MockReply("a summary", usage=Usage(input_tokens=50, output_tokens=5, cached_tokens=20))


async def test_root_turns_share_the_run_key_and_report_their_cached_tokens(
    tmp_path: Path,
) -> None:
    root, sub = ScriptedModel(_root, name="root"), ScriptedModel(_sub, name="sub")
    path = tmp_path / "run.jsonl"
    with TrajectoryWriter(path) as writer:
        async with RLM(model=root, sub_model=sub, max_iterations=5, on_event=writer) as rlm:
            result = await rlm.completion("the context " * 20, "What is it about?")
    assert result.answer == "done"
    started = next(e for e in result.trajectory if isinstance(e, ev.RunStarted))
    assert [r.cache_key for r in root.requests] == [started.run_id] * 3
    assert sub.requests and all(r.cache_key is None for r in sub.requests)

    turns = [e for e in result.trajectory if isinstance(e, ev.TurnFinished)]
    assert [t.cached_tokens for t in turns] == [0, 2900, 3400]
    assert [t.cache_write_tokens for t in turns] == [3000, 100, 100]
    subcalls = [e for e in result.trajectory if isinstance(e, ev.SubCallFinished)]
    assert (subcalls[0].input_tokens, subcalls[0].cached_tokens) == (50, 20)
    assert result.usage.models[next(iter(result.usage.models))].cached_tokens == 6300

    (run,) = build_tree(result.trajectory)
    assert [t.cached_tokens for t in run.turns] == [0, 2900, 3400]
    assert run.totals().cached_tokens == 6300 + 20  # the paid sub-call's too

    dom = await dump_dom(write_html(path))
    assert_rendered(dom)
    assert "10,550 in (6,320 cached) / 125 out" in dom  # the run's tokens
    assert "3,500 in (2,900 cached) / 40 out" in dom  # turn 2's
