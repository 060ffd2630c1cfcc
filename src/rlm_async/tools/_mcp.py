"""The tools of MCP servers as :class:`Tool` s, through the official SDK (the ``mcp`` extra).

``async with mcp_tools(servers) as tools:`` starts or reaches each server, opens one client
session to it, lists its tools and yields them; leaving the block closes the sessions and
ends the servers it started (the SDK closes a stdio server's stdin, then terminates its
process group). A call goes through ``session.call_tool``: text content comes back as a
string, structured content as JSON, an error result as a ``ToolError``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async._exceptions import ConfigurationError
from rlm_async.tools._mcp_schema import MCPSignature, read_signature, unwrapped_result
from rlm_async.tools._mcp_server import MCPServer
from rlm_async.tools._result import ToolError
from rlm_async.tools._tool import Tool

if TYPE_CHECKING:
    from mcp import ClientSession

__all__ = ["MCPServer", "mcp_tools", "require_mcp"]

INSTALL_HINT = 'pip install "rlm-async[mcp]"'


def require_mcp() -> None:
    """Raise a ``ConfigurationError`` saying how to install the SDK when it is missing (or
    installed in a version that cannot be imported)."""
    try:
        importlib.import_module("mcp")
    except ModuleNotFoundError as exc:
        if exc.name not in {"mcp", None}:  # the SDK is there, something it needs is not
            raise _broken(exc) from None
        raise ConfigurationError(
            f"MCP servers need the official MCP SDK, which is not installed: {INSTALL_HINT}"
        ) from None
    except ImportError as exc:
        raise _broken(exc) from None


def _broken(exc: ImportError) -> ConfigurationError:
    return ConfigurationError(
        f"the installed MCP SDK cannot be imported ({exc}); install a version that works "
        f'with the pydantic installed here: pip install -U "rlm-async[mcp]"'
    )


@asynccontextmanager
async def mcp_tools(servers: MCPServer | Iterable[MCPServer]) -> AsyncIterator[list[Tool]]:
    """The tools of ``servers``, usable inside the block, in the servers' order.

    Args:
        servers: One :class:`MCPServer` or several.

    Yields:
        Every exposed tool of every server (``MCPServer.tools`` picks them), named
        ``prefix + name`` (characters a Python name cannot hold become ``_``).

    Raises:
        ConfigurationError: The SDK is not installed (``pip install "rlm-async[mcp]"``),
            a server could not be started or reached, did not answer in its
            ``startup_timeout``, has no tool of a name ``tools`` asks for, or a tool's
            name cannot be a REPL name.
    """
    chosen = [servers] if isinstance(servers, MCPServer) else list(servers)
    for server in chosen:
        if not isinstance(server, MCPServer):
            raise ConfigurationError(f"mcp_tools takes MCPServer descriptions, not {server!r}")
    require_mcp()
    raised: list[BaseException] = []
    try:
        async with AsyncExitStack() as stack:
            try:
                tools: list[Tool] = []
                for server in chosen:
                    session, listed = await stack.enter_async_context(_connect(server))
                    tools.extend(_tools_of(server, session, listed))
                yield tools
            except BaseException as exc:
                raised.append(exc)
                raise
    except BaseExceptionGroup as group:
        # What the block (or this function) raised comes back wrapped by the SDK's task
        # groups it crossed on the way out: the caller gets it as it was raised.
        if raised and _holds(group, raised[0]):
            raise raised[0] from None
        raise


@asynccontextmanager
async def _connect(server: MCPServer) -> AsyncIterator[tuple[ClientSession, list[dict[str, Any]]]]:
    """An initialised session to ``server`` and its tools (as the wire names them)."""
    from mcp import ClientSession

    started = False
    try:
        async with AsyncExitStack() as stack:
            read, write = (await stack.enter_async_context(_transport(server)))[:2]
            session = await stack.enter_async_context(ClientSession(read, write))
            with anyio.fail_after(server.startup_timeout):
                await session.initialize()
                listed = await _list_tools(session)
            started = True
            yield session, listed
    except Exception as exc:
        if started:
            raise
        cause = _leaf(exc)
        why = (
            f"no answer within its startup_timeout of {server.startup_timeout:g} s"
            if isinstance(cause, TimeoutError)
            else f"{type(cause).__name__}: {cause}"
        )
        if isinstance(cause, FileNotFoundError) and server.command and " " in server.command:
            # MCPServer(command="npx -y pkg"): a program of that whole name is looked for.
            why += (
                "; command is the program alone: give its arguments as args, e.g. "
                f"MCPServer(command={server.command.split()[0]!r}, "
                f"args={server.command.split()[1:]!r})"
            )
        raise ConfigurationError(f"MCP server {server.label!r} could not be used ({why})") from None


def _transport(server: MCPServer) -> Any:
    """The SDK's client transport for ``server``: an async context manager yielding its
    read and write streams first (1.x adds a session-id getter for HTTP)."""
    if server.command is not None:
        from mcp import StdioServerParameters
        from mcp.client.stdio import get_default_environment, stdio_client

        # 1.x passes env on its own (no PATH), 2.x adds it to the safe defaults: one meaning.
        env = get_default_environment() | dict(server.env or {})
        return stdio_client(
            StdioServerParameters(
                command=server.command,
                args=list(server.args),
                env=env,
                cwd=None if server.cwd is None else str(server.cwd),
            )
        )
    return _http_transport(server)


@asynccontextmanager
async def _http_transport(server: MCPServer) -> AsyncIterator[Sequence[Any]]:
    module = importlib.import_module("mcp.client.streamable_http")
    connect = getattr(module, "streamable_http_client", None)  # 1.2x and 2.x
    async with AsyncExitStack() as stack:
        if connect is None:  # older 1.x: headers passed to the transport itself
            streams = await stack.enter_async_context(
                module.streamablehttp_client(server.url, headers=dict(server.headers or {}))
            )
        elif server.headers:
            utils = importlib.import_module("mcp.shared._httpx_utils")
            client = await stack.enter_async_context(
                utils.create_mcp_http_client(headers=dict(server.headers))
            )
            streams = await stack.enter_async_context(connect(server.url, http_client=client))
        else:
            streams = await stack.enter_async_context(connect(server.url))
        yield streams


async def _list_tools(session: ClientSession) -> list[dict[str, Any]]:
    """Every tool of the server, all pages, each as its wire JSON (``inputSchema``, ...)."""
    listed: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        if cursor is None:
            page = await session.list_tools()
        elif "params" in inspect.signature(session.list_tools).parameters:
            from mcp.types import PaginatedRequestParams

            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        else:  # 1.x before params=
            page = await session.list_tools(cursor=cursor)  # type: ignore[call-arg]
        dumped = page.model_dump(mode="json", by_alias=True, exclude_none=True)
        listed.extend(dumped.get("tools", []))
        cursor = dumped.get("nextCursor")
        if not cursor:
            return listed


def _tools_of(
    server: MCPServer, session: ClientSession, listed: list[dict[str, Any]]
) -> list[Tool]:
    by_name = {str(entry.get("name")): entry for entry in listed}
    if server.tools is not None:
        missing = [name for name in server.tools if name not in by_name]
        if missing:
            raise ConfigurationError(
                f"MCP server {server.label!r} has no tool named {', '.join(map(repr, missing))} "
                f"(it has: {', '.join(sorted(by_name)) or 'none'})"
            )
        by_name = {name: by_name[name] for name in server.tools}
    tools = []
    for remote, entry in by_name.items():
        schema = entry.get("inputSchema")
        schema = schema if isinstance(schema, dict) else {"type": "object"}
        signature = read_signature(schema, entry.get("outputSchema"))
        name = server.prefix + "".join(c if (c.isalnum() or c == "_") else "_" for c in remote)
        tools.append(
            Tool(
                name=name,
                invoke=_MCPCall(session, remote, name, signature),
                parameters=signature.parameters,
                returns=signature.returns,
                doc=str(entry.get("description") or ""),
                timeout=server.timeout,
                json_schema=schema,
                origin=f"tool {remote!r} of MCP server {server.label!r}",
            )
        )
    return tools


class _MCPCall:
    """One MCP tool's calls: arguments mapped to its schema's names, sent with
    ``call_tool``, the result read back as JSON."""

    def __init__(
        self, session: ClientSession, remote: str, name: str, signature: MCPSignature
    ) -> None:
        self.session = session
        self.remote = remote
        self.name = name
        self.signature = signature

    async def __call__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        result = await self.session.call_tool(self.remote, self.arguments(args, kwargs))
        dumped = result.model_dump(mode="json", by_alias=True)
        content = [block for block in dumped.get("content") or [] if isinstance(block, dict)]
        texts = [str(block.get("text", "")) for block in content if block.get("type") == "text"]
        if dumped.get("isError"):
            raise ToolError("\n".join(texts) or f"the MCP tool {self.remote!r} failed")
        structured = dumped.get("structuredContent")
        if structured is not None:
            return unwrapped_result(structured, self.signature.wrapped)
        if len(texts) == len(content):
            return "\n".join(texts) if content else None
        return [block["text"] if block.get("type") == "text" else block for block in content]

    def arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name, or a ``TypeError`` like Python's for a call that
        does not fit the signature (the server validates the values)."""
        positional = [p.name for p in self.signature.parameters if p.kind != "var_keyword"]
        if len(args) > len(positional):
            raise TypeError(
                f"{self.name}() takes {len(positional)} positional arguments but "
                f"{len(args)} were given"
            )
        arguments = dict(zip(positional, args, strict=False))
        for key, value in kwargs.items():
            if key in arguments:
                raise TypeError(f"{self.name}() got multiple values for argument {key!r}")
            if self.signature.closed and key not in self.signature.properties:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}")
            arguments[key] = value
        missing = sorted(self.signature.required - set(arguments))
        if missing:
            raise TypeError(
                f"{self.name}() missing required arguments: {', '.join(map(repr, missing))}"
            )
        return arguments


def _holds(group: BaseExceptionGroup[Any], wanted: BaseException) -> bool:
    return any(
        exc is wanted or (isinstance(exc, BaseExceptionGroup) and _holds(exc, wanted))
        for exc in group.exceptions
    )


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: what actually went wrong."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
