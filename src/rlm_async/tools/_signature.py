"""A tool's signature as Python source: what the system prompt shows and the REPL child
compiles into a stub."""

from __future__ import annotations

import ast
import enum
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic_core import to_jsonable_python

__all__ = [
    "ParameterKind",
    "ToolParameter",
    "annotation_source",
    "default_source",
    "docstring_summary",
    "parameters_source",
    "python_literal",
]

ParameterKind = Literal[
    "positional_only", "positional_or_keyword", "var_positional", "keyword_only", "var_keyword"
]
"""``inspect.Parameter``'s kinds, by name (lower case)."""


@dataclass(frozen=True, slots=True)
class ToolParameter:
    """One parameter of a tool, as source text.

    Attributes:
        name: The parameter's name.
        kind: How it is passed (``"positional_or_keyword"``, ``"keyword_only"``, ...).
        annotation: Its type as source (``"list[str]"``), or ``None`` when it has none.
        default: Its default as a Python literal (``'"open"'``), ``"..."`` for a default
            that has no literal (the parent applies it: a stub sends only the arguments
            given), or ``None`` when it is required.
    """

    name: str
    kind: ParameterKind
    annotation: str | None = None
    default: str | None = None

    @property
    def has_default(self) -> bool:
        """Whether the call may leave it out."""
        return self.default is not None

    def source(self) -> str:
        """``name: annotation = default``, with ``*``/``**`` for the variadic ones."""
        text = {"var_positional": "*", "var_keyword": "**"}.get(self.kind, "") + self.name
        if self.annotation is not None:
            text += f": {self.annotation}"
        if self.default is not None:
            text += f" = {self.default}" if self.annotation is not None else f"={self.default}"
        return text


def parameters_source(parameters: Sequence[ToolParameter]) -> str:
    """The text between a ``def``'s parentheses, with ``/`` and ``*`` where Python needs them."""
    parts: list[str] = []
    kinds = [parameter.kind for parameter in parameters]
    for index, parameter in enumerate(parameters):
        bare_star = "var_positional" not in kinds[:index] and "*" not in parts
        if parameter.kind == "keyword_only" and bare_star:
            parts.append("*")
        parts.append(parameter.source())
        following = kinds[index + 1] if index + 1 < len(kinds) else None
        if parameter.kind == "positional_only" and following != "positional_only":
            parts.append("/")
    return ", ".join(parts)


def annotation_source(annotation: Any) -> str:
    """A type hint as the source that wrote it: ``list[dict[str, int]]``, ``str | None``,
    ``Customer`` (a class by its own name, not its module's)."""
    if isinstance(annotation, str):
        return annotation
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    if isinstance(annotation, typing.TypeVar):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return annotation_source(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(annotation_source(arg) for arg in args)
    if origin is Literal:
        return f"Literal[{', '.join(_literal_repr(arg) for arg in args)}]"
    if origin is not None:
        name = getattr(origin, "__name__", None) or str(origin).removeprefix("typing.")
        if not args:
            return name
        inner = ", ".join(
            "[" + ", ".join(annotation_source(a) for a in arg) + "]"
            if isinstance(arg, list)
            else "..."
            if arg is Ellipsis
            else annotation_source(arg)
            for arg in args
        )
        return f"{name}[{inner}]"
    if isinstance(annotation, type):
        return annotation.__qualname__
    return str(annotation).removeprefix("typing.")


def _literal_repr(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    return repr(value)


def default_source(value: Any) -> str:
    """A default as the literal model code would pass for it (``"open"`` for ``Status.OPEN``
    whose value is ``"open"``: arguments cross as JSON), or ``...`` when it has none."""
    try:
        jsonable = to_jsonable_python(value)
    except Exception:  # an object pydantic cannot turn into JSON: no literal to show
        return "..."
    text = python_literal(jsonable)
    return "..." if text is None else text


def python_literal(value: Any) -> str | None:
    """Python source for a JSON value (strings in double quotes, as JSON writes them), or
    ``None`` when there is none (NaN, a lone surrogate)."""
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        # JSON's escapes are Python's, except that Python reads "\/" as two characters
        # (json.dumps never writes it) and every other is the same character: checked.
        return text if ast.literal_eval(text) == value else None
    if isinstance(value, list):
        items = [python_literal(item) for item in value]
        return None if None in items else "[" + ", ".join(items) + "]"  # type: ignore[arg-type]
    if isinstance(value, dict):
        pairs = [(python_literal(key), python_literal(item)) for key, item in value.items()]
        if any(key is None or item is None for key, item in pairs):
            return None
        return "{" + ", ".join(f"{key}: {item}" for key, item in pairs) + "}"
    return None


def docstring_summary(doc: str) -> str:
    """The first paragraph of a (cleaned) docstring: what the prompt shows of it."""
    return doc.strip().split("\n\n", 1)[0].strip()
