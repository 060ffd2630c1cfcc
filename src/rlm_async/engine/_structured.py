"""Structured sub-calls (``llm_query(prompt, schema=...)``): reading a reply as JSON and
checking it against the JSON schema model code asked for.

The provider is asked for the schema in its native structured-output mode (the adapters
map ``CompletionRequest.response_schema``), but the reply is checked here either way: a
provider without such a mode, or one that only takes instructions, may still wrap the JSON
in a ```` ```json ```` fence or a sentence of prose, or miss a field.

Validation is ``jsonschema``, the reference implementation of JSON Schema for Python (the
draft named by the schema's ``$schema``, 2020-12 when it names none): model code writes
schemas by hand, and a partial checker would accept some of them wrongly. It is imported on
the first structured sub-call only (~80 ms). A ``$ref`` resolves inside the schema only
(:func:`local_registry`): ``jsonschema``'s default would fetch any other URI itself.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async._types import Completion, Message, Usage
from rlm_async.engine._fences import scan
from rlm_async.providers._base import CompletionRequest

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from referencing import Registry

__all__ = [
    "Ask",
    "StructuredReply",
    "ask_structured",
    "check_schema",
    "local_registry",
    "parse_json_reply",
    "retry_prompt",
    "schema_errors",
    "structured_value",
]

_MAX_ERRORS = 5  # validation errors quoted back (to the sub-model, then to model code)
_MAX_FOUND = 100  # errors looked for, the most relevant of them quoted
_OFF_LOOP_CHARS = 1 << 16  # a reply this long is checked in a worker thread (~1 MB/s)
_MAX_ERROR_CHARS = 300  # each: jsonschema quotes the whole failing value
_MAX_STARTS = 20  # places in the prose where a JSON value is looked for


@functools.cache
def local_registry() -> Registry:
    """Where a schema's ``$ref`` may point: inside the schema (and the drafts' metaschemas).

    Without it ``jsonschema`` fetches any other URI with urllib (deprecated, not yet gone):
    ``file://`` or ``http://``, from the parent, on the event loop, with no timeout, at the
    word of model code (``llm_query(schema=...)``) or an HTTP client (``output_schema``).
    Such a reference is unresolvable instead.
    """
    from referencing import Registry

    return Registry()


def _validator(schema: dict[str, Any], *, check: bool = False) -> Validator:
    from jsonschema.validators import validator_for

    cls = validator_for(schema)
    if check:  # ~1 ms against the metaschema: once per request, not once per reply
        cls.check_schema(schema)
    return cls(schema, registry=local_registry())


def check_schema(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a JSON schema (a message for model code), or ``None``."""
    from jsonschema.exceptions import SchemaError

    try:
        _validator(schema, check=True)
    except SchemaError as exc:
        where = _path(exc.absolute_path)
        return f"the schema is not a valid JSON schema: {_short(exc.message)} (at {where})"
    except RecursionError:
        return "the schema is nested too deeply to check"
    return None


def parse_json_reply(text: str) -> Any:
    """The JSON value in a reply: the whole text, a fenced block, or the first value found
    after some prose.

    Raises:
        ValueError: when no JSON value is found.
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        pass
    for block in scan(text).blocks:
        if block.lang in ("json", "", "jsonc", "javascript", "js"):
            try:
                return json.loads(block.body)
            except (ValueError, RecursionError):
                continue
    decoder = json.JSONDecoder()
    start = 0
    for _ in range(_MAX_STARTS):
        positions = [p for p in (stripped.find("{", start), stripped.find("[", start)) if p >= 0]
        if not positions:
            break
        start = min(positions)
        try:
            return decoder.raw_decode(stripped, start)[0]
        except (ValueError, RecursionError):
            start += 1
    raise ValueError("the reply holds no JSON value")


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """What in ``value`` does not match ``schema`` (at most a few messages, with where);
    ``schema`` has passed :func:`check_schema`."""
    from jsonschema.exceptions import relevance
    from referencing.exceptions import Unresolvable

    try:
        # The most relevant of the first few: a reply wrong everywhere has as many errors
        # as values, each costing as much to find.
        found = itertools.islice(_validator(schema).iter_errors(value), _MAX_FOUND)
        errors = sorted(found, key=relevance)
    except Unresolvable as exc:  # a "$ref" to nothing in the schema (never fetched)
        return [f"the schema's reference cannot be resolved: {_short(str(exc))}"]
    except RecursionError:
        return ["the value is nested too deeply to check"]
    return [f"at {_path(e.absolute_path)}: {_short(e.message)}" for e in errors[:_MAX_ERRORS]]


def structured_value(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """A reply's JSON value and ``None``, or ``None`` and why it does not do."""
    try:
        value = parse_json_reply(text)
    except ValueError as exc:
        return None, f"{exc}: {_short(text.strip()) or '(empty)'}"
    errors = schema_errors(value, schema)
    if errors:
        return None, "; ".join(errors)
    return value, None


