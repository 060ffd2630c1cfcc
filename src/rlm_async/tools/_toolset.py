"""``ToolSet``: the tools of one RLM, by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from rlm_async._exceptions import ConfigurationError
from rlm_async.tools._result import ToolResult
from rlm_async.tools._tool import Tool

__all__ = ["ToolSet"]


class ToolSet(Mapping[str, Tool]):
    """The tools model code can call, by name: functions (made into tools with
    :meth:`Tool.from_function`) and tools already made (from MCP servers).

    Two tools with one name are refused: model code could reach only one of them.
    """

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        """Collect ``tools``.

        Raises:
            ConfigurationError: A function that cannot be a tool, or two tools with one
                name.
        """
        self._tools: dict[str, Tool] = {}
        for item in tools:
            tool = item if isinstance(item, Tool) else Tool.from_function(item)
            if tool.name in self._tools:
                raise ConfigurationError(
                    f"two tools are named {tool.name!r} ({self._tools[tool.name]!r} and "
                    f"{tool!r}): model code could call only one; rename one "
                    "(Tool.from_function(fn, name=...), MCPServer(prefix=...))"
                )
            self._tools[tool.name] = tool

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolSet({list(self._tools)})"

    async def call(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        default_timeout: float | None = None,
    ) -> ToolResult:
        """Call the tool named ``name`` (see :meth:`Tool.call`); an unknown name is a
        ``NameError`` result, not an exception."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult.failure(f"no tool named {name!r}", error_type="NameError")
        return await tool.call(args, kwargs, default_timeout=default_timeout)

    def describe(self) -> str:
        """The tools for the system prompt: each one's ``def`` line and the first paragraph
        of its docstring, in the order given (empty without tools)."""
        return "\n\n".join(tool.describe() for tool in self._tools.values())

    def stub_specs(self) -> list[dict[str, Any]]:
        """Each tool's :meth:`Tool.stub_spec`, for the REPL child to define its functions."""
        return [tool.stub_spec() for tool in self._tools.values()]
