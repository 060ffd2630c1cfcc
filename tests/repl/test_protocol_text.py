"""Text of every kind through the REPL pipe, both ways, one message a line.

The parent writes UTF-8 JSON (orjson; ASCII JSON for text holding a lone surrogate, which
UTF-8 cannot carry); the child, stdlib only, splits its input on ``b"\\n"`` and
``json.loads`` the bytes. The child writes ASCII JSON, lone surrogates as ``\\udc80``
escapes, which the parent reads (jiter refuses them; the standard library does not).
"""

from __future__ import annotations

import io
import json

from rlm_async.repl import ReplOptions, ReplSession
from rlm_async.repl._protocol import (
    ExecMessage,
    LLMRequest,
    LLMResponse,
    SubCallResult,
    decode_child_message,
    encode_message,
)

FAST = ReplOptions(cell_timeout=10, interrupt_grace=1)
TEXTS = [
    "a line\nbreak, a CRLF\r\n and a tab\t",
    "U+2028 \u2028 and U+2029 \u2029, NEL \x85, form feed \x0c",  # line ends to str.splitlines
    "NUL \x00 and DEL \x7f",
    'a "quote", a backslash \\ and </script>',
    "outside the BMP \U0001f600 \U0010ffff, accents é, 漢字, BOM \ufeff",
    "a lone high surrogate \ud800 here",
    "a lone low surrogate \udfff there",
    "",
]
# Not among them: a surrogate pair as two code points ("\ud83d\ude00"). JSON has one way to
# write it, as escapes, which every reader turns into the one character (U+1F600).


def read_as_the_child_does(data: bytes) -> dict[str, object]:
    """One line from a binary stream, then ``json.loads`` of its bytes (``_child._reader``)."""
    stream = io.BytesIO(data)
    line = stream.readline()
    assert line == data and stream.read() == b""  # one message, one line
    message: dict[str, object] = json.loads(line)
    return message


def test_every_kind_of_text_reaches_the_child_as_it_was_in_one_line() -> None:
    results = [SubCallResult.answer(text) for text in TEXTS]
    data = encode_message(LLMResponse(id=4, results=results))
    message = read_as_the_child_does(data)
    assert message["results"] == [{"ok": True, "text": t, "unfinished": False} for t in TEXTS]


def test_text_goes_as_utf8_and_only_a_lone_surrogate_makes_the_line_ascii() -> None:
    plain = encode_message(ExecMessage(cell=1, code="x = '\u2028\U0001f600'"))
    assert "\u2028\U0001f600".encode() in plain
    assert read_as_the_child_does(plain)["code"] == "x = '\u2028\U0001f600'"
    lone = encode_message(ExecMessage(cell=1, code="x = '\u2028\udc80'"))
    assert b"\\u2028\\udc80" in lone and lone.isascii()
    assert read_as_the_child_does(lone)["code"] == "x = '\u2028\udc80'"


def test_a_lone_surrogate_the_child_sends_is_read_not_taken_for_a_protocol_violation() -> None:
    """It restarted the REPL, and every variable was lost."""
    sent = {"type": "llm_request", "id": 1, "cell": 1, "prompts": TEXTS}
    line = (json.dumps(sent) + "\n").encode("ascii")  # as _child._Channel writes it
    message = decode_child_message(line)
    assert isinstance(message, LLMRequest)
    assert message.prompts == TEXTS


async def test_prompts_answers_and_output_of_every_kind_cross_the_real_pipe() -> None:
    received: list[list[str]] = []

    async def answer(request: LLMRequest) -> list[SubCallResult]:
        received.append(request.prompts)
        return [SubCallResult.answer(text[::-1]) for text in request.prompts]

    code = (
        f"texts = {TEXTS!a}\n"
        "replies = llm_query_batched(texts)\n"
        "print(replies == [t[::-1] for t in texts])\n"
        "print('printed: \\udc80 \\u2028 \\U0001f600')\n"
    )
    async with ReplSession("", options=FAST, subcall_handler=answer) as repl:
        result = await repl.execute(code)
        after = await repl.execute("print(len(texts))")
    assert result.error is None and not result.restarted
    assert received == [TEXTS]
    assert result.stdout == "True\nprinted: \udc80 \u2028 \U0001f600\n"
    assert after.stdout == f"{len(TEXTS)}\n"  # the variables are still there
