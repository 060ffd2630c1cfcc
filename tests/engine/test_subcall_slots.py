"""Only sub-calls sent to a provider take a ``max_concurrency`` slot: one the sub-call cache
answers, or a duplicate waiting for an identical call in flight, does not wait behind (or
hold a slot from) slow calls. Through the real child REPL; no timing: the slow call waits on
an event that only the cache's answer (or another call's) sets, so a call stuck behind it
for a slot would never finish (``fail_after`` turns that into a failure)."""

from __future__ import annotations

import anyio

from rlm_async import RLM
from rlm_async import events as ev
from rlm_async.providers import CompletionRequest
from rlm_async.testing import ScriptedModel
from tests.helpers import repl

# The slow call is in the provider (holding a slot) before the others are asked: the cell
# submits it, then blocks on a tool that returns once the provider has it.
SLOW_FIRST = (
    "import asyncio\n"
    "slow = asyncio.ensure_future(allm_query('slow'))\n"
    "await asyncio.sleep(0)  # the task's first step sends its request\n"
    "slow_started()\n"
)


def root_model(*cells: str) -> ScriptedModel:
    return ScriptedModel([*(repl(c) for c in cells), "FINAL(done)"], name="root")


async def test_a_cache_hit_is_answered_while_a_slow_call_holds_the_only_slot() -> None:
    slow_entered, hit_answered = anyio.Event(), anyio.Event()

    async def sub(request: CompletionRequest) -> str:
        prompt = request.messages[-1].content
        if prompt == "slow":
            slow_entered.set()
            await hit_answered.wait()  # held until the duplicate below is answered
        return f"answer to {prompt}"

    async def slow_started() -> str:
        """Returns once the slow sub-call is with the provider."""
        await slow_entered.wait()
        return "yes"

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.SubCallFinished) and event.cached:
            hit_answered.set()

    root = root_model(
        "print(llm_query('known'))",
        SLOW_FIRST + "print(await asyncio.gather(slow, allm_query('known')))",
    )
    sub_model = ScriptedModel(sub, name="sub")
    with anyio.fail_after(30):
        async with RLM(
            model=root,
            sub_model=sub_model,
            max_concurrency=1,
            tools=[slow_started],
            on_event=on_event,
        ) as rlm:
            result = await rlm.completion("ctx", "q")
    assert "['answer to slow', 'answer to known']" in root.requests[2].messages[-1].content
    assert [r.messages[-1].content for r in sub_model.requests] == ["known", "slow"]
    assert result.metadata["subcalls_cached"] == 1


async def test_a_duplicate_waiting_for_a_call_in_flight_holds_no_slot() -> None:
    slow_entered, other_answered = anyio.Event(), anyio.Event()

    async def sub(request: CompletionRequest) -> str:
        prompt = request.messages[-1].content
        if prompt == "slow":
            slow_entered.set()
            await other_answered.wait()  # held until 'other' is answered
        return f"answer to {prompt}"

    async def slow_started() -> str:
        """Returns once the slow sub-call is with the provider."""
        await slow_entered.wait()
        return "yes"

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.SubCallFinished) and event.answer == "answer to other":
            other_answered.set()

    # Two slots: the slow call holds one; its duplicate waits for it; 'other' needs the
    # second slot, which the duplicate must not be holding.
    root = root_model(
        SLOW_FIRST + "print(await asyncio.gather(slow, allm_query('slow'), allm_query('other')))"
    )
    sub_model = ScriptedModel(sub, name="sub")
    with anyio.fail_after(30):
        async with RLM(
            model=root,
            sub_model=sub_model,
            max_concurrency=2,
            tools=[slow_started],
            on_event=on_event,
        ) as rlm:
            result = await rlm.completion("ctx", "q")
    output = root.requests[1].messages[-1].content
    assert "['answer to slow', 'answer to slow', 'answer to other']" in output
    assert sorted(r.messages[-1].content for r in sub_model.requests) == ["other", "slow"]
    assert result.metadata["subcalls_cached"] == 1
