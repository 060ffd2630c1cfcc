"""Token estimates from characters: one rule for budgets, rate limits and fake usage.

Leaf module (imports only the standard library and the provider request type) so that the
engine, the provider adapters and :mod:`rlm_async.testing` can all use it without a cycle.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlm_async.providers._base import CompletionRequest

__all__ = ["CHARS_PER_TOKEN", "estimate_tokens", "request_chars", "request_tokens"]

CHARS_PER_TOKEN = 4  # a conservative average for English text and code


def estimate_tokens(chars: int) -> int:
    """Tokens ``chars`` characters will probably cost, rounded up (so 1 char is 1 token)."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def request_chars(request: CompletionRequest) -> int:
    """Characters of a request's prompt: the system prompt and every message."""
    return len(request.system or "") + sum(len(m.content) for m in request.messages)


def request_tokens(request: CompletionRequest) -> int:
    """Prompt tokens of ``request``, estimated by :func:`estimate_tokens`."""
    return estimate_tokens(request_chars(request))
