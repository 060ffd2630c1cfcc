"""``MCPServer``: where an MCP server is and which of its tools to expose (no SDK needed)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rlm_async._exceptions import ConfigurationError

__all__ = ["MCPServer"]


@dataclass(frozen=True, kw_only=True)
class MCPServer:
    """An MCP server whose tools model code can call: a command run as a subprocess
    (stdio) or a streamable-HTTP URL. Exactly one of ``command`` and ``url``.

    Attributes:
        command: The program to run (stdio), e.g. ``"npx"`` or ``sys.executable``.
        args: Its arguments.
        env: Variables for its environment, added to a small safe one (``PATH``,
            ``HOME``, ``USER``, ...): the parent's own environment, API keys included,
            is not passed on.
        cwd: Its working directory.
        url: The server's streamable-HTTP endpoint, e.g. ``"http://127.0.0.1:8000/mcp"``.
        headers: HTTP headers for every request (an ``Authorization`` header, ...).
        prefix: Put before each tool's name in the REPL (``"gh_"``: two servers, or a
            tool named like a REPL built-in).
        tools: The names of the server's tools to expose; all of them by default.
        timeout: Seconds a call to one of its tools may take (``None``: the caller's
            default).
        startup_timeout: Seconds the server has to start, answer and list its tools.
        name: What messages call it; its command or URL by default.
    """

    command: str | None = None
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    cwd: str | os.PathLike[str] | None = None
    url: str | None = None
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    prefix: str = ""
    tools: Sequence[str] | None = None
    timeout: float | None = None
    startup_timeout: float = 30.0
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ConfigurationError(
                "MCPServer takes a command (a server run over stdio) or a url "
                "(streamable HTTP), exactly one of them"
            )
        if self.command is not None and (not isinstance(self.command, str) or not self.command):
            raise ConfigurationError(
                f"MCPServer command must be a program name, not {self.command!r}"
            )
        if self.url is not None and not (
            isinstance(self.url, str) and self.url.startswith(("http://", "https://"))
        ):
            raise ConfigurationError(
                f"MCPServer url must be an http:// or https:// URL, not {self.url!r}"
            )
        if isinstance(self.args, str) or not all(isinstance(a, str) for a in self.args):
            raise ConfigurationError(f"MCPServer args must be a list of strings, not {self.args!r}")
        object.__setattr__(self, "args", tuple(self.args))
        for what in ("env", "headers"):
            value = getattr(self, what)
            if value is not None:
                if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                    raise ConfigurationError(f"MCPServer {what} must map strings to strings")
                object.__setattr__(self, what, dict(value))
        if self.tools is not None:
            if isinstance(self.tools, str) or not all(isinstance(t, str) for t in self.tools):
                raise ConfigurationError(
                    f"MCPServer tools must be a list of tool names, not {self.tools!r}"
                )
            object.__setattr__(self, "tools", tuple(self.tools))
        if not isinstance(self.prefix, str) or (self.prefix and not self.prefix.isidentifier()):
            raise ConfigurationError(
                f"MCPServer prefix must start a Python identifier (e.g. 'gh_'), not {self.prefix!r}"
            )
        for what in ("timeout", "startup_timeout"):
            value = getattr(self, what)
            if value is None and what == "timeout":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigurationError(
                    f"MCPServer {what} must be a positive number of seconds, not {value!r}"
                )

    @property
    def label(self) -> str:
        """How messages name it: ``name``, else its command line or URL."""
        if self.name:
            return self.name
        if self.command is not None:
            return " ".join([os.path.basename(self.command), *self.args])[:120]
        return str(self.url)
