from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm_async import ContextTypeError, Message
from rlm_async._context import prepare_context


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
