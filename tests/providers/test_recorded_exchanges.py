"""Every recorded real exchange, replayed through our client, gives what the recording says.

Streams are also replayed with a raw U+2028 / U+2029 / U+0085 in a text delta (legal
unescaped in JSON, and sent by OpenAI: openai/openai-python#1230), re-framed with CRLF or
CR line ends cut across reads, and 2xx JSON replies are served to a *streaming* request
(some OpenAI-compatible servers ignore ``"stream": true``).
"""

from __future__ import annotations

import pytest
import respx

from rlm_async._exceptions import ProviderError
from rlm_async._types import Completion
from rlm_async.providers import RetryPolicy, TextDelta
from rlm_async.providers._settings import Settings
from tests.providers.recorded import (
    PROVIDERS,
    SEPARATORS,
    Exchange,
    check,
    cut_at_line_ends_and_inside_characters,
    error_class,
    exchanges,
    inject,
    reframe,
)

STREAMS = exchanges(lambda e: e.stream)
TEXT_STREAMS = exchanges(
    lambda e: e.stream and e.expects_text and not e.name.startswith("composed/")
)
JSON_REPLIES = exchanges(lambda e: not e.stream and e.status == 200)


def _ids(items: list[Exchange]) -> list[str]:
    return [e.name for e in items]


async def _stream(
    exchange: Exchange, settings: Settings, retry: RetryPolicy
) -> tuple[list[str], Completion]:
    provider = PROVIDERS[exchange.provider](settings=settings, retry=retry)
    async with provider:
        items = [item async for item in provider.stream(exchange.request())]
    *deltas, last = items
    assert isinstance(last, Completion)
    assert all(isinstance(d, TextDelta) for d in deltas)
    return [d.text for d in deltas if isinstance(d, TextDelta)], last


async def _stream_as_recorded(
    exchange: Exchange, settings: Settings, retry: RetryPolicy
) -> tuple[list[str], Completion] | None:
    """The stream's deltas and completion, checked against the recording; ``None`` when the
    recording expects an error (and that error, of the recorded class, was raised)."""
    if not exchange.expects_text:
        with pytest.raises(ProviderError) as info:
            await _stream(exchange, settings, retry)
        assert type(info.value) is error_class(exchange)
        return None
    deltas, completion = await _stream(exchange, settings, retry)
    check(exchange, completion)
    return deltas, completion


def _covers_every_provider(items: list[Exchange]) -> None:
    assert {e.provider for e in items} == set(PROVIDERS)


def test_the_recordings_cover_every_provider() -> None:
    _covers_every_provider(TEXT_STREAMS)
    _covers_every_provider(JSON_REPLIES)


@pytest.mark.parametrize("exchange", STREAMS, ids=_ids(STREAMS))
async def test_a_recorded_stream_gives_the_recorded_result(
    exchange: Exchange, settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.route().mock(return_value=exchange.response())
    streamed = await _stream_as_recorded(exchange, settings, retry)
    if streamed is None:
        return
    deltas, completion = streamed
    assert "".join(deltas) == completion.text


@pytest.mark.parametrize("separator", list(SEPARATORS.values()), ids=list(SEPARATORS))
@pytest.mark.parametrize("exchange", TEXT_STREAMS, ids=_ids(TEXT_STREAMS))
async def test_a_raw_line_separator_in_streamed_text_is_text_not_a_line_end(
    exchange: Exchange,
    separator: str,
    settings: Settings,
    retry: RetryPolicy,
    respx_mock: respx.MockRouter,
) -> None:
    body, text = inject(exchange, separator)
    respx_mock.route().mock(return_value=exchange.response(body))
    deltas, completion = await _stream(exchange, settings, retry)
    check(exchange, completion, text=text)
    assert "".join(deltas) == text


@pytest.mark.parametrize("line_end", ["\r\n", "\r"], ids=["CRLF", "CR"])
@pytest.mark.parametrize("exchange", TEXT_STREAMS, ids=_ids(TEXT_STREAMS))
async def test_line_ends_cut_across_reads_end_one_line_each(
    exchange: Exchange,
    line_end: str,
    settings: Settings,
    retry: RetryPolicy,
    respx_mock: respx.MockRouter,
) -> None:
    """CR then LF in the next read is one line end (no blank line, so no early dispatch).

    A raw U+2028 is in the text too, and every multi-byte character is cut across reads.
    """
    body, text = inject(exchange, "\u2028")
    data = reframe(body, line_end).encode()
    chunks = cut_at_line_ends_and_inside_characters(data)
    respx_mock.route().mock(return_value=exchange.response(chunks=chunks))
    deltas, completion = await _stream(exchange, settings, retry)
    check(exchange, completion, text=text)
    assert "".join(deltas) == text


@pytest.mark.parametrize("label", ["as sent", "text/event-stream"])
@pytest.mark.parametrize("exchange", JSON_REPLIES, ids=_ids(JSON_REPLIES))
async def test_a_json_reply_to_a_streaming_request_is_read_as_the_reply(
    exchange: Exchange,
    label: str,
    settings: Settings,
    retry: RetryPolicy,
    respx_mock: respx.MockRouter,
) -> None:
    assert exchange.headers["content-type"].startswith("application/json")
    response = exchange.response()
    if label != "as sent":  # some servers label their one JSON reply as a stream
        response.headers["content-type"] = label
    respx_mock.route().mock(return_value=response)
    streamed = await _stream_as_recorded(exchange, settings, retry)
    if streamed is None:
        return
    deltas, completion = streamed
    assert deltas == [completion.text]


@pytest.mark.parametrize(
    "name", ["openai_stream_gpt4o_mini_usage_chunk", "ollama_stream_docs_final_without_message"]
)
async def test_a_stream_mislabelled_as_json_is_still_read_as_a_stream(
    name: str, settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    (exchange,) = exchanges(lambda e: e.name == name)
    mislabelled = exchange.response()
    mislabelled.headers["content-type"] = "application/json"
    respx_mock.route().mock(return_value=mislabelled)
    deltas, completion = await _stream(exchange, settings, retry)
    check(exchange, completion)
    assert "".join(deltas) == completion.text
