"""Provider prompt caching (issue 16): what each adapter sends for a run's root conversation
(a request with a ``cache_key``), and the cache fields of recorded replies read into
``Usage`` and priced at the cache rates."""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx

from rlm_async._types import Completion, Message, Usage
from rlm_async.providers import (
    AnthropicProvider,
    CompletionRequest,
    GeminiProvider,
    ModelPrice,
    OpenAICompatibleProvider,
    OpenAIProvider,
    PriceTable,
    RetryPolicy,
    XAIProvider,
)
from rlm_async.providers._settings import Settings
from rlm_async.providers.anthropic import MAX_BREAKPOINTS, to_wire
from rlm_async.providers.gemini import usage_from_wire as gemini_usage
from tests.providers.recorded import RECORDED, Exchange, check, load
from tests.providers.support import request

ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
SYSTEM = "You are the root model of an RLM. " * 50


def _conversation(turns: int) -> list[Message]:
    """A root conversation after ``turns`` turns: the first prompt, then reply and output."""
    messages = [Message(role="user", content="context and query")]
    for turn in range(1, turns):
        messages.append(Message(role="assistant", content=f"```repl\nprint({turn})\n```"))
        messages.append(Message(role="user", content=f"output of turn {turn}"))
    return messages


def _root_turn(turns: int, **kwargs: Any) -> CompletionRequest:
    return CompletionRequest(
        model="claude-sonnet-4-5",
        system=SYSTEM,
        messages=_conversation(turns),
        cache_key="run-1",
        **kwargs,
    )


def _breakpoints(body: dict[str, Any]) -> tuple[bool, list[int]]:
    """Whether the system prompt is marked, and which messages are (by index)."""
    system = body["system"]
    on_system = isinstance(system, list) and "cache_control" in system[-1]
    marked = [
        i
        for i, message in enumerate(body["messages"])
        if isinstance(message["content"], list)
        and any("cache_control" in block for block in message["content"])
    ]
    return on_system, marked


def _count(body: dict[str, Any]) -> int:
    return json.dumps(body).count('"cache_control"')


# ---- Anthropic: breakpoints ------------------------------------------------------------------


def test_anthropic_breakpoints_move_forward_each_turn_and_never_exceed_four() -> None:
    seen = []
    for turns in range(1, 11):
        body = to_wire(_root_turn(turns))
        on_system, marked = _breakpoints(body)
        assert on_system
        assert _count(body) <= MAX_BREAKPOINTS
        last = len(body["messages"]) - 1
        # The newest user turn (written for the next turn) and the one before it (where
        # the previous turn wrote, read now).
        assert marked == ([last] if turns == 1 else [last - 2, last])
        assert all(body["messages"][i]["role"] == "user" for i in marked)
        seen.append(marked[-1])
    assert seen == sorted(set(seen))  # strictly forward


