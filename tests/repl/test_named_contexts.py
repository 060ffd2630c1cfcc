"""Contexts under other names than ``context`` (a session's ``context_2``, ...), against the
real child process."""

from __future__ import annotations

import os

import anyio
import pytest

from rlm_async import ConfigurationError, ReplCrashed, ReplError, RLMError
from rlm_async.repl import ReplOptions, ReplSession, _session, _start
from rlm_async.repl._protocol import LoadContextMessage, encode_message
from rlm_async.repl._start import StartedChild
from tests.helpers import alive, child_pids

FAST = ReplOptions(cell_timeout=5, interrupt_grace=1)


async def test_an_added_context_is_a_variable_of_its_type_beside_context() -> None:
    async with ReplSession("first", options=FAST) as repl:
        await repl.add_context({"k": [1, 2]}, "context_2")
        await repl.add_context("third\ntext", "notes")
        result = await repl.execute(
            "print(context, type(context_2).__name__, context_2['k'], notes.splitlines())"
        )
        assert repl.context_names == ["context", "context_2", "notes"]
        files = sorted(os.listdir(repl.work_dir or ""))
    assert result.error is None
    assert result.stdout == "first dict [1, 2] ['third', 'text']\n"
    assert "context_2.json" in files and "notes.txt" in files


async def test_every_named_context_is_reloaded_after_a_crash_and_model_changes_are_undone() -> None:
    async with ReplSession(["a"], options=FAST) as repl:
        await repl.add_context(["b", "c"], "context_2")
        await repl.execute("context_2.append('changed'); x = 1")
        crashed = await repl.execute("import os\nos._exit(3)")
        assert crashed.restarted and crashed.state_lost
        result = await repl.execute("print(context, context_2, 'x' in globals())")
    assert result.stdout == "['a'] ['b', 'c'] False\n"


async def test_the_first_context_given_again_shares_its_file_and_its_value() -> None:
    value = ["x" * 100, "y"]
    async with ReplSession(value, options=FAST) as repl:
        await repl.add_context(value, "context_1")
        files = os.listdir(repl.work_dir or "")
        same = await repl.execute("print(context_1 is context, context_1 == context)")
        await repl.execute("import os\nos._exit(3)")
        after = await repl.execute("print(context_1 is context, len(context_1))")
    assert [f for f in files if f.startswith("context")] == ["context.json"]
    assert same.stdout == "True True\n"
    assert after.stdout == "True 2\n"


async def test_a_later_load_of_an_already_loaded_file_reads_it_again() -> None:
    """The child shares a loaded value only until the next cell: what model code did to
    ``context`` since must not leak into a context added later."""
    value = ["a"]
    async with ReplSession(value, options=FAST) as repl:
        await repl.execute("context.append('model')")
        await repl.add_context(value, "context_1")
        result = await repl.execute("print(context, context_1)")
    assert result.stdout == "['a', 'model'] ['a']\n"


@pytest.mark.parametrize("name", ["context", "2x", "not-an-id", "class", ""])
async def test_a_bad_or_taken_name_is_refused_before_anything_is_written(name: str) -> None:
    async with ReplSession("", options=FAST) as repl:
        with pytest.raises(ConfigurationError):
            await repl.add_context("v", name)
        assert repl.context_names == ["context"]


async def test_a_name_added_twice_is_refused() -> None:
    async with ReplSession("", options=FAST) as repl:
        await repl.add_context("v", "extra")
        with pytest.raises(ConfigurationError, match="already"):
            await repl.add_context("w", "extra")


async def test_the_child_refuses_to_hide_its_own_functions_and_stays_usable() -> None:
    async with ReplSession("", options=FAST) as repl:
        with pytest.raises(ReplCrashed, match="bad variable name 'llm_query'"):
            await repl.add_context("v", "llm_query")
        assert repl.context_names == ["context"]
        result = await repl.execute("print(callable(llm_query))")
    assert result.stdout == "True\n"


def test_the_name_is_left_off_the_wire_for_the_first_context() -> None:
    """Unnamed, the message is what protocol 2 sent; a name rides along only when given."""
    plain = encode_message(LoadContextMessage(path="/w/context.txt", format="text"))
    named = encode_message(LoadContextMessage(path="/w/c.json", format="json", name="context_2"))
    assert b"name" not in plain
    assert b'"name":"context_2"' in named


async def test_a_close_while_the_child_starts_kills_the_child_the_start_then_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The close lands between the child's start and its adoption: the start must kill it.
    spawned, release = anyio.Event(), anyio.Event()
    pids: list[int] = []

    async def start_then_wait(options: ReplOptions, work_dir: str) -> StartedChild:
        started = await _start.start_child(options, work_dir)
        pids.append(started.child.pid)
        spawned.set()
        await release.wait()
        return started

    monkeypatch.setattr(_session, "start_child", start_then_wait)
    repl = ReplSession("first", options=FAST)
    errors: list[BaseException] = []

    async def start() -> None:
        try:
            await repl.start()
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        await spawned.wait()
        await repl.aclose()
        release.set()
    assert len(errors) == 1 and isinstance(errors[0], ReplError), errors
    assert "closed while it was starting" in str(errors[0])
    assert repl.pid is None
    with anyio.fail_after(5):
        while alive(pids[0]):
            await anyio.sleep(0.01)


@pytest.mark.parametrize("checkpoints", [0, 1, 2, 3, 5, 8])
async def test_a_close_at_any_point_of_the_start_leaves_no_child_and_an_rlm_error(
    checkpoints: int,
) -> None:
    before = child_pids()
    repl = ReplSession("first", options=FAST)
    outcome: list[BaseException | None] = []

    async def start() -> None:
        try:
            await repl.start()
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        for _ in range(checkpoints):
            await anyio.sleep(0)
        await repl.aclose()
    assert outcome[0] is None or isinstance(outcome[0], RLMError), outcome
    assert repl.pid is None and repl.work_dir is None
    with anyio.fail_after(5):
        while child_pids() - before:
            await anyio.sleep(0.01)
