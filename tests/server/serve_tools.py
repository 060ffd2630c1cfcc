"""Tools for ``rlm-async serve --tools tests.server.serve_tools:...`` in the tests."""

from __future__ import annotations

import os

from rlm_async.tools import Tool, ToolSet


def serving_pid() -> int:
    """The process id of the server process (where tools run)."""
    return os.getpid()


async def open_tickets(customer_id: str) -> int:
    """How many open tickets one customer has."""
    return {"c1": 3, "c2": 1}.get(customer_id, 0)


TOOLS = [serving_pid, Tool.from_function(open_tickets, name="ticket_count")]
TOOLSET = ToolSet([serving_pid])
NOT_A_TOOL = 42
