"""Turning a user's context into a file the REPL child loads, and describing its shape.

The context never crosses the pipe: a ``str`` is written as UTF-8 text (no JSON escaping,
no copy in a message), anything else as one JSON document. The child reads the file
before it says it is ready.

Both steps run in a worker thread for a large context (``_run.prepare``), and both work in
pieces: one C call (``json.dumps`` of the whole value, ``str.count`` over a gigabyte) holds
the GIL for its whole length, which stalls the event loop as surely as running on it. So
items are sized one by one (cheaply for numbers), lines are counted in slices, and a JSON
context is written in batches of about a megabyte.

Lone surrogates (``"\udfff"``, what ``errors="surrogateescape"`` makes of undecodable
bytes) reach the REPL unchanged: a text context is written with ``surrogatepass`` (the
child reads it the same way), and a JSON batch that holds one is written with ASCII
escapes (``\udfff``), which the child's ``json.loads`` turns back into the same string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from rlm_async._exceptions import ContextTypeError
from rlm_async._types import Message

__all__ = ["ContextInfo", "PreparedContext", "prepare_context"]

_SLICE = 8 * 1024 * 1024  # characters encoded (or scanned for lines) at a time in a text context
_BATCH_CHARS = 1024 * 1024  # JSON items written with one json.dumps call, by their size
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
    _sizes: list[int] = field(default_factory=list)  # JSON items' sizes, to batch the write

    def write(self, handle: BinaryIO) -> None:
        """Write the context to an open binary file (blocking; use a worker thread).

        A text context is encoded in slices: the same bytes, without a second full copy of
        a multi-gigabyte string in the parent's memory.
        """
        if self.format == "text":
            text: str = self._value
            for start in range(0, len(text), _SLICE):
                handle.write(text[start : start + _SLICE].encode("utf-8", "surrogatepass"))
            return
        value = self._value
        opening, closing = (b"{", b"}") if isinstance(value, dict) else (b"[", b"]")
        handle.write(opening)
        for first, batch in _batches(value, self._sizes):
            body = _json_bytes(batch)[1:-1]  # the batch's items without its brackets
            handle.write(body if first else b"," + body)
        handle.write(closing)


def prepare_context(context: Any) -> PreparedContext:
    """Check a context's type and describe it (blocking; a large one in a worker thread).

    Raises:
        ContextTypeError: for anything but str, list, dict or chat messages, or a list or
            dict that holds something JSON cannot.
    """
    if isinstance(context, str):
        lines = sum(context.count("\n", i, i + _SLICE) for i in range(0, len(context), _SLICE))
        info = ContextInfo("str", len(context), line_count=lines + 1)
        return PreparedContext("text", info, context)
    if isinstance(context, Mapping):
        value = dict(context)
        for key in value:
            if not isinstance(key, str):
                raise ContextTypeError(
                    f"context dict keys must be str, got a {type(key).__name__} key {key!r}; "
                    f"accepted contexts: {_ACCEPTED}"
                )
        sizes = _sizes(value.values())
        info = ContextInfo(
            "dict", sum(sizes), item_count=len(value), keys=list(value)[:100], item_lengths=sizes
        )
        return PreparedContext("json", info, value, sizes)
    if isinstance(context, Sequence) and not isinstance(context, bytes | bytearray):
        items = list(context)
        if items and all(_is_message(m) for m in items):
            messages = [_message_dict(m) for m in items]
            lengths = [len(m["content"]) for m in messages]
            info = ContextInfo("list", sum(lengths), item_count=len(messages), is_chat=True)
            return PreparedContext("json", info, messages, lengths)
        lengths = _sizes(items)
        info = ContextInfo("list", sum(lengths), item_count=len(items), item_lengths=lengths)
        return PreparedContext("json", info, items, lengths)
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


def _sizes(values: Iterable[Any]) -> list[int]:
    """Each value's length: a str's own, anything else's as JSON (which checks it is JSON).

    One small call per item rather than one ``json.dumps`` of the whole context, so a
    worker thread doing this gives the GIL back to the event loop between items.
    """
    try:
        return [_size(v) for v in values]
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


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    kind = type(value)
    if kind is int:  # what json.dumps writes for an int (raises past 4,300 digits, as it does)
        return len(int.__repr__(value))
    if kind is float and math.isfinite(value):
        return len(float.__repr__(value))
    if value is None or value is True:
        return 4
    if value is False:
        return 5
    return len(json.dumps(value, ensure_ascii=False))


def _batches(
    value: list[Any] | dict[str, Any], sizes: list[int]
) -> Iterator[tuple[bool, list[Any] | dict[str, Any]]]:
    """Consecutive runs of a list's items (or a dict's pairs) of about ``_BATCH_CHARS``
    (by ``sizes``); the flag is true for the first run.

    A dict's pairs are gathered one by one rather than listed up front: a million
    ``(key, value)`` tuples at once is enough new objects to set off a full garbage
    collection, which holds the GIL for most of a second.
    """
    first, total = True, 0
    if isinstance(value, dict):
        batch: dict[str, Any] = {}
        for (key, item), size in zip(value.items(), sizes, strict=True):
            batch[key] = item
            total += size + len(key) + 8  # quotes, colon, comma: near enough
            if total >= _BATCH_CHARS:
                yield first, batch
                first, total, batch = False, 0, {}
        if batch or first:
            yield first, batch
        return
    start = 0
    for index, size in enumerate(sizes):
        total += size + 4
        if total >= _BATCH_CHARS:
            yield first, value[start : index + 1]
            first, total, start = False, 0, index + 1
    if start < len(value) or first:
        yield first, value[start:]


def _json_bytes(value: Any) -> bytes:
    """``value`` as UTF-8 JSON; as ASCII JSON when it holds a lone surrogate (UTF-8 cannot
    encode one, a ``\\udfff`` escape can, and ``json.loads`` reads it back the same)."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value).encode("ascii")


def _lengths_summary(lengths: list[int]) -> str:
    if not lengths:
        return "none"
    if len(lengths) <= 10:
        return ", ".join(f"{n:,}" for n in lengths)
    mean = sum(lengths) // len(lengths)
    first = ", ".join(f"{n:,}" for n in lengths[:5])
    return f"first {first}, ...; min {min(lengths):,}, max {max(lengths):,}, mean {mean:,}"
