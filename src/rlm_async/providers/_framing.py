"""Stream framing: lines, server-sent events and NDJSON out of a response's bytes.

Lines end only at CR, LF or CRLF, as the SSE and NDJSON formats define them. Not
``str.splitlines()`` (what ``httpx.Response.aiter_lines`` does), which also breaks at
U+2028, U+2029, U+0085 and a few ASCII controls: the first three are legal unescaped
inside a JSON string and do reach us in model text (openai/openai-python#1230), so a
splitlines-based reader turns a good stream into a malformed one. Every limit here is
a bound on memory: a server that never ends a line cannot make us buffer without end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import httpx

from rlm_async._exceptions import ProviderResponseError

__all__ = [
    "MAX_LINE_BYTES",
    "LineSplitter",
    "SSEDecoder",
    "SSEEvent",
    "is_json_reply",
    "iter_lines",
    "iter_ndjson",
    "iter_sse",
    "loads_object",
    "peek_first_byte",
    "read_capped",
    "replay",
]

#: The longest stream line (and the largest event, or JSON reply to a stream request)
#: read. Real lines are a few KB; a whole reply in one Gemini event stays far below this.
MAX_LINE_BYTES: Final = 16 << 20

_STREAM_TYPES: Final = frozenset(
    {"text/event-stream", "application/x-ndjson", "application/ndjson", "application/jsonl"}
)


def _too_long(provider: str, what: str, limit: int) -> ProviderResponseError:
    return ProviderResponseError(
        f"{what} is longer than {limit:,} bytes, more than any model's reply: check the base "
        "URL and that it is the provider's API",
        provider=provider,
    )


class LineSplitter:
    """Lines out of byte chunks, ending only at CR, LF or CRLF.

    A CR at the end of one chunk and an LF at the start of the next are one line end.
    Lines are split as bytes (CR and LF never occur inside a UTF-8 multi-byte sequence,
    so a character cut across chunks is whole again in its line) and decoded as UTF-8,
    what both SSE and NDJSON mandate; a leading byte-order mark is dropped.

    Args:
        provider: Named in the error for an over-long line.
        max_line_bytes: The longest line accepted; a longer one raises
            :class:`~rlm_async.ProviderResponseError` as soon as it is seen.
    """

    def __init__(self, provider: str, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._provider = provider
        self._max = max_line_bytes
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._after_cr = False
        self._first = True

    def feed(self, chunk: bytes) -> list[str]:
        """Take the next chunk; return the lines it completes (without their line ends)."""
        if not chunk:
            return []
        if self._after_cr:
            self._after_cr = False
            if chunk.startswith(b"\n"):  # the LF of a CRLF cut between two reads
                chunk = chunk[1:]
                if not chunk:
                    return []
        # bytes.splitlines breaks at CR, LF and CRLF only (str.splitlines at many more).
        pieces = chunk.splitlines(keepends=True)
        self._after_cr = chunk.endswith(b"\r")
        tail = b"" if chunk.endswith((b"\n", b"\r")) else pieces.pop()
        lines = [piece.rstrip(b"\r\n") for piece in pieces]
        if lines and self._pending:
            lines[0] = b"".join([*self._pending, lines[0]])
            self._pending, self._pending_size = [], 0
        if tail:
            self._pending.append(tail)
            self._pending_size += len(tail)
            if self._pending_size > self._max:
                raise _too_long(self._provider, "a stream line", self._max)
        return [self._decode(line) for line in lines]

    def flush(self) -> list[str]:
        """At the end of the stream: the last line, when it had no line end."""
        if not self._pending:
            return []
        line = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        return [self._decode(line)]

    def _decode(self, line: bytes) -> str:
        if len(line) > self._max:
            raise _too_long(self._provider, "a stream line", self._max)
        text = line.decode("utf-8", errors="replace")
        if self._first:
            self._first = False
            text = text.removeprefix("\ufeff")
        return text


async def iter_lines(
    chunks: AsyncIterable[bytes], provider: str, *, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[str]:
    """The lines in a stream of byte chunks (see :class:`LineSplitter`)."""
    splitter = LineSplitter(provider, max_line_bytes=max_line_bytes)
    async for chunk in chunks:
        for line in splitter.feed(chunk):
            yield line
    for line in splitter.flush():
        yield line


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event."""

    event: str
    data: str


