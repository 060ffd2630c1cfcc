from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rlm_async import RLM, ContextTypeError, Message
from rlm_async.providers import CompletionRequest
from rlm_async.repl._context import prepare_context
from rlm_async.testing import ScriptedModel
from tests.helpers import repl
from tests.loop_meter import loop_meter


def test_str_context_is_written_as_plain_text(tmp_path: Path) -> None:
    prepared = prepare_context("line one\nline two é")
    with (tmp_path / "c").open("wb") as handle:
        prepared.write(handle)
    assert prepared.format == "text"
    assert (tmp_path / "c").read_text(encoding="utf-8") == "line one\nline two é"
    assert "2 lines" in prepared.info.describe()


def test_list_context_describes_item_count_and_lengths() -> None:
    info = prepare_context(["aa", "bbbb"]).info
    assert info.item_count == 2
    assert info.total_chars == 6
    assert "2 items" in info.describe() and "4" in info.describe()


def test_dict_context_is_json_and_lists_its_keys(tmp_path: Path) -> None:
    prepared = prepare_context({"doc1": "text", "meta": {"n": 1}})
    with (tmp_path / "c.json").open("wb") as handle:
        prepared.write(handle)
    assert json.loads((tmp_path / "c.json").read_text()) == {"doc1": "text", "meta": {"n": 1}}
    assert "'doc1'" in prepared.info.describe()


def test_chat_messages_are_recognised_from_dicts_and_message_objects() -> None:
    info = prepare_context(
        [{"role": "user", "content": "hi"}, Message(role="assistant", content="yo")]
    ).info
    assert info.is_chat
    assert "2 chat messages" in info.describe()


@pytest.mark.parametrize("bad", [42, b"bytes", object(), {1: "x"}, [object()], None])
def test_unsupported_contexts_raise_a_type_error_that_says_what_is_accepted(bad: object) -> None:
    with pytest.raises(ContextTypeError) as info:
        prepare_context(bad)
    assert isinstance(info.value, TypeError)
    assert "str" in str(info.value)


def test_a_context_nested_too_deeply_for_json_is_a_context_type_error() -> None:
    deep: dict[str, object] = {}
    level = deep
    for _ in range(5_000):
        level["a"] = {}
        level = level["a"]  # type: ignore[assignment]
    with pytest.raises(ContextTypeError, match="nested too deeply"):
        prepare_context({"doc": deep})


# ---- issue 11: large contexts off the event loop; lone surrogates ----------------------


def _look_then_answer(code: str) -> ScriptedModel:
    """Root model: run ``code`` (which sets ``answer``), then answer with it."""

    def reply(request: CompletionRequest) -> str:
        if not any(m.role == "assistant" for m in request.messages):
            return repl(code)
        return "FINAL_VAR(answer)"

    return ScriptedModel(reply)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: [0] * 4_000_000, id="list-of-4M-ints"),
        pytest.param(lambda: {f"k{i}": i for i in range(1_000_000)}, id="dict-of-1M-ints"),
    ],
)
async def test_a_large_json_context_is_prepared_and_written_without_stalling_the_loop(
    make: Callable[[], list[int] | dict[str, int]],
) -> None:
    """Describing and writing a list or dict context used to run on the event loop (a list
    of 4M ints: a 5.6 s stall) or as one long call that holds the GIL."""
    context = make()
    async with RLM(model=_look_then_answer("answer = len(context)")) as rlm, loop_meter() as meter:
        result = await rlm.completion(context, "how many?")
    assert result.answer == str(len(context))
    assert meter.longest_stall < 1.0, f"the loop stalled {meter.longest_stall:.2f} s"


def test_a_large_text_context_counts_its_lines_in_slices() -> None:
    text = "line\n" * 3_000_000
    assert prepare_context(text).info.line_count == 3_000_001


@pytest.mark.parametrize(
    "context",
    [["\udfff"], {"k": "a\ud800b"}, [{"role": "user", "content": "\udc80"}]],
    ids=["list", "dict", "chat"],
)
async def test_a_json_context_with_a_lone_surrogate_reaches_the_repl_unchanged(
    context: object,
) -> None:
    """A text context with a lone surrogate always reached the REPL as it was; a list or
    dict one raised an untyped UnicodeEncodeError from completion()."""
    expected = json.dumps(context)  # ASCII: the surrogate as a \\u escape
    code = f"import json\nanswer = json.dumps(context) == {expected!r}"
    async with RLM(model=_look_then_answer(code)) as rlm:
        result = await rlm.completion(context, "same?")
    assert result.answer == "True"
