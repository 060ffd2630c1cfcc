"""Stream framing: lines end only at CR, LF or CRLF; SSE events; NDJSON; bounded sizes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from rlm_async._exceptions import ProviderResponseError
from rlm_async.providers import RetryPolicy
from rlm_async.providers._framing import (
    LineSplitter,
    SSEDecoder,
    SSEEvent,
    iter_lines,
    iter_ndjson,
    iter_sse,
)
from rlm_async.providers._settings import Settings
from tests.providers.recorded import PROVIDERS, Chunks
from tests.providers.support import request


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _split(*chunks: bytes, max_line_bytes: int = 1 << 20) -> list[str]:
    return [
        line async for line in iter_lines(_chunks(*chunks), "test", max_line_bytes=max_line_bytes)
    ]


# ---- lines -------------------------------------------------------------------------------


async def test_lines_end_at_cr_lf_and_crlf_only() -> None:
    text = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\rh\r\ni\nj"
    assert await _split(text.encode()) == ["a\u2028b\u2029c\x85d\x0be\x0cf\x1cg", "h", "i", "j"]


async def test_a_crlf_cut_between_two_reads_is_one_line_end() -> None:
    assert await _split(b"data: 1\r", b"\n\r", b"\ndata: 2\r", b"\n") == ["data: 1", "", "data: 2"]
    assert await _split(b"a\r", b"\n", b"b\r", b"\n", b"\n") == ["a", "b", ""]


async def test_a_cr_ending_a_read_ends_the_line_at_once_and_keeps_the_next_byte() -> None:
    splitter = LineSplitter("test")
    assert splitter.feed(b"one\r") == ["one"]
    assert splitter.feed(b"two\r") == ["two"]
    assert splitter.feed(b"\r") == [""]
    assert splitter.feed(b"three") == []
    assert splitter.flush() == ["three"]


async def test_a_character_cut_across_reads_is_whole_in_its_line() -> None:
    data = "é\u2028😀\n".encode()
    assert await _split(*(data[i : i + 1] for i in range(len(data)))) == ["é\u2028😀"]


async def test_a_leading_byte_order_mark_is_dropped() -> None:
    assert await _split(b"\xef\xbb", b"\xbfdata: x\n\xef\xbb\xbfy\n") == ["data: x", "\ufeffy"]


async def test_a_line_longer_than_the_limit_is_refused_before_the_stream_ends() -> None:
    read = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            read.append(1)
            yield b"x" * 100

    with pytest.raises(ProviderResponseError, match="a stream line is longer than 1,000 bytes"):
        [line async for line in iter_lines(endless(), "test", max_line_bytes=1000)]
    assert len(read) == 11


async def test_a_long_line_within_one_read_is_refused_too() -> None:
    with pytest.raises(ProviderResponseError, match="longer than 10 bytes"):
        await _split(b"ok\n" + b"x" * 11 + b"\nok\n", max_line_bytes=10)
    assert await _split(b"x" * 10 + b"\n", max_line_bytes=10) == ["x" * 10]


# ---- SSE / NDJSON ------------------------------------------------------------------------


def test_sse_decoder_joins_data_lines_and_names_events() -> None:
    decoder = SSEDecoder()
    fed = [decoder.feed(line) for line in ("event: delta", "data: a", "data:b", "")]
    assert fed == [None, None, None, SSEEvent("delta", "a\nb")]


def test_sse_decoder_skips_comments_and_defaults_the_event_name() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(": keep-alive") is None
    assert decoder.feed("data: x") is None
    assert decoder.feed("") == SSEEvent("message", "x")
    assert decoder.feed("") is None


def test_sse_decoder_refuses_an_event_that_never_ends() -> None:
    decoder = SSEDecoder("openai", max_event_chars=100)
    for _ in range(9):
        assert decoder.feed("data: " + "x" * 10) is None
    with pytest.raises(ProviderResponseError, match=r"\[openai\] a stream event is longer"):
        decoder.feed("data: " + "x" * 10)


async def test_iter_sse_flushes_a_final_event_without_a_blank_line() -> None:
    events = [e async for e in iter_sse(_lines("data: 1", "", "data: 2"))]
    assert [e.data for e in events] == ["1", "2"]


async def test_iter_ndjson_skips_blank_lines_and_rejects_garbage() -> None:
    assert [o async for o in iter_ndjson(_lines('{"a": 1}', "", '{"b": 2}'), "ollama")] == [
        {"a": 1},
        {"b": 2},
    ]
    with pytest.raises(ProviderResponseError, match="malformed NDJSON"):
        [o async for o in iter_ndjson(_lines("{oops"), "ollama")]


# ---- every provider's stream path --------------------------------------------------------

_MIB = 1 << 20


@pytest.mark.httpcore_only  # counts chunks handed over; a socket buffers megabytes more
@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_a_stream_line_that_never_ends_is_refused_on_every_provider(
    name: str, settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    """17 MiB with no line end: refused at the 16 MiB line limit, the rest left unread."""
    content_type = "application/x-ndjson" if name == "ollama" else "text/event-stream"
    body = Chunks([b"data: " if name != "ollama" else b"{", *[b"x" * _MIB] * 17])
    headers = {"content-type": content_type}
    respx_mock.route().mock(return_value=httpx.Response(200, headers=headers, stream=body))
    async with PROVIDERS[name](settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="stream line is longer than 16,777,216"):
            [item async for item in provider.stream(request("model"))]
    assert body.delivered < len(body.chunks)


@pytest.mark.httpcore_only  # counts chunks handed over; a socket buffers megabytes more
@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_a_json_reply_too_large_for_a_stream_request_is_refused(
    name: str, settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    body = Chunks([b'{"x": "', *[b"x" * _MIB] * 17])
    headers = {"content-type": "application/json"}
    respx_mock.route().mock(return_value=httpx.Response(200, headers=headers, stream=body))
    async with PROVIDERS[name](settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="JSON reply to a streaming request"):
            [item async for item in provider.stream(request("model"))]
    assert body.delivered < len(body.chunks)



@pytest.mark.httpcore_only  # counts chunks handed over; a socket buffers megabytes more
@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_a_reply_body_past_the_limit_is_refused_not_read_whole(
    name: str, settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    """A 50 MB reply (``FINAL(`` + 50 MB + ``)``) was read whole, then parsed on the event
    loop for 10-20 s; now it is refused once 16 MiB have arrived, the rest left unread."""
    body = Chunks([b'{"x": "', *[b"x" * _MIB] * 17])
    headers = {"content-type": "application/json"}
    respx_mock.route().mock(return_value=httpx.Response(200, headers=headers, stream=body))
    async with PROVIDERS[name](settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderResponseError, match="the reply is longer than 16,777,216"):
            await provider.complete(request("model"))
    assert body.delivered < len(body.chunks)
