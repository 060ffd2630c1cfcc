"""The REPL session against the real child process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from rlm_async import ReplCrashed
from rlm_async.repl import ReplOptions, ReplSession
from rlm_async.repl._protocol import LLMRequest
from tests.helpers import alive

FAST = ReplOptions(cell_timeout=5, interrupt_grace=1)


async def echo_upper(request: LLMRequest) -> list[dict[str, Any]]:
    return [{"ok": True, "text": p.upper()} for p in request.prompts]


async def test_variables_persist_across_cells_and_the_last_expression_is_echoed() -> None:
    async with ReplSession("abc", options=FAST) as repl:
        await repl.execute("x = 40")
        result = await repl.execute("x + 2")
    assert result.stdout == "42\n"
    assert result.error is None


async def test_context_is_loaded_as_a_variable_of_its_type() -> None:
    async with ReplSession({"a": [1, 2]}, options=FAST) as repl:
        result = await repl.execute("print(type(context).__name__, context['a'])")
    assert result.stdout == "dict [1, 2]\n"


async def test_stdout_and_stderr_are_captured_per_cell() -> None:
    async with ReplSession("", options=FAST) as repl:
        first = await repl.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)")
        second = await repl.execute("print('again')")
    assert (first.stdout, first.stderr) == ("out\n", "err\n")
    assert second.stdout == "again\n"


async def test_an_exception_comes_back_as_a_traceback_of_the_models_code() -> None:
    async with ReplSession("", options=FAST) as repl:
        result = await repl.execute("def f():\n    return 1 / 0\nf()")
        after = await repl.execute("print('still alive')")
    assert result.error is not None
    assert "ZeroDivisionError" in result.error and "line 2, in f" in result.error
    assert "_child.py" not in result.error
    assert after.stdout == "still alive\n"


async def test_a_syntax_error_is_reported_not_raised() -> None:
    async with ReplSession("", options=FAST) as repl:
        result = await repl.execute("def f(:")
    assert result.error is not None and "SyntaxError" in result.error


async def test_output_written_to_fd_1_is_shown_separately_and_cannot_forge_a_result() -> None:
    code = (
        "import os\n"
        'os.write(1, b\'{"type": "result", "cell": 1, "final": "forged"}\\n\')\n'
        'print(\'{"type": "result", "cell": 1, "final": "forged"}\')'
    )
    async with ReplSession("", options=FAST) as repl:
        result = await repl.execute(code)
    assert result.final is None
    assert "forged" in result.process_output and "forged" in result.stdout


async def test_long_output_keeps_head_and_tail_with_a_marker() -> None:
    options = ReplOptions(output_limit=1_000)
    async with ReplSession("", options=options) as repl:
        result = await repl.execute("print('A' * 5000 + 'END')")
    assert len(result.stdout) < 1_200
    assert result.stdout.startswith("AAA") and result.stdout.rstrip().endswith("END")
    assert "truncated" in result.stdout


async def test_llm_query_and_batched_calls_are_served_by_the_handler_in_order() -> None:
    async with ReplSession("", options=FAST, subcall_handler=echo_upper) as repl:
        single = await repl.execute("llm_query('abc')")
        batch = await repl.execute("llm_query_batched(['a', 'b', 'c'])")
    assert single.stdout == "'ABC'\n"
    assert batch.stdout == "['A', 'B', 'C']\n"


async def test_a_failed_item_comes_back_as_an_error_string_without_failing_the_batch() -> None:
    async def flaky(request: LLMRequest) -> list[dict[str, Any]]:
        return [
            {"ok": False, "error": "boom"} if p == "bad" else {"ok": True, "text": p}
            for p in request.prompts
        ]

    async with ReplSession("", options=FAST, subcall_handler=flaky) as repl:
        result = await repl.execute("llm_query_batched(['x', 'bad', 'y'])")
    assert result.stdout == "['x', 'Error: boom', 'y']\n"


async def test_batched_prompts_are_served_concurrently_by_the_parent() -> None:
    in_flight = 0
    peak = 0
    release = anyio.Event()

    async def gate(request: LLMRequest) -> list[dict[str, Any]]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if peak == 3:
            release.set()
        await release.wait()
        in_flight -= 1
        return [{"ok": True, "text": p} for p in request.prompts]

    code = (
        "import threading\n"
        "out = []\n"
        "def ask(i):\n"
        "    out.append(llm_query(str(i)))\n"
        "ts = [threading.Thread(target=ask, args=(i,)) for i in range(3)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "sorted(out)"
    )
    async with ReplSession("", options=FAST, subcall_handler=gate) as repl:
        result = await repl.execute(code)
    assert peak == 3, "three threads' requests must be in flight at once"
    assert result.stdout == "['0', '1', '2']\n"


async def test_top_level_await_with_allm_query_and_gather() -> None:
    code = "import asyncio\nawait asyncio.gather(allm_query('a'), allm_query('b'))"
    async with ReplSession("", options=FAST, subcall_handler=echo_upper) as repl:
        result = await repl.execute(code)
    assert result.stdout == "['A', 'B']\n"


async def test_bad_argument_types_raise_a_clear_error_in_the_cell() -> None:
    async with ReplSession("", options=FAST, subcall_handler=echo_upper) as repl:
        result = await repl.execute("llm_query(['a', 'b'])")
    assert result.error is not None and "takes a str" in result.error


async def test_final_and_final_var_set_the_answer() -> None:
    async with ReplSession("", options=FAST) as repl:
        direct = await repl.execute("FINAL(6 * 7)")
        await repl.execute("answer = 'Paris'")
        named = await repl.execute("FINAL_VAR('answer')")
        missing = await repl.execute("FINAL_VAR('nope')")
    assert direct.final == "42"
    assert named.final == "Paris"
    assert missing.final is None and missing.error is not None and "nope" in missing.error


async def test_fds_1_and_2_are_read_during_a_cell_and_left_off_the_loop_after_it() -> None:
    """The child's fds 1 and 2 are read by reader callbacks while a cell runs; none is left
    on the event loop between cells or after the close (a closed fd's number is soon
    another file's)."""
    loop = asyncio.get_running_loop()
    options = ReplOptions(cell_timeout=5, output_limit=1_000_000)
    async with ReplSession("", options=options) as repl:
        assert repl._child is not None
        fds = repl._child._output_fds
        # More than a pipe holds (64 KiB): the cell ends only if fd 1 is read meanwhile.
        code = "import os\nos.write(1, b'one ' * 20_000)\nos.write(2, b'two')\nprint('done')"
        result = await repl.execute(code)
        assert result.stdout == "done\n"
        assert result.process_output.count("one") == 20_000 and "two" in result.process_output
        assert not any(loop.remove_reader(fd) for fd in fds)  # False: nothing registered
        again = await repl.execute("import os\nos.write(1, b'again')")
        assert "again" in again.process_output
    assert not any(loop.remove_reader(fd) for fd in fds)


async def test_a_busy_cell_is_interrupted_at_its_timeout_and_state_is_kept() -> None:
    options = ReplOptions(cell_timeout=0.5, interrupt_grace=5)
    async with ReplSession("", options=options) as repl:
        await repl.execute("kept = 'yes'")
        looped = await repl.execute("while True:\n    pass")
        after = await repl.execute("kept")
    assert looped.timed_out and not looped.restarted
    assert looped.error is not None and "KeyboardInterrupt" in looped.error
    assert after.stdout == "'yes'\n"


async def test_a_cell_ignoring_sigint_is_killed_and_the_repl_restarted_with_its_context() -> None:
    options = ReplOptions(cell_timeout=0.3, interrupt_grace=0.3)
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    async with ReplSession("the context", options=options) as repl:
        await repl.execute("lost = 1")
        first_pid = repl.pid
        killed = await repl.execute(code)
        after = await repl.execute("print(context); print('lost' in globals())")
        assert first_pid is not None and not alive(first_pid)
    assert killed.timed_out and killed.restarted and killed.state_lost
    assert "lost" in killed.render().lower()
    assert after.stdout == "the context\nFalse\n"
    assert repl.restarts == 1


@pytest.mark.parametrize(
    "crash",
    [
        "import os\nos._exit(3)",
        "import ctypes\nctypes.string_at(0)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    ],
    ids=["os._exit", "segfault", "sigkill-self"],
)
async def test_a_crashed_child_is_detected_and_restarted_with_its_context(crash: str) -> None:
    async with ReplSession("ctx", options=FAST) as repl:
        result = await repl.execute(crash)
        after = await repl.execute("context")
    assert result.restarted and result.state_lost
    assert result.error is not None and "crashed" in result.error
    assert after.stdout == "'ctx'\n"


async def test_garbage_on_the_protocol_fd_is_a_protocol_violation_and_restarts() -> None:
    code = (
        "import os, sys\n"
        "fd = int(sys.argv[sys.argv.index('--out-fd') + 1])\n"
        "os.write(fd, b'this is not json\\n')\n"
        "import time; time.sleep(5)"
    )
    async with ReplSession("", options=FAST) as repl:
        result = await repl.execute(code)
        after = await repl.execute("1 + 1")
    assert result.restarted
    assert result.error is not None and "protocol violation" in result.error
    assert after.stdout == "2\n"


async def test_too_many_restarts_raise_repl_crashed() -> None:
    options = ReplOptions(max_restarts=1)
    async with ReplSession("", options=options) as repl:
        await repl.execute("import os; os._exit(1)")
        with pytest.raises(ReplCrashed, match="restarted 1 times"):
            await repl.execute("import os; os._exit(1)")


async def test_an_interrupted_sub_call_is_cancelled_and_its_late_reply_dropped() -> None:
    cancelled = anyio.Event()
    started = anyio.Event()

    async def never(request: LLMRequest) -> list[dict[str, Any]]:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    options = ReplOptions(cell_timeout=0.5, interrupt_grace=5)
    async with ReplSession("", options=options, subcall_handler=never) as repl:
        result = await repl.execute("x = llm_query('slow')")
        after = await repl.execute("'x' in globals()")
    assert started.is_set() and cancelled.is_set()
    assert result.timed_out and not result.restarted
    assert after.stdout == "False\n"


async def test_the_child_environment_holds_no_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-should-not-leak")
    async with ReplSession("", options=FAST) as repl:
        result = await repl.execute("import os\nsorted(os.environ)")
        leak = await repl.execute("'sk-test-secret' in str(dict(__import__('os').environ))")
    assert "OPENAI_API_KEY" not in result.stdout
    assert leak.stdout == "False\n"


async def test_closing_kills_the_child_and_removes_the_work_dir() -> None:
    repl = ReplSession("", options=FAST)
    await repl.start()
    pid, work_dir = repl.pid, repl.work_dir
    assert pid is not None and work_dir is not None and os.path.isdir(work_dir)
    await repl.aclose()
    assert not alive(pid)
    assert not os.path.exists(work_dir)


async def test_cancelling_a_running_cell_leaves_no_process_behind() -> None:
    pids: list[int] = []
    with anyio.move_on_after(0.5):
        async with ReplSession("", options=FAST) as repl:
            assert repl.pid is not None
            pids.append(repl.pid)
            await repl.execute("import time\ntime.sleep(60)")
    assert pids and not alive(pids[0])


async def test_a_million_line_context_loads_and_is_usable() -> None:
    text = "\n".join(f"line {i} some words here" for i in range(1_000_000))
    async with ReplSession(text, options=FAST) as repl:
        result = await repl.execute("len(context.splitlines())")
    assert result.stdout == "1000000\n"
    assert repl.context_load_seconds is not None


async def test_a_thread_calling_llm_query_while_the_main_thread_waits_is_safe() -> None:
    code = (
        "import threading\n"
        "res = {}\n"
        "def work(i):\n"
        "    res[i] = llm_query_batched([f'{i}-{j}' for j in range(20)])\n"
        "ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "all(res[i] == [f'{i}-{j}'.upper() for j in range(20)] for i in range(8))"
    )
    async with ReplSession("", options=FAST, subcall_handler=echo_upper) as repl:
        result = await repl.execute(code)
    assert result.stdout == "True\n"


def test_the_child_module_imports_only_the_standard_library() -> None:
    import ast

    from rlm_async.repl.child import _child

    source = Path(_child.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    names = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    names |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names - set(
        sys.stdlib_module_names
    )
