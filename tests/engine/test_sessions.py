"""Sessions: completions over one REPL, end to end through the real child (scripted models)."""

from __future__ import annotations

import anyio
import pytest

from rlm_async import RLM, ConfigurationError, RLMClosed, RLMError, Session
from rlm_async import events as ev
from rlm_async.providers import CompletionRequest
from rlm_async.repl import ReplOptions, _start
from rlm_async.repl import _session as _repl_session
from rlm_async.repl._start import StartedChild
from rlm_async.testing import ScriptedModel
from tests.helpers import alive, child_pids, repl


def first_message(request: CompletionRequest) -> str:
    return request.messages[0].content


async def test_variables_queries_and_answers_persist_across_completions_in_one_repl() -> None:
    root = ScriptedModel(
        [
            repl("churned = [c for c in context if c.endswith('!')]\nFINAL(', '.join(churned))"),
            repl("FINAL(f'{len(churned)} | {query_1} | {answer_1} | {context_1 is context}')"),
        ]
    )
    before = child_pids()
    async with RLM(model=root) as rlm:
        async with rlm.session(["acme!", "bolt", "corp!"]) as chat:
            assert isinstance(chat, Session)
            pid = chat.pid
            first = await chat.completion("Which customers churned in March?")
            assert chat.pid == pid
            second = await chat.completion("And which of them had open tickets?")
            assert chat.pid == pid
            assert chat.history == [
                ("Which customers churned in March?", "acme!, corp!"),
                ("And which of them had open tickets?", second.answer),
            ]
        assert pid is not None and not alive(pid)
        assert chat.closed
    assert child_pids() <= before
    assert first.answer == "acme!, corp!"
    assert second.answer == "2 | Which customers churned in March? | acme!, corp! | True"
    assert (first.metadata["session_turn"], second.metadata["session_turn"]) == (1, 2)
    # Each completion has its own root conversation; the second starts from a summary.
    opening = first_message(root.requests[1])
    assert first_message(root.requests[0]).startswith("This is completion") is False
    assert "This is completion 2 of a session" in opening
    assert "query_1: Which customers churned in March?" in opening
    assert "answer_1: acme!, corp!" in opening
    assert len(root.requests[1].messages) == 1


async def test_added_contexts_are_numbered_and_described_to_the_next_completion() -> None:
    root = ScriptedModel([repl("FINAL(f'{context} {context_2} {sorted(context_3)}')")])
    async with RLM(model=root) as rlm, rlm.session("first") as chat:
        assert await chat.add_context("second") == "context_2"
        assert await chat.add_context({"k": 1, "j": 2}) == "context_3"
        assert chat.context_names == ["context", "context_1", "context_2", "context_3"]
        result = await chat.completion("What is there?")
    assert result.answer == "first second ['j', 'k']"
    opening = first_message(root.requests[0])
    assert "`context_2` is a str of 6 characters" in opening
    assert "`context_3` is a dict with 2 keys" in opening


async def test_a_crash_restart_reloads_every_named_context_and_says_variables_are_gone() -> None:
    root = ScriptedModel(
        [
            repl("x = 1\nFINAL('set')"),
            repl("import os\nos._exit(3)"),
            repl("FINAL(f\"{'x' in globals()} {context_2} {query_1} {answer_1} {context_1}\")"),
        ]
    )
    seen: list[ev.Event] = []
    async with RLM(model=root) as rlm, rlm.session("ctx") as chat:
        await chat.add_context("more")
        await chat.completion("Set x.", options={"max_iterations": 3})
        result = await chat.completion("Now?", on_event=seen.append)
    assert result.answer == "False more Set x. set ctx"
    assert any(isinstance(e, ev.ReplRestarted) for e in seen)
    after_crash = root.requests[2].messages[-1].content
    assert "restarted" in after_crash.lower() or "crashed" in after_crash.lower()


async def test_a_cancelled_completion_leaves_the_session_usable() -> None:
    entered = anyio.Event()

    def script(request: CompletionRequest) -> str:
        if "Slow" in first_message(request):
            return repl("kept = 1\nimport time\nwhile True: time.sleep(0.01)")
        return repl("FINAL(f\"{'kept' in globals()} {query_1} {answer_1}\")")

    root = ScriptedModel(script)
    async with RLM(model=root, cell_timeout=60) as rlm, rlm.session("c") as chat:
        await chat.completion("Fast first.")
        pid = chat.pid

        async def slow() -> None:
            def on_event(event: ev.Event) -> None:
                if isinstance(event, ev.CellStarted):
                    entered.set()

            await chat.completion("Slow one.", on_event=on_event)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await entered.wait()
            await anyio.sleep(0.2)  # let the cell start its loop in the child
            tg.cancel_scope.cancel()
        assert pid is not None and not alive(pid)  # the cell could not be stopped otherwise
        result = await chat.completion("Fast again.")
        assert chat.pid is not None and chat.pid != pid
    assert result.answer.startswith("False Fast first. ")
    assert chat.history[-1][0] == "Fast again."
    assert len(chat.history) == 2  # the cancelled one is not a turn
    opening = first_message(root.requests[-1])
    assert "variables are gone" in opening


async def test_closing_the_rlm_closes_its_open_sessions() -> None:
    root = ScriptedModel([repl("FINAL('x')")])
    rlm = RLM(model=root)
    async with rlm:
        chat = rlm.session("c")
        await chat.start()
        pid = chat.pid
        assert pid is not None and alive(pid)
    assert chat.closed and not alive(pid)
    with pytest.raises(ConfigurationError):
        await chat.completion("more?")


