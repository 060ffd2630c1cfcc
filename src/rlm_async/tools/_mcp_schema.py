"""An MCP tool's JSON schemas read as a Python signature: its ``inputSchema`` as parameters,
its ``outputSchema`` as a return type. Pure functions of the schemas."""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlm_async.tools._signature import ToolParameter, python_literal

__all__ = ["MCPSignature", "read_signature", "schema_type", "unwrapped_result"]

_SIMPLE = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
    "array": "list",
    "object": "dict",
}
_DEPTH = 4  # nested schemas rendered before "Any": a prompt line, not a type checker


@dataclass(frozen=True, slots=True)
class MCPSignature:
    """How model code calls an MCP tool: positional parameters map to these names in this
    order, keyword ones by name.

    Attributes:
        parameters: The parameters (required first, then optional; ``**kwargs`` last when
            some property names are not Python identifiers).
        properties: Every property name of the input schema.
        required: The property names a call must give.
        closed: Whether the schema refuses properties it does not name.
        returns: The return type as source.
        wrapped: Whether results come as ``{"result": value}`` (FastMCP's structured output
            for a value that is not an object), to be unwrapped.
    """

    parameters: tuple[ToolParameter, ...]
    properties: frozenset[str]
    required: frozenset[str]
    closed: bool
    returns: str
    wrapped: bool


def read_signature(input_schema: Mapping[str, Any], output_schema: Any) -> MCPSignature:
    """The signature a tool with these schemas has in the REPL."""
    properties = input_schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    listed = input_schema.get("required")
    required = frozenset(
        name for name in (listed if isinstance(listed, list) else []) if isinstance(name, str)
    )
    definitions = _defs(input_schema)
    named: list[ToolParameter] = []
    optional: list[ToolParameter] = []
    unnamed = False
    for name, schema in properties.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            unnamed = True  # reachable only as f(**{"the-name": ...})
            continue
        annotation = schema_type(schema, definitions)
        if name in required:
            named.append(ToolParameter(name, "positional_or_keyword", annotation))
        else:
            default = "..."
            if isinstance(schema, Mapping) and "default" in schema:
                default = python_literal(schema["default"]) or "..."
            optional.append(ToolParameter(name, "positional_or_keyword", annotation, default))
    parameters = [*named, *optional]
    if unnamed:
        parameters.append(ToolParameter("kwargs", "var_keyword", "Any"))
    wrapped = _is_wrapped(output_schema)
    if wrapped:
        returns = schema_type(output_schema["properties"]["result"], _defs(output_schema))
    elif isinstance(output_schema, Mapping):
        returns = schema_type(output_schema, _defs(output_schema))
    else:
        returns = "str"  # no declared output: the text the tool writes
    return MCPSignature(
        parameters=tuple(parameters),
        properties=frozenset(name for name in properties if isinstance(name, str)),
        required=required,
        closed=input_schema.get("additionalProperties") is False,
        returns=returns,
        wrapped=wrapped,
    )


def unwrapped_result(structured: Any, wrapped: bool) -> Any:
    """The value of a structured result, out of FastMCP's ``{"result": ...}`` wrapper."""
    if wrapped and isinstance(structured, dict) and set(structured) == {"result"}:
        return structured["result"]
    return structured


def schema_type(schema: Any, definitions: Mapping[str, Any] | None = None, depth: int = 0) -> str:
    """A JSON schema as a Python type's source: ``list[str]``, ``int | None``, ``dict``."""
    if not isinstance(schema, Mapping) or depth > _DEPTH:
        return "Any"
    definitions = definitions or {}
    if "const" in schema:
        literal = python_literal(schema["const"])
        return f"Literal[{literal}]" if literal is not None else "Any"
    if isinstance(schema.get("enum"), list):
        literals = [python_literal(value) for value in schema["enum"]]
        if literals and None not in literals:
            return f"Literal[{', '.join(literals)}]"  # type: ignore[arg-type]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return schema_type(definitions.get(ref.removeprefix("#/$defs/")), definitions, depth + 1)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return _union(schema_type(part, definitions, depth + 1) for part in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union(schema_type({**schema, "type": part}, definitions, depth) for part in kind)
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, Mapping):
            return "list"
        return f"list[{schema_type(items, definitions, depth + 1)}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and not schema.get("properties"):
            return f"dict[str, {schema_type(extra, definitions, depth + 1)}]"
        return "dict"
    return _SIMPLE.get(kind, "Any") if isinstance(kind, str) else "Any"


def _union(parts: Any) -> str:
    seen: list[str] = []
    for part in parts:
        if part not in seen:
            seen.append(part)
    return "Any" if "Any" in seen else " | ".join(seen)


def _defs(schema: Any) -> Mapping[str, Any]:
    found = schema.get("$defs") if isinstance(schema, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def _is_wrapped(output_schema: Any) -> bool:
    """FastMCP's wrapper for a result that is not an object: ``{"result": value}``, titled
    ``<function>Output``, with that one property (1.x and 2.x write the same)."""
    if not isinstance(output_schema, Mapping):
        return False
    properties = output_schema.get("properties")
    title = output_schema.get("title")
    return (
        isinstance(properties, Mapping)
        and set(properties) == {"result"}
        and output_schema.get("required") == ["result"]
        and isinstance(title, str)
        and title.endswith("Output")
    )
