"""Turning a completion's context into what its REPL loads, off the event loop when large."""

from __future__ import annotations

from typing import Any

import anyio

from rlm_async.repl._context import PreparedContext, prepare_context

__all__ = ["prepare"]

_LARGE_CONTEXT = 1_000_000  # characters: prepare larger str contexts in a worker thread


async def prepare(context: Any) -> PreparedContext:
    """``prepare_context``, off the event loop unless the context is a short string.

    Counting the lines of a 10M-line string takes ~0.2 s, and sizing a list or dict walks
    every item (4M ints: seconds). How large a list or dict is cannot be told without
    walking it, so every one goes to a worker thread: one thread hop is nothing next to
    starting a REPL.

    Raises:
        ContextTypeError: for a context the REPL cannot hold.
    """
    if isinstance(context, str) and len(context) <= _LARGE_CONTEXT:
        return prepare_context(context)
    return await anyio.to_thread.run_sync(prepare_context, context)
