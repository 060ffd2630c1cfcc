"""A budget for a whole session over HTTP (``POST /v1/sessions`` with ``budget``), on a real
server on 127.0.0.1: it bounds the session's completions together, and a spent session's next
completion is refused before any model call."""

from __future__ import annotations

import httpx

from tests.server.test_sessions_http import error_of, served


async def test_a_session_budget_bounds_its_completions_together() -> None:
    async with served() as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        made = await client.post(
            "/v1/sessions", json={"context": "abcdef", "budget": {"max_seconds": 1e-6}}
        )
        assert made.status_code == 201, made.text
        base = f"/v1/sessions/{made.json()['id']}"
        # The first completion runs a cell: longer than the microsecond the session has.
        first = await client.post(f"{base}/completions", json={"query": "keep it"})
        second = await client.post(f"{base}/completions", json={"query": "show it"})
        bad = await client.post(
            "/v1/sessions", json={"context": "x", "budget": {"max_cost_usd": -1}}
        )
        unknown = await client.post(
            "/v1/sessions", json={"context": "x", "budget": {"max_iterations": 1}}
        )
    assert first.status_code == 200, first.text
    assert first.json()["finished"] is False and first.json()["budget"] == "max_seconds"
    assert second.status_code == 400
    refused = error_of(second)
    assert refused["type"] == "budget_exceeded" and refused["code"] == "max_seconds"
    assert "the session's budget max_seconds=1e-06 is spent" in refused["message"]
    assert bad.status_code == 400 and error_of(bad)["param"] == "budget.max_cost_usd"
    assert unknown.status_code == 400 and error_of(unknown)["param"] == "budget.max_iterations"
