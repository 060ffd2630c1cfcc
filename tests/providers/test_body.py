"""Request bodies encoded once with orjson, as httpx's ``json=`` wrote them; replies parsed once.

Where orjson and the standard library differ, the decisions of ``providers/_body.py``: a NaN
or an infinity is refused before anything is sent, what orjson cannot write is written as
before, and a lone surrogate (which UTF-8 cannot carry) goes as U+FFFD.
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import httpx
import pytest
import respx

from rlm_async._exceptions import ConfigurationError
from rlm_async.providers import (
    AnthropicProvider,
    GeminiProvider,
    OpenAICompatibleProvider,
    RetryPolicy,
)
from rlm_async.providers._body import encode_body, parse_json
from rlm_async.providers._settings import Settings
from tests.providers.support import call, fixture_body, request

URL = "http://compat.test/v1/chat/completions"
# Every character JSON escapes, the ones it may leave raw, and text outside ASCII.
TEXT = (
    "".join(chr(i) for i in range(0x20))
    + ' "quoted" \\ / </script> \x7f \x85 \u2028 \u2029 é 漢字 \U0001f600 \ufeff \uffff'
)


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def httpx_json(payload: Any) -> bytes:
    """What httpx's ``json=`` sends for ``payload``: the body before this change."""
    return httpx.Request("POST", "http://x", json=payload).content


@pytest.mark.parametrize(
    "payload",
    [
        {"model": "m", "messages": [{"role": "user", "content": TEXT}]},
        {"model": "m", "max_tokens": 10, "stream": True, "stop": None, "n": 0, "flag": False},
        {"nested": {"list": [1, [2, [3, {"deep": TEXT}]]], "empty": {}, "none": []}},
        {"tuple": (1, "two"), "subclass": Name("x"), "int_enum": Colour.RED},
        {"big": 2**70, "negative": -(2**64)},  # past 64 bits: orjson refuses them
        {"keys": {1: "int", None: "none", False: "bool", 1.5: "float"}},  # orjson: str only
    ],
)
def test_a_body_is_the_bytes_httpx_json_sent(payload: dict[str, Any]) -> None:
    assert encode_body(payload) == httpx_json(payload)


def test_numbers_keep_their_values_to_the_last_bit() -> None:
    """Floats come out as the shortest text that reads back the same (``1e-7`` where the
    standard library wrote ``1e-07``): the same numbers, not always the same characters."""
    numbers = [0.1, 1e-7, 1e16, 5e-324, 1.7976931348623157e308, -0.0, 0.7, 123456789.123456789]
    body = encode_body({"numbers": numbers, "temperature": 0.2})
    read = json.loads(body)
    assert read == json.loads(httpx_json({"numbers": numbers, "temperature": 0.2}))
    assert [x.hex() for x in read["numbers"]] == [x.hex() for x in numbers]


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"temperature": math.nan}, "body['temperature']"),
        ({"generationConfig": {"topP": math.inf}}, "body['generationConfig']['topP']"),
        ({"extra": [1, {"weights": [0.5, -math.inf]}]}, "body['extra'][1]['weights'][1]"),
    ],
)
def test_nan_and_infinity_are_refused_naming_where(payload: dict[str, Any], where: str) -> None:
    """orjson would write ``null`` for them without a word; httpx refused them too."""
    with pytest.raises(ConfigurationError, match="NaN or infinite") as info:
        encode_body(payload)
    assert where in str(info.value)


