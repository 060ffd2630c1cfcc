"""A reply's JSON schema (``CompletionRequest.response_schema``) as each native mode takes it.

OpenAI's ``response_format`` and Anthropic's tool ``input_schema`` take only an object at
the root, so any other schema (``list[...]``, a string enum...) is wrapped as the one
property ``value`` of an object, and the reply unwrapped again: the adapter's
``Completion.text`` is always the JSON of what the schema describes.

OpenAI's ``strict`` mode guarantees the shape but refuses (400) a schema outside its subset:
every object closed (``additionalProperties: false``) with all its properties required, and
no ``allOf`` / ``oneOf`` / ``not`` / conditionals. A schema that qualifies is sent strict; any
other is sent with ``strict: false`` (the model is steered, not held) rather than refused,
since the engine validates the parsed reply either way. Pydantic models qualify when they
forbid extra fields and give no field a default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import orjson

from rlm_async.providers._body import parse_json

__all__ = ["ANSWER_NAME", "object_schema", "strict_ready", "unwrap_reply"]

#: The name OpenAI's ``json_schema`` and Anthropic's forced tool are given.
ANSWER_NAME: Final = "answer"
_WRAPPED: Final = "value"
_DEFINITIONS: Final = ("$defs", "definitions")
_NOT_STRICT: Final = frozenset(
    {"allOf", "oneOf", "not", "if", "then", "else", "patternProperties", "dependentRequired"}
)


def object_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``schema`` with an object at its root, and whether it had to be wrapped.

    A wrapped schema's definitions move to the new root, where ``#/$defs/...`` references
    look for them.
    """
    if schema.get("type") == "object":
        return schema, False
    inner = {k: v for k, v in schema.items() if k not in _DEFINITIONS}
    wrapper: dict[str, Any] = {
        "type": "object",
        "properties": {_WRAPPED: inner},
        "required": [_WRAPPED],
        "additionalProperties": False,
    }
    wrapper.update({k: schema[k] for k in _DEFINITIONS if k in schema})
    return wrapper, True


def unwrap_reply(text: str, wrapped: bool) -> str:
    """The JSON text of the reply's value: ``text`` itself unless the schema was wrapped.

    A reply that is not the wrapper object (the model ignored a non-strict schema) is
    returned as it came, for the engine's validation to report.
    """
    if not wrapped:
        return text
    try:
        value = parse_json(text)
    except ValueError:
        return text
    if not isinstance(value, dict) or _WRAPPED not in value:
        return text
    return orjson.dumps(value[_WRAPPED]).decode()


def strict_ready(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's strict mode accepts ``schema`` (an object schema, see the module)."""
    if schema.get("type") != "object":
        return False
    return all(_strict_node(node) for node in _nodes(schema))


def _strict_node(node: dict[str, Any]) -> bool:
    if _NOT_STRICT & node.keys():
        return False
    kind = node.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if not is_object and "properties" not in node:
        return True
    properties = node.get("properties") or {}
    required = node.get("required") or []
    return node.get("additionalProperties") is False and set(required) == set(properties)


def _nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every sub-schema of ``schema``, itself included."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key in ("properties", *_DEFINITIONS):
        children = schema.get(key)
        if isinstance(children, dict):
            for child in children.values():
                yield from _nodes(child)
    for key in ("items", "additionalProperties", "contains"):
        yield from _nodes(schema.get(key))
    for key in ("anyOf", "prefixItems"):
        children = schema.get(key)
        if isinstance(children, list):
            for child in children:
                yield from _nodes(child)
