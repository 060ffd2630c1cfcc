"""llm_complete: the one-shot call on the same adapters."""

from __future__ import annotations

import json

import pytest
import respx

from rlm_async import llm_complete
from rlm_async._exceptions import ConfigurationError
from rlm_async._types import Message
from rlm_async.providers._settings import Settings
from tests.providers.support import fixture_body

URL = "https://api.openai.com/v1/chat/completions"


async def test_a_prompt_becomes_one_user_message(
    settings: Settings, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    completion = await llm_complete(
        "gpt-4o", "hello", system="sys", max_tokens=20, temperature=0.1, settings=settings
    )
    body = json.loads(route.calls.last.request.content)
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hello"},
    ]
    assert (body["max_completion_tokens"], body["temperature"]) == (20, 0.1)
    assert completion.provider == "openai"
    assert completion.usage.cost_usd is not None


async def test_messages_may_be_dicts_or_message_objects(
    settings: Settings, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).respond(200, json=fixture_body("openai_ok"))
    await llm_complete(
        "openai:gpt-4o",
        [{"role": "user", "content": "a"}, Message(role="assistant", content="b")],
        settings=settings,
    )
    roles = [m["role"] for m in json.loads(route.calls.last.request.content)["messages"]]
    assert roles == ["user", "assistant"]


@pytest.mark.parametrize("bad", [[], [{"role": "robot", "content": "x"}], [{"text": "x"}]])
async def test_malformed_messages_are_configuration_errors(
    bad: list[object], settings: Settings
) -> None:
    with pytest.raises(ConfigurationError):
        await llm_complete("gpt-4o", bad, settings=settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"system": 123}, "system must be a str"),
        ({"settings": {"openai_api_key": "k"}}, "rlm_async.Settings"),
    ],
)
async def test_bad_options_are_configuration_errors(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await llm_complete("gpt-4o", "hi", **options)  # type: ignore[arg-type]


async def test_missing_key_is_a_configuration_error_before_any_request() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        await llm_complete("gpt-4o", "hi", settings=Settings())


async def test_settings_default_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, respx_mock: respx.MockRouter
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-1234")
    route = respx_mock.post("https://api.anthropic.com/v1/messages").respond(
        200, json=fixture_body("anthropic_ok")
    )
    completion = await llm_complete("claude-sonnet-4-5", "hi")
    assert route.calls.last.request.headers["x-api-key"] == "sk-ant-env-1234"
    assert completion.provider == "anthropic"
