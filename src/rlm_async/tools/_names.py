"""Which names a tool may take in the REPL: identifiers that hide nothing model code relies on."""

from __future__ import annotations

import builtins
import keyword
import re

from rlm_async._exceptions import ConfigurationError

__all__ = ["RESERVED_NAMES", "check_tool_name"]

RESERVED_NAMES: frozenset[str] = frozenset(
    {
        # What the REPL child puts in every namespace (repl/child/_child.py, install_api).
        "context",
        "llm_query",
        "llm_query_batched",
        "allm_query",
        "rlm_query",
        "rlm_query_batched",
        "FINAL",
        "Final",
        "final",
        "FINAL_VAR",
        "Final_Var",
        "final_var",
        "SHOW_VARS",
        "partial_answers",
        "re",
        "json",
    }
)
"""Names of the REPL's own functions and variables: a tool named so would replace one of them
for model code, which the system prompt tells to use them."""

# A session's numbered variables (context_1, query_2, answer_3: issue 15's sessions).
_NUMBERED = re.compile(r"(?:context|query|answer)_\d+")


def check_tool_name(name: object, *, origin: str) -> str:
    """``name`` if a tool may be called so in the REPL, else a ``ConfigurationError``.

    ``origin`` says where the tool comes from (a function, an MCP server) in the message.
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigurationError(
            f"tool name {name!r} ({origin}) is not a Python identifier: model code calls a "
            "tool by its name; give it another one (Tool.from_function(fn, name=...))"
        )
    why = None
    if name in RESERVED_NAMES or _NUMBERED.fullmatch(name):
        why = "would hide a name the REPL defines for model code"
    elif name in dir(builtins):
        why = "would hide a Python built-in"
    elif name.startswith("_"):
        why = "starts with '_', which the REPL keeps for its own helpers"
    if why is not None:
        raise ConfigurationError(
            f"tool name {name!r} ({origin}) {why}: give the tool another name "
            "(Tool.from_function(fn, name=...), or MCPServer(prefix=...) for an MCP server)"
        )
    return name
