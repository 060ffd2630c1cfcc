from __future__ import annotations

import json

import pytest

from rlm_async import ReplProtocolError
from rlm_async.repl._protocol import (
    ExecMessage,
    LLMRequest,
    ResultMessage,
    decode_child_message,
    encode_message,
)


def test_a_result_line_decodes_to_a_result_message() -> None:
    message = decode_child_message(b'{"type": "result", "cell": 3, "stdout": "hi", "final": "42"}')
    assert isinstance(message, ResultMessage)
    assert (message.cell, message.stdout, message.final) == (3, "hi", "42")


def test_a_batched_request_keeps_its_prompts_in_order() -> None:
    line = b'{"type": "llm_request", "id": 7, "cell": 1, "prompts": ["a", "b", "c"]}'
    message = decode_child_message(line)
    assert isinstance(message, LLMRequest)
    assert message.prompts == ["a", "b", "c"]
    assert message.model is None


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b'{"type": "launch_missiles"}',
        b'{"type": "result"}',
        b'{"type": "llm_request", "id": "x", "cell": 1, "prompts": []}',
        b'{"type": "llm_request", "id": 1, "cell": 1, "prompts": [1, 2]}',
        b"[1, 2, 3]",
        # Fatal kinds are an enumeration: one the parent does not know is not a message.
        b'{"type": "fatal", "error": "x", "kind": "SandboxUnavailable"}',
    ],
)
def test_anything_else_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ReplProtocolError):
        decode_child_message(line)


def test_encoded_messages_are_one_utf8_line() -> None:
    code = "print('é\\n')\n"
    data = encode_message(ExecMessage(cell=1, code=code))
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data.decode("utf-8")) == {"type": "exec", "cell": 1, "code": code}
