"""A served RLM with tools: a request's ``options.max_tool_calls`` caps its tool calls, and
may not loosen the server's own ``Budget(max_tool_calls=...)``."""

from __future__ import annotations

from rlm_async import RLM, Budget
from rlm_async.providers import CompletionRequest
from rlm_async.server import create_app
from rlm_async.testing import ScriptedModel
from tests.helpers import repl
from tests.server.support import asgi_client

calls: list[str] = []


def lookup(key: str) -> str:
    """The value stored under one key."""
    calls.append(key)
    return key.upper()


def three_calls(request: CompletionRequest) -> str:
    """Root model: model code calls the tool three times, keeping what each call did."""
    return repl(
        "seen = []\n"
        "for key in ['a', 'b', 'c']:\n"
        "    try:\n"
        "        seen.append(lookup(key))\n"
        "    except Exception as exc:\n"
        "        seen.append(type(exc).__name__)\n"
        "FINAL(' '.join(seen))"
    )


async def test_a_request_caps_its_tool_calls_within_the_servers_budget() -> None:
    calls.clear()
    model = ScriptedModel(three_calls)
    rlm = RLM(model=model, tools=[lookup], budget=Budget(max_tool_calls=2))
    async with rlm, asgi_client(create_app(rlm)) as client:
        capped = await client.post(
            "/v1/rlm", json={"context": "x", "query": "q", "options": {"max_tool_calls": 1}}
        )
        served = await client.post("/v1/rlm", json={"context": "x", "query": "q"})
        over = await client.post(
            "/v1/rlm", json={"context": "x", "query": "q", "options": {"max_tool_calls": 3}}
        )
    assert capped.status_code == 200, capped.text
    assert capped.json()["answer"] == "A BudgetExceeded BudgetExceeded"
    assert served.json()["answer"] == "A B BudgetExceeded"  # the server's own budget: 2
    assert over.status_code == 400
    error = over.json()["error"]
    assert (error["code"], error["param"]) == ("option_over_limit", "options.max_tool_calls")
    assert calls == ["a", "a", "b"]  # 1 call, then 2: the refused ones never ran
