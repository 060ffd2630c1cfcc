"""JSON bodies: a request encoded once, with orjson; a reply parsed once, with pydantic-core.

Request bodies are mostly the prompts, so their encoding is most of what the engine spends
on a sub-call's bytes: orjson writes UTF-8 straight from the strings, 7x (ASCII) to 20x
(other text) faster than the standard library, which builds a ``str`` and then encodes it
(httpx's ``json=`` does that). The bytes are made once per call and every retry sends them.

The output is what ``httpx``'s ``json=`` sends (compact, UTF-8, not ASCII-escaped), with
three decisions where orjson and the standard library differ:

- **NaN and infinities** are refused before anything is sent, as httpx refused them: JSON
  cannot carry them and orjson would write ``null`` in their place without a word.
- **What orjson cannot write** but the standard library can (integers past 64 bits, keys
  that are not strings) is written by the standard library, as before.
- **Lone surrogates** (what ``errors="surrogateescape"`` makes of undecodable bytes, in
  text that model code built) cannot be UTF-8: they are sent as U+FFFD, the character a
  decoder puts where bytes were not text, where httpx raised ``UnicodeEncodeError`` and the
  run ended.

Replies are parsed by pydantic-core's ``from_json`` (jiter), 2-3x faster than ``json.loads``
and exact on big integers (orjson reads those as floats); what it refuses (a lone surrogate
escape, nesting past its limit) is read by ``json.loads``, so every reply the standard
library read is still read the same.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic_core import from_json

from rlm_async._exceptions import ConfigurationError

__all__ = ["encode_body", "parse_json"]


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """``payload`` as the UTF-8 JSON bytes of a request body.

    Raises:
        ConfigurationError: a NaN or infinite number in the payload (a temperature or a
            field of ``extra``), which JSON cannot carry.
        TypeError: a value JSON has no form for, as ``json.dumps`` raises it.
    """
    where = _non_finite(payload)
    if where is not None:
        raise ConfigurationError(
            f"the request holds {_describe(where)}: JSON has no NaN or infinity, so it "
            "cannot be sent; give a finite number"
        )
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        pass
    # What orjson refused: written as httpx's json= wrote it, or refused as it was.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates: a surrogate pair written as two code points becomes its
        # character, and each lone half U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode()


def parse_json(text: str | bytes) -> Any:
    """The JSON value of ``text``; ``ValueError`` when it is not JSON (as ``json.loads``)."""
    try:
        return from_json(text, cache_strings="keys")
    except ValueError:
        return json.loads(text)


def _non_finite(value: Any) -> list[str | int] | None:
    """The path (innermost key first) to a NaN or infinite float in ``value``, if any."""
    if isinstance(value, float):
        return None if math.isfinite(value) else []
    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(item, str):
            continue  # the prompts: most of the payload, and never a number
        path = _non_finite(item)
        if path is not None:
            path.append(key)
            return path
    return None


def _describe(path: list[str | int]) -> str:
    keys = "".join(f"[{key!r}]" for key in reversed(path))
    return f"a NaN or infinite number at body{keys}" if keys else "a NaN or infinite number"
