"""``ToolBox``: the tools of an ``RLM``: its functions, and the tools of its MCP servers.

The MCP servers are reached once, on first use (``async with RLM(...)`` or the first
completion), and their sessions stay open until ``aclose()``. The SDK's sessions hold anyio
task groups that must be left in the task that entered them, while completions run in tasks
of their own: so one task of the box's own holds them open and closes them when told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio

from rlm_async.tools import MCPServer, Tool, ToolSet, mcp_tools

__all__ = ["ToolBox"]


class ToolBox:
    """The functions given as ``RLM(tools=...)`` and the servers of ``RLM(mcp_servers=...)``.

    Args:
        tools: The application's tools, already checked (``ToolSet``).
        mcp_servers: The MCP servers whose tools are exposed too.
    """

    def __init__(self, tools: ToolSet, mcp_servers: Sequence[MCPServer] = ()) -> None:
        self._functions = tools
        self._servers = list(mcp_servers)
        self._tools: ToolSet | None = tools if not self._servers else None
        self._opening: asyncio.Task[None] | None = None
        self._ready = anyio.Event()
        self._stop = anyio.Event()
        self._error: BaseException | None = None

    def __bool__(self) -> bool:
        return bool(self._functions) or bool(self._servers)

    async def toolset(self) -> ToolSet:
        """Every tool, the MCP servers' ones included (reached now on first use).

        Raises:
            ConfigurationError: an MCP server could not be reached (or the SDK is missing).
        """
        if self._tools is not None:
            return self._tools
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._hold())
        await self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._tools is not None
        return self._tools

    async def _hold(self) -> None:
        """Open the servers' sessions, keep them open until ``aclose()``, close them."""
        try:
            async with mcp_tools(self._servers) as found:
                listed: list[Tool] = [*self._functions.values(), *found]
                self._tools = ToolSet(listed)
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def aclose(self) -> None:
        """Close the MCP sessions (and end the servers started for them)."""
        self._stop.set()
        task, self._opening = self._opening, None
        if task is not None:
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: _hold keeps its own error

    @property
    def ready(self) -> ToolSet | None:
        """Every tool once ``toolset()`` has reached the MCP servers (``None`` before)."""
        return self._tools
