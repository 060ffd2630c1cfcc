"""Events and budgets per session (``rlm.session(context, on_event=..., budget=...)``), end to
end through the real child: the session's budget bounds its completions together, its
callback sees each of them; scripted models and a tool whose calls are counted."""

from __future__ import annotations

import pytest

from rlm_async import RLM, Budget, BudgetExceeded, ConfigurationError, Usage
from rlm_async import events as ev
from rlm_async.testing import MockReply, ScriptedModel
from tests.helpers import repl


async def test_sub_calls_and_tool_calls_are_counted_over_the_whole_session() -> None:
    root = ScriptedModel(
        [
            repl("print(llm_query_batched(['a', 'b']), bonus(1))"),
            "FINAL('one')",
            repl(
                "print(llm_query_batched(['c', 'd']))\n"
                "print(llm_query('e'))\n"
                "try:\n    bonus(2)\nexcept Exception as e:\n    print('refused:', e)"
            ),
            "FINAL('two')",
        ]
    )
    sub = ScriptedModel(["A", "B", "E"])
    calls: list[int] = []

    def bonus(n: int) -> int:
        """A bonus for n."""
        calls.append(n)
        return n + 1

    budget = Budget(max_subcalls=3, max_tool_calls=1)
    async with (
        RLM(model=root, sub_model=sub, tools=[bonus]) as rlm,
        rlm.session("ctx", budget=budget) as chat,
    ):
        first = await chat.completion("first")
        second = await chat.completion("second")
    assert (first.answer, second.answer) == ("one", "two")
    # Each completion alone was within the budget; together they are held to it.
    assert calls == [1] and len(sub.requests) == 3
    output = next(e.output for e in second.trajectory if isinstance(e, ev.CellFinished))
    assert "would exceed the sub-call budget (1 of 1 left)" in output
    assert "E" in output
    assert "refused: budget: all 0 tool calls" in output


def spending(tokens: int, text: str) -> MockReply:
    return MockReply(text=text, usage=Usage(input_tokens=tokens, output_tokens=0))


async def test_tokens_are_summed_and_a_spent_session_refuses_the_next_completion() -> None:
    root = ScriptedModel(
        [spending(6_000, "FINAL('one')"), spending(6_000, "FINAL('two')"), "FINAL('three')"]
    )
    async with RLM(model=root) as rlm, rlm.session("ctx", budget=Budget(max_tokens=10_000)) as chat:
        assert (await chat.completion("first")).answer == "one"
        with pytest.raises(BudgetExceeded) as over:
            await chat.completion("second")  # 6,000 more, of the 4,000 left
        assert over.value.budget == "max_tokens"
        assert "the session's budget max_tokens=10000" in str(over.value)
        assert over.value.partial is not None
        with pytest.raises(BudgetExceeded, match="session's budget max_tokens=10000 is spent"):
            await chat.completion("third")
        assert len(root.requests) == 2  # the third was refused before any call
        # A larger budget for one completion does not lift the session's.
        with pytest.raises(BudgetExceeded, match="is spent"):
            await chat.completion("fourth", options={"budget": Budget(max_tokens=10**9)})
    assert len(root.requests) == 2


async def test_the_session_callback_sees_every_completion_and_each_its_own() -> None:
    root = ScriptedModel(["FINAL('one')", "FINAL('two')"])
    everything: list[ev.Event] = []
    session_events: list[ev.Event] = []
    second_only: list[ev.Event] = []
    async with (
        RLM(model=root, on_event=everything.append) as rlm,
        rlm.session("ctx", on_event=session_events.append) as chat,
    ):
        await chat.completion("first")
        await chat.completion("second", on_event=second_only.append)

    def runs(events: list[ev.Event]) -> list[str]:
        return [e.query for e in events if isinstance(e, ev.RunStarted)]

    assert runs(everything) == runs(session_events) == ["first", "second"]
    assert runs(second_only) == ["second"]
    assert session_events == everything


async def test_a_session_budget_must_be_a_budget() -> None:
    async with RLM(model=ScriptedModel([])) as rlm:
        with pytest.raises(ConfigurationError, match="must be a Budget"):
            rlm.session("ctx", budget=5)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="must be a Budget, not dict"):
            rlm.session("ctx", budget={"max_tokens": 10})  # type: ignore[arg-type]


async def test_the_seconds_of_a_session_are_its_completions_together() -> None:
    root = ScriptedModel([repl("FINAL('one')")])  # a cell: the run waits for the child
    async with (
        RLM(model=root) as rlm,
        rlm.session("ctx", budget=Budget(max_seconds=1e-6)) as chat,
    ):
        # Every completion takes longer than a microsecond: the first is stopped by what is
        # left of the session's time, the next refused before it starts.
        with pytest.raises(BudgetExceeded, match="the session's budget max_seconds=1e-06\\)"):
            await chat.completion("first")
        with pytest.raises(BudgetExceeded, match="max_seconds=1e-06 is spent"):
            await chat.completion("second")


async def test_with_return_a_spent_session_returns_an_unfinished_result() -> None:
    root = ScriptedModel([spending(6_000, "FINAL('one')")])
    budget = Budget(max_tokens=5_000)
    async with (
        RLM(model=root, on_budget_exceeded="return") as rlm,
        rlm.session("ctx", budget=budget) as chat,
    ):
        first = await chat.completion("first")
        second = await chat.completion("second")
    assert first.finished is False and first.answer == "FINAL('one')"
    assert second.finished is False and second.answer == "" and second.iterations == 0
    assert len(root.requests) == 1
