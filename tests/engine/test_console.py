"""The console view of ``enable_logging=True``: each event as a few readable lines, the
events of issues 15/16 included (a compaction, a rejected typed answer, cached sub-calls).

The renderer is fed events as data, and a run through the real child REPL prints to the
captured stderr."""

from __future__ import annotations

import io

import pytest

from rlm_async import RLM
from rlm_async import events as ev
from rlm_async.engine._console import ConsoleRenderer
from rlm_async.testing import ScriptedModel
from tests.helpers import repl

BASE = {"run_id": "r1", "depth": 0}


def rendered(*events: ev.Event) -> str:
    stream = io.StringIO()
    console = ConsoleRenderer(stream, colour=False)
    for event in events:
        console(event)
    return stream.getvalue()


def test_a_compaction_says_what_was_folded_and_shows_the_summary() -> None:
    text = rendered(
        ev.Compacted(
            **BASE,
            turn=5,
            model="openai:gpt-5",
            kept_turns=2,
            messages_before=9,
            messages_after=5,
            tokens_before=12_345,
            tokens_after=2_100,
            summary="x holds the total, 7 so far",
            latency=1.5,
        )
    )
    lines = text.splitlines()
    assert lines[0] == (
        "  ⇣ compacted before turn 5: 9 messages → 5, ~12,345 → ~2,100 tokens, "
        "last 2 turns kept (1.50 s)"
    )
    assert lines[1] == "    x holds the total, 7 so far"


def test_a_replayed_compaction_says_so() -> None:
    compacted = ev.Compacted(
        **BASE,
        turn=3,
        model="m",
        kept_turns=1,
        messages_before=5,
        messages_after=3,
        tokens_before=900,
        tokens_after=300,
        summary="s",
        replayed=True,
    )
    assert rendered(compacted).splitlines()[0].endswith("last turn kept (replayed)")


def test_a_rejected_answer_lists_its_errors_and_the_retries_left() -> None:
    errors = [
        {"loc": ["items", 0, "price"], "msg": "Input should be a valid number", "type": "x"},
        {"loc": [], "msg": "'total' is a required property", "type": "required"},
    ]
    text = rendered(
        ev.AnswerRejected(**BASE, turn=2, answer="{'items': []}", errors=errors, retries_left=1)
    )
    assert text.splitlines() == [
        "  ✗ answer rejected (1 more answer allowed):",
        "    items.0.price: Input should be a valid number",
        "    (the answer): 'total' is a required property",
        "    {'items': []}",
    ]
    last = rendered(ev.AnswerRejected(**BASE, turn=4, answer="a", errors=[], retries_left=0))
    assert last.splitlines()[0] == "  ✗ answer rejected (no retry left):"


def test_cached_sub_calls_are_counted_in_the_cells_summary() -> None:
    finished = [
        ev.SubCallFinished(
            **BASE, subcall=f"s{n}", turn=1, cell=1, model="m", ok=n != 3, answer="", cached=n < 2
        )
        for n in range(4)
    ]
    text = rendered(*finished, ev.CellFinished(**BASE, turn=1, cell=1, output="ok"))
    assert "    ↳ 4 sub-calls answered (2 from the cache), 1 failed" in text.splitlines()
    # Without hits the line is as it was.
    plain = rendered(finished[3], ev.CellFinished(**BASE, turn=1, cell=1, output="ok"))
    assert "    ↳ 1 sub-calls answered, 1 failed" in plain.splitlines()


async def test_enable_logging_prints_a_rejected_answer_and_cached_sub_calls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    code = "a, b = llm_query_batched(['same', 'same'])\nprint(a == b)"
    root = ScriptedModel([repl(code), "FINAL({'m': 1})", "FINAL({'n': 1})"], name="root")
    sub = ScriptedModel(["the answer"], name="sub")
    async with RLM(model=root, sub_model=sub, enable_logging=True) as rlm:
        result = await rlm.completion("ctx", "q", output_type=schema)
    assert result.output == {"n": 1}
    err = capsys.readouterr().err
    assert "↳ 2 sub-calls answered (1 from the cache)" in err
    assert "✗ answer rejected (2 more answers allowed):" in err  # output_retries=2
    assert "(the answer): 'n' is a required property" in err
