"""Model code attacking the parent through the protocol pipes (issue 11, items 1-3 and 7).

Every attack runs in the real child, with bubblewrap and without it. What is measured is
the parent: it never waits on the child without a deadline, never raises an exception group,
stays responsive (the event loop's longest stall) and flat (its resident memory).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from rlm_async import RLM, ReplOptions, ReplSession, SandboxOptions
from rlm_async.repl._launcher import probe_sandbox
from rlm_async.repl._protocol import LLMRequest
from rlm_async.testing import ScriptedModel
from tests.loop_meter import loop_meter

BWRAP_USABLE = probe_sandbox()["bwrap"]["usable"]
IN_FD = "int(sys.argv[sys.argv.index('--in-fd') + 1])"
OUT_FD = "int(sys.argv[sys.argv.index('--out-fd') + 1])"
# Model code reaching the REPL object through a bound method it was given, and making the
# thread that reads the parent's messages block forever on the next one.
STOP_READING = (
    "import sys, threading, time\n"
    "_repl = llm_query.__self__\n"
    "_repl.deliver = lambda message: threading.Event().wait()\n"
)


@pytest.fixture(params=["bwrap", "never"])
def sandbox(request: pytest.FixtureRequest) -> SandboxOptions:
    if request.param == "bwrap":
        if not BWRAP_USABLE:
            pytest.skip("bubblewrap is not usable on this machine")
        return SandboxOptions(bwrap="always")
    return SandboxOptions(bwrap="never")


def answer_with(text: str) -> Callable[[LLMRequest], Awaitable[list[dict[str, Any]]]]:
    async def handler(request: LLMRequest) -> list[dict[str, Any]]:
        return [{"ok": True, "text": text} for _ in request.prompts]

    return handler


# ---- 1. a child that stops reading its input --------------------------------------


async def test_a_child_that_stops_reading_is_killed_at_its_cell_timeout(
    sandbox: SandboxOptions,
) -> None:
    """The reader blocked and the pipe filled by 2 MiB answers: the interrupt cannot be
    written, so the child is hung, killed and restarted within the cell's limits."""
    code = STOP_READING + (
        "for _ in range(2):\n"
        "    threading.Thread(target=llm_query, args=('x',), daemon=True).start()\n"
        "time.sleep(300)"
    )
    options = ReplOptions(cell_timeout=3, interrupt_grace=1, write_timeout=2, sandbox=sandbox)
    handler = answer_with("A" * (2 << 20))
    async with ReplSession("ctx", options=options, subcall_handler=handler) as repl:
        with anyio.fail_after(20):  # it used to wait forever
            result = await repl.execute(code)
        after = await repl.execute("context")
    assert result.restarted and result.state_lost
    assert result.error is not None and "stopped reading" in result.error
    assert after.stdout == "'ctx'\n"


async def test_a_cell_sent_to_a_child_that_stopped_reading_restarts_the_repl(
    sandbox: SandboxOptions,
) -> None:
    """A cell ends normally after leaving its input pipe full: the next cell cannot be
    written; it is reported and the REPL restarted instead of waiting forever."""
    fill = STOP_READING + (
        "threading.Thread(target=llm_query, args=('x',), daemon=True).start()\n"
        "threading.Thread(target=llm_query, args=('x',), daemon=True).start()\n"
        "time.sleep(1)\n"  # let both answers reach the pipe before the cell ends
        "print('filled')"
    )
    options = ReplOptions(cell_timeout=10, interrupt_grace=1, write_timeout=2, sandbox=sandbox)
    handler = answer_with("A" * (2 << 20))
    async with ReplSession("ctx", options=options, subcall_handler=handler) as repl:
        first = await repl.execute(fill)
        with anyio.fail_after(20):  # it used to wait forever
            second = await repl.execute("print('never runs')")
        after = await repl.execute("context")
    assert first.stdout == "filled\n"
    assert second.restarted and second.error is not None and "stopped reading" in second.error
    assert after.stdout == "'ctx'\n"


