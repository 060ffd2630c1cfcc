"""An MCP server's command written with its arguments in it (``MCPServer(command="npx -y
pkg")``) fails to start with a message saying to give them as ``args``."""

from __future__ import annotations

import pytest

from rlm_async import ConfigurationError
from rlm_async.tools import MCPServer, mcp_tools

pytest.importorskip("mcp")


async def test_a_command_with_its_arguments_in_it_says_to_give_them_as_args() -> None:
    server = MCPServer(command="/nonexistent/mcp-server --root /srv")
    with pytest.raises(ConfigurationError) as caught:
        async with mcp_tools(server):
            pass
    message = str(caught.value)
    assert "No such file" in message
    assert (
        "give its arguments as args, e.g. MCPServer(command='/nonexistent/mcp-server', "
        "args=['--root', '/srv'])" in message
    )
