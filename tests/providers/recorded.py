"""Real provider exchanges, recorded by others against the real APIs, replayed through respx.

Each file in ``fixtures/recorded/`` (copied from the shared reference set; see the README
there) is one exchange: ``provider``, ``stream``, ``status``, ``headers``, ``body`` and
``expect``, what a correct client returns, read off the body independently of this code.
``composed/`` holds recorded streams with one raw U+2028/U+2029/U+0085 put into a text
delta, or an error event put mid-stream.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rlm_async import _exceptions
from rlm_async._types import Completion, Message
from rlm_async.providers import (
    AnthropicProvider,
    CompletionRequest,
    GeminiProvider,
    HTTPProvider,
    OllamaProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
    XAIProvider,
)

RECORDED = Path(__file__).parent / "fixtures" / "recorded"

PROVIDERS: dict[str, type[HTTPProvider]] = {
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "ollama": OllamaProvider,
    "openai": OpenAIProvider,
    "openai-compatible": OpenAICompatibleProvider,
    "xai": XAIProvider,
}

#: Legal unescaped inside a JSON string; ``str.splitlines()`` wrongly breaks lines at them.
SEPARATORS = {"U+2028": "\u2028", "U+2029": "\u2029", "U+0085": "\x85"}

# Headers that describe the recorded bytes, not the bytes a test serves.
_FRAMING_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


@dataclass(frozen=True)
class Exchange:
    """One recorded request/response pair and what a correct client makes of it."""

    name: str
    provider: str
    model: str
    stream: bool
    status: int
    headers: dict[str, str]
    body: str
    expect: dict[str, Any]

    @property
    def expects_text(self) -> bool:
        return "text" in self.expect

    def request(self) -> CompletionRequest:
        return CompletionRequest(
            model=self.model or "model", messages=[Message(role="user", content="hi")]
        )

    def response(self, body: str | None = None, *, chunks: Iterable[bytes] | None = None) -> Any:
        """An ``httpx.Response`` with the recorded status and headers, serving ``body``.

        With ``chunks``, the body is delivered in exactly those pieces.
        """
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _FRAMING_HEADERS}
        if chunks is not None:
            return httpx.Response(self.status, headers=headers, stream=Chunks(chunks))
        text = self.body if body is None else body
        return httpx.Response(self.status, headers=headers, content=text.encode())


def load(path: Path) -> Exchange:
    raw = json.loads(path.read_text())
    return Exchange(
        name=str(path.relative_to(RECORDED).with_suffix("")),
        provider=raw["provider"],
        model=raw.get("request_model") or "",
        stream=raw["stream"],
        status=raw["status"],
        headers=raw["headers"],
        body=raw["body"],
        expect=raw["expect"],
    )


def exchanges(keep: Callable[[Exchange], bool] = lambda _: True) -> list[Exchange]:
    """Every recorded exchange ``keep`` accepts, sorted by name."""
    found = [load(path) for path in sorted(RECORDED.rglob("*.json"))]
    return [exchange for exchange in found if keep(exchange)]


class Chunks(httpx.AsyncByteStream):
    """A response body delivered in the given pieces, one network read each."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.delivered = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.delivered += 1
            yield chunk


def check(exchange: Exchange, completion: Completion, *, text: str | None = None) -> None:
    """Assert that ``completion`` is what the exchange says a correct client returns."""
    expect = exchange.expect
    assert completion.text == (expect["text"] if text is None else text)
    if expect.get("finish_reason") is not None:
        assert completion.finish_reason == expect["finish_reason"]
    for field in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
        if expect.get(field) is not None:
            assert getattr(completion.usage, field) == expect[field], field


def error_class(exchange: Exchange) -> type[Exception]:
    cls: type[Exception] = getattr(_exceptions, exchange.expect["error_class"])
    return cls


# ---- putting a raw separator into the first visible text delta ---------------------------


def _openai_text(chunk: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if choice.get("index", 0) == 0 and isinstance(content, str) and content:
            return delta, "content"
    return None


def _anthropic_text(event: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    delta = event.get("delta") or {}
    is_text = event.get("type") == "content_block_delta" and delta.get("type") == "text_delta"
    return (delta, "text") if is_text and delta.get("text") else None


def _gemini_text(chunk: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    for candidate in (chunk.get("candidates") or [])[:1]:
        for part in (candidate.get("content") or {}).get("parts") or []:
            if part.get("text") and not part.get("thought"):
                return part, "text"
    return None


def _ollama_text(line: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    message = line.get("message") or {}
    return (message, "content") if message.get("content") else None


_TEXT_FINDERS = {
    "anthropic": _anthropic_text,
    "gemini": _gemini_text,
    "ollama": _ollama_text,
    "openai": _openai_text,
    "openai-compatible": _openai_text,
    "xai": _openai_text,
}


def inject(exchange: Exchange, separator: str) -> tuple[str, str]:
    """The stream body with ``separator`` raw at the end of its first text delta.

    Returns the new body and the text a correct client now returns. Only the changed
    line is re-serialised (``ensure_ascii=False``, so the character goes on the wire
    raw, as OpenAI's streams send U+2028); every other byte stays as recorded.
    """
    find = _TEXT_FINDERS[exchange.provider]
    lines = exchange.body.split("\n")
    for i, line in enumerate(lines):
        ending = "\r" if line.endswith("\r") else ""
        content = line.removesuffix("\r")
        prefix = "" if exchange.provider == "ollama" else "data: "
        if not content.startswith(prefix) or not content[len(prefix) :].lstrip().startswith("{"):
            continue
        payload = json.loads(content[len(prefix) :])
        found = find(payload)
        if found is None:
            continue
        holder, key = found
        before = holder[key]
        holder[key] = before + separator
        lines[i] = prefix + json.dumps(payload, ensure_ascii=False) + ending
        expected = exchange.expect["text"]
        assert expected.startswith(before), (exchange.name, before)
        text = before + separator + expected[len(before) :]
        return "\n".join(lines), text
    raise AssertionError(f"{exchange.name}: no text delta to put a separator into")


def reframe(body: str, line_end: str) -> str:
    """``body`` with every line ending (LF or CRLF as recorded) replaced by ``line_end``."""
    return body.replace("\r\n", "\n").replace("\n", line_end)


def cut_at_line_ends_and_inside_characters(data: bytes) -> list[bytes]:
    """``data`` in pieces cut right after every CR and inside every multi-byte character.

    A CRLF is then always split across two reads, a CR-only line end always ends a read,
    and no read ends on a character boundary where a character spans several bytes.
    """
    cuts = [0]
    for i, byte in enumerate(data):
        if byte == 0x0D or (byte & 0xC0 == 0xC0):  # after a CR; after a UTF-8 lead byte
            cuts.append(i + 1)
    cuts.append(len(data))
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]