async def test_requests_forged_during_the_interrupt_grace_are_bounded(
    sandbox: SandboxOptions,
) -> None:
    """A cell that catches the interrupt and floods forged requests for the rest of its grace:
    refused without a task per line, then killed once too many were refused. It used to take
    5.7 s instead of ~4, stall the loop 1.4 s and grow the parent by 43 MiB."""
    code = (
        "import json, os, sys, time\n"
        f"fd = {OUT_FD}\n"
        "request = {'type': 'llm_request', 'id': 1, 'cell': 1, 'kind': 'llm', 'prompts': ['x']}\n"
        "lines = b''.join(\n"
        "    json.dumps({**request, 'id': 10**6 + i}).encode() + b'\\n' for i in range(1000)\n"
        ")\n"
        "try:\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    end = time.monotonic() + 2.5\n"
        "    while time.monotonic() < end:\n"
        "        os.write(fd, lines)\n"
    )
    options = ReplOptions(cell_timeout=1, interrupt_grace=3, sandbox=sandbox)
    async with ReplSession("ctx", options=options, subcall_handler=answer_with("ok")) as repl:
        async with loop_meter() as meter:
            started = time.perf_counter()
            result = await repl.execute(code)
            elapsed = time.perf_counter() - started
        after = await repl.execute("context")
    print(
        f"execute {elapsed:.2f} s, longest stall {meter.longest_stall:.3f} s, "
        f"RSS growth {meter.growth:.0f} MiB"
    )
    assert result.timed_out and result.restarted, result.render()
    assert result.error is not None and "kept sending sub-call requests" in result.error
    assert elapsed < 1 + 3  # killed as soon as too many were refused, not after the grace
    assert meter.longest_stall < 0.25
    assert meter.growth < 20
    assert after.stdout == "'ctx'\n"


# ---- 2. many answers written at once --------------------------------------------------

# Sixteen threads of model code, each asking a sub-call at once; their answer sizes in `sizes`.
SIXTEEN_THREADS_ASK = (
    "import threading\n"
    "sizes = []\n"
    "def ask():\n"
    "    sizes.append(len(llm_query('x')))\n"
    "ts = [threading.Thread(target=ask) for _ in range(16)]\n"
    "[t.start() for t in ts]; [t.join() for t in ts]\n"
)


async def test_sixteen_threads_receiving_megabyte_answers_are_answered_one_write_at_a_time(
    sandbox: SandboxOptions,
) -> None:
    """Concurrent 1 MiB answers used to race for the pipe (BusyResourceError in a group)."""
    code = SIXTEEN_THREADS_ASK + "sizes"
    options = ReplOptions(cell_timeout=60, sandbox=sandbox)
    handler = answer_with("A" * (1 << 20))
    async with ReplSession("", options=options, subcall_handler=handler) as repl:
        for _ in range(3):  # it crashed 2 runs in 3
            result = await repl.execute(code)
            assert result.error is None, result.render()
            assert result.stdout == f"{[1 << 20] * 16}\n"


async def test_a_completion_whose_threads_get_megabyte_answers_finishes_without_a_group(
    sandbox: SandboxOptions,
) -> None:
    """The same attack through ``completion()``: it used to raise an ExceptionGroup."""
    code = SIXTEEN_THREADS_ASK + "FINAL(sorted(set(sizes)))"
    root = ScriptedModel([f"```repl\n{code}\n```"])
    sub = ScriptedModel(lambda request: "A" * (1 << 20))
    async with RLM(model=root, sub_model=sub, sandbox=sandbox) as rlm:
        result = await rlm.completion("ctx", "q")
    assert result.answer == f"{[1 << 20]}"


async def test_answers_queued_behind_each_other_do_not_count_as_a_hung_child(
    sandbox: SandboxOptions,
) -> None:
    """16 megabyte answers to a child that reads steadily but slowly (0.2 s a message): the
    last one waits ~3 s for its turn, longer than ``write_timeout``, yet every write makes
    progress. The deadline used to cover the wait for the lock too: the REPL was killed."""
    code = (
        "import threading, time\n"
        "_repl = llm_query.__self__\n"
        "_deliver = _repl.deliver\n"
        "def slow(message):\n"
        "    time.sleep(0.2)\n"
        "    _deliver(message)\n"
        "_repl.deliver = slow\n"
        "sizes = []\n"
        "def ask():\n"
        "    sizes.append(len(llm_query('x')))\n"
        "ts = [threading.Thread(target=ask) for _ in range(16)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "_repl.deliver = _deliver\n"
        "sizes"
    )
    options = ReplOptions(cell_timeout=60, write_timeout=1.5, sandbox=sandbox)
    handler = answer_with("A" * (1 << 20))
    async with ReplSession("", options=options, subcall_handler=handler) as repl:
        result = await repl.execute(code)
    assert not result.restarted, result.render()
    assert result.stdout == f"{[1 << 20] * 16}\n"


