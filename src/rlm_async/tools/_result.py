"""What a tool call gives back to model code: a JSON value, or an error it can read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ToolError", "ToolResult"]


class ToolError(Exception):
    """A tool's failure reported to model code as ``ToolError: <message>``.

    Raised by an application's tool to fail with a message written for the model (any other
    exception works too: model code sees its type's name and its message), and used for an
    MCP server's error results.
    """


class ToolResult(BaseModel):
    """The outcome of one tool call, as a protocol message carries it to the REPL child.

    Nothing of the parent crosses: ``value`` is made of JSON types only (``dict``, ``list``,
    ``str``, ``int``, ``float``, ``bool``, ``None``), and an error is a type name and a
    message, never a traceback or an object.

    Attributes:
        ok: Whether the call returned.
        value: What it returned, as JSON (``None`` for an error).
        error: The message model code sees when it failed.
        error_type: The name of the exception's type (``"ValueError"``, ``"TimeoutError"``,
            ``"TypeError"`` for arguments that do not fit), for model code to raise.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    value: Any = None
    error: str | None = None
    error_type: str | None = None

    @classmethod
    def success(cls, value: Any) -> ToolResult:
        """A call that returned ``value`` (already JSON)."""
        return cls(ok=True, value=value)

    @classmethod
    def failure(cls, error: str, *, error_type: str) -> ToolResult:
        """A call that failed with ``error_type: error``."""
        return cls(ok=False, error=error, error_type=error_type)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ToolResult:
        """A call that raised ``exc``: its type's name and its message, nothing else."""
        try:
            message = str(exc)
        except Exception:  # a __str__ that fails must not turn the error into another one
            message = f"<{type(exc).__name__} with an unprintable message>"
        return cls.failure(message, error_type=type(exc).__name__)
