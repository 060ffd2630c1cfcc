"""Tools end to end: ``RLM(tools=[...], mcp_servers=[...])``, called from cells in the real
REPL child, served by the parent (scripted root model; an MCP server started by the test)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from rlm_async import RLM, Budget
from rlm_async import events as ev
from rlm_async.testing import ScriptedModel
from rlm_async.tools import MCPServer, Tool
from rlm_async.trajectory import Trajectory, TrajectoryHeader, build_tree
from rlm_async.trajectory._viewer import render_html
from tests.helpers import alive, child_pids

MCP_SERVER = str(Path(__file__).parents[1] / "tools" / "mcp_server.py")


def cell(code: str) -> str:
    return f"```repl\n{code}\n```"


def outputs(trajectory: list[Any]) -> str:
    return "\n".join(e.output for e in trajectory if isinstance(e, ev.CellFinished))


class TicketNotFound(Exception):
    pass


async def search_tickets(customer_id: str, status: str = "open") -> list[dict[str, Any]]:
    """Tickets of one customer."""
    if customer_id == "nobody":
        raise TicketNotFound(f"no customer {customer_id!r}")
    return [{"id": 1, "customer_id": customer_id, "status": status}]


def add(a: int, b: int = 2) -> int:
    """Add two integers."""
    if a < 0:
        raise ValueError("a must not be negative")
    return a + b


async def test_sync_and_async_tools_are_functions_of_the_repl() -> None:
    root = ScriptedModel(
        [
            cell(
                "print(await search_tickets('c1'))\n"
                "print(await search_tickets('c2', status='closed'))\n"
                "print(add(40), add(1, b=1))\n"
                "import inspect\n"
                "print(inspect.signature(search_tickets), search_tickets.__doc__)\n"
                "print(inspect.iscoroutinefunction(search_tickets), add.__name__)"
            ),
            "FINAL(done)",
        ]
    )
    async with RLM(model=root, tools=[search_tickets, add]) as rlm:
        result = await rlm.completion("some context", "which tickets?")
    assert result.answer == "done"
    out = outputs(result.trajectory)
    assert "[{'id': 1, 'customer_id': 'c1', 'status': 'open'}]" in out
    assert "'status': 'closed'" in out
    assert "42 2" in out
    assert "(customer_id: 'str', status: 'str' = 'open') -> 'list[dict[str, Any]]'" in out
    assert "Tickets of one customer." in out
    assert "True add" in out
    system = root.requests[0].system or ""
    assert 'async def search_tickets(customer_id: str, status: str = "open")' in system
    assert '"""Add two integers."""' in system
    started = [e for e in result.trajectory if isinstance(e, ev.ToolCallStarted)]
    finished = [e for e in result.trajectory if isinstance(e, ev.ToolCallFinished)]
    assert [e.tool for e in started] == ["search_tickets", "search_tickets", "add", "add"]
    assert all(e.ok and e.turn == 1 and e.cell == 1 for e in finished)
    arguments = '{"args": [], "kwargs": {"customer_id": "c2", "status": "closed"}}'
    assert started[1].arguments == arguments
    assert finished[2].result == "42"
    # The trajectory's tree hangs them under their cell; the viewer shows them.
    (run,) = build_tree(result.trajectory)
    calls = run.turns[0].cells[0].tool_calls
    assert [(c.tool, c.ok, c.result) for c in calls][2:] == [
        ("add", True, "42"),
        ("add", True, "2"),
    ]
    header = TrajectoryHeader(schema_version=ev.TRAJECTORY_SCHEMA_VERSION)
    page = render_html(Trajectory(header=header, events=list(result.trajectory)))
    assert '"tool_calls":[{"call":' in page and "renderToolCalls" in page


async def test_without_tools_the_prompt_lists_none() -> None:
    root = ScriptedModel(["FINAL(x)"])
    async with RLM(model=root) as rlm:
        await rlm.completion("c", "q")
    assert "Functions of the application" not in (root.requests[0].system or "")


async def test_gathered_async_calls_and_calls_from_threads_run_at_once() -> None:
    # Each call waits until its partner is in flight too: served one at a time, the first
    # would wait forever (and fail after 10 s).
    arrived = 0
    both = anyio.Event()

    async def meet(name: str) -> str:
        """Wait for the other caller."""
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        with anyio.fail_after(10):
            await both.wait()
        return name.upper()

    barrier = threading.Barrier(2, timeout=10)

    def sync_meet(name: str) -> str:
        """Wait for the other thread."""
        barrier.wait()
        return name * 2

    root = ScriptedModel(
        [
            cell(
                "import asyncio\n"
                "print(await asyncio.gather(meet('a'), meet('b')))\n"
                "from concurrent.futures import ThreadPoolExecutor\n"
                "with ThreadPoolExecutor(2) as pool:\n"
                "    print(list(pool.map(sync_meet, ['c', 'd'])))"
            ),
            "FINAL(ok)",
        ]
    )
    async with RLM(model=root, tools=[meet, sync_meet]) as rlm:
        result = await rlm.completion("c", "q")
    out = outputs(result.trajectory)
    assert "['A', 'B']" in out
    assert "['cc', 'dd']" in out


async def test_failures_reach_model_code_as_exceptions_with_their_messages() -> None:
    root = ScriptedModel(
        [
            cell(
                "for call in (lambda: add('x'), lambda: add(-1), lambda: add(1, 2, 3)):\n"
                "    try:\n"
                "        call()\n"
                "    except Exception as exc:\n"
                "        print(type(exc).__name__, '|', exc)\n"
                "try:\n"
                "    await search_tickets('nobody')\n"
                "except ToolError as exc:\n"
                "    print(type(exc).__name__, '|', exc)\n"
                "add(-5)"
            ),
            "FINAL(done)",
        ]
    )
    async with RLM(model=root, tools=[search_tickets, add]) as rlm:
        result = await rlm.completion("c", "q")
    out = outputs(result.trajectory)
    assert "TypeError | " in out and "'a'" in out  # the parameter that does not fit, named
    assert "ValueError | a must not be negative" in out
    assert "TypeError | add() takes from 1 to 2 positional arguments" in out  # its signature
    assert "TicketNotFound | no customer 'nobody'" in out
    # Uncaught: the cell's traceback shows the model's code and the message, nothing of
    # the parent (no file of the library, no frame of this test).
    assert "ValueError: a must not be negative" in out
    assert "test_tools_e2e" not in out and "rlm_async" not in out
    failed = [e for e in result.trajectory if isinstance(e, ev.ToolCallFinished) and not e.ok]
    assert {e.error_type for e in failed} == {"TypeError", "ValueError", "TicketNotFound"}


async def test_a_call_past_its_timeout_is_a_timeout_error() -> None:
    async def slow_lookup(key: str) -> str:
        """Never answers."""
        await anyio.sleep_forever()
        return key

    root = ScriptedModel(
        [
            cell(
                "try:\n"
                "    await slow_lookup('k')\n"
                "except TimeoutError as exc:\n"
                "    print('timed out:', exc)"
            ),
            "FINAL(done)",
        ]
    )
    tool = Tool.from_function(slow_lookup, timeout=0.2)
    async with RLM(model=root, tools=[tool]) as rlm:
        result = await rlm.completion("c", "q")
    assert "timed out: slow_lookup() did not finish within its timeout of 0.2 s" in outputs(
        result.trajectory
    )


async def test_calls_past_max_tool_calls_are_refused_not_made() -> None:
    made: list[int] = []

    def count(n: int) -> int:
        """Count a call."""
        made.append(n)
        return n

    root = ScriptedModel(
        [
            cell(
                "for n in range(4):\n"
                "    try:\n"
                "        print(count(n))\n"
                "    except Exception as exc:\n"
                "        print(type(exc).__name__, '|', exc)"
            ),
            "FINAL(done)",
        ]
    )
    async with RLM(model=root, tools=[count], budget=Budget(max_tool_calls=2)) as rlm:
        result = await rlm.completion("c", "q")
    assert result.answer == "done"
    assert made == [0, 1]
    out = outputs(result.trajectory)
    assert out.count("BudgetExceeded | budget: all 2 tool calls") == 2
    assert "max_tool_calls" in out


async def test_an_interrupted_cell_cancels_its_tool_call() -> None:
    cancelled = anyio.Event()

    async def wait_for_ever() -> None:
        """Never returns."""
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    root = ScriptedModel([cell("await wait_for_ever()"), "FINAL(done)"])
    tool = Tool.from_function(wait_for_ever, timeout=60)
    async with RLM(model=root, tools=[tool], cell_timeout=0.5) as rlm:
        result = await rlm.completion("c", "q")
    assert cancelled.is_set()
    assert result.answer == "done"
    finished = [e for e in result.trajectory if isinstance(e, ev.ToolCallFinished)]
    assert len(finished) == 1 and not finished[0].ok
    assert "interrupted" in outputs(result.trajectory)


async def test_the_tools_of_an_mcp_server_are_functions_of_the_repl() -> None:
    pytest.importorskip("mcp", reason='the MCP tests need the extra: pip install "rlm-async[mcp]"')
    root = ScriptedModel(
        [
            cell(
                "print(add(1), add(1, b=5))\nprint(search_tickets('c1'))\nprint(local(3))\n"
                "print('server pid', server_pid())"
            ),
            "FINAL(done)",
        ]
    )

    def local(x: int) -> int:
        """A function of the application beside the server's tools."""
        return x * 10

    server = MCPServer(command=sys.executable, args=[MCP_SERVER])
    async with RLM(model=root, tools=[local], mcp_servers=[server]) as rlm:
        result = await rlm.completion("c", "q")
        pid = int(outputs(result.trajectory).split("server pid ")[1].split()[0])
        assert alive(pid)  # the session stays open while the RLM is
    # aclose() closed the session and ended the server it started.
    assert not alive(pid) and pid not in child_pids()
    out = outputs(result.trajectory)
    assert "3 6" in out
    assert "'customer_id': 'c1'" in out and "'status': 'open'" in out
    assert "30" in out
    assert "def add(a: int, b: int = 2) -> int" in (root.requests[0].system or "")