# ---- 3. tens of thousands of pending sub-calls ----------------------------------------


async def test_fifty_thousand_pending_sub_calls_keep_the_parent_flat_and_responsive(
    sandbox: SandboxOptions,
) -> None:
    """50,000 ``ensure_future(allm_query(...))``: only a bounded number is served at once;
    the parent used to hold them all (+870 MiB) and stall its loop for seconds."""
    in_flight = 0
    peak = 0

    async def handler(request: LLMRequest) -> list[dict[str, Any]]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            # A model takes a while to answer: let every request that arrived meanwhile in.
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
        finally:
            in_flight -= 1
        return [{"ok": True, "text": "ok"} for _ in request.prompts]

    code = (
        "import asyncio\n"
        "tasks = [asyncio.ensure_future(allm_query('hi')) for _ in range(50_000)]\n"
        "answers = await asyncio.gather(*tasks)\n"
        "len(answers), set(answers)"
    )
    options = ReplOptions(cell_timeout=240, sandbox=sandbox)
    async with (
        loop_meter() as meter,
        ReplSession("", options=options, subcall_handler=handler, max_pending_subcalls=64) as repl,
    ):
        result = await repl.execute(code)
    print(
        f"peak in flight {peak}, longest stall {meter.longest_stall:.3f} s, "
        f"RSS growth {meter.growth:.0f} MiB"
    )
    assert result.stdout == "(50000, {'ok'})\n", result.render()
    assert peak <= 64
    assert meter.longest_stall < 1.0
    assert meter.growth < 200


# ---- 7. one huge protocol line --------------------------------------------------------


async def test_a_huge_protocol_line_is_refused_at_the_default_limit_without_bloating_the_parent(
    sandbox: SandboxOptions,
) -> None:
    """A 450 MB line used to be buffered whole (+450-900 MiB) under a 512 MiB default."""
    code = (
        "import os, sys\n"
        f"fd = {OUT_FD}\n"
        "chunk = b'[' * (8 << 20)\n"
        "for _ in range(56):\n"
        "    os.write(fd, chunk)\n"
        "os.write(fd, b'\\n')\n"
        "import time; time.sleep(60)"
    )
    options = ReplOptions(cell_timeout=60, sandbox=sandbox)
    async with loop_meter() as meter, ReplSession("ctx", options=options) as repl:
        result = await repl.execute(code)
        after = await repl.execute("context")
    print(f"longest stall {meter.longest_stall:.3f} s, RSS growth {meter.growth:.0f} MiB")
    assert result.restarted and result.error is not None and "longer than" in result.error
    assert "max_message_bytes" in result.error
    assert after.stdout == "'ctx'\n"
    assert meter.growth < 200
    assert meter.longest_stall < 1.0


async def test_a_large_legitimate_message_is_decoded_without_stalling_the_loop(
    sandbox: SandboxOptions,
) -> None:
    """A 12 MB sub-call request (a sub-context for ``rlm_query``) still crosses the pipe."""
    code = "rlm_query('how many?', context=[0] * 3_000_000)"

    async def handler(request: LLMRequest) -> list[dict[str, Any]]:
        assert request.contexts is not None
        return [{"ok": True, "text": str(len(request.contexts[0]))}]

    options = ReplOptions(cell_timeout=60, sandbox=sandbox)
    async with (
        loop_meter() as meter,
        ReplSession("", options=options, subcall_handler=handler) as repl,
    ):
        result = await repl.execute(code)
    print(f"longest stall {meter.longest_stall:.3f} s, RSS growth {meter.growth:.0f} MiB")
    assert result.stdout == "'3000000'\n", result.render()
    assert meter.longest_stall < 1.0
