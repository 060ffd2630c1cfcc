"""The run loop in-process: a scripted model and a fake REPL object, no child process.

A run receives its options, its models and the shared resources, never the ``RLM``; so the
loop (turns, cells, sub-calls, the last turn, events) can be driven here directly, with a
REPL that answers each cell from a script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from rlm_async import ProviderResponseError, RLMOptions
from rlm_async import events as ev
from rlm_async.engine._resources import EngineResources
from rlm_async.engine._routes import ModelRoutes
from rlm_async.engine._run import run_rlm
from rlm_async.engine._state import CompletionState
from rlm_async.providers import ProviderRegistry
from rlm_async.providers._windows import ContextWindows
from rlm_async.repl import CellResult
from rlm_async.repl._protocol import LLMRequest
from rlm_async.testing import ScriptedModel
from tests.helpers import repl

Cell = Callable[["FakeRepl", str], Awaitable[CellResult]]


class FakeRepl:
    """Stands in for ``ReplSession``: each cell's result comes from ``cell(repl, code)``."""

    sandbox_report: dict[str, Any] = {}  # noqa: RUF012 (read only)
    warm = False

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.codes: list[str] = []
        self.subcall_handler: Callable[[LLMRequest], Awaitable[list[dict[str, Any]]]]
        self.opened = 0
        self.closed = 0

    def __call__(self, prepared: object, **kwargs: Any) -> FakeRepl:
        """The run opens its REPL through this (``EngineResources.repl_factory``)."""
        self.subcall_handler = kwargs["subcall_handler"]
        self.prepared = prepared
        return self

    async def __aenter__(self) -> FakeRepl:
        self.opened += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.closed += 1

    async def execute(self, code: str) -> CellResult:
        self.codes.append(code)
        return await self.cell(self, code)

    async def llm_query(self, *prompts: str) -> list[dict[str, Any]]:
        """What ``llm_query_batched`` in the child sends the parent."""
        request = LLMRequest(type="llm_request", id=len(self.codes), cell=1, prompts=list(prompts))
        return await self.subcall_handler(request)


async def run(
    root: ScriptedModel,
    fake: FakeRepl,
    *,
    sub: ScriptedModel | None = None,
    events: list[ev.Event] | None = None,
    **options: Any,
) -> tuple[Any, list[ev.Event]]:
    events = [] if events is None else events
    registry = ProviderRegistry()
    shared = CompletionState(
        options=RLMOptions(**options),
        models=ModelRoutes.resolve(registry, root, sub, (), ()),
        resources=EngineResources(
            providers=registry, windows=ContextWindows(None), repl_factory=fake
        ),
        emit=events.append,
    )
    with anyio.fail_after(10):
        result = await run_rlm(shared, "the context", "the query")
    return result, events


async def printed(text: str) -> CellResult:
    return CellResult(cell=1, stdout=text)


async def test_a_cell_that_calls_final_ends_the_run_with_its_answer() -> None:
    async def cell(fake: FakeRepl, code: str) -> CellResult:
        return CellResult(cell=len(fake.codes), final="42" if "FINAL" in code else None)

    fake = FakeRepl(cell)
    root = ScriptedModel([repl("x = 1"), repl("FINAL(42)")])
    result, events = await run(root, fake)
    assert result.answer == "42"
    assert result.iterations == 2
    assert result.metadata["answer_source"] == "code"
    assert [c.strip() for c in fake.codes] == ["x = 1", "FINAL(42)"]
    assert fake.opened == fake.closed == 1
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert kinds.count("CellStarted") == kinds.count("CellFinished") == 2


async def test_the_model_reads_each_cells_output_in_its_next_turn() -> None:
    async def cell(fake: FakeRepl, code: str) -> CellResult:
        return await printed("the secret is 7")

    root = ScriptedModel([repl("print(secret)"), "FINAL(7)"])
    result, _ = await run(root, FakeRepl(cell))
    assert result.answer == "7"
    assert "the secret is 7" in root.requests[1].messages[-1].content


async def test_sub_calls_from_a_cell_go_to_the_sub_model_and_are_recorded() -> None:
    async def cell(fake: FakeRepl, code: str) -> CellResult:
        answers = await fake.llm_query("one?", "two?")
        return CellResult(cell=1, final=" ".join(a.text or "" for a in answers))

    sub = ScriptedModel(lambda request: request.messages[0].content.upper(), name="sub")
    result, events = await run(ScriptedModel([repl("go")]), FakeRepl(cell), sub=sub)
    assert result.answer == "ONE? TWO?"
    assert result.metadata["subcalls"] == 2
    assert "sub" in result.usage.models
    finished = [e for e in events if isinstance(e, ev.SubCallFinished)]
    assert sorted(e.answer for e in finished) == ["ONE?", "TWO?"]


async def test_a_run_with_no_answer_in_its_iterations_gets_a_last_turn() -> None:
    async def cell(fake: FakeRepl, code: str) -> CellResult:
        return await printed("nothing yet")

    root = ScriptedModel([repl("a"), repl("b"), "FINAL(done at last)"])
    result, events = await run(root, FakeRepl(cell), max_iterations=2)
    assert result.answer == "done at last"
    assert result.iterations == 3
    turns = [e for e in events if isinstance(e, ev.TurnStarted)]
    assert [t.final_turn for t in turns] == [False, False, True]


async def test_the_options_value_sizes_what_the_model_reads_of_a_cell() -> None:
    async def cell(fake: FakeRepl, code: str) -> CellResult:
        return await printed("x" * 5_000)

    root = ScriptedModel([repl("print(big)"), "FINAL(ok)"])
    await run(root, FakeRepl(cell), max_output_chars=500)
    feedback = root.requests[1].messages[-1].content
    assert "x" * 500 not in feedback
    assert "x" * 200 in feedback


async def test_a_failing_root_model_ends_the_run_with_run_failed_and_closes_the_repl() -> None:
    fake = FakeRepl(lambda fake, code: printed(""))
    events: list[ev.Event] = []
    with pytest.raises(ProviderResponseError, match="ran out of replies"):
        await run(ScriptedModel([]), fake, events=events)
    assert fake.opened == fake.closed == 1
    assert isinstance(events[-1], ev.RunFailed)
    assert events[-1].error_type == "ProviderResponseError"
