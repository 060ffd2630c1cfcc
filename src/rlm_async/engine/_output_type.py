"""Typed answers: a completion's ``output_type``, its schema for the prompt, and an answer
checked against it.

``output_type`` is a pydantic model, a dataclass, a ``TypedDict``, ``list[...]`` or any
other type pydantic can validate, read through a ``TypeAdapter`` (its JSON schema goes into
the system prompt), or a JSON schema given as a dict. Pydantic cannot validate against a raw
JSON schema, and building a model from one would cover only the simple ones (no ``$ref``,
``oneOf``, ``pattern``...); so a schema is checked by ``jsonschema`` (the validator of the
JSON Schema project, a dependency, imported only when a schema is given), and the value is
the JSON value itself. Its ``$ref`` resolves inside the schema only, never fetched (an HTTP
client may send it: see ``engine._structured.local_registry``).

An answer reaches the parent as text: the JSON of a dict or list given to ``FINAL`` in code
(``crossed_as_json``), or what the model wrote. Text is read leniently, in order: as JSON
(inside a ```` ```json ```` fence too), as a Python literal (``{'a': True}``), as the text
itself (an ``output_type`` of ``str`` or a date); the first reading that validates wins.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from pydantic import TypeAdapter, ValidationError

from rlm_async._exceptions import ConfigurationError

__all__ = ["OutputCheck", "OutputSpec"]

_MAX_ERRORS_SHOWN = 20
# Errors kept of one answer: a wrong 1 MB list can have 100,000 (jsonschema finds each one,
# ~20 us apiece); the model is shown 20 of them.
_MAX_ERRORS_KEPT = 100
# An answer this long is checked in a worker thread: jsonschema reads ~1 MB a second.
_OFF_LOOP_CHARS = 1 << 16
_MAX_MESSAGE_CHARS = 300
_MAX_LITERAL_CHARS = 200_000  # a Python literal is parsed (never run) only up to this size

# Schemas that passed the metaschema check (by a hash of their JSON): jsonschema takes ~0.2 ms
# a property, and a server checks a request's schema in a worker thread before the run
# builds its OutputSpec again, on the event loop. The lock: those threads.
_CHECKED_MAX = 32
_checked: OrderedDict[bytes, Any] = OrderedDict()
_checked_lock = threading.Lock()


@dataclass(frozen=True)
class OutputCheck:
    """One answer checked: its validated value, or what was wrong with it.

    ``errors`` are dicts with ``loc`` (a list: the path into the answer), ``msg`` and
    ``type``, as pydantic's ``ValidationError.errors()`` (the first 100, then one saying
    how many more); empty when the answer validated. ``dumped`` is the validated value as
    JSON values (:meth:`OutputSpec.dump`).
    """

    value: Any = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    dumped: Any = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def describe(self) -> str:
        """The errors, one line each (at most 20)."""
        lines = [
            f"- {'.'.join(str(part) for part in error['loc']) or '(the answer)'}: {error['msg']}"
            for error in self.errors[:_MAX_ERRORS_SHOWN]
        ]
        if len(self.errors) > _MAX_ERRORS_SHOWN:
            unlisted = self.errors[-1]["type"] == "too_many_errors"  # how many is not known
            more = "more" if unlisted else f"{len(self.errors) - _MAX_ERRORS_SHOWN} more"
            lines.append(f"- ... and {more}")
        return "\n".join(lines)


class OutputSpec:
    """What a typed completion's answer must be: its schema, and how it is validated.

    Args:
        output_type: A type pydantic validates (a model, a dataclass, a ``TypedDict``,
            ``list[...]``...) or a JSON schema (a dict).

    Raises:
        ConfigurationError: pydantic cannot validate the type or give its JSON schema, or
            the schema is not a valid JSON schema.
    """

    def __init__(self, output_type: Any) -> None:
        self._adapter: TypeAdapter[Any] | None = None
        self._validator: Any = None  # a jsonschema validator, for a schema given as a dict
        if isinstance(output_type, Mapping):
            self.schema: dict[str, Any] = dict(output_type)
            self._validator = _schema_validator(self.schema)
            self.name = str(self.schema.get("title") or "the schema")
            return
        try:
            self._adapter = TypeAdapter(output_type)
            self.schema = self._adapter.json_schema()
        except Exception as exc:  # pydantic's errors for types it cannot handle vary
            raise ConfigurationError(
                f"output_type {output_type!r} cannot be used: {str(exc).splitlines()[0]} "
                "Give a pydantic model, a dataclass, a TypedDict, list[...] of those or of "
                "plain types, or a JSON schema as a dict"
            ) from None
        self.name = getattr(output_type, "__name__", None) or str(output_type)

    def check(self, answer: str, *, crossed_as_json: bool) -> OutputCheck:
        """``answer`` validated: the first of its readings that validates, else the errors
        of the first reading (the JSON one, when the text parsed)."""
        readings, problem = _readings(answer, crossed_as_json=crossed_as_json)
        first: OutputCheck | None = None
        for value in readings:
            checked = self._validate(value)
            if checked.ok:
                return dataclasses.replace(checked, dumped=self.dump(checked.value))
            first = first or checked
        assert first is not None  # there is always at least one reading
        if problem:
            errors = [{"loc": [], "msg": problem, "type": "json_invalid"}, *first.errors]
            return OutputCheck(errors=errors)
        return first

    async def acheck(self, answer: str, *, crossed_as_json: bool) -> OutputCheck:
        """:meth:`check`, in a worker thread for a long answer (not to hold the event loop)."""
        if len(answer) < _OFF_LOOP_CHARS:
            return self.check(answer, crossed_as_json=crossed_as_json)
        check = functools.partial(self.check, answer, crossed_as_json=crossed_as_json)
        return await anyio.to_thread.run_sync(check)

    def dump(self, value: Any) -> Any:
        """``value`` as JSON values (for events and trajectory files)."""
        if self._adapter is None:
            return value
        return self._adapter.dump_python(value, mode="json")

    def prompt(self) -> str:
        """The system prompt's part on the answer's type and how to give it."""
        schema = json.dumps(self.schema, indent=1, ensure_ascii=False)
        return (
            f"\n\nThe answer must be JSON matching this JSON schema ({self.name}):\n"
            f"```json\n{schema}\n```\n"
            "To finish, build the answer in code as a Python dict or list shaped like the "
            "schema and call `FINAL(answer)` with it (it is sent as JSON), or write a line "
            "`FINAL(<the answer as JSON>)` in your reply, outside any code block. An answer "
            "that does not match is sent back to you with what is wrong."
        )

    def feedback(self, checked: OutputCheck, *, left: int, final_turn: bool) -> str:
        """What the model reads after an answer that did not match."""
        how = (
            "No code runs now: reply with one line FINAL(<the answer as JSON>)."
            if final_turn
            else "Fix it and give the answer again: FINAL(answer) in code with a dict or "
            "list, or a line FINAL(<the answer as JSON>)."
        )
        tries = f"{left} more attempt{'s' if left != 1 else ''}"
        return (
            f"Your answer did not match {self.name} (the schema in the system prompt), so it "
            f"was not taken:\n{checked.describe()}\n{how} You have {tries}."
        )

    def _validate(self, value: Any) -> OutputCheck:
        if self._adapter is not None:
            try:
                return OutputCheck(value=self._adapter.validate_python(value))
            except ValidationError as exc:
                found = exc.errors(include_url=False, include_input=False)
                errors = [_plain(error) for error in found[:_MAX_ERRORS_KEPT]]
                if len(found) > _MAX_ERRORS_KEPT:
                    errors.append(_more(len(found) - _MAX_ERRORS_KEPT))
                return OutputCheck(errors=errors)
        from referencing.exceptions import Unresolvable

        try:
            errors = [
                {
                    "loc": list(error.absolute_path),
                    "msg": _short(error.message),
                    "type": str(error.validator),
                }
                for error in itertools.islice(
                    self._validator.iter_errors(value), _MAX_ERRORS_KEPT + 1
                )
            ]
            if len(errors) > _MAX_ERRORS_KEPT:  # not counted: each costs as much to find
                errors[_MAX_ERRORS_KEPT:] = [_more(None)]
        except Unresolvable as exc:  # a "$ref" to nothing in the schema (never fetched)
            why = f"the schema's reference cannot be resolved: {_short(str(exc))}"
            errors = [{"loc": [], "msg": why, "type": "unresolvable_ref"}]
        except RecursionError:
            errors = [{"loc": [], "msg": "the answer is nested too deeply", "type": "too_deep"}]
        return OutputCheck(value=None if errors else value, errors=errors)


def _readings(answer: str, *, crossed_as_json: bool) -> tuple[list[Any], str]:
    """The values ``answer`` may mean, most likely first, and why it is not JSON ("" if it
    is, or when the text is one of the readings)."""
    text = _unfenced(answer.strip())
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        if crossed_as_json:  # the child sent JSON: only a cap at max_answer_chars breaks it
            return [answer], f"the answer is not complete JSON ({exc}); was it too long?"
        problem = f"the answer is not JSON ({exc})"
    else:
        return ([parsed] if crossed_as_json else [parsed, answer]), ""
    readings: list[Any] = []
    if len(text) <= _MAX_LITERAL_CHARS:
        try:
            readings.append(ast.literal_eval(text))
            problem = ""  # a Python literal: its own errors say what is wrong
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
    readings.append(answer)
    return readings, problem


def _unfenced(text: str) -> str:
    """The body of one ```` ``` ```` / ```` ```json ```` fence around the whole text."""
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        body = text[3:-3]
        newline = body.find("\n")
        head = body[:newline] if newline >= 0 else ""
        if head.strip().lower() in ("", "json"):
            return body[newline + 1 :].strip() if newline >= 0 else body.strip()
    return text


def _plain(error: Any) -> dict[str, Any]:
    """A pydantic error as JSON values, without the input (it may be the whole answer)."""
    return {"loc": list(error["loc"]), "msg": _short(str(error["msg"])), "type": error["type"]}


def _more(count: int | None) -> dict[str, Any]:
    """The error standing for those not kept (``count``: how many, when known)."""
    many = "more errors" if count is None else f"{count} more error{'s' if count != 1 else ''}"
    return {"loc": [], "msg": f"... and {many}, not listed", "type": "too_many_errors"}


def _short(message: str) -> str:
    if len(message) <= _MAX_MESSAGE_CHARS:
        return message
    return message[:_MAX_MESSAGE_CHARS] + "..."


def _schema_validator(schema: dict[str, Any]) -> Any:
    """A ``jsonschema`` validator for ``schema`` (its draft from ``$schema``, else 2020-12)."""
    import jsonschema

    from rlm_async.engine._structured import local_registry

    digest = _digest(schema)
    with _checked_lock:
        cls = _checked.get(digest) if digest is not None else None
    if cls is None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            message = f"output_type is not a valid JSON schema: {exc.message}"
            raise ConfigurationError(message) from None
        except RecursionError:
            raise ConfigurationError("output_type is a JSON schema nested too deeply") from None
        if digest is not None:
            with _checked_lock:
                _checked[digest] = cls
                while len(_checked) > _CHECKED_MAX:
                    _checked.popitem(last=False)
    return cls(schema, registry=local_registry())


def _digest(schema: dict[str, Any]) -> bytes | None:
    """A hash of ``schema``'s JSON (keys sorted), or ``None`` when orjson cannot write it."""
    try:
        data = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: not JSON, or nested past orjson's limit
        return None
    return hashlib.sha256(data).digest()