class SSEDecoder:
    """Server-sent events from lines, per the WHATWG event-stream rules we need.

    ``data:`` lines accumulate until a blank line dispatches the event; ``event:`` names
    it (default ``"message"``); comment lines (``:``) such as keep-alives are skipped.
    An event's data is bounded like a line, so endless ``data:`` lines cannot pile up.
    """

    def __init__(self, provider: str = "", *, max_event_chars: int = MAX_LINE_BYTES) -> None:
        self._provider = provider
        self._max = max_event_chars
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, line: str) -> SSEEvent | None:
        """Take one line (without its line end); return an event when one is complete."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._size += len(value) + 1
            if self._size > self._max:
                raise _too_long(self._provider, "a stream event", self._max)
            self._data.append(value)
        return None

    def flush(self) -> SSEEvent | None:
        """Dispatch what is pending (at a blank line or at the end of the stream)."""
        event, data = self._event or "message", self._data
        self._event, self._data, self._size = "", [], 0
        return SSEEvent(event, "\n".join(data)) if data else None


async def iter_sse(lines: AsyncIterator[str], provider: str = "") -> AsyncIterator[SSEEvent]:
    """The events in a stream of lines."""
    decoder = SSEDecoder(provider)
    async for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event
    last = decoder.flush()
    if last is not None:
        yield last


def loads_object(text: str, provider: str, *, what: str = "stream event") -> dict[str, Any]:
    """A JSON object from ``text``; anything else is a :class:`ProviderResponseError`."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ProviderResponseError(
            f"malformed {what}: {text[:200]!r}", provider=provider, body=text[:4000]
        ) from None
    if not isinstance(value, dict):
        raise ProviderResponseError(
            f"malformed {what}: expected a JSON object, got {text[:200]!r}",
            provider=provider,
            body=value,
        )
    return value


async def iter_ndjson(lines: AsyncIterator[str], provider: str) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects in a newline-delimited JSON stream (blank lines skipped)."""
    async for line in lines:
        if line.strip():
            yield loads_object(line, provider, what="NDJSON line")


# ---- a JSON reply where a stream was asked for -------------------------------------------


def is_json_reply(response: httpx.Response) -> bool:
    """Whether a reply to a streaming request says it is one JSON document, not a stream.

    Some OpenAI-compatible servers ignore ``"stream": true``. A stream type, or no type
    at all, is read as a stream, as before.
    """
    media: str = response.headers.get("content-type", "")
    media = media.partition(";")[0].strip().lower()
    if media in _STREAM_TYPES:
        return False
    return media == "application/json" or media.endswith("+json")


async def read_capped(
    chunks: AsyncIterable[bytes],
    provider: str,
    *,
    limit: int = MAX_LINE_BYTES,
    what: str = "the JSON reply to a streaming request",
) -> bytes:
    """The whole body, refused (:class:`ProviderResponseError`) as soon as it passes ``limit``."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise _too_long(provider, what, limit)
    return bytes(body)


async def peek_first_byte(
    chunks: AsyncIterator[bytes], provider: str, *, limit: int = MAX_LINE_BYTES
) -> tuple[bytes, AsyncIterator[bytes]]:
    """The body's first non-blank byte (``b""`` for an empty body) and the whole body again."""
    seen = bytearray()
    async for chunk in chunks:
        seen += chunk
        if seen.strip():
            break
        if len(seen) > limit:
            raise _too_long(provider, "blank space before the reply", limit)

    async def again() -> AsyncIterator[bytes]:
        if seen:
            yield bytes(seen)
        async for chunk in chunks:
            yield chunk

    return bytes(seen.lstrip()[:1]), again()


async def replay(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a one-chunk stream, to read a body already in memory as a stream."""
    yield data
