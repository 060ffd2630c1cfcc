"""Tools: functions of the application that model code calls from the REPL, and the tools
of MCP servers exposed the same way.

A call from model code crosses to the parent as JSON, is validated against the tool's type
hints, runs in the parent (a sync function in a worker thread), and its result crosses back
as JSON (:class:`ToolResult`). This room knows nothing of the REPL or the engine: the
engine serves calls with :meth:`ToolSet.call` and describes tools with
:meth:`ToolSet.describe` and :meth:`ToolSet.stub_specs`.
"""

from rlm_async.tools._mcp import mcp_tools
from rlm_async.tools._mcp_server import MCPServer
from rlm_async.tools._names import RESERVED_NAMES
from rlm_async.tools._result import ToolError, ToolResult
from rlm_async.tools._signature import ToolParameter
from rlm_async.tools._tool import Tool
from rlm_async.tools._toolset import ToolSet

__all__ = [
    "RESERVED_NAMES",
    "MCPServer",
    "Tool",
    "ToolError",
    "ToolParameter",
    "ToolResult",
    "ToolSet",
    "mcp_tools",
]
