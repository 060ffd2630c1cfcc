"""What a fake model answers: a reply (text or a ``MockReply``), from a responder function.

Shared by :class:`~rlm_async.testing.ScriptedModel` (no network) and
:class:`~rlm_async.testing.MockLLMServer` (over HTTP).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rlm_async import _tokens
from rlm_async._types import Usage
from rlm_async.providers._base import CompletionRequest

__all__ = ["MockReply", "Responder", "estimate_tokens", "respond"]


@dataclass
class MockReply:
    """A reply with full control: an HTTP error, headers, or a custom usage."""

    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # a raw JSON body to send instead of a completion
    usage: Usage | None = None


Responder = Callable[[CompletionRequest], "str | MockReply | Awaitable[str | MockReply]"]
"""Answers one request: returns the reply text (or a ``MockReply``), sync or async."""


def estimate_tokens(text: str) -> int:
    """A rough token count for fake usage: the engine's own estimate (4 characters a token)."""
    return _tokens.estimate_tokens(len(text))


async def respond(responder: Responder, request: CompletionRequest) -> str | MockReply:
    """The responder's reply to ``request``, awaited if it is a coroutine, and checked."""
    reply = responder(request)
    if inspect.isawaitable(reply):
        reply = await reply
    if not isinstance(reply, str | MockReply):
        raise TypeError(f"a responder must return str or MockReply, got {type(reply).__name__}")
    return reply
