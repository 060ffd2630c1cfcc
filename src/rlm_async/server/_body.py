"""Request bodies: JSON validated into the endpoint's pydantic model, errors as 400s.

A body is parsed in two steps, ``pydantic_core.from_json`` then ``model_validate``: the
same result as ``model_validate_json`` in a third of the time for a large context (an 8 MB
list of numbers: ~50 ms instead of ~200 ms). That matters because both hold the GIL from
start to end: a worker thread keeps such a parse from blocking the event loop outright,
but not from pausing it while the parser runs (about 15-20 ms per MB of small numbers, less
for text). ``max_request_bytes`` bounds the pause.
"""

from __future__ import annotations

from typing import TypeVar

import anyio
import pydantic_core
from pydantic import BaseModel, ValidationError

from rlm_async.server._errors import ApiError

__all__ = ["parse_body"]

_M = TypeVar("_M", bound=BaseModel)
_THREAD_PARSE_BYTES = 256 * 1024  # parse bodies larger than this off the event loop


async def parse_body(model: type[_M], body: bytes) -> _M:
    """Validate a JSON body; large ones are parsed in a worker thread.

    Raises:
        ApiError: 400 for an empty body, malformed JSON or a body that does not validate.
    """
    if not body.strip():
        raise ApiError(400, "the request body is empty; send a JSON object", code="invalid_json")
    if len(body) > _THREAD_PARSE_BYTES:
        return await anyio.to_thread.run_sync(_parse, model, body)
    return _parse(model, body)


def _parse(model: type[_M], body: bytes) -> _M:
    try:
        value = pydantic_core.from_json(body)
    except ValueError as exc:
        raise _not_json(str(exc)) from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _not_json(reason: str) -> ApiError:
    message = f"the body is not valid JSON: {reason}"
    if "surrogate" in reason:
        # JSON allows the escape, but a lone half of a surrogate pair is not a character:
        # the text could not be encoded for the REPL or any model.
        message += (
            "; strings must be valid Unicode: send the text as UTF-8, and a \\uD800-\\uDFFF "
            "escape only as half of a surrogate pair (e.g. decode bytes with errors='replace')"
        )
    return ApiError(400, message, code="invalid_json")


def _invalid(exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    if not first["loc"]:
        return ApiError(400, f"the body must be a JSON object: {first['msg']}", code="invalid_body")
    # A value that fits none of a union's types fails once per type, all under one field.
    same_field = [e for e in errors if e["loc"][:1] == first["loc"][:1]]
    if len(same_field) > 1 and len(errors) == len(same_field):
        loc = str(first["loc"][0])
        reasons = "; ".join(dict.fromkeys(e["msg"] for e in same_field))
        return ApiError(400, f"{loc}: {reasons}", param=loc, code="invalid_value")
    loc = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return ApiError(400, f"{loc}: {first['msg']}{more}", param=loc, code="invalid_value")
