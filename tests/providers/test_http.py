"""Shared plumbing: the pooled client, closing, error-body reading."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from rlm_async._exceptions import (
    ConfigurationError,
    ProviderUnavailableError,
)
from rlm_async._redact import scrub_secrets
from rlm_async.providers import OpenAIProvider, RetryPolicy
from rlm_async.providers._errors import describe_error_body
from rlm_async.providers._http import merge_extra
from rlm_async.providers._settings import Settings
from rlm_async.providers._transport import build_client
from tests.providers.support import fixture_body, request

URL = "https://api.openai.com/v1/chat/completions"


# ---- client and lifecycle ----------------------------------------------------------------


async def test_build_client_sizes_the_pool_and_timeouts() -> None:
    client = build_client(max_connections=5, connect_timeout=3.0, read_timeout=99.0)
    try:
        assert client.timeout.connect == 3.0
        assert client.timeout.read == 99.0
        assert client._transport._pool._max_connections == 5  # type: ignore[attr-defined]
    finally:
        await client.aclose()


def test_build_client_rejects_a_non_positive_pool() -> None:
    with pytest.raises(ConfigurationError, match="max_connections"):
        build_client(max_connections=0)


async def test_settings_timeouts_reach_the_client() -> None:
    settings = Settings(openai_api_key="k-1234", connect_timeout=1.5, read_timeout=30)
    async with OpenAIProvider(settings=settings) as provider:
        assert provider._client.timeout.connect == 1.5
        assert provider._client.timeout.read == 30


async def test_an_injected_client_is_used_and_never_closed(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    async with httpx.AsyncClient() as client:
        provider = OpenAIProvider(settings=settings, client=client, retry=retry)
        await provider.complete(request())
        await provider.aclose()
        assert not client.is_closed


async def test_a_closed_provider_refuses_requests(settings: Settings) -> None:
    provider = OpenAIProvider(settings=settings)
    await provider.aclose()
    assert provider._client.is_closed
    with pytest.raises(ConfigurationError, match="closed"):
        await provider.complete(request())


async def test_a_bad_base_url_scheme_is_a_configuration_error(retry: RetryPolicy) -> None:
    settings = Settings(openai_api_key="k-1234", openai_base_url="api.openai.com/v1")
    async with OpenAIProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ConfigurationError, match="http://"):
            await provider.complete(request())


def test_merge_extra_merges_nested_dicts_one_level() -> None:
    payload = {"a": 1, "options": {"x": 1, "y": 2}}
    merged = merge_extra(payload, {"options": {"y": 3}, "b": 2})
    assert merged == {"a": 1, "b": 2, "options": {"x": 1, "y": 3}}


# ---- error bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message", "code"),
    [
        ("openai_429_quota", "You exceeded your current quota", "insufficient_quota"),
        ("anthropic_529", "Overloaded", None),
        ("gemini_400_badkey", "API key not valid", "400"),
        ("xai_400_badkey", "Incorrect API key provided", "invalid-argument"),
    ],
)
def test_every_recorded_error_shape_is_read(name: str, message: str, code: str | None) -> None:
    info = describe_error_body(fixture_body(name))
    assert info.message.startswith(message)
    assert info.code == code


def test_ollama_string_errors_and_html_pages_are_read() -> None:
    assert describe_error_body({"error": "model 'x' not found"}).message == "model 'x' not found"
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    assert describe_error_body(page).message == "non-JSON reply: 502 Bad Gateway"


def test_scrub_removes_every_secret() -> None:
    assert (
        scrub_secrets("key sk-abcdef was wrong: sk-abcdef", ["sk-abcdef"])
        == "key [REDACTED] was wrong: [REDACTED]"
    )


class _BrokenStream(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
        raise httpx.ReadError("connection reset by peer")


async def test_a_connection_lost_mid_stream_is_mapped_and_chained(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(200, stream=_BrokenStream()))
    async with OpenAIProvider(settings=settings, retry=retry) as provider:
        with pytest.raises(ProviderUnavailableError, match="connection reset") as info:
            [item async for item in provider.stream(request())]
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert respx_mock.calls.call_count == 1


class _TrackedStream(httpx.AsyncByteStream):
    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.httpcore_only  # in-process; on aiohttp: test_transport.py, over a real socket
async def test_breaking_out_of_a_stream_closes_the_response(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    tracked = _TrackedStream()
    respx_mock.post(URL).mock(return_value=httpx.Response(200, stream=tracked))
    async with OpenAIProvider(settings=settings, retry=retry) as provider:
        stream = provider.stream(request())
        async for _ in stream:
            break
        assert not tracked.closed
        await stream.aclose()  # type: ignore[attr-defined]
        assert tracked.closed
