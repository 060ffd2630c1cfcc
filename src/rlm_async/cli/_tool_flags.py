"""``--tools module:attr`` and ``--mcp-server "command args..."``: the tools a served RLM's
model code can call (``rlm-async serve``).

``--tools`` names are checked here and imported by whoever makes the ``RLM`` (the command
first, as a check, then each worker process: see ``server._tool_specs``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from rlm_async._exceptions import ConfigurationError
from rlm_async.server._tool_specs import check_tool_spec
from rlm_async.tools import MCPServer

__all__ = ["add_tool_arguments", "mcp_server_arg", "put_cwd_on_path", "tool_spec_arg"]


def tool_spec_arg(text: str) -> str:
    """A ``module:attr`` name (imported later, when the ``RLM`` is made)."""
    try:
        return check_tool_spec(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--tools {text!r}: ")) from None


def mcp_server_arg(text: str) -> MCPServer:
    """An MCP server: an ``http(s)://`` URL (streamable HTTP), else a command line run over
    stdio (split as a POSIX shell would, without running one)."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        return MCPServer(url=text)
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r} into arguments: {exc}") from None
    if not argv:
        raise argparse.ArgumentTypeError("expected a command line or an http(s):// URL")
    return MCPServer(command=argv[0], args=argv[1:])


def add_tool_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--tools`` and ``--mcp-server`` (both repeatable) to ``parser``."""
    parser.add_argument(
        "--tools",
        action="append",
        type=tool_spec_arg,
        default=[],
        metavar="MODULE:ATTR",
        help="functions model code may call in the REPL: a function, Tool, list of them or "
        "ToolSet, imported like uvicorn's module:app (the working directory is on the path); "
        "repeatable",
    )
    parser.add_argument(
        "--mcp-server",
        action="append",
        type=mcp_server_arg,
        default=[],
        metavar="COMMAND",
        help='expose the tools of an MCP server: "command args..." (stdio) or an http(s):// '
        "URL; repeatable; needs the mcp extra",
    )


def put_cwd_on_path() -> None:
    """Make modules in the working directory importable (uvicorn does the same for
    ``module:app``; a console script's ``sys.path`` starts with its own directory)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