def retry_prompt(problem: str, schema: dict[str, Any]) -> str:
    """The follow-up turn that asks a sub-model once more for a reply matching ``schema``."""
    return (
        f"Your reply did not match the required JSON schema: {problem}. Reply again with only "
        f"the JSON value, no other text, matching this JSON schema:\n{json.dumps(schema)}"
    )


def _path(path: Any) -> str:
    """A JSON path such as ``$.items[2].name``."""
    parts = ["$"]
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts)


def _short(text: str) -> str:
    if len(text) <= _MAX_ERROR_CHARS:
        return text
    return text[: _MAX_ERROR_CHARS - 3] + "..."


@dataclass(frozen=True)
class StructuredReply:
    """What a structured sub-call came to, after at most one more try.

    ``completion`` is the last reply, with the usage of every attempt paid for (those not
    from the sub-call cache) added up; ``cached`` is true when every attempt came from the
    cache. Exactly one of ``answer`` (the validated value as JSON text) and ``problem`` (why
    no reply matched) is set.
    """

    completion: Completion
    cached: bool
    answer: str | None
    problem: str | None


Ask = Callable[[CompletionRequest], Awaitable[tuple[Completion, bool]]]
"""One provider call (through the sub-call cache): the completion and whether it was cached."""


async def ask_structured(
    request: CompletionRequest, ask: Ask, paid: Callable[[Completion, bool], None]
) -> StructuredReply:
    """Ask for a reply matching ``request.response_schema``; when it does not, ask once more
    in the same conversation, told what was wrong (cheaper than a root turn spent on it).

    ``paid`` is called after each attempt (with its completion and whether it was cached),
    so an attempt is counted even when the next one fails.
    """
    schema = request.response_schema
    if schema is None:
        raise ValueError("ask_structured needs a request with a response_schema")
    completion, cached = await ask(request)
    paid(completion, cached)
    attempts = [(completion, cached)]
    value, problem = await _checked(completion.text, schema)
    if problem is not None:
        messages = [
            *request.messages,
            Message(role="assistant", content=completion.text),
            Message(role="user", content=retry_prompt(problem, schema)),
        ]
        completion, cached = await ask(request.model_copy(update={"messages": messages}))
        paid(completion, cached)
        attempts.append((completion, cached))
        value, problem = await _checked(completion.text, schema)
    usage = [c.usage for c, from_cache in attempts if not from_cache]
    summed = completion.model_copy(update={"usage": _added(usage) if usage else Usage()})
    every_cached = all(from_cache for _, from_cache in attempts)
    if problem is not None:
        why = f"the sub-model's reply did not match the schema, asked twice: {problem}"
        return StructuredReply(summed, every_cached, None, why)
    answer = json.dumps(value, ensure_ascii=False)
    return StructuredReply(summed, every_cached, answer, None)


async def _checked(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """:func:`structured_value`, in a worker thread for a long reply."""
    if len(text) < _OFF_LOOP_CHARS:
        return structured_value(text, schema)
    return await anyio.to_thread.run_sync(structured_value, text, schema)


def _added(usages: list[Usage]) -> Usage:
    """Several calls' usage as one (every count added; the cost when each one is known)."""
    first, *rest = usages
    totals = {name: value for name, value in first if isinstance(value, int)}
    costs = [u.cost_usd for u in usages]
    for usage in rest:
        for name in totals:
            totals[name] += getattr(usage, name)
    cost = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    return Usage(**totals, cost_usd=cost)