def test_lone_surrogates_are_sent_as_replacement_characters() -> None:
    """A surrogate pair written as two code points is its character; a lone half, U+FFFD."""
    body = encode_body({"content": "a\ud800b \ud83d\ude00 c\udfff", "n": 2**70})
    read = json.loads(body.decode("utf-8"))
    assert read == {"content": "a\ufffdb \U0001f600 c\ufffd", "n": 2**70}


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2, "b": [true, false, null], "c": "\\u2028\\ud83d\\ude00"}',
        '{"id": 18446744073709551617, "n": -9223372036854775809, "x": 1e400}',  # exact ints
        '{"nan": NaN, "inf": [Infinity, -Infinity]}',  # as json.loads reads them
        '"\\ud800 lone"',  # a lone surrogate escape, which jiter refuses
        "[" * 300 + "]" * 300,  # deeper than jiter's limit
        '  {"padded": "\\n"}  \n',
    ],
)
def test_replies_are_read_as_json_loads_reads_them(text: str) -> None:
    assert repr(parse_json(text)) == repr(json.loads(text))
    assert repr(parse_json(text.encode())) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["", "<html>502</html>", '{"a": 1} trailing', "[1,]"])
def test_what_is_not_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"Expecting value|Extra data"):
        parse_json(text)


# ---- through the adapters, over both transports --------------------------------------------


@pytest.fixture
def compat(retry: RetryPolicy) -> OpenAICompatibleProvider:
    settings = Settings(openai_compatible_base_url="http://compat.test/v1")
    return OpenAICompatibleProvider(settings=settings, retry=retry)


async def test_the_body_goes_as_utf8_json_with_its_content_type(
    compat: OpenAICompatibleProvider, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    extra = {"seed": 2**70, "metadata": {"note": "é\u2028"}, "top_p": 0.9}
    async with compat:
        await compat.complete(request("local", prompt=TEXT, temperature=0.3, extra=extra))
    sent = route.calls.last.request
    assert sent.headers["content-type"] == "application/json"
    assert int(sent.headers["content-length"]) == len(sent.content)
    body = json.loads(sent.content.decode("utf-8"))
    assert body["messages"] == [{"role": "user", "content": TEXT}]
    assert (body["seed"], body["metadata"], body["top_p"]) == (2**70, extra["metadata"], 0.9)


async def test_every_retry_sends_the_same_body(
    compat: OpenAICompatibleProvider, respx_mock: respx.MockRouter
) -> None:
    ok = httpx.Response(200, json=fixture_body("openai_ok"))
    route = respx_mock.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(502), ok])
    async with compat:
        await compat.complete(request("local", prompt=TEXT))
    bodies = [call.request.content for call in route.calls]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    assert json.loads(bodies[0])["messages"][0]["content"] == TEXT


@pytest.mark.parametrize("stream", [False, True])
async def test_a_nan_temperature_is_refused_before_anything_is_sent(
    compat: OpenAICompatibleProvider, respx_mock: respx.MockRouter, stream: bool
) -> None:
    """It was a ``ValueError`` from inside httpx, which is no error of the provider's tree."""
    route = respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    async with compat:
        with pytest.raises(ConfigurationError, match=r"body\['temperature'\]"):
            await call(compat, request("local", temperature=math.nan), stream=stream)
    assert not route.called


async def test_an_infinity_in_extra_is_refused_on_every_adapter(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.route().respond(500)
    for adapter, model in ((AnthropicProvider, "claude-x"), (GeminiProvider, "gemini-x")):
        async with adapter(settings=settings, retry=retry) as provider:
            with pytest.raises(ConfigurationError, match="NaN or infinite"):
                await provider.complete(request(model, extra={"x": {"y": math.inf}}))
    assert not route.called


async def test_a_prompt_with_a_lone_surrogate_is_sent_not_raised(
    compat: OpenAICompatibleProvider, respx_mock: respx.MockRouter
) -> None:
    """Model code can make one (``bytes.decode(errors="surrogateescape")``); httpx raised
    ``UnicodeEncodeError``, which ended the whole run."""
    route = respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    async with compat:
        completion = await compat.complete(request("local", prompt="undecodable: \udcff!"))
    assert completion.text
    sent = json.loads(route.calls.last.request.content.decode("utf-8"))
    assert sent["messages"][0]["content"] == "undecodable: \ufffd!"