async def test_closing_the_session_during_a_completion_cancels_it() -> None:
    started = anyio.Event()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.CellStarted):
            started.set()

    root = ScriptedModel([repl("import time\nwhile True: time.sleep(0.01)")])
    async with RLM(model=root, cell_timeout=60) as rlm:
        chat = rlm.session("c")
        await chat.start()
        errors: list[BaseException] = []

        async def run() -> None:
            try:
                await chat.completion("Slow.", on_event=on_event)
            except RLMClosed as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await started.wait()
            await chat.aclose()
    assert len(errors) == 1


async def test_a_completion_waiting_for_the_one_before_it_raises_rlm_closed_on_close() -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def held(request: CompletionRequest) -> str:
        entered.set()
        await release.wait()  # completion A holds the session's lock here
        return "FINAL('a')"

    root = ScriptedModel(held)
    errors: dict[str, BaseException] = {}
    async with RLM(model=root) as rlm:
        chat = rlm.session("c")
        await chat.start()

        async def ask(name: str) -> None:
            try:
                await chat.completion(f"{name}?")
            except Exception as exc:
                errors[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "A")
            await entered.wait()
            tg.start_soon(ask, "B")
            await anyio.wait_all_tasks_blocked()  # B waits on the session's lock
            await chat.aclose()
            release.set()
    assert isinstance(errors["A"], RLMClosed), errors
    assert isinstance(errors["B"], RLMClosed), errors  # not ConfigurationError: it was closed
    assert "waited" in str(errors["B"])
    assert len(root.requests) == 1  # B never reached the model


async def test_a_session_needs_an_open_rlm_and_a_str_query() -> None:
    rlm = RLM(model=ScriptedModel(["FINAL(x)"]))
    async with rlm, rlm.session("c") as chat:
        with pytest.raises(ConfigurationError, match="query must be a str"):
            await chat.completion(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="closed"):
        async with rlm.session("c"):
            pass


async def test_tools_are_defined_once_in_the_session_repl_and_served_in_each_completion() -> None:
    calls: list[str] = []

    def lookup(key: str) -> str:
        """A value of the application."""
        calls.append(key)
        return key.upper()

    root = ScriptedModel(
        [repl("first = lookup('a')\nFINAL(first)"), repl("FINAL(first + lookup('b'))")]
    )
    seen: list[ev.Event] = []
    async with RLM(model=root, tools=[lookup]) as rlm, rlm.session("c") as chat:
        one = await chat.completion("One?")
        two = await chat.completion("Two?", on_event=seen.append)
    assert (one.answer, two.answer) == ("A", "AB")
    assert calls == ["a", "b"]
    assert [e.tool for e in seen if isinstance(e, ev.ToolCallFinished)] == ["lookup"]
    assert "lookup(key: str)" in root.requests[1].system  # type: ignore[operator]


def hold_the_started_child(monkeypatch: pytest.MonkeyPatch) -> tuple[anyio.Event, anyio.Event]:
    """The REPL's start waits, its child started but not yet taken, until ``release``."""
    spawned, release = anyio.Event(), anyio.Event()

    async def start_then_wait(options: ReplOptions, work_dir: str) -> StartedChild:
        started = await _start.start_child(options, work_dir)
        spawned.set()
        with anyio.CancelScope(shield=True):  # the child is not ours to lose here
            await release.wait()
        return started

    monkeypatch.setattr(_repl_session, "start_child", start_then_wait)
    return spawned, release


@pytest.mark.parametrize("close", ["session", "rlm"])
async def test_a_close_while_the_session_starts_kills_its_repl_and_raises_rlm_closed(
    monkeypatch: pytest.MonkeyPatch, close: str
) -> None:
    spawned, release = hold_the_started_child(monkeypatch)
    before = child_pids()
    rlm = RLM(model=ScriptedModel(["FINAL(1)"]))
    chat = rlm.session("hello")
    errors: list[Exception] = []

    async def start() -> None:
        try:
            await chat.start()
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        await spawned.wait()
        tg.start_soon(chat.aclose if close == "session" else rlm.aclose)
        await anyio.wait_all_tasks_blocked()  # the close is under way, waiting on the start
        release.set()
    assert len(errors) == 1 and isinstance(errors[0], RLMClosed), errors
    assert chat.closed and chat.pid is None
    with anyio.fail_after(5):
        while child_pids() - before:
            await anyio.sleep(0.01)


@pytest.mark.parametrize("checkpoints", [0, 1, 2, 3, 5, 8, 13])
async def test_closing_the_rlm_at_any_point_of_a_session_start_leaves_no_repl(
    checkpoints: int,
) -> None:
    before = child_pids()
    rlm = RLM(model=ScriptedModel(["FINAL(1)"]))
    chat = rlm.session("hello")
    outcome: list[Exception | None] = []

    async def start() -> None:
        try:
            await chat.start()
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        for _ in range(checkpoints):
            await anyio.sleep(0)
        await rlm.aclose()
    assert outcome[0] is None or isinstance(outcome[0], RLMError), outcome
    assert outcome[0] is not None or chat.closed  # started first, then closed with the RLM
    with anyio.fail_after(5):
        while child_pids() - before:
            await anyio.sleep(0.01)
