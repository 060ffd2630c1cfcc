"""``llm_query(prompt, schema=...)`` in the child: the schema model code writes, turned into
a JSON schema there, and its trip over the protocol (the request out, the JSON answer back)."""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import pytest

from rlm_async.repl._protocol import (
    PROTOCOL_VERSION,
    LLMRequest,
    LLMResponse,
    SubCallResult,
    decode_child_message,
    encode_message,
)
from rlm_async.repl.child import _child


@pytest.mark.parametrize(
    ("spec", "schema"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (dict, {"type": "object"}),
        (list, {"type": "array"}),
        ([str], {"type": "array", "items": {"type": "string"}}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Literal["yes", "no"], {"enum": ["yes", "no"]}),
        (
            {"name": str, "tags": [str], "born": int | None},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "born": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
                "required": ["name", "tags", "born"],
                "additionalProperties": False,
            },
        ),
        # A JSON schema is sent as it is, and may sit inside a type spec.
        (
            {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        ),
        (
            {"type": str, "size": {"enum": [1, 2]}},
            {
                "type": "object",
                "properties": {"type": {"type": "string"}, "size": {"enum": [1, 2]}},
                "required": ["type", "size"],
                "additionalProperties": False,
            },
        ),
    ],
)
def test_a_type_spec_becomes_its_json_schema_in_the_child(spec: Any, schema: Any) -> None:
    assert _child._schema_of(spec, "llm_query") == schema


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"name": "string"}, "no JSON schema keyword"),
        ({}, "no JSON schema keyword"),
        ({1: str}, "field name must be a str"),
        (set, "is not a schema"),
        ([str, int], "is not a schema"),
        ({"x": object}, "is not a schema"),
    ],
)
def test_a_spec_that_is_no_schema_is_a_type_error_saying_what_works(spec: Any, says: str) -> None:
    with pytest.raises(TypeError, match=says) as raised:
        _child._schema_of(spec, "llm_query")
    assert "type spec" in str(raised.value) and "llm_query(schema=...)" in str(raised.value)


def test_no_schema_is_none() -> None:
    assert _child._schema_of(None, "llm_query") is None


def test_the_child_and_parent_speak_the_same_protocol_version() -> None:
    assert _child.PROTOCOL_VERSION == PROTOCOL_VERSION


def test_a_structured_request_crosses_the_pipe_and_its_answer_comes_back_parsed() -> None:
    read_fd, write_fd = os.pipe()
    try:
        repl = _child._Repl(_child._Channel(write_fd), {})
        schema = _child._schema_of({"name": str, "age": int}, "llm_query")
        request_id, _ = repl._submit("llm", ["who?", "and?"], None, None, schema)
        line = os.read(read_fd, 65536)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    message = decode_child_message(line)
    assert isinstance(message, LLMRequest)
    assert message.id == request_id and message.prompts == ["who?", "and?"]
    assert message.response_schema == schema

    answer = SubCallResult.answer(json.dumps({"name": "Ada", "age": 36}))
    failed = SubCallResult.failure("the sub-model's reply did not match the schema")
    wire = json.loads(encode_message(LLMResponse(id=request_id, results=[answer, failed])))
    values = [_child._result_value(r, True) for r in wire["results"]]
    assert values == [
        {"name": "Ada", "age": 36},
        "Error: the sub-model's reply did not match the schema",
    ]
    # Without a schema the same answer is its text.
    assert _child._result_value(wire["results"][0], False) == '{"name": "Ada", "age": 36}'


def test_a_request_without_a_schema_sends_none() -> None:
    read_fd, write_fd = os.pipe()
    try:
        repl = _child._Repl(_child._Channel(write_fd), {})
        repl._submit("llm", ["q"], None)
        line = os.read(read_fd, 65536)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert "response_schema" not in json.loads(line)
    message = decode_child_message(line)
    assert isinstance(message, LLMRequest) and message.response_schema is None
