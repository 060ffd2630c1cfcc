"""Recursion deeper than one level: rlm_query starts sub-RLMs with their own REPLs."""

from __future__ import annotations

from rlm_async import RLM, Budget
from rlm_async import events as ev
from rlm_async.providers import CompletionRequest
from rlm_async.testing import ScriptedModel
from tests.helpers import repl


def recursive_script(request: CompletionRequest) -> str:
    """Every level splits its context in two with rlm_query_batched until items are short."""
    system = request.system or ""
    if not system:  # a plain sub-call at the last level
        return request.messages[-1].content.split("::", 1)[-1].strip().upper()
    turns = sum(m.role == "assistant" for m in request.messages)
    if turns == 0:
        return repl(
            "if isinstance(context, list) and len(context) > 1:\n"
            "    half = len(context) // 2\n"
            "    parts = rlm_query_batched(['join', 'join'], [context[:half], context[half:]])\n"
            "else:\n"
            "    item = context[0] if isinstance(context, list) else context\n"
            "    parts = [llm_query('upper :: ' + str(item))]\n"
            "result = '+'.join(parts)"
        )
    return "FINAL_VAR(result)"


async def run_at_depth(max_depth: int) -> tuple[str, list[ev.Event], RLM]:
    seen: list[ev.Event] = []
    model = ScriptedModel(recursive_script)
    async with RLM(model=model, max_depth=max_depth, on_event=seen.append) as rlm:
        result = await rlm.completion(["a", "b", "c", "d"], "join the items in upper case")
    return result.answer, seen, rlm


async def test_depth_1_makes_rlm_query_a_plain_call() -> None:
    answer, seen, _ = await run_at_depth(1)
    assert {e.depth for e in seen if isinstance(e, ev.RunStarted)} == {0}
    # Plain calls: the sub-model sees "join" without any context.
    assert answer == "JOIN+JOIN"


async def test_depth_2_starts_sub_rlms_whose_sub_calls_are_plain() -> None:
    answer, seen, _ = await run_at_depth(2)
    runs = [e for e in seen if isinstance(e, ev.RunStarted)]
    assert sorted(e.depth for e in runs) == [0, 1, 1]
    assert all(e.parent_run_id == runs[0].run_id for e in runs[1:])
    # Each sub-RLM (2 items) asks plain "join" calls one level deeper.
    assert answer == "JOIN+JOIN+JOIN+JOIN"


async def test_depth_3_recurses_until_single_items() -> None:
    answer, seen, _ = await run_at_depth(3)
    depths = sorted(e.depth for e in seen if isinstance(e, ev.RunStarted))
    assert depths == [0, 1, 1, 2, 2, 2, 2]
    assert answer == "A+B+C+D"


async def test_usage_is_kept_per_depth_for_the_whole_tree() -> None:
    seen: list[ev.Event] = []
    async with RLM(model=ScriptedModel(recursive_script), max_depth=3, on_event=seen.append) as rlm:
        result = await rlm.completion(["a", "b", "c", "d"], "q")
    turns = [e for e in seen if isinstance(e, ev.TurnFinished)]
    assert result.usage.depths[0].calls == 2
    assert result.usage.depths[1].calls == 4  # two sub-RLMs, two turns each
    assert result.usage.depths[2].calls == 8  # four sub-RLMs, two turns each
    assert result.usage.depths[3].calls == 4  # their plain llm_query calls
    assert result.usage.calls == len(turns) + 4


async def test_max_live_repls_refuses_sub_rlms_beyond_the_limit() -> None:
    async with RLM(
        model=ScriptedModel(recursive_script), max_depth=2, budget=Budget(max_live_repls=1)
    ) as rlm:
        result = await rlm.completion(["a", "b"], "q")
    assert result.answer.count("Error: budget") == 2


async def test_a_context_model_code_cannot_hand_over_is_an_error_it_reads() -> None:
    """Not the end of the completion, and no live-REPL slot is lost to it."""
    root = ScriptedModel(
        [
            repl("print(rlm_query_batched(['a', 'b'], contexts=[5, 6]))"),
            repl("print(rlm_query('c', context='hello world'))"),
            "FINAL(done)",
        ]
    )
    sub = ScriptedModel(lambda r: "FINAL(sub-ok)" if r.system else "plain", name="sub")
    async with RLM(model=root, sub_model=sub, max_depth=2, budget=Budget(max_live_repls=2)) as rlm:
        result = await rlm.completion("ctx", "q")
    assert result.answer == "done"
    first = root.requests[1].messages[-1].content  # what the model read after each cell
    second = root.requests[2].messages[-1].content
    assert first.count("rlm_query: cannot use a int as the context") == 2
    assert "sub-ok" in second  # the REPL slots were all given back


async def test_a_forged_batch_with_too_few_contexts_is_an_error_the_model_reads() -> None:
    """The child's API checks this; a request made around it must not end the run."""
    forged = "print(llm_query.__self__._call('rlm', ['a', 'b'], None, ['x']))"
    root = ScriptedModel([repl(forged), "FINAL(done)"])
    async with RLM(model=root, max_depth=2) as rlm:
        result = await rlm.completion("ctx", "q")
    assert result.answer == "done"
    assert "one context per prompt" in root.requests[1].messages[-1].content
