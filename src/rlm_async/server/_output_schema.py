"""Typed answers over HTTP: OpenAI's ``response_format`` and the native ``output_schema``.

Both give a JSON schema, which becomes the completion's ``output_type`` (checked by
``jsonschema``: see ``engine._output_type``). It is checked here, before the request takes
a run slot, so a bad schema is a 400 naming its field rather than a failed run. A typed
answer is sent as the JSON text of the validated value: what the model wrote may be a
Python literal (``{'a': True}``) that a client's JSON parser would refuse.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from rlm_async._exceptions import ConfigurationError
from rlm_async._types import RLMResult
from rlm_async.engine._output_type import OutputSpec
from rlm_async.server._errors import ApiError

__all__ = ["answer_text", "checked_schema", "schema_of_response_format"]


def schema_of_response_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema an OpenAI ``response_format`` asks for (``None``: plain text).

    ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`` gives its
    schema; ``{"type": "json_object"}`` any JSON object; ``{"type": "text"}`` none.

    Raises:
        ApiError: 400 for another type or a ``json_schema`` without a schema object.
    """
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise ApiError(
            400,
            f"response_format.type {kind!r} is not supported; use 'json_schema' (with "
            "json_schema.schema), 'json_object' or 'text'",
            param="response_format.type",
            code="invalid_value",
        )
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise ApiError(
            400,
            "response_format.json_schema.schema must be a JSON schema object, e.g. "
            '{"type": "object", "properties": {...}}',
            param="response_format.json_schema.schema",
            code="invalid_value",
        )
    name = spec.get("name") if isinstance(spec, dict) else None
    if isinstance(name, str) and name and "title" not in schema:
        schema = {"title": name, **schema}  # the prompt and errors name it
    return schema


async def checked_schema(schema: dict[str, Any] | None, *, param: str) -> dict[str, Any] | None:
    """``schema`` when it can check answers (``None`` stays ``None``).

    Checked in a worker thread: ``jsonschema`` takes ~0.2 ms a property, and a request may
    hold a big schema; the run's own check then finds it already done (``OutputSpec``).

    Raises:
        ApiError: 400 naming ``param`` when it is not a valid JSON schema.
    """
    if schema is None:
        return None
    try:
        await anyio.to_thread.run_sync(OutputSpec, schema)
    except ConfigurationError as exc:
        raise ApiError(400, f"{param}: {exc}", param=param, code="invalid_schema") from None
    return schema


def answer_text(result: RLMResult, *, typed: bool) -> str:
    """The answer a client reads: a typed answer as the JSON of its validated value."""
    if typed and result.output is not None:
        return json.dumps(result.output, ensure_ascii=False)
    return result.answer
