"""The contexts a REPL holds besides ``context``: named, written as files, reloaded on restart.

A :class:`NamedContext` is one context added after the first (``ReplSession.add_context``).
Each is written to the work directory like the first one and loaded into the child again
after every restart, under its own variable name.
"""

from __future__ import annotations

import contextlib
import keyword
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from rlm_async._exceptions import ConfigurationError
from rlm_async.repl._context import PreparedContext, prepare_context
from rlm_async.repl._process import ChildProcess
from rlm_async.repl._start import load_context
from rlm_async.repl._work_dir import create_child_file

__all__ = [
    "NamedContext",
    "check_context_name",
    "context_file_name",
    "load_contexts",
    "load_named_context",
    "prepare_added_context",
    "write_context_file",
    "write_context_files",
]


@dataclass(frozen=True)
class NamedContext:
    """A context added after the first: its variable, its file, and what it was made from."""

    name: str
    path: str
    prepared: PreparedContext
    source: Any  # the value given, to recognise the first context given again


def check_context_name(name: Any, taken: Sequence[str]) -> None:
    """Refuse a name that is not a Python identifier, or one already ``taken``.

    Raises:
        ConfigurationError: a bad or taken name.
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigurationError(f"a context's name must be a Python identifier, got {name!r}")
    if name in taken:
        raise ConfigurationError(f"this REPL already has a context named {name!r}")


async def prepare_added_context(value: Any) -> PreparedContext:
    """``value`` prepared as a context; a large value is prepared in a worker thread."""
    return (
        value
        if isinstance(value, PreparedContext)
        else await anyio.to_thread.run_sync(prepare_context, value)
    )


def context_file_name(name: str, prepared: PreparedContext) -> str:
    """The file name a context is written under in the work dir (``context.txt``...)."""
    suffix = "txt" if prepared.format == "text" else "json"
    return f"{name}.{suffix}"


def write_context_file(work_dir: str, path: str, prepared: PreparedContext) -> None:
    """Write one context's file in the child's work dir (blocking)."""
    # Model code may have made its work dir read-only (fchmod on the open dir).
    with contextlib.suppress(OSError):
        os.chmod(work_dir, 0o700)
    with create_child_file(path) as handle:
        prepared.write(handle)


async def load_named_context(child: ChildProcess, named: NamedContext, *, within: float) -> None:
    """Have the child load ``named`` into its variable (after a start or a restart too)."""
    await load_context(
        child,
        named.path,
        named.prepared.format,
        within=within,
        name=named.name,
    )


async def load_contexts(
    child: ChildProcess,
    first: tuple[str, PreparedContext],
    named: Sequence[NamedContext],
    *,
    within: float,
) -> float:
    """Have a started child load ``context`` (``first``: its file and what it holds), then
    every named context; returns the child's load time of the first."""
    path, prepared = first
    seconds = await load_context(child, path, prepared.format, within=within)
    for one in named:
        await load_named_context(child, one, within=within)
    return seconds


def write_context_files(
    write: Callable[[str, PreparedContext], None],
    first: tuple[str, PreparedContext],
    named: Sequence[NamedContext],
) -> None:
    """Write ``context`` (``first``: its file and what it holds) and every named context with
    ``write`` (blocking); a named context that is the first one given again shares its file."""
    path, prepared = first
    write(path, prepared)
    for one in named:
        if one.path != path:
            write(one.path, one.prepared)
