"""A tiny MCP server for the tests, on the official SDK: ``python mcp_server.py`` serves
over stdio, ``python mcp_server.py http PORT`` over streamable HTTP on 127.0.0.1.

Run as a script by the tests (never imported by them): the SDK's ``FastMCP``, called
``MCPServer`` from mcp 2 on.
"""

from __future__ import annotations

import os
import sys

import anyio
from typing_extensions import TypedDict

try:  # mcp 2.x
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as FastMCP
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import Context, FastMCP
    from mcp.server.fastmcp.exceptions import ToolError


class Ticket(TypedDict):
    id: int
    customer_id: str
    status: str


TICKETS = [
    Ticket(id=1, customer_id="c1", status="open"),
    Ticket(id=2, customer_id="c1", status="closed"),
    Ticket(id=3, customer_id="c2", status="open"),
]

app = FastMCP("rlm-async-test")


@app.tool()
def add(a: int, b: int = 2) -> int:
    """Add two integers.

    The second defaults to 2.
    """
    return a + b


@app.tool()
def search_tickets(customer_id: str, status: str = "open") -> list[Ticket]:
    """Tickets of one customer."""
    return [t for t in TICKETS if t["customer_id"] == customer_id and t["status"] == status]


@app.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@app.tool(name="fail-loudly")
def fail_loudly(reason: str) -> str:
    """Always fails (a name that is no Python identifier).

    The SDK's ToolError: its message reaches the client (2.x keeps other exceptions' text
    on the server).
    """
    raise ToolError(f"refused: {reason}")


@app.tool()
async def wait_forever() -> str:
    """Never returns (a call's timeout, tested)."""
    await anyio.Event().wait()
    return "never"


@app.tool()
def server_pid() -> int:
    """The server's process id (the tests check it is gone after the session)."""
    return os.getpid()


@app.tool()
def request_header(name: str, ctx: Context) -> str:
    """A header of the HTTP request that called this tool ("" over stdio)."""
    request = getattr(ctx.request_context, "request", None)
    return "" if request is None else str(request.headers.get(name, ""))


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        port = int(sys.argv[2])
        try:
            app.run("streamable-http", host="127.0.0.1", port=port)
        except TypeError:  # 1.x: host and port are settings
            app.settings.host, app.settings.port = "127.0.0.1", port
            app.run("streamable-http")
    else:
        app.run()
