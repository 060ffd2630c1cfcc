"""The optional bearer token: 401 without or with a wrong one, 200 with the right one."""

from __future__ import annotations

import pytest
import structlog

from rlm_async import RLM
from rlm_async.server import create_app
from rlm_async.server._auth import BearerAuth
from rlm_async.testing import ScriptedModel
from tests.server.support import asgi_client

TOKEN = "s3cret-token-value"
CHAT = {"messages": [{"role": "user", "content": "q"}]}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {TOKEN}x"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": TOKEN},
    ],
)
async def test_a_missing_or_wrong_token_is_a_401_that_does_not_echo_the_token(
    headers: dict[str, str],
) -> None:
    root = ScriptedModel(["FINAL(x)"])
    async with (
        RLM(model=root) as rlm,
        asgi_client(create_app(rlm, api_key=TOKEN), **headers) as client,
    ):
        response = await client.post("/v1/chat/completions", json=CHAT)
        native = await client.post("/v1/rlm", json={"context": "", "query": "q"})
    assert response.status_code == 401 == native.status_code
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert TOKEN not in response.text
    assert root.requests == []


async def test_the_right_token_passes_and_health_needs_none() -> None:
    async with RLM(model=ScriptedModel(["FINAL(yes)"])) as rlm:
        app = create_app(rlm, api_key=TOKEN)
        async with asgi_client(app, authorization=f"bearer  {TOKEN}") as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
        async with asgi_client(app) as anonymous:
            health = await anonymous.get("/health")
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "yes"
    assert health.status_code == 200


async def test_the_token_never_reaches_logs_or_reprs() -> None:
    async with RLM(model=ScriptedModel(["FINAL(x)"])) as rlm:
        app = create_app(rlm, api_key=TOKEN)
        with structlog.testing.capture_logs() as logs:
            async with asgi_client(app, authorization="Bearer nope") as client:
                await client.post("/v1/chat/completions", json=CHAT)
    assert TOKEN not in repr(logs)
    assert TOKEN not in repr(BearerAuth(app, token=TOKEN))
    assert TOKEN not in repr(app.user_middleware)
