"""MCP servers' tools as Tools, through the official SDK, against a server the tests start
themselves (tests/tools/mcp_server.py, the SDK's FastMCP) over stdio and over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from rlm_async import ConfigurationError
from rlm_async.tools import MCPServer, Tool, ToolResult, ToolSet, mcp_tools
from rlm_async.tools._mcp_schema import read_signature, schema_type
from tests.helpers import alive, child_pids

pytest.importorskip("mcp", reason='the MCP tests need the extra: pip install "rlm-async[mcp]"')

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def stdio_server(**options: Any) -> MCPServer:
    return MCPServer(command=sys.executable, args=[SERVER], **options)


def gone(pid: int) -> bool:
    """Ended and reaped: no process of that id, not even a zombie child of ours."""
    return not alive(pid) and pid not in child_pids()


async def test_a_stdio_servers_tools_are_listed_with_their_signatures() -> None:
    async with mcp_tools([stdio_server(timeout=30)]) as listed:
        tools = ToolSet(listed)
        assert all(tool.timeout == 30.0 for tool in listed)  # the server's, for each tool
        assert list(tools) == [
            "add",
            "search_tickets",
            "shout",
            "fail_loudly",  # "fail-loudly" on the server: made a Python name
            "wait_forever",
            "server_pid",
            "request_header",
        ]
        add = tools["add"]
        assert add.signature == "def add(a: int, b: int = 2) -> int"
        assert add.doc.startswith("Add two integers.")
        assert add.json_schema["properties"]["a"]["type"] == "integer"  # its inputSchema
        assert add.json_schema["required"] == ["a"]
        assert tools["search_tickets"].signature == (
            'def search_tickets(customer_id: str, status: str = "open") -> list[dict]'
        )
        assert tools.describe().startswith(
            'def add(a: int, b: int = 2) -> int:\n    """Add two integers."""\n\n'
        )
        assert tools.stub_specs()[0]["params"] == "a: int, b: int = 2"


async def test_calls_go_to_the_server_and_come_back_as_json() -> None:
    async with mcp_tools(stdio_server()) as listed:
        tools = ToolSet(listed)
        assert await tools.call("add", [1]) == ToolResult(ok=True, value=3)
        assert (await tools.call("add", [1], {"b": 5})).value == 6
        assert (await tools.call("shout", [], {"text": "quiet"})).value == "QUIET"
        assert (await tools.call("search_tickets", ["c1"])).value == [
            {"id": 1, "customer_id": "c1", "status": "open"}
        ]
        assert (await tools.call("search_tickets", ["nobody"])).value == []

        # Calls on one session run concurrently.
        results: dict[int, ToolResult] = {}

        async def add(n: int) -> None:
            results[n] = await tools.call("add", [n, n])

        async with anyio.create_task_group() as group:
            for n in range(10):
                group.start_soon(add, n)
        assert results == {n: ToolResult(ok=True, value=2 * n) for n in range(10)}


async def test_errors_reach_model_code_as_results() -> None:
    async with mcp_tools(stdio_server()) as listed:
        tools = ToolSet(listed)
        failed = await tools.call("fail_loudly", ["no reason"])
        assert failed.error_type == "ToolError"
        assert failed.error is not None and "refused: no reason" in failed.error
        # Values the server's schema refuses: its own message.
        wrong = await tools.call("add", ["one"])
        assert wrong.error_type == "ToolError"
        assert wrong.error is not None and "a" in wrong.error and "integer" in wrong.error
        # Calls that do not fit the signature never leave the parent.
        for args, kwargs, message in [
            ([], {}, "add() missing required arguments: 'a'"),
            ([1, 2, 3], {}, "add() takes 2 positional arguments but 3 were given"),
            ([1], {"a": 2}, "add() got multiple values for argument 'a'"),
        ]:
            result = await tools.call("add", args, kwargs)
            assert (result.error_type, result.error) == ("TypeError", message)


async def test_a_call_past_its_timeout_is_a_timeout_error_and_the_session_goes_on() -> None:
    async with mcp_tools(stdio_server()) as listed:
        tools = ToolSet(listed)
        result = await tools.call("wait_forever", default_timeout=0.2)
        assert (result.error_type, result.error) == (
            "TimeoutError",
            "wait_forever() did not finish within its timeout of 0.2 s",
        )
        assert (await tools.call("add", [1])).value == 3
        pid = (await tools.call("server_pid")).value
    assert gone(pid)  # even with a call it never answered


async def test_the_server_process_is_gone_when_the_block_ends() -> None:
    async with mcp_tools(stdio_server()) as listed:
        pid = (await ToolSet(listed).call("server_pid")).value
        assert isinstance(pid, int) and alive(pid)
    assert gone(pid)


async def test_an_error_in_the_block_propagates_as_it_is_and_the_server_ends() -> None:
    pids: list[int] = []

    async def fail_inside() -> None:
        async with mcp_tools(stdio_server()) as listed:
            pids.append((await ToolSet(listed).call("server_pid")).value)
            raise LookupError("from the block")

    with pytest.raises(LookupError, match="from the block"):  # not an ExceptionGroup
        await fail_inside()
    assert len(pids) == 1 and gone(pids[0])


async def test_two_servers_with_prefixes_and_a_chosen_tool_list() -> None:
    servers = [
        stdio_server(prefix="a_", tools=["add", "server_pid"]),
        stdio_server(prefix="b_", tools=["server_pid"], name="second"),
    ]
    async with mcp_tools(servers) as listed:
        tools = ToolSet(listed)
        assert list(tools) == ["a_add", "a_server_pid", "b_server_pid"]
        assert (await tools.call("a_add", [2, 2])).value == 4
        pids = [(await tools.call(name)).value for name in ("a_server_pid", "b_server_pid")]
        assert pids[0] != pids[1]
    assert all(gone(pid) for pid in pids)


async def test_a_tool_list_naming_a_missing_tool_is_refused_and_nothing_is_left() -> None:
    before = child_pids()
    with pytest.raises(ConfigurationError, match="has no tool named 'delete_all'"):
        async with mcp_tools(stdio_server(tools=["add", "delete_all"])):
            pytest.fail("the block ran")
    assert child_pids() <= before


async def test_names_that_clash_across_servers_are_refused() -> None:
    async with mcp_tools([stdio_server(), stdio_server()]) as listed:
        with pytest.raises(ConfigurationError, match="two tools are named 'add'"):
            ToolSet(listed)


async def test_a_server_that_cannot_start_or_does_not_answer_is_a_configuration_error() -> None:
    before = child_pids()
    with pytest.raises(ConfigurationError, match=r"could not be used.*No such file"):
        async with mcp_tools(MCPServer(command="/nonexistent/mcp-server")):
            pass
    with pytest.raises(ConfigurationError, match="'quits' could not be used"):
        async with mcp_tools(MCPServer(command=sys.executable, args=["-c", "pass"], name="quits")):
            pass
    silent = MCPServer(
        command=sys.executable,
        args=["-c", "import sys; sys.stdin.read()"],  # reads, never answers
        startup_timeout=0.2,
    )
    with pytest.raises(ConfigurationError, match=r"no answer within its startup_timeout of 0\.2 s"):
        async with mcp_tools(silent):
            pass
    assert child_pids() <= before


async def test_the_server_gets_a_safe_environment_plus_what_env_adds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret")
    probe = (
        "import os, sys; from mcp.server.mcpserver import MCPServer\n"
        "app = MCPServer('env')\n"
        "@app.tool()\n"
        "def var(name: str) -> str:\n"
        "    return os.environ.get(name, '<unset>')\n"
        "app.run()\n"
    )
    if not _sdk_2():
        probe = probe.replace(
            "mcp.server.mcpserver import MCPServer",
            "mcp.server.fastmcp import FastMCP as MCPServer",
        )
    server = MCPServer(command=sys.executable, args=["-c", probe], env={"TEAM": "ops"})
    async with mcp_tools(server) as listed:
        tools = ToolSet(listed)
        assert (await tools.call("var", ["TEAM"])).value == "ops"
        assert (await tools.call("var", ["OPENAI_API_KEY"])).value == "<unset>"
        assert (await tools.call("var", ["PATH"])).value == os.environ["PATH"]


def _sdk_2() -> bool:
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def http_server() -> Iterator[str]:
    """The test server on streamable HTTP, on a port the OS picked; its URL."""
    process = subprocess.Popen(
        [sys.executable, SERVER, "http", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:  # ready when uvicorn says where it listens
            lines.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        else:
            pytest.fail(f"the HTTP test server did not start: {''.join(lines)}")
        yield f"{found.group(1)}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()


async def test_an_http_server_is_reached_with_its_headers(http_server: str) -> None:
    server = MCPServer(url=http_server, headers={"X-Team": "ops"})
    async with mcp_tools(server) as listed:
        tools = ToolSet(listed)
        assert (await tools.call("add", [20, 22])).value == 42
        assert (await tools.call("request_header", ["x-team"])).value == "ops"
        assert (await tools.call("fail_loudly", ["http"])).error_type == "ToolError"
    async with mcp_tools(MCPServer(url=http_server)) as listed:
        assert (await ToolSet(listed).call("request_header", ["x-team"])).value == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one"),
        ({"command": "x", "url": "http://h/mcp"}, "exactly one"),
        ({"url": "ftp://h"}, "http:// or https://"),
        ({"command": ""}, "program name"),
        ({"command": "x", "args": "--stdio"}, "list of strings"),
        ({"command": "x", "env": {"A": 1}}, "map strings to strings"),
        ({"command": "x", "tools": "add"}, "list of tool names"),
        ({"command": "x", "prefix": "1x"}, "prefix"),
        ({"command": "x", "timeout": 0}, "timeout"),
        ({"command": "x", "startup_timeout": None}, "startup_timeout"),
    ],
)
def test_a_server_description_is_checked_when_made(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MCPServer(**options)


def test_a_server_description_is_frozen_and_names_itself() -> None:
    server = MCPServer(command="/usr/bin/python3", args=["server.py"], headers=None)
    assert server.args == ("server.py",)
    assert server.label == "python3 server.py"
    assert MCPServer(url="https://h/mcp").label == "https://h/mcp"
    assert "secret" not in repr(MCPServer(url="https://h/mcp", headers={"Authorization": "secret"}))


def test_schemas_read_as_python_types() -> None:
    assert schema_type({"type": "string"}) == "str"
    assert schema_type({"type": ["integer", "null"]}) == "int | None"
    assert schema_type({"anyOf": [{"type": "number"}, {"type": "null"}]}) == "float | None"
    assert schema_type({"type": "array", "items": {"type": "boolean"}}) == "list[bool]"
    assert schema_type({"type": "object", "additionalProperties": {"type": "integer"}}) == (
        "dict[str, int]"
    )
    assert schema_type({"enum": ["a", "b"]}) == 'Literal["a", "b"]'
    assert schema_type({"$ref": "#/$defs/T"}, {"T": {"type": "object"}}) == "dict"
    assert schema_type({}) == "Any"


def test_an_input_schema_reads_as_a_signature() -> None:
    signature = read_signature(
        {
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "default": 10},
                "query": {"type": "string"},
                "since": {"type": "string"},
                "page-size": {"type": "integer"},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        None,
    )
    tool = Tool(
        name="find", invoke=_never, parameters=signature.parameters, returns=signature.returns
    )
    # Required first (positional calls map in this order), optional ones with their default
    # (or "...": the server applies it), names Python cannot hold through **kwargs.
    assert tool.signature == (
        "def find(query: str, limit: int = 10, since: str = ..., **kwargs: Any) -> str"
    )
    assert signature.closed and signature.required == {"query"}


async def _never(args: Any, kwargs: Any) -> Any:
    raise AssertionError("not called")
