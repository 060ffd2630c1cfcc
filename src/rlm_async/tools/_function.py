"""A Python function as a tool: its parameters read from its signature and type hints,
JSON arguments validated against them (pydantic), its result turned back into JSON."""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from rlm_async._exceptions import ConfigurationError
from rlm_async.tools._signature import (
    ParameterKind,
    ToolParameter,
    annotation_source,
    default_source,
)

__all__ = ["FunctionBinding"]

# Sync tools each run in a worker thread, at most this many threads running one tool at
# once. A call past its timeout is abandoned (Python cannot stop a thread), so its thread
# may run on: it keeps its place in this count until it really returns, and calls made
# while the places are all taken by such threads fail at once with a clear error rather
# than pile up threads without limit. Calls waiting behind threads that are still wanted
# queue on the tool's own limiter (anyio's default one is shared with the engine).
THREADS_PER_TOOL = 40
_MAX_ERRORS = 5  # validation errors named in one message; the rest counted
_PREVIEW = 80  # characters of an input shown in a validation error
_NO_PLACE = object()  # a worker thread's answer when THREADS_PER_TOOL threads run the tool


class FunctionBinding:
    """How one function is called with JSON arguments, and its result made JSON again."""

    def __init__(self, fn: Callable[..., Any], *, name: str) -> None:
        self.fn = fn
        self.name = name
        target = _unwrap(fn)
        if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
            raise ConfigurationError(
                f"tool {name!r}: a generator cannot be a tool (its values would never cross "
                "to the REPL): return a list instead"
            )
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"tool {name!r}: its signature cannot be read ({exc})"
            ) from None
        try:
            hints = typing.get_type_hints(_annotated(target), include_extras=True)
        except Exception as exc:  # a name the annotations use that cannot be found, ...
            raise ConfigurationError(
                f"tool {name!r}: its type hints cannot be resolved "
                f"({type(exc).__name__}: {exc}); import the types they name in its module"
            ) from None
        self.is_async = _is_async(fn)
        self.doc = inspect.getdoc(target) or ""
        self._adapters: dict[str, TypeAdapter[Any]] = {}
        parameters = []
        for parameter in self.signature.parameters.values():
            hint = hints.get(parameter.name, inspect.Parameter.empty)
            if hint is not inspect.Parameter.empty and hint is not Any:
                self._adapters[parameter.name] = _adapter(
                    hint, f"tool {name!r}: parameter {parameter.name!r}"
                )
            parameters.append(
                ToolParameter(
                    name=parameter.name,
                    kind=typing.cast(ParameterKind, parameter.kind.name.lower()),
                    annotation=_source(parameter.annotation, hint),
                    default=None
                    if parameter.default is inspect.Parameter.empty
                    else default_source(parameter.default),
                )
            )
        self.parameters = tuple(parameters)
        returns = hints.get("return", inspect.Parameter.empty)
        self.returns = _source(self.signature.return_annotation, returns)
        self._returns: TypeAdapter[Any] | None = None
        if returns is not inspect.Parameter.empty and returns is not Any:
            self._returns = _adapter(returns, f"tool {name!r}: its return type")
        self._limiter: anyio.CapacityLimiter | None = None
        # Threads running the function, counted by the threads themselves: anyio hands a
        # limiter token back when the caller gives up, not when the thread ends.
        self._running = 0
        self._running_lock = threading.Lock()

    # ---- a call ----------------------------------------------------------------------

    async def __call__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Validate the arguments, run the function (a sync one in a worker thread), and
        return its result as JSON; a ``TypeError`` names what did not fit."""
        call_args, call_kwargs = self.bind(args, kwargs)
        if self.is_async:
            result = await self.fn(*call_args, **call_kwargs)
        else:
            if self._limiter is None:  # made in the event loop that first needs it
                self._limiter = anyio.CapacityLimiter(THREADS_PER_TOOL)
            result = await anyio.to_thread.run_sync(
                functools.partial(self._run_counted, call_args, call_kwargs),
                abandon_on_cancel=True,  # a timeout must not wait for a thread that hangs
                limiter=self._limiter,
            )
            if result is _NO_PLACE:
                raise RuntimeError(
                    f"tool {self.name!r}: {THREADS_PER_TOOL} earlier calls are still running, "
                    "some past their timeout (Python cannot stop their threads); call it "
                    "again once they have finished"
                )
            if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
                result = await result
        return self.to_json(result)

    def _run_counted(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """In the worker thread: the function, if fewer than ``THREADS_PER_TOOL`` threads
        are running it (else ``_NO_PLACE``); the place is held until it returns."""
        with self._running_lock:
            if self._running >= THREADS_PER_TOOL:
                return _NO_PLACE
            self._running += 1
        try:
            return self.fn(*args, **kwargs)
        finally:
            with self._running_lock:
                self._running -= 1

    def bind(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """The arguments, validated and converted to the parameters' types (a dict to the
        pydantic model a parameter is annotated with, ...), or a ``TypeError``."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        problems: list[str] = []
        for name, value in bound.arguments.items():
            adapter = self._adapters.get(name)
            if adapter is None:
                continue
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[name] = tuple(
                    _validate(adapter, item, f"{name}[{index}]", problems)
                    for index, item in enumerate(value)
                )
            elif kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[name] = {
                    key: _validate(adapter, item, key, problems) for key, item in value.items()
                }
            else:
                bound.arguments[name] = _validate(adapter, value, name, problems)
        if problems:
            shown = "; ".join(problems[:_MAX_ERRORS])
            more = len(problems) - _MAX_ERRORS
            if more > 0:
                shown += f"; and {more} more"
            raise TypeError(f"{self.name}(): {shown}")
        return list(bound.args), dict(bound.kwargs)

    def to_json(self, value: Any) -> Any:
        """``value`` as JSON types, checked against the return annotation: dumped by it when
        it is what the annotation says, else turned into JSON as pydantic can and validated
        against it (a pydantic model returned for ``-> dict`` fits; ``"seven"`` for ``-> int``
        does not); a ``TypeError`` when it cannot be JSON or does not fit."""
        if self._returns is not None:
            try:
                return self._returns.dump_python(value, mode="json", warnings="error")
            except Exception:  # not exactly the annotated type: its JSON form is checked below
                pass
        try:
            data = to_jsonable_python(value)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TypeError(
                f"{self.name}() returned a value of type {type(value).__name__} that cannot "
                f"cross to the REPL as JSON ({reason}): the tool must return JSON-like data "
                "(dict, list, str, numbers, bool, None, or a pydantic model / dataclass)"
            ) from None
        if self._returns is None:
            return data
        try:
            checked = self._returns.validate_python(data)
        except ValidationError as exc:
            found = [_problem(error).lstrip(": ") for error in exc.errors(include_url=False)]
            raise TypeError(
                f"{self.name}() returned a value that does not match its return type "
                f"{self.returns}: {'; '.join(found[:_MAX_ERRORS])} (the tool's fault, not the "
                "call's)"
            ) from None
        try:
            return self._returns.dump_python(checked, mode="json")
        except Exception:  # validated, but the annotated type will not dump: as it came
            return data

    # ---- its description -------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """The parameters as a JSON schema of one object, by name: ``*args`` appear as an
        array and ``**kwargs`` as ``additionalProperties`` (``false`` without them)."""
        keys = [(name, "validation", adapter) for name, adapter in self._adapters.items()]
        try:
            found, definitions = TypeAdapter.json_schemas(keys)  # type: ignore[arg-type]
            schemas = {name: found[(name, "validation")] for name, _, _ in keys}
        except Exception:  # a type with no JSON schema (it may still validate): left open
            schemas, definitions = {}, {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        extra: Any = False
        for parameter in self.signature.parameters.values():
            schema = dict(schemas.get(parameter.name, {}))
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                extra = schema or True
                continue
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                schema = {"type": "array", "items": schema} if schema else {"type": "array"}
            elif parameter.default is inspect.Parameter.empty:
                required.append(parameter.name)
            else:
                with contextlib.suppress(Exception):  # a default with no JSON form: not shown
                    schema["default"] = to_jsonable_python(parameter.default)
            properties[parameter.name] = schema
        result: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            result["required"] = required
        result["additionalProperties"] = extra
        if definitions.get("$defs"):
            result["$defs"] = definitions["$defs"]
        return result


def _validate(adapter: TypeAdapter[Any], value: Any, where: str, problems: list[str]) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problems.append(f"argument {where!r}{_problem(error)}")
        return value


def _problem(error: Any) -> str:
    """One pydantic error: `` (at loc): message (got input)``."""
    at = ".".join(str(part) for part in error["loc"])
    shown = repr(error.get("input"))
    if len(shown) > _PREVIEW:
        shown = shown[: _PREVIEW - 3] + "..."
    return f"{f' (at {at})' if at else ''}: {error['msg']} (got {shown})"


def _adapter(hint: Any, what: str) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(hint)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigurationError(
            f"{what} is annotated {annotation_source(hint)}, which cannot be read from or "
            f"written to JSON ({reason})"
        ) from None


def _source(annotation: Any, hint: Any) -> str | None:
    """The annotation as written (a string under ``from __future__ import annotations``),
    else the resolved hint's source."""
    if isinstance(annotation, str):
        return annotation
    if hint is inspect.Parameter.empty:
        return None
    return annotation_source(hint)


def _unwrap(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _annotated(target: Any) -> Any:
    """What carries the annotations: a function, or a class's ``__init__`` / an object's
    ``__call__``."""
    if isinstance(target, type):
        return vars(target).get("__init__", target)
    if not (inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target)):
        return _call_method(target) or target
    return target


def _call_method(target: Any) -> Any:
    """The ``__call__`` of a callable object's class (its annotations, its async-ness)."""
    return inspect.getattr_static(type(target), "__call__", None)


def _is_async(fn: Any) -> bool:
    target = _unwrap(fn)
    if inspect.iscoroutinefunction(target):
        return True
    if inspect.isfunction(target) or inspect.ismethod(target) or isinstance(target, type):
        return False
    return inspect.iscoroutinefunction(_call_method(target))
