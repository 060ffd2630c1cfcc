"""Budgets for a whole completion tree, checked before work is dispatched."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from rlm_async import RLM, Budget, BudgetExceeded, ConfigurationError, Usage
from rlm_async import events as ev
from rlm_async.testing import MockReply, ScriptedModel
from tests.helpers import child_pids, repl


def counting_sub() -> ScriptedModel:
    return ScriptedModel(lambda r: "ok", name="sub")


async def test_a_batch_over_the_sub_call_budget_is_refused_whole_before_any_request() -> None:
    sub = counting_sub()
    root = ScriptedModel(
        [repl("r = llm_query_batched(['x'] * 10)\nprint(r[0])"), "FINAL(stopped)"], name="root"
    )
    async with RLM(model=root, sub_model=sub, budget=Budget(max_subcalls=5)) as rlm:
        result = await rlm.completion("abc", "q")
    assert sub.requests == [], "no sub-call may be sent when the batch is over budget"
    feedback = root.requests[1].messages[-1].content
    assert "would exceed the sub-call budget" in feedback and "5 of 5 left" in feedback
    assert result.answer == "stopped"


async def test_batches_within_the_sub_call_budget_run_and_the_next_one_is_refused() -> None:
    sub = counting_sub()
    # Distinct prompts: identical ones would be sent once (the sub-call cache).
    code = (
        "a = llm_query_batched([f'x{i}' for i in range(3)])\n"
        "b = llm_query_batched([f'y{i}' for i in range(3)])\nprint(a, b[0][:40])"
    )
    root = ScriptedModel([repl(code), "FINAL(done)"])
    async with RLM(model=root, sub_model=sub, budget=Budget(max_subcalls=4)) as rlm:
        await rlm.completion("abc", "q")
    assert len(sub.requests) == 3
    assert "['ok', 'ok', 'ok'] Error: budget" in root.requests[1].messages[-1].content


async def test_a_batch_whose_prompts_would_exceed_the_token_budget_is_refused() -> None:
    sub = counting_sub()
    # 4 prompts of 40,000 characters ≈ 40,000 tokens: more than the 20,000 budget.
    root = ScriptedModel(
        [repl("r = llm_query_batched(['w' * 40_000] * 4)\nprint(r[0][:60])"), "FINAL(x)"]
    )
    async with RLM(model=root, sub_model=sub, budget=Budget(max_tokens=20_000)) as rlm:
        await rlm.completion("abc", "q")
    assert sub.requests == []
    assert "tokens but" in root.requests[1].messages[-1].content


async def test_an_oversized_prompt_is_refused_with_a_hint() -> None:
    sub = counting_sub()
    root = ScriptedModel([repl("print(llm_query('z' * 5_000)[:200])"), "FINAL(x)"])
    async with RLM(model=root, sub_model=sub, budget=Budget(max_prompt_chars=1_000)) as rlm:
        await rlm.completion("abc", "q")
    assert sub.requests == []
    assert "split it into smaller pieces" in root.requests[1].messages[-1].content


async def test_a_spent_token_budget_ends_the_run_with_the_partial_result() -> None:
    big = MockReply(text=repl("x = 1"), usage=Usage(input_tokens=900, output_tokens=200))
    root = ScriptedModel(lambda r: big)
    before = child_pids()
    async with RLM(model=root, budget=Budget(max_tokens=1_000)) as rlm:
        with pytest.raises(BudgetExceeded) as info:
            await rlm.completion("abc", "q")
    error = info.value
    assert error.budget == "max_tokens"
    assert error.partial is not None and not error.partial.finished
    assert error.partial.usage.total_tokens == 1_100
    assert error.partial.iterations == 1
    assert "x = 1" in error.partial.answer
    assert any(isinstance(e, ev.TurnFinished) for e in error.partial.trajectory)
    assert child_pids() <= before


async def test_a_cost_budget_stops_spending_after_the_call_that_crossed_it() -> None:
    priced = MockReply(
        text="sub answer", usage=Usage(input_tokens=10, output_tokens=10, cost_usd=0.02)
    )
    sub = ScriptedModel(lambda r: priced, name="sub")
    code = "for i in range(10):\n    llm_query(f'q{i}')"
    root = ScriptedModel([repl(code), "FINAL(x)"])
    async with RLM(model=root, sub_model=sub, budget=Budget(max_cost_usd=0.05)) as rlm:
        with pytest.raises(BudgetExceeded) as info:
            await rlm.completion("abc", "q")
    assert info.value.budget == "max_cost_usd"
    assert len(sub.requests) == 3  # 0.02, 0.04, 0.06 > 0.05: the third call ends the run


async def test_on_budget_exceeded_return_gives_an_unfinished_result_instead_of_raising() -> None:
    big = MockReply(text=repl("x = 1"), usage=Usage(input_tokens=600, output_tokens=600))
    async with RLM(
        model=ScriptedModel(lambda r: big),
        budget=Budget(max_tokens=1_000),
        on_budget_exceeded="return",
    ) as rlm:
        result = await rlm.completion("abc", "q")
    assert result.finished is False
    assert result.usage.total_tokens == 1_200


async def test_the_time_budget_cancels_the_run_and_its_repl() -> None:
    root = ScriptedModel([repl("import time\ntime.sleep(30)"), "FINAL(late)"])
    before = child_pids()
    async with RLM(model=root, budget=Budget(max_seconds=0.5)) as rlm:
        with pytest.raises(BudgetExceeded) as info:
            await rlm.completion("abc", "q")
    assert info.value.budget == "max_seconds"
    assert info.value.partial is not None and info.value.partial.iterations == 1
    assert child_pids() <= before


async def test_a_budget_warning_event_is_emitted_once_near_the_limit() -> None:
    # The system prompt alone is ~650 tokens: leave room for the second turn.
    reply = MockReply(text=repl("x = 1"), usage=Usage(input_tokens=8_500, output_tokens=0))
    final = MockReply(text="FINAL(ok)", usage=Usage(input_tokens=500, output_tokens=0))
    replies = iter([reply, final])
    seen: list[ev.Event] = []
    async with RLM(
        model=ScriptedModel(lambda r: next(replies)),
        budget=Budget(max_tokens=10_000, warn_at=0.8),
        on_event=seen.append,
    ) as rlm:
        await rlm.completion("abc", "q")
    warnings = [e for e in seen if isinstance(e, ev.BudgetWarning)]
    assert [(w.budget, w.used, w.limit) for w in warnings] == [("max_tokens", 8500.0, 10000.0)]


async def test_an_interrupted_batch_gives_back_what_it_reserved() -> None:
    """A batch cut short by the cell timeout frees its unsent prompts' token reservation.

    Each batch reserves 5 x 4,000 = 20,000 of 30,000 tokens. The first is interrupted with
    one prompt in flight and four never sent; were their 16,000 kept, the same batch in the
    next cell would be refused.
    """
    hold = anyio.Event()
    calls = 0

    async def sub(request: object) -> MockReply:
        nonlocal calls
        calls += 1
        if calls == 1:
            await hold.wait()  # the first sub-call hangs until the cell is interrupted
        return MockReply(text="ok", usage=Usage(input_tokens=1, output_tokens=1))

    batch = "r = llm_query_batched([str(i) + 'w' * 16_000 for i in range(5)])\nprint(r)"
    small = Usage(input_tokens=100, output_tokens=10)
    root = ScriptedModel(
        [
            MockReply(text=repl(batch), usage=small),
            MockReply(text=repl(batch), usage=small),
            MockReply(text="FINAL(done)", usage=small),
        ]
    )
    async with RLM(
        model=root,
        sub_model=ScriptedModel(sub),
        budget=Budget(max_tokens=30_000),
        max_concurrency=1,
        cell_timeout=0.5,
    ) as rlm:
        result = await rlm.completion("abc", "q")
    hold.set()
    assert result.answer == "done"
    second_cell = root.requests[2].messages[-1].content
    assert "['ok', 'ok', 'ok', 'ok', 'ok']" in second_cell, second_cell
    assert calls == 6


def test_budget_must_be_a_budget_object() -> None:
    with pytest.raises(ConfigurationError, match="Budget"):
        RLM(model=ScriptedModel(["x"]), budget={"max_tokens": 5})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Budget(max_cost=0.5), "max_cost: no such field .*max_cost_usd"),
        (lambda: Budget(max_tokens=-1), "max_tokens: Input should be greater than 0"),
    ],
    ids=["misspelt-field", "negative"],
)
def test_a_misspelt_or_bad_budget_field_is_a_configuration_error(
    build: Callable[[], Budget], message: str
) -> None:
    """A typo must not run the completion with no limit at all."""
    with pytest.raises(ConfigurationError, match=message):
        build()


async def test_a_run_the_time_budget_ends_still_ends_with_events() -> None:
    """run_failed (BudgetExceeded) last, and no sub-call left started without finishing."""
    hold = anyio.Event()

    async def slow(request: object) -> str:
        await hold.wait()  # never set: the time budget ends these
        return "late"

    seen: list[ev.Event] = []
    root = ScriptedModel([repl("llm_query_batched(['a', 'b', 'c'])")])
    async with RLM(
        model=root,
        sub_model=ScriptedModel(slow, name="sub"),
        budget=Budget(max_seconds=0.5),
        on_budget_exceeded="return",
        on_event=seen.append,
    ) as rlm:
        result = await rlm.completion("abc", "q")
    assert result.finished is False
    last = seen[-1]
    assert isinstance(last, ev.RunFailed) and last.error_type == "BudgetExceeded"
    started = {e.subcall for e in seen if isinstance(e, ev.SubCallStarted)}
    finished = {e.subcall for e in seen if isinstance(e, ev.SubCallFinished) and not e.ok}
    assert started and started == finished