def test_anthropic_marked_turns_keep_their_text_and_the_prefix_stays_the_same() -> None:
    body = to_wire(_root_turn(3))
    blocks = body["messages"][-1]["content"]
    assert blocks == [
        {"type": "text", "text": "output of turn 2", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["system"] == [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]
    # What turn 3 sent is what turn 4 sends before its new messages (unmarked text equal).
    later = to_wire(_root_turn(4))

    def texts(messages: list[dict[str, Any]]) -> list[str]:
        return [
            m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]
            for m in messages
        ]

    assert texts(later["messages"])[:5] == texts(body["messages"])


def test_anthropic_sends_no_breakpoints_for_one_off_prompts_or_when_turned_off() -> None:
    one_off = to_wire(request("claude-sonnet-4-5", system=SYSTEM))
    assert one_off["system"] == SYSTEM
    assert _count(one_off) == 0
    assert _count(to_wire(_root_turn(4), cache_prompts=False)) == 0


def test_anthropic_does_not_mark_an_empty_turn() -> None:
    req = CompletionRequest(
        model="claude-sonnet-4-5",
        messages=[Message(role="user", content="")],
        cache_key="run-1",
    )
    assert to_wire(req)["messages"] == [{"role": "user", "content": ""}]


async def test_anthropic_root_turn_is_marked_and_its_cache_usage_priced(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = load(RECORDED / "anthropic_cache_read_nonstream.json")
    route = respx_mock.post(ANTHROPIC_URL).mock(return_value=exchange.response())
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(_root_turn(5))
    sent = json.loads(route.calls.last.request.content)
    assert _breakpoints(sent) == (True, [6, 8])
    check(exchange, completion)
    usage = completion.usage
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (1532, 1111, 418)
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write, $15 output per M.
    expected = (3 * 3.0 + 1111 * 0.30 + 418 * 3.75 + 33 * 15.0) / 1e6
    assert usage.cost_usd == pytest.approx(expected)


async def test_anthropic_stream_reads_the_cache_counts_of_a_warm_cache(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = load(RECORDED / "anthropic_stream_cache_read_warm.json")
    route = respx_mock.post(ANTHROPIC_URL).mock(return_value=exchange.response())
    req = _root_turn(2).model_copy(update={"model": exchange.model})
    async with AnthropicProvider(settings=settings, retry=retry) as provider:
        items = [item async for item in provider.stream(req)]
    assert _breakpoints(json.loads(route.calls.last.request.content))[0]
    completion = items[-1]
    assert isinstance(completion, Completion)
    check(exchange, completion)
    assert completion.usage.cache_write_tokens == 0
    # claude-haiku-4-5: $1 input, $0.10 cache read, $5 output per M.
    expected = (11 * 1.0 + 16522 * 0.10 + 4 * 5.0) / 1e6
    assert completion.usage.cost_usd == pytest.approx(expected)


# ---- OpenAI-shaped: the key ------------------------------------------------------------------

GPT5 = PriceTable({"openai:gpt-5.6-sol": ModelPrice(1.25, 10.0, 0.125)})


def _exchange(name: str) -> Exchange:
    return load(RECORDED / f"{name}.json")


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_openai_sends_the_run_key_as_prompt_cache_key(
    stream: bool, settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = _exchange("openai_cached_prompt_tokens")
    route = respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=exchange.response()
    )
    req = request(exchange.model, cache_key="run-7")
    async with OpenAIProvider(settings=settings, retry=retry, prices=GPT5) as provider:
        if stream:
            completion = [item async for item in provider.stream(req)][-1]
        else:
            completion = await provider.complete(req)
    sent = json.loads(route.calls.last.request.content)
    assert sent["prompt_cache_key"] == "run-7"
    assert "cache_control" not in json.dumps(sent)
    assert isinstance(completion, Completion)
    check(exchange, completion)
    expected = (8 * 1.25 + 4012 * 0.125 + 4 * 10.0) / 1e6
    assert completion.usage.cost_usd == pytest.approx(expected)


async def test_openai_sends_no_key_for_a_one_off_prompt(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = _exchange("openai_cached_prompt_tokens")
    route = respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=exchange.response()
    )
    async with OpenAIProvider(settings=settings, retry=retry) as provider:
        await provider.complete(request(exchange.model))
    assert "prompt_cache_key" not in json.loads(route.calls.last.request.content)


async def test_xai_routes_the_run_by_header_not_by_body_field(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = _exchange("xai_cached_tokens_grok3")
    route = respx_mock.post("https://api.x.ai/v1/chat/completions").mock(
        return_value=exchange.response()
    )
    async with XAIProvider(settings=settings, retry=retry) as provider:
        completion = await provider.complete(request("grok-3", cache_key="run-7"))
        await provider.complete(request("grok-3"))
    first, second = (call.request for call in route.calls)
    assert first.headers["x-grok-conv-id"] == "run-7"
    assert "prompt_cache_key" not in json.loads(first.content)
    assert "x-grok-conv-id" not in second.headers
    check(exchange, completion)
    # grok-3: $3 input, $0.75 cached, $15 output per M.
    assert completion.usage.cost_usd == pytest.approx((23 * 3.0 + 5 * 0.75 + 4 * 15.0) / 1e6)


async def test_xai_stream_reads_cached_and_reasoning_tokens(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = _exchange("xai_stream_grok4_reasoning_cached_usage")
    route = respx_mock.post("https://api.x.ai/v1/chat/completions").mock(
        return_value=exchange.response()
    )
    async with XAIProvider(settings=settings, retry=retry) as provider:
        items = [i async for i in provider.stream(request("grok-4", cache_key="run-8"))]
    assert route.calls.last.request.headers["x-grok-conv-id"] == "run-8"
    completion = items[-1]
    assert isinstance(completion, Completion)
    check(exchange, completion)
    assert completion.usage.cost_usd == pytest.approx((22 * 3.0 + 680 * 0.75 + 141 * 15.0) / 1e6)


async def test_compatible_servers_get_neither_key_nor_header(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = _exchange("openai_cached_prompt_tokens")
    route = respx_mock.post("http://compat.test/v1/chat/completions").mock(
        return_value=exchange.response()
    )
    async with OpenAICompatibleProvider(settings=settings, retry=retry) as provider:
        await provider.complete(request("m", cache_key="run-7"))
    sent = route.calls.last.request
    assert "prompt_cache_key" not in json.loads(sent.content)
    assert "x-grok-conv-id" not in sent.headers


async def test_gemini_caches_implicitly_and_sends_nothing_for_the_key(
    settings: Settings, retry: RetryPolicy, respx_mock: respx.MockRouter
) -> None:
    exchange = _exchange("gemini_stream_20flash")
    route = respx_mock.route().mock(return_value=exchange.response())
    async with GeminiProvider(settings=settings, retry=retry) as provider:
        [i async for i in provider.stream(request("gemini-2.0-flash", cache_key="run-7"))]
    sent = route.calls.last.request
    assert "run-7" not in sent.content.decode()
    assert "run-7" not in str(sent.headers)


def test_gemini_cached_content_tokens_are_cached_input_priced_at_the_cache_rate() -> None:
    # The documented usageMetadata of an implicit cache hit (no recorded one in the set).
    usage = gemini_usage(
        {
            "promptTokenCount": 12000,
            "cachedContentTokenCount": 10240,
            "candidatesTokenCount": 50,
            "totalTokenCount": 12050,
        }
    )
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_write_tokens) == (12000, 10240, 0)
    cost = PriceTable().cost("gemini", "gemini-2.5-flash", usage)
    assert cost == pytest.approx((1760 * 0.30 + 10240 * 0.075 + 50 * 2.50) / 1e6)


# ---- prices ----------------------------------------------------------------------------------


def test_cache_writes_cost_the_write_rate_and_default_to_the_input_rate() -> None:
    usage = Usage(input_tokens=1000, cached_tokens=600, cache_write_tokens=300, output_tokens=10)
    assert ModelPrice(3.0, 15.0, 0.30, 3.75).cost(usage) == pytest.approx(
        (100 * 3.0 + 600 * 0.30 + 300 * 3.75 + 10 * 15.0) / 1e6
    )
    assert ModelPrice(3.0, 15.0, 0.30).cost(usage) == pytest.approx(
        (400 * 3.0 + 600 * 0.30 + 10 * 15.0) / 1e6
    )


def test_every_default_anthropic_price_writes_at_one_and_a_quarter_times_input() -> None:
    table = PriceTable()
    models = [key.split(":", 1)[1] for key in table._prices if key.startswith("anthropic:")]
    assert models
    for model in models:
        price = table.price("anthropic", model)
        assert price is not None and price.cache_write == pytest.approx(price.input * 1.25)


def test_a_four_number_price_is_input_output_cache_read_cache_write() -> None:
    table = PriceTable({"anthropic:my-claude": (2.0, 10.0, 0.2, 2.5)})
    assert table.price("anthropic", "my-claude") == ModelPrice(2.0, 10.0, 0.2, 2.5)
