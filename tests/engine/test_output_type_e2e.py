"""Typed answers through the real child REPL: ``FINAL(dict)`` in code crosses the pipe as
JSON, ``FINAL({...})`` written in the reply is parsed, and a wrong answer is sent back."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest
from pydantic import BaseModel

from rlm_async import RLM, OutputValidationError
from rlm_async import events as ev
from rlm_async.repl import ReplOptions
from rlm_async.repl._sandbox_options import SandboxOptions
from rlm_async.testing import ScriptedModel
from tests.helpers import repl
from tests.loop_meter import loop_meter

INVOICES = "invoice A-7 total 12.50\ninvoice B-9 total 3.25\n"


class Invoice(BaseModel):
    number: str
    total: float


@dataclasses.dataclass
class Line:
    number: str
    total: float


PARSE = (
    "rows = [line.split() for line in context.splitlines()]\n"
    "found = [{'number': r[1], 'total': float(r[3])} for r in rows]\n"
)


async def test_final_of_a_dict_in_code_is_validated_as_the_model() -> None:
    root = ScriptedModel([repl(PARSE + "FINAL(found[0])")])
    seen: list[ev.Event] = []
    async with RLM(model=root, on_event=seen.append) as rlm:
        result = await rlm.completion(INVOICES, "The first invoice?", output_type=Invoice)
    assert result.output == Invoice(number="A-7", total=12.5)
    assert result.answer == '{"number": "A-7", "total": 12.5}'  # the text is the JSON
    assert result.metadata["answer_source"] == "code"
    cell = next(e for e in seen if isinstance(e, ev.CellFinished))
    assert cell.final == result.answer


async def test_final_var_of_a_list_of_dicts_is_a_list_of_dataclasses() -> None:
    root = ScriptedModel([repl(PARSE) + "\nFINAL_VAR(found)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion(INVOICES, "Every invoice?", output_type=list[Line])
    assert result.output == [Line("A-7", 12.5), Line("B-9", 3.25)]


async def test_final_of_json_text_in_the_reply_is_parsed() -> None:
    root = ScriptedModel(
        [repl(PARSE + "print(found[1])"), 'FINAL({"number": "B-9", "total": 3.25})']
    )
    async with RLM(model=root) as rlm:
        result = await rlm.completion(INVOICES, "The second invoice?", output_type=Invoice)
    assert result.output == Invoice(number="B-9", total=3.25)
    assert result.metadata["answer_source"] == "text"


async def test_a_wrong_dict_is_sent_back_and_the_fixed_one_taken() -> None:
    root = ScriptedModel(
        [
            repl(PARSE + "FINAL({'number': found[0]['number']})"),
            repl("FINAL(found[0])"),
        ]
    )
    async with RLM(model=root) as rlm:
        result = await rlm.completion(INVOICES, "The first invoice?", output_type=Invoice)
    assert result.output == Invoice(number="A-7", total=12.5)
    assert result.iterations == 2
    feedback = root.requests[1].messages[-1].content
    assert "did not match Invoice" in feedback and "- total: Field required" in feedback


async def test_a_dict_that_is_not_json_says_why_in_the_cell_output() -> None:
    root = ScriptedModel(
        [
            repl("FINAL({'number': 'A-7', 'total': {12.5}})"),
            repl("FINAL({'number': 'A-7', 'total': 12.5})"),
        ]
    )
    async with RLM(model=root) as rlm:
        result = await rlm.completion(INVOICES, "q", output_type=Invoice)
    assert result.output == Invoice(number="A-7", total=12.5)
    feedback = root.requests[1].messages[-1].content
    assert "not JSON-serialisable" in feedback and "did not match Invoice" in feedback


async def test_answers_that_never_match_raise_with_the_last_one() -> None:
    root = ScriptedModel([repl("FINAL({'number': 1})"), repl("FINAL({'number': 2})")])
    async with RLM(model=root, options={"output_retries": 1}) as rlm:
        with pytest.raises(OutputValidationError) as caught:
            await rlm.completion(INVOICES, "q", output_type=Invoice)
    assert caught.value.last_attempt == '{"number": 2}'
    assert [e["loc"] for e in caught.value.errors] == [["number"], ["total"]]


async def test_without_an_output_type_a_dict_answer_is_its_json_text() -> None:
    root = ScriptedModel([repl("FINAL({'a': [1, 'é']})")])
    async with RLM(model=root) as rlm:
        result = await rlm.completion("c", "q")
    assert result.answer == '{"a": [1, "é"]}'
    assert result.output is None


async def test_a_session_completion_takes_an_output_type() -> None:
    root = ScriptedModel([repl(PARSE + "FINAL(found[1])"), "FINAL(plain text)"])
    async with RLM(model=root) as rlm, rlm.session(INVOICES) as chat:
        typed = await chat.completion("The second invoice?", output_type=Invoice)
        plain = await chat.completion("And in words?")
    assert typed.output == Invoice(number="B-9", total=3.25)
    assert plain.output is None and plain.answer == "plain text"


async def test_stream_records_the_validated_output_on_the_final_answer_event() -> None:
    root = ScriptedModel([repl(PARSE + "FINAL(found[0])")])
    async with RLM(model=root) as rlm:
        events = [e async for e in rlm.stream(INVOICES, "q", output_type=Invoice)]
    final = next(e for e in events if isinstance(e, ev.FinalAnswer))
    assert final.output == {"number": "A-7", "total": 12.5}


def test_completion_sync_takes_an_output_type() -> None:
    root = ScriptedModel([repl(PARSE + "FINAL(found[1])")])
    result = RLM(model=root).completion_sync(INVOICES, "q", output_type=Invoice)
    assert result.output == Invoice(number="B-9", total=3.25)


ROWS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["name", "n"],
    },
}


@pytest.mark.parametrize("bwrap", ["auto", "never"])
async def test_a_1_mb_answer_is_checked_without_stalling_the_loop(
    bwrap: Literal["auto", "never"],
) -> None:
    # jsonschema reads ~1 MB a second: checked on the loop, this 0.9 MB answer held it ~0.6 s.
    rows = "rows = [{'name': 'x' * 10, 'n': i} for i in range(25_000)]\n"
    root = ScriptedModel([repl(rows + "FINAL(rows)")])
    options = ReplOptions(sandbox=SandboxOptions(bwrap=bwrap))
    async with RLM(model=root, repl=options) as rlm, loop_meter() as meter:
        result = await rlm.completion("c", "q", output_type=ROWS_SCHEMA)
    assert len(result.output) == 25_000 and result.output[-1] == {"name": "x" * 10, "n": 24_999}
    assert meter.longest_stall < 0.5, f"the loop stalled {meter.longest_stall:.2f} s"


async def test_an_answer_wrong_everywhere_keeps_100_errors_and_says_there_are_more() -> None:
    # 60,000 wrong rows: every error was found and kept (2 s on the loop, 120,000 errors).
    rows = "rows = [{'name': 1} for i in range(60_000)]\n"
    for output_type in (ROWS_SCHEMA, list[Line]):
        root = ScriptedModel([repl(rows + "FINAL(rows)")])
        seen: list[ev.Event] = []
        async with RLM(model=root, on_event=seen.append, options={"output_retries": 0}) as rlm:
            with pytest.raises(OutputValidationError) as caught:
                await rlm.completion("c", "q", output_type=output_type)
        errors = caught.value.errors
        assert len(errors) == 101 and errors[-1]["type"] == "too_many_errors"
        assert "- ... and more" in str(caught.value)
        rejected = next(e for e in seen if isinstance(e, ev.AnswerRejected))
        assert len(rejected.errors) == 50
