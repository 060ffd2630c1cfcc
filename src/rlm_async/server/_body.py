"""Request bodies: JSON validated into the endpoint's pydantic model, errors as 400s."""

from __future__ import annotations

from typing import TypeVar

import anyio
from pydantic import BaseModel, ValidationError

from rlm_async.server._errors import ApiError

__all__ = ["parse_body"]

_M = TypeVar("_M", bound=BaseModel)
_THREAD_PARSE_BYTES = 1024 * 1024  # parse bodies larger than this off the event loop


async def parse_body(model: type[_M], body: bytes) -> _M:
    """Validate a JSON body; large ones are parsed in a worker thread."""
    if not body.strip():
        raise ApiError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        if len(body) > _THREAD_PARSE_BYTES:
            return await anyio.to_thread.run_sync(model.model_validate_json, body)
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return ApiError(400, f"the body is not valid JSON: {first['msg']}", code="invalid_json")
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
