"""Typed answers (``output_type``): reading and validating an answer, and the run loop that
sends a wrong one back to the model (a scripted model and a fake REPL; the real child is in
test_output_type_e2e.py)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict  # typing.TypedDict: pydantic needs Python 3.12

from rlm_async import ConfigurationError, OutputValidationError, RLMError, RLMOptions
from rlm_async import events as ev
from rlm_async.engine._output_type import OutputSpec
from rlm_async.engine._resources import EngineResources
from rlm_async.engine._routes import ModelRoutes
from rlm_async.engine._run import run_rlm
from rlm_async.engine._state import CompletionState
from rlm_async.providers import ProviderRegistry
from rlm_async.providers._windows import ContextWindows
from rlm_async.repl import CellResult
from rlm_async.testing import ScriptedModel
from tests.engine.test_run_loop import FakeRepl
from tests.helpers import repl


class Invoice(BaseModel):
    number: str
    total: float


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Person(TypedDict):
    name: str
    age: int


# ---- reading and validating one answer ------------------------------------------------


def test_json_that_crossed_the_pipe_validates_as_the_model() -> None:
    checked = OutputSpec(Invoice).check('{"number": "A-7", "total": 12.5}', crossed_as_json=True)
    assert checked.ok
    assert checked.value == Invoice(number="A-7", total=12.5)


@pytest.mark.parametrize(
    "text",
    [
        '{"number": "A-7", "total": 12.5}',
        '```json\n{"number": "A-7", "total": 12.5}\n```',
        "{'number': 'A-7', 'total': 12.5}",  # a Python literal, as models write in text
    ],
)
def test_text_answers_are_read_as_json_or_a_python_literal(text: str) -> None:
    checked = OutputSpec(Invoice).check(text, crossed_as_json=False)
    assert checked.value == Invoice(number="A-7", total=12.5)


def test_dataclasses_typeddicts_and_lists_are_output_types() -> None:
    assert OutputSpec(Point).check('{"x": 1, "y": 2}', crossed_as_json=True).value == Point(1, 2)
    person = OutputSpec(Person).check('{"name": "Ada", "age": 36}', crossed_as_json=False)
    assert person.value == {"name": "Ada", "age": 36}
    points = OutputSpec(list[Point]).check('[{"x": 1, "y": 2}]', crossed_as_json=True)
    assert points.value == [Point(1, 2)]


def test_a_str_output_type_takes_the_text_even_when_it_reads_as_json() -> None:
    assert OutputSpec(str).check("42", crossed_as_json=False).value == "42"
    assert OutputSpec(int).check("42", crossed_as_json=False).value == 42


def test_errors_name_the_field_and_what_is_wrong() -> None:
    checked = OutputSpec(Invoice).check('{"number": 7}', crossed_as_json=True)
    assert not checked.ok
    assert {"loc": ["total"], "msg": "Field required", "type": "missing"} in checked.errors
    assert "- total: Field required" in checked.describe()


def test_text_that_is_not_json_says_so() -> None:
    checked = OutputSpec(Invoice).check("invoice A-7, 12.50 EUR", crossed_as_json=False)
    assert checked.errors[0]["type"] == "json_invalid"
    assert "not JSON" in checked.errors[0]["msg"]


def test_a_json_answer_cut_at_max_answer_chars_is_not_complete_json() -> None:
    checked = OutputSpec(list[int]).check("[1, 2, 3 ... [4 cut] ..., 9]", crossed_as_json=True)
    assert "not complete JSON" in checked.errors[0]["msg"]


def test_a_json_schema_dict_is_validated_by_jsonschema() -> None:
    schema = {
        "title": "Answer",
        "type": "object",
        "properties": {"city": {"type": "string"}, "count": {"type": "integer", "minimum": 0}},
        "required": ["city", "count"],
    }
    spec = OutputSpec(schema)
    assert spec.name == "Answer" and spec.schema == schema
    assert spec.check('{"city": "Oslo", "count": 3}', crossed_as_json=True).value == {
        "city": "Oslo",
        "count": 3,
    }
    bad = spec.check('{"city": "Oslo", "count": -1}', crossed_as_json=True)
    assert bad.errors[0]["loc"] == ["count"] and "minimum" in bad.errors[0]["msg"]


# jsonschema's default resolver fetches a "$ref" it does not hold (urllib, no timeout) and
# warns after the fetch: the warning let through, a fetched file would decide the answer.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_schema_reference_elsewhere_is_never_fetched(tmp_path: Path) -> None:
    elsewhere = tmp_path / "integer.json"
    elsewhere.write_text('{"type": "integer"}')
    spec = OutputSpec({"type": "object", "properties": {"n": {"$ref": elsewhere.as_uri()}}})
    checked = spec.check('{"n": "five"}', crossed_as_json=True)
    assert [error["type"] for error in checked.errors] == ["unresolvable_ref"]
    assert "reference cannot be resolved" in checked.errors[0]["msg"]
    assert spec.check("{}", crossed_as_json=True).value == {}  # the reference not reached
    local = {"$defs": {"N": {"type": "integer"}}, "$ref": "#/$defs/N"}
    assert OutputSpec(local).check("5", crossed_as_json=False).value == 5


def test_an_answer_nested_too_deeply_is_an_error_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for output_type in (list[int], {"type": "array"}):
        checked = OutputSpec(output_type).check(deep, crossed_as_json=True)
        assert not checked.ok and checked.errors[0]["type"] == "json_invalid"
        checked = OutputSpec(output_type).check(deep, crossed_as_json=False)
        assert not checked.ok
    schema_deep = json.loads("[" * 900 + "]" * 900)  # parses, too deep to check
    checked = OutputSpec({"items": {"items": {"items": {"type": "integer"}}}}).check(
        json.dumps(schema_deep), crossed_as_json=True
    )
    assert not checked.ok


def test_output_types_that_cannot_work_are_refused_at_once() -> None:
    with pytest.raises(ConfigurationError, match="output_type"):
        OutputSpec(object())
    with pytest.raises(ConfigurationError, match="not a valid JSON schema"):
        OutputSpec({"type": 5})


def test_the_prompt_shows_the_schema_and_how_to_finish() -> None:
    prompt = OutputSpec(Invoice).prompt()
    assert '"total"' in prompt and "Invoice" in prompt
    assert "FINAL(answer)" in prompt


def test_the_error_is_an_rlm_error_with_the_last_attempt_and_its_errors() -> None:
    error = OutputValidationError("no", last_attempt="{}", errors=[{"loc": [], "msg": "x"}])
    assert isinstance(error, RLMError)
    assert error.last_attempt == "{}" and error.errors == [{"loc": [], "msg": "x"}]
    # Through pickling (a process pool, a Ray task): its keyword-only fields were required
    # again by __init__, and unpickling it raised TypeError.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is OutputValidationError and str(copy) == "no"
    assert copy.last_attempt == "{}" and copy.errors == error.errors and copy.partial is None


# ---- the run loop ---------------------------------------------------------------------------


async def run_typed(
    root: ScriptedModel, fake: FakeRepl, output_type: Any, **options: Any
) -> tuple[Any, list[ev.Event]]:
    events: list[ev.Event] = []
    registry = ProviderRegistry()
    shared = CompletionState(
        options=RLMOptions(**options),
        models=ModelRoutes.resolve(registry, root, None, (), ()),
        resources=EngineResources(
            providers=registry, windows=ContextWindows(None), repl_factory=fake
        ),
        emit=events.append,
        output=OutputSpec(output_type),
    )
    with anyio.fail_after(10):
        result = await run_rlm(shared, "the context", "the query")
    return result, events


def json_cells(answers: list[str]) -> FakeRepl:
    """A REPL whose cells calling FINAL give the next answer, as JSON that crossed the pipe."""
    queue = list(answers)

    async def cell(fake: FakeRepl, code: str) -> CellResult:
        if "FINAL" in code:
            return CellResult(cell=len(fake.codes), final=queue.pop(0), final_json=True)
        return CellResult(cell=len(fake.codes), stdout="looked")

    return FakeRepl(cell)


async def empty_cell(fake: FakeRepl, code: str) -> CellResult:
    return CellResult(cell=len(fake.codes))


async def test_a_wrong_answer_goes_back_to_the_model_and_the_next_one_is_taken() -> None:
    fake = json_cells(['{"number": "A-7"}', '{"number": "A-7", "total": 12.5}'])
    root = ScriptedModel([repl("FINAL(first)"), repl("FINAL(second)")])
    result, events = await run_typed(root, fake, Invoice)
    assert result.output == Invoice(number="A-7", total=12.5)
    assert result.answer == '{"number": "A-7", "total": 12.5}'
    assert result.iterations == 2
    feedback = root.requests[1].messages[-1].content
    assert "did not match Invoice" in feedback and "- total: Field required" in feedback
    assert "2 more attempts" in feedback
    final = next(e for e in events if isinstance(e, ev.FinalAnswer))
    assert final.output == {"number": "A-7", "total": 12.5}  # recorded as JSON values
    rejected = [e for e in events if isinstance(e, ev.AnswerRejected)]
    assert [(e.turn, e.answer, e.retries_left) for e in rejected] == [(1, '{"number": "A-7"}', 2)]
    assert rejected[0].errors == [{"loc": ["total"], "msg": "Field required", "type": "missing"}]
    assert "Invoice" in root.requests[0].system and '"total"' in root.requests[0].system


async def test_retries_run_out_with_output_validation_error() -> None:
    fake = json_cells(['{"number": 1}', '{"number": 2}', '{"number": 3}'])
    root = ScriptedModel([repl("FINAL(a)"), repl("FINAL(b)"), repl("FINAL(c)")])
    with pytest.raises(OutputValidationError, match="did not match Invoice") as caught:
        await run_typed(root, fake, Invoice, output_retries=1)
    events = caught.value.partial.trajectory if caught.value.partial else []
    rejected = [e for e in events if isinstance(e, ev.AnswerRejected)]
    assert [e.retries_left for e in rejected] == [1, 0]
    assert caught.value.last_attempt == '{"number": 2}'
    assert {"loc": ["total"], "msg": "Field required", "type": "missing"} in caught.value.errors
    assert caught.value.partial is not None and caught.value.partial.iterations == 2
    assert len(root.requests) == 2  # one retry: the third reply is never asked for


async def test_a_text_answer_in_the_reply_is_validated_and_retried_too() -> None:
    fake = FakeRepl(empty_cell)
    root = ScriptedModel(["FINAL(not json at all)", 'FINAL({"x": 1, "y": 2})'])
    result, _ = await run_typed(root, fake, Point)
    assert result.output == Point(1, 2)
    assert result.metadata["answer_source"] == "text"
    assert "not JSON" in root.requests[1].messages[-1].content


async def test_the_last_turn_gives_more_turns_for_a_wrong_typed_answer() -> None:
    async def cell(fake: FakeRepl, code: str) -> CellResult:
        return CellResult(cell=1, stdout="looked")

    root = ScriptedModel([repl("look()"), '{"x": "one"}', 'FINAL({"x": 1, "y": 2})'])
    result, events = await run_typed(root, FakeRepl(cell), Point, max_iterations=1)
    assert result.output == Point(1, 2)
    assert result.iterations == 3
    assert "did not match Point" in root.requests[2].messages[-1].content
    turns = [e for e in events if isinstance(e, ev.TurnStarted)]
    assert [t.final_turn for t in turns] == [False, True, True]


async def test_with_no_retries_the_first_wrong_answer_raises() -> None:
    root = ScriptedModel(['FINAL({"x": 1})'])
    fake = FakeRepl(empty_cell)
    with pytest.raises(OutputValidationError) as caught:
        await run_typed(root, fake, Point, output_retries=0)
    assert caught.value.errors[0]["loc"] == ["y"]
