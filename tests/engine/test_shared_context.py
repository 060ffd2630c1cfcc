"""Completions in progress over the same text share one preparation of it (its line count),
and nothing keeps the text once they have ended."""

from __future__ import annotations

import threading

import anyio
import pytest

from rlm_async import RLM, ContextTypeError
from rlm_async.engine import _prepare
from rlm_async.engine._resources import EngineResources
from rlm_async.providers import ProviderRegistry
from rlm_async.providers._windows import ContextWindows
from rlm_async.repl._context import PreparedContext, prepare_context
from rlm_async.testing import ScriptedModel


def resources() -> EngineResources:
    return EngineResources(providers=ProviderRegistry(), windows=ContextWindows(None))


@pytest.fixture
def preparations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every context ``prepare_context`` is called with, through the engine's ``prepare``."""
    seen: list[object] = []

    def counting(context: object) -> PreparedContext:
        seen.append(context)
        return prepare_context(context)

    monkeypatch.setattr(_prepare, "prepare_context", counting)
    return seen


async def test_overlapping_uses_of_one_text_prepare_it_once(preparations: list[object]) -> None:
    shared = resources()
    text = "one\ntwo\nthree"
    async with shared.context_for_run(text) as first:
        async with shared.context_for_run(text) as second:
            assert second is first
            assert first.info.line_count == 3
        assert len(shared.texts) == 1  # the first is still running
    assert preparations == [text]
    assert shared.texts == {}  # not kept once no completion uses it
    async with shared.context_for_run(text):
        pass
    assert len(preparations) == 2  # a later completion prepares it again


async def test_equal_texts_that_are_different_objects_are_prepared_each(
    preparations: list[object],
) -> None:
    shared = resources()
    text = "x" * 10
    other = "".join(["x"] * 10)
    assert other == text and other is not text
    async with shared.context_for_run(text), shared.context_for_run(other):
        assert len(shared.texts) == 2
    assert len(preparations) == 2


async def test_other_contexts_are_prepared_every_time(preparations: list[object]) -> None:
    shared = resources()
    context = ["a", "b"]
    async with shared.context_for_run(context) as first, shared.context_for_run(context) as second:
        assert first is not second
        assert first.info.item_count == 2
    ready = prepare_context("given prepared")
    async with shared.context_for_run(ready) as given:
        assert given is ready
    assert preparations == [context, context]
    assert shared.texts == {}
    with pytest.raises(ContextTypeError):
        async with shared.context_for_run(42):
            pass


async def test_a_large_text_prepared_in_a_thread_is_waited_for_not_prepared_again(
    preparations: list[object],
) -> None:
    shared = resources()
    text = "line\n" * 300_000  # 1.5M characters: prepared in a worker thread
    got: list[PreparedContext] = []

    async def use() -> None:
        async with shared.context_for_run(text) as prepared:
            got.append(prepared)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(use)
    assert len(preparations) == 1
    assert got[0] is got[1] is got[2]
    assert got[0].info.line_count == 300_001
    assert shared.texts == {}


async def test_when_the_first_preparation_fails_the_ones_waiting_prepare_it_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = resources()
    text = "line\n" * 300_000  # prepared in a worker thread
    release = threading.Event()
    calls: list[object] = []

    def first_fails(context: object) -> PreparedContext:
        calls.append(context)
        if len(calls) == 1:
            release.wait(10)  # until the second completion is waiting for this one
            raise ContextTypeError("the first preparation failed")
        return prepare_context(context)

    monkeypatch.setattr(_prepare, "prepare_context", first_fails)
    outcomes: list[object] = []

    async def use() -> None:
        try:
            async with shared.context_for_run(text) as prepared:
                outcomes.append(prepared.info.line_count)
        except ContextTypeError as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(use)
        await anyio.wait_all_tasks_blocked()  # the first is in its worker thread
        tg.start_soon(use)
        await anyio.wait_all_tasks_blocked()  # the second waits for the first
        assert shared.texts[id(text)].users == 2
        release.set()
    assert sorted(outcomes, key=str) == [300_001, "the first preparation failed"]
    assert len(calls) == 2
    assert shared.texts == {}


async def test_concurrent_completions_over_one_text_count_its_lines_once(
    preparations: list[object],
) -> None:
    text = "alpha\nbeta\ngamma"
    root = ScriptedModel(lambda request: "FINAL(done)")
    async with RLM(model=root, max_iterations=2) as rlm, anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(rlm.completion, text, "how many lines?")
    assert preparations == [text]
    assert "3 lines" in root.requests[0].system
