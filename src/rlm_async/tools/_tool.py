"""``Tool``: a function of the application that model code calls from the REPL."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from rlm_async._exceptions import ConfigurationError
from rlm_async.tools._function import FunctionBinding
from rlm_async.tools._names import check_tool_name
from rlm_async.tools._result import ToolResult
from rlm_async.tools._signature import ToolParameter, docstring_summary, parameters_source

__all__ = ["Tool", "ToolInvoke"]

ToolInvoke = Callable[[Sequence[Any], Mapping[str, Any]], Awaitable[Any]]
"""What runs a call: the arguments as model code passed them, the result as JSON (or an
exception, which becomes the error model code sees)."""


class Tool:
    """A function of the application that model code can call in the REPL, by its name.

    Made from a Python function with :meth:`from_function` (``RLM(tools=[fn])`` does it for
    plain functions) or from an MCP server's tool by ``mcp_tools``. In the REPL it is a
    function with the same name, signature and docstring; a call crosses to the parent as
    JSON, is validated against the parameters, runs here, and its result crosses back as
    JSON. Nothing of the parent reaches model code: not an object, not a traceback.

    Attributes:
        name: The name model code calls it by (a Python identifier).
        doc: Its docstring (cleaned), shown to the model.
        parameters: Its parameters, as source text.
        returns: Its return type as source (``"list[dict]"``), or ``None`` when unannotated.
        is_async: Whether it is an ``async def`` in the REPL (awaited by model code).
        timeout: Seconds a call may take, or ``None`` for the caller's default.
    """

    __slots__ = (
        "_invoke",
        "_json_schema",
        "_schema_of",
        "doc",
        "is_async",
        "name",
        "parameters",
        "returns",
        "timeout",
    )

    def __init__(
        self,
        *,
        name: str,
        invoke: ToolInvoke,
        parameters: Sequence[ToolParameter] = (),
        returns: str | None = None,
        doc: str = "",
        is_async: bool = False,
        timeout: float | None = None,
        json_schema: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        origin: str = "",
    ) -> None:
        """Build a tool from its parts (most code uses :meth:`from_function`).

        Args:
            name: The name model code calls it by.
            invoke: Runs a call: ``await invoke(args, kwargs)`` returns the result as JSON
                or raises (the exception's type name and message reach model code).
            parameters: The parameters model code sees.
            returns: The return type as source text, if known.
            doc: The docstring.
            is_async: Whether model code awaits it.
            timeout: Seconds a call may take (``None``: the caller's default).
            json_schema: The parameters' JSON schema, or a function making it on first use.
            origin: Where it comes from, for error messages (``"function search"``).

        Raises:
            ConfigurationError: A name model code cannot call, or a timeout that is not
                a positive number.
        """
        self.name = check_tool_name(name, origin=origin or "a tool")
        self._invoke = invoke
        self.parameters = tuple(parameters)
        self.returns = returns
        self.doc = doc
        self.is_async = is_async
        self.timeout = _check_timeout(timeout, self.name)
        self._schema_of = json_schema
        self._json_schema: dict[str, Any] | None = None

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> Tool:
        """A tool that runs ``fn``, sync or async.

        A sync ``fn`` runs in a worker thread (it never blocks the event loop); an async one
        is awaited. Arguments are validated against its type hints with pydantic (a dict
        becomes the pydantic model or dataclass a parameter is annotated with); its result
        is turned into JSON by its return annotation, or as pydantic can, and checked
        against that annotation (one that does not fit is a ``TypeError`` model code reads).

        Args:
            fn: The function (a lambda needs ``name``).
            name: The name in the REPL; ``fn.__name__`` by default.
            description: The docstring shown to the model; ``fn``'s own by default.
            timeout: Seconds a call may take, or ``None`` for the caller's default.

        Raises:
            ConfigurationError: A name model code cannot call (not an identifier, or one
                that would hide a REPL built-in such as ``llm_query``, ``FINAL`` or
                ``print``), type hints that cannot be resolved or read from JSON, or a
                generator function.
        """
        if isinstance(fn, Tool):
            raise ConfigurationError(f"{fn!r} is already a Tool: pass it as it is")
        if not callable(fn):
            raise ConfigurationError(f"a tool must be a function, not {type(fn).__name__}")
        chosen = name if name is not None else _function_name(fn)
        origin = f"function {getattr(fn, '__qualname__', chosen)}"
        binding = FunctionBinding(fn, name=check_tool_name(chosen, origin=origin))
        return cls(
            name=chosen,
            invoke=binding,
            parameters=binding.parameters,
            returns=binding.returns,
            doc=binding.doc if description is None else description,
            is_async=binding.is_async,
            timeout=timeout,
            json_schema=binding.json_schema,
            origin=origin,
        )

    # ---- calling it --------------------------------------------------------------------

    async def call(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        default_timeout: float | None = None,
    ) -> ToolResult:
        """Run one call from model code, under the tool's timeout.

        Never raises for the tool's own failures: arguments that do not fit (``TypeError``,
        naming the parameter), an exception of the tool (its type's name and message only),
        a result that is not JSON, or the timeout (``TimeoutError``) come back as a failed
        :class:`ToolResult`. Cancellation propagates.

        Args:
            args: The positional arguments, as JSON values.
            kwargs: The keyword arguments, as JSON values.
            default_timeout: Seconds allowed when the tool has no timeout of its own.
        """
        timeout = self.timeout if self.timeout is not None else default_timeout
        try:
            with anyio.move_on_after(timeout) as scope:
                value = await self._invoke(args, {} if kwargs is None else kwargs)
        except Exception as exc:
            return ToolResult.from_exception(exc)
        if scope.cancelled_caught:
            return ToolResult.failure(
                f"{self.name}() did not finish within its timeout of {timeout:g} s",
                error_type="TimeoutError",
            )
        return ToolResult.success(value)

    # ---- describing it -----------------------------------------------------------------

    @property
    def params_source(self) -> str:
        """The parameters as source: ``customer_id: str, status: str = "open"``."""
        return parameters_source(self.parameters)

    @property
    def signature(self) -> str:
        """The ``def`` line without its colon:
        ``def search_tickets(customer_id: str, status: str = "open") -> list[dict]``."""
        head = "async def" if self.is_async else "def"
        tail = f" -> {self.returns}" if self.returns is not None else ""
        return f"{head} {self.name}({self.params_source}){tail}"

    @property
    def summary(self) -> str:
        """The docstring's first paragraph."""
        return docstring_summary(self.doc)

    @property
    def json_schema(self) -> dict[str, Any]:
        """The parameters as the JSON schema of one object (keyword arguments by name)."""
        if self._json_schema is None:
            made = self._schema_of() if callable(self._schema_of) else self._schema_of
            self._json_schema = made if made is not None else {"type": "object"}
        return self._json_schema

    def describe(self) -> str:
        """The tool for the system prompt: its ``def`` line and its summary as docstring."""
        summary = self.summary.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        if not summary:
            return f"{self.signature}: ..."
        body = "\n".join(f"    {line}" if line else "" for line in summary.splitlines())
        if "\n" not in summary:
            return f'{self.signature}:\n    """{summary}"""'
        return f'{self.signature}:\n    """\n{body}\n    """'

    def stub_spec(self) -> dict[str, Any]:
        """What the REPL child needs to define the tool's stub, as JSON.

        Keys: ``name``; ``params`` (the parameters as source, annotations included: compile
        the stub with postponed annotations, since the types they name exist only in the
        parent); ``parameters`` (each ``name``, ``kind``, ``has_default``: a stub sends the
        arguments it was given and nothing else, the parent applies the defaults);
        ``returns``; ``signature``; ``is_async``; ``doc``.
        """
        return {
            "name": self.name,
            "params": self.params_source,
            "parameters": [
                {"name": p.name, "kind": p.kind, "has_default": p.has_default}
                for p in self.parameters
            ],
            "returns": self.returns,
            "signature": self.signature,
            "is_async": self.is_async,
            "doc": self.doc,
        }

    def __repr__(self) -> str:
        return f"<Tool {self.signature}>"


def _function_name(fn: Callable[..., Any]) -> str:
    target = fn
    while hasattr(target, "func") and not hasattr(target, "__name__"):  # functools.partial
        target = target.func
    name = getattr(target, "__name__", None)
    if name is None:
        name = type(target).__name__  # a callable object: its class's name
    return str(name)


def _check_timeout(timeout: float | None, name: str) -> float | None:
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigurationError(
            f"tool {name!r}: timeout must be a positive number of seconds or None, not {timeout!r}"
        )
    return float(timeout)
