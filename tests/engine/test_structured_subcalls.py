"""``llm_query(prompt, schema=...)`` end to end: the real child, a scripted sub-model that
sees the request (its ``response_schema``), the reply checked in the parent, the value used
in model code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from rlm_async import RLM, ProviderResponseError
from rlm_async import events as ev
from rlm_async.providers import CompletionRequest
from rlm_async.repl import ReplOptions
from rlm_async.repl._sandbox_options import SandboxOptions
from rlm_async.testing import MockReply, ScriptedModel
from rlm_async.trajectory import build_tree
from tests.helpers import repl
from tests.loop_meter import loop_meter

# Model code is hostile: its attacks on the parent run with bubblewrap and without.
Bwrap = Literal["auto", "never"]

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


async def _run(code: str, sub: ScriptedModel, bwrap: Bwrap = "auto") -> tuple[str, list[ev.Event]]:
    """Run one cell of model code; what it printed (as the root model saw it), and the events."""
    root = ScriptedModel([repl(code), "FINAL(done)"], name="root")
    seen: list[ev.Event] = []
    options = ReplOptions(sandbox=SandboxOptions(bwrap=bwrap))
    async with RLM(model=root, sub_model=sub, on_event=seen.append, repl=options) as rlm:
        await rlm.completion("the context", "q")
    return root.requests[1].messages[-1].content, seen


def _finished(seen: list[ev.Event]) -> list[ev.SubCallFinished]:
    return [e for e in seen if isinstance(e, ev.SubCallFinished)]


async def test_llm_query_with_a_type_spec_returns_a_dict_model_code_can_use() -> None:
    sub = ScriptedModel(['{"name": "Ada", "age": 36}'], name="sub")
    code = (
        'p = llm_query("Who is in this text?", schema={"name": str, "age": int})\n'
        "print(type(p).__name__, p['age'] + 1)"
    )
    output, seen = await _run(code, sub)
    assert "dict 37" in output
    # The provider was asked for the schema (its native structured-output mode).
    assert sub.requests[0].response_schema == PERSON
    (finished,) = _finished(seen)
    assert finished.ok and finished.structured
    assert json.loads(finished.answer) == {"name": "Ada", "age": 36}


async def test_a_reply_wrapped_in_prose_and_a_json_fence_is_parsed() -> None:
    reply = 'Sure, here it is:\n```json\n{"name": "Ada", "age": 36}\n```\nAnything else?'
    sub = ScriptedModel([reply], name="sub")
    code = 'p = llm_query("Who?", schema=PERSON)\nprint(p == {"name": "Ada", "age": 36})'
    output, _ = await _run(f"PERSON = {PERSON!r}\n{code}", sub)
    assert "True" in output
    assert len(sub.requests) == 1  # parsed as it was: no second try


async def test_a_reply_that_does_not_match_is_asked_again_once_told_what_was_wrong() -> None:
    sub = ScriptedModel(['{"name": "Ada"}', '{"name": "Ada", "age": 36}'], name="sub")
    code = 'p = llm_query("Who?", schema={"name": str, "age": int})\nprint(p["age"])'
    output, seen = await _run(code, sub)
    assert "36" in output
    retry = sub.requests[1]
    assert [m.role for m in retry.messages] == ["user", "assistant", "user"]
    assert retry.messages[1].content == '{"name": "Ada"}'
    assert "'age' is a required property" in retry.messages[2].content
    assert retry.response_schema == PERSON
    (finished,) = _finished(seen)
    assert finished.ok and finished.structured


async def test_a_reply_that_never_matches_is_an_error_string_and_both_calls_are_counted() -> None:
    sub = ScriptedModel(
        [
            MockReply(text="Ada, 36 years old", usage=None),
            MockReply(text='{"name": "Ada", "age": "36"}', usage=None),
        ],
        name="sub",
    )
    code = (
        'p = llm_query("Who?", schema={"name": str, "age": int})\nprint(isinstance(p, str), p[:60])'
    )
    root = ScriptedModel([repl(code), "FINAL(done)"], name="root")
    seen: list[ev.Event] = []
    async with RLM(model=root, sub_model=sub, on_event=seen.append) as rlm:
        result = await rlm.completion("the context", "q")
    output = root.requests[1].messages[-1].content
    assert "True Error: the sub-model's reply did not match the schema" in output
    assert result.usage["sub"].calls == 2
    (finished,) = _finished(seen)
    assert not finished.ok and finished.structured
    assert "'36' is not of type 'integer'" in finished.answer
    # The event carries both calls' tokens, and the trajectory's totals (the viewer's) count
    # them: paid for, though no answer came of them.
    assert finished.input_tokens == result.usage["sub"].input_tokens > 0
    [run] = build_tree(seen)
    paid = sum(usage.input_tokens for usage in result.usage.models.values())
    assert run.totals().input_tokens == paid


async def test_llm_query_batched_with_a_schema_parses_each_answer_and_fails_items_alone() -> None:
    def reply(request: CompletionRequest) -> str:
        prompt = request.messages[0].content
        if prompt == "bad":
            return "no numbers here"
        return json.dumps([int(n) for n in prompt.split()])

    sub = ScriptedModel(reply, name="sub")
    code = (
        'out = llm_query_batched(["1 2", "bad", "3"], schema=list[int])\n'
        "print(out[0], out[2], sum(out[0]), out[1][:6])"
    )
    output, seen = await _run(code, sub)
    assert "[1, 2] [3] 3 Error:" in output
    assert all(
        r.response_schema == {"type": "array", "items": {"type": "integer"}} for r in sub.requests
    )
    assert len(sub.requests) == 4  # "bad" was asked twice
    assert sorted(e.ok for e in _finished(seen)) == [False, True, True]


async def test_allm_query_takes_a_schema_too() -> None:
    sub = ScriptedModel(['["a", "b"]'], name="sub")
    code = (
        'import asyncio\nr = await asyncio.gather(allm_query("x", schema=[str]))\nprint("got", r)'
    )
    output, _ = await _run(code, sub)
    assert "got [['a', 'b']]" in output


async def test_an_invalid_json_schema_is_an_error_item_and_nothing_is_sent() -> None:
    sub = ScriptedModel([], name="sub")
    code = 'p = llm_query("Who?", schema={"type": "strin"})\nprint(p[:50])'
    output, seen = await _run(code, sub)
    assert "Error: the schema is not a valid JSON schema" in output
    assert sub.requests == [] and _finished(seen) == []


@pytest.mark.parametrize("bwrap", ["auto", "never"])
async def test_a_big_schema_is_checked_off_the_event_loop(bwrap: Bwrap) -> None:
    # jsonschema checks a schema against its metaschema at ~0.2 ms a property: the 8,000 of
    # this one (model code may build them) held the loop ~1.5 s, every other run with it.
    sub = ScriptedModel(['{"p0": "a"}'], name="sub")
    code = (
        "big = {'type': 'object', 'properties': {f'p{i}': {'type': 'string'} "
        "for i in range(8000)}}\np = llm_query('Fill it', schema=big)\nprint('got', p)"
    )
    async with loop_meter() as meter:
        output, _ = await _run(code, sub, bwrap)
    assert "got {'p0': 'a'}" in output
    assert meter.longest_stall < 0.5, f"the loop stalled {meter.longest_stall:.2f} s"


@pytest.mark.parametrize("bwrap", ["auto", "never"])
async def test_a_spec_that_is_no_schema_is_a_type_error_in_the_cell(bwrap: Bwrap) -> None:
    sub = ScriptedModel([], name="sub")
    output, _ = await _run('llm_query("Who?", schema={"name": "string"})', sub, bwrap)
    assert "TypeError: llm_query(schema=...)" in output
    assert sub.requests == []


async def test_without_a_schema_the_answer_is_text_and_no_schema_is_asked_for() -> None:
    sub = ScriptedModel(['{"name": "Ada"}'], name="sub")
    output, seen = await _run('p = llm_query("Who?")\nprint(type(p).__name__)', sub)
    assert "str" in output
    assert sub.requests[0].response_schema is None
    assert not _finished(seen)[0].structured


async def test_a_resumed_run_answers_a_structured_sub_call_from_the_record_as_a_value(
    tmp_path: Path,
) -> None:
    code = 'p = llm_query("Who?", schema={"name": str, "age": int})\nprint("age", p["age"])'
    root = ScriptedModel([repl(code)], name="root")  # then runs out: the run stops
    sub = ScriptedModel(['Here:\n```json\n{"name": "Ada", "age": 36}\n```'], name="sub")
    async with RLM(model=root, sub_model=sub, trajectory_dir=tmp_path / "first") as rlm:
        with pytest.raises(ProviderResponseError, match="ran out of replies"):
            await rlm.completion("the context", "q")
    (path,) = (tmp_path / "first").glob("*.jsonl")

    code = 'print("resumed", p["age"] + 1, type(p).__name__)'
    root = ScriptedModel([repl(code), "FINAL(done)"], name="root")
    sub = ScriptedModel([], name="sub")  # never asked again
    async with RLM(model=root, sub_model=sub) as rlm:
        await rlm.resume(path, context="the context")
    assert sub.requests == []
    assert "age 36" in "\n".join(m.content for m in root.requests[0].messages)
    assert "resumed 37 dict" in root.requests[1].messages[-1].content


@pytest.mark.parametrize("bwrap", ["auto", "never"])
async def test_a_long_reply_wrong_everywhere_is_checked_without_stalling_the_loop(
    bwrap: Bwrap,
) -> None:
    # 60,000 wrong rows (0.7 MB): every error was found and sorted on the loop (~2 s a reply).
    rows = json.dumps([{"name": 1}] * 60_000)
    sub = ScriptedModel([rows, rows], name="sub")
    code = "p = llm_query('Rows?', schema=[{'name': str}])\nprint(p[:300])"
    async with loop_meter() as meter:
        output, _ = await _run(code, sub, bwrap)
    assert "Error: the sub-model's reply did not match the schema" in output
    assert "1 is not of type 'string'" in output
    assert len(sub.requests) == 2
    assert meter.longest_stall < 0.5, f"the loop stalled {meter.longest_stall:.2f} s"
