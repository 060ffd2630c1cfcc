"""Tools named as ``module:attr`` (``rlm-async serve --tools``), imported the way uvicorn
imports ``module:app``.

The names travel to each worker process as strings and are imported there
(:class:`ReplicaApp` must pickle; a function pickles by name anyway, a ``ToolSet`` does not).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from rlm_async._exceptions import ConfigurationError
from rlm_async.tools import Tool, ToolSet

__all__ = ["check_tool_spec", "import_tools"]


def check_tool_spec(spec: str) -> str:
    """``spec`` when it reads ``module:attr`` (a dotted module, a dotted attribute).

    Raises:
        ConfigurationError: it does not.
    """
    module, colon, attr = spec.partition(":")
    if (
        not colon
        or not all(part.isidentifier() for part in module.split("."))
        or not all(part.isidentifier() for part in attr.split("."))
    ):
        raise ConfigurationError(
            f"--tools {spec!r}: expected module:attr, e.g. myapp.tools:search_tickets "
            "(a function, a Tool, a list of them or a ToolSet)"
        )
    return spec


def import_tools(spec: str) -> list[Tool | Callable[..., Any]]:
    """The tools ``spec`` (``module:attr``) names: the attribute, a function or ``Tool``,
    or each item of a list, tuple or ``ToolSet`` it holds.

    The module is imported from ``sys.path`` (``rlm-async serve`` puts the working directory
    first, as uvicorn does).

    Raises:
        ConfigurationError: a malformed spec, a module that cannot be imported, no such
            attribute, or a value that is no tool.
    """
    module_name, _, attr = check_tool_spec(spec).partition(":")
    try:
        value: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing != module_name and not module_name.startswith(missing + "."):
            raise _import_failed(spec, exc) from exc  # the module is there, its import is not
        raise ConfigurationError(
            f"--tools {spec!r}: no module named {module_name!r} on the Python path (the "
            "working directory is on it: run the command from your project's directory, "
            "or set PYTHONPATH)"
        ) from None
    except Exception as exc:
        raise _import_failed(spec, exc) from exc
    for name in attr.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise ConfigurationError(
                f"--tools {spec!r}: {module_name!r} has no attribute {attr!r}"
            ) from None
    if isinstance(value, ToolSet):
        return list(value.values())
    if isinstance(value, list | tuple):
        items: list[Any] = list(value)
    else:
        items = [value]
    for item in items:
        if not (isinstance(item, Tool) or callable(item)) or isinstance(item, type):
            raise ConfigurationError(
                f"--tools {spec!r}: {type(item).__name__} {item!r:.60} is not a tool; name a "
                "function, a Tool, a list of them or a ToolSet"
            )
    return items


def _import_failed(spec: str, exc: BaseException) -> ConfigurationError:
    return ConfigurationError(
        f"--tools {spec!r}: importing its module failed: {type(exc).__name__}: {exc}"
    )
