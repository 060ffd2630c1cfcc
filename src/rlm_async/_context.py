"""Turning a user's context into a file the REPL child loads, and describing its shape.

The context never crosses the pipe: a ``str`` is written as UTF-8 text (no JSON escaping,
no copy in a message), anything else as one JSON document. The child reads the file
before it says it is ready.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from rlm_async._exceptions import ContextTypeError
from rlm_async._types import Message

__all__ = ["ContextInfo", "PreparedContext", "prepare_context"]

_SLICE = 8 * 1024 * 1024  # characters encoded at a time when writing a text context
_ACCEPTED = (
    "a str, a list of str (or of JSON values), a dict of JSON values, "
    "or a list of chat messages ({'role': ..., 'content': ...} or rlm_async.Message)"
)


@dataclass(frozen=True)
class ContextInfo:
    """The facts about a context that the system prompt tells the model."""

    type_name: str
    total_chars: int
    item_count: int | None = None
    line_count: int | None = None
    item_lengths: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    is_chat: bool = False

    def describe(self) -> str:
        """One or two sentences for the system prompt."""
        if self.type_name == "str":
            return (
                f"`context` is a str of {self.total_chars:,} characters "
                f"in {self.line_count:,} lines."
            )
        if self.is_chat:
            return (
                f"`context` is a list of {self.item_count:,} chat messages (dicts with 'role' and "
                f"'content'), {self.total_chars:,} characters of content in total."
            )
        if self.type_name == "list":
            return (
                f"`context` is a list of {self.item_count:,} items, {self.total_chars:,} "
                f"characters in total; item lengths: {_lengths_summary(self.item_lengths)}."
            )
        shown = ", ".join(repr(k) for k in self.keys[:20])
        more = f" and {len(self.keys) - 20} more" if len(self.keys) > 20 else ""
        return (
            f"`context` is a dict with {self.item_count:,} keys ({shown}{more}), "
            f"{self.total_chars:,} characters in total."
        )


@dataclass(frozen=True)
class PreparedContext:
    """A context ready to be written to the REPL's work directory."""

    format: str  # "text" or "json"
    info: ContextInfo
    _value: Any

    def write(self, handle: BinaryIO) -> None:
        """Write the context to an open binary file (blocking; use a worker thread).

        A text context is encoded in slices: the same bytes, without a second full copy of
        a multi-gigabyte string in the parent's memory.
        """
        if self.format == "text":
            text: str = self._value
            for start in range(0, len(text), _SLICE):
                handle.write(text[start : start + _SLICE].encode("utf-8", "surrogatepass"))
        else:
            handle.write(json.dumps(self._value, ensure_ascii=False).encode("utf-8"))


def prepare_context(context: Any) -> PreparedContext:
    """Check a context's type and describe it.

    Raises:
        ContextTypeError: for anything but str, list, dict or chat messages.
    """
    if isinstance(context, str):
        info = ContextInfo("str", len(context), line_count=context.count("\n") + 1)
        return PreparedContext("text", info, context)
    if isinstance(context, Mapping):
        value = dict(context)
        for key in value:
            if not isinstance(key, str):
                raise ContextTypeError(
                    f"context dict keys must be str, got a {type(key).__name__} key {key!r}; "
                    f"accepted contexts: {_ACCEPTED}"
                )
        _check_json(value)
        sizes = [_size(v) for v in value.values()]
        info = ContextInfo(
            "dict", sum(sizes), item_count=len(value), keys=list(value)[:100], item_lengths=sizes
        )
        return PreparedContext("json", info, value)
    if isinstance(context, Sequence) and not isinstance(context, bytes | bytearray):
        items = list(context)
        if items and all(_is_message(m) for m in items):
            messages = [_message_dict(m) for m in items]
            total = sum(len(m["content"]) for m in messages)
            info = ContextInfo("list", total, item_count=len(messages), is_chat=True)
            return PreparedContext("json", info, messages)
        if all(isinstance(item, str) for item in items):
            lengths = [len(item) for item in items]
        else:
            _check_json(items)
            lengths = [_size(item) for item in items]
        info = ContextInfo("list", sum(lengths), item_count=len(items), item_lengths=lengths)
        return PreparedContext("json", info, items)
    raise ContextTypeError(
        f"cannot use a {type(context).__name__} as the context; accepted: {_ACCEPTED}. "
        "Convert it first (e.g. str(...), or read a file's text)."
    )


def _is_message(item: Any) -> bool:
    if isinstance(item, Message):
        return True
    return (
        isinstance(item, Mapping)
        and set(item) >= {"role", "content"}
        and isinstance(item.get("content"), str)
        and isinstance(item.get("role"), str)
    )


def _message_dict(item: Any) -> dict[str, str]:
    if isinstance(item, Message):
        return {"role": item.role, "content": item.content}
    return {"role": str(item["role"]), "content": str(item["content"])}


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    return len(json.dumps(value, ensure_ascii=False))


def _check_json(value: Any) -> None:
    try:
        json.dumps(value)
    except RecursionError:
        raise ContextTypeError(
            "the context is nested too deeply to hold as JSON (hundreds of levels); "
            "flatten it, or pass it as text (e.g. json.dumps(context))"
        ) from None
    except (TypeError, ValueError) as exc:
        raise ContextTypeError(
            f"the context must hold only JSON values (str, numbers, bools, None, lists, dicts): "
            f"{exc}. Convert other objects to str first."
        ) from None


def _lengths_summary(lengths: list[int]) -> str:
    if not lengths:
        return "none"
    if len(lengths) <= 10:
        return ", ".join(f"{n:,}" for n in lengths)
    mean = sum(lengths) // len(lengths)
    first = ", ".join(f"{n:,}" for n in lengths[:5])
    return f"first {first}, ...; min {min(lengths):,}, max {max(lengths):,}, mean {mean:,}"
