"""Forged tool requests from model code: lines written straight to the protocol pipe.

The child's own code asks only for the cell it runs, under ids it has not used; a line
naming another cell, or an id already being served, is refused without calling the
handler (it is answered with an error, like a request past the cell's limit).
"""

from __future__ import annotations

import json

import anyio
import pytest

from rlm_async import ReplOptions, ReplSession, SandboxOptions
from rlm_async.repl._protocol import ToolCallResult, ToolRequest

OUT_FD = "int(sys.argv[sys.argv.index('--out-fd') + 1])"
SPECS = [
    {
        "name": name,
        "params": "a",
        "parameters": [
            {"name": "a", "kind": "positional_or_keyword", "has_default": False},
        ],
        "returns": None,
        "signature": f"def {name}(a)",
        "is_async": False,
        "doc": "",
    }
    for name in ("echo", "slow")
]


def forge(request: dict[str, object]) -> str:
    """Model code writing one tool request line to the parent (``cell`` None: the running
    cell, as the child itself would name it)."""
    line = json.dumps({"type": "tool_request", "args": [1], "keywords": {}, **request})
    return (
        "import os, sys, json\n"
        f"_line = json.loads({line!r})\n"
        "if _line['cell'] is None:\n"
        "    _line['cell'] = llm_query.__self__.current_cell\n"
        f"os.write({OUT_FD}, json.dumps(_line).encode() + b'\\n')\n"
    )


class Tools:
    """The handler: counts what it is asked, by tool and by cell."""

    def __init__(self) -> None:
        self.requests: list[ToolRequest] = []

    async def __call__(self, request: ToolRequest) -> ToolCallResult:
        self.requests.append(request)
        if request.name == "slow":
            await anyio.sleep_forever()  # in flight until the cell ends
        return ToolCallResult(ok=True, value=[*request.args, *request.keywords.values()][0])


MODES = ["always", "never"]  # the attacks run with bubblewrap and without it


def options(bwrap: str) -> ReplOptions:
    return ReplOptions(cell_timeout=20, sandbox=SandboxOptions(bwrap=bwrap))


@pytest.mark.parametrize("bwrap", MODES)
async def test_a_request_naming_another_cell_is_not_served(bwrap: str) -> None:
    tools = Tools()
    code = forge({"id": 1_000_001, "cell": 999, "name": "echo"}) + "print(echo(2))"
    async with ReplSession("ctx", options=options(bwrap), tools=SPECS, tool_handler=tools) as repl:
        with anyio.fail_after(20):
            result = await repl.execute(code)
    assert result.error is None and result.stdout == "2\n"
    assert [r.cell for r in tools.requests if r.cell == 999] == []
    assert len(tools.requests) == 1  # the cell's own call only


@pytest.mark.parametrize("bwrap", MODES)
async def test_an_id_already_being_served_is_refused(bwrap: str) -> None:
    tools = Tools()
    forged = {"id": 1_000_001, "cell": None, "name": "slow"}
    # Both forged lines are read before the real call's answer: the first is still in flight.
    code = forge(forged) + forge(forged) + "print(echo(2))"
    async with ReplSession("ctx", options=options(bwrap), tools=SPECS, tool_handler=tools) as repl:
        with anyio.fail_after(20):
            result = await repl.execute(code)
            after = await repl.execute("print(echo(3))")
    assert result.error is None and result.stdout == "2\n"
    assert [r.name for r in tools.requests].count("slow") == 1
    assert after.stdout == "3\n"  # the in-flight one was ended with its cell; the REPL serves on
