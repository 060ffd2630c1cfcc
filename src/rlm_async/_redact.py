"""Secret redaction: one function for trajectories, server error replies and provider errors.

Providers echo a wrong key back in their error bodies; trajectories and server replies may
quote those errors. Everything that could leak a key goes through :func:`scrub_secrets`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "scrub_secrets"]

REDACTED = "[REDACTED]"
_MIN_SECRET = 4

# Key formats of the providers we speak to (and a few common others). Anchored on a
# non-word boundary so "task-…" or "disk-…" are not taken for "sk-…".
_KEY_PATTERNS = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-ant-[A-Za-z0-9_\-]{16,}"  # Anthropic
    r"|sk-[A-Za-z0-9_\-]{16,}"  # OpenAI (sk-…, sk-proj-…, sk-svcacct-…)
    r"|xai-[A-Za-z0-9_\-]{16,}"  # xAI
    r"|AIza[0-9A-Za-z_\-]{30,}"  # Google / Gemini
    r"|gsk_[A-Za-z0-9]{16,}"  # Groq
    r"|hf_[A-Za-z0-9]{16,}"  # Hugging Face
    r")"
    r"|(?<=Bearer )[A-Za-z0-9._~+/\-]{16,}=*"  # an Authorization header value
)
# What each of those starts with. A text without any of them holds no key and skips the
# regex, whose look-behind is tried at every position (~20 ns a character: 27 µs for a
# 1 KB reply, which every provider reply is scrubbed for).
_KEY_STARTS = ("sk-", "xai-", "AIza", "gsk_", "hf_", "Bearer ")


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace anything that looks like an API key in ``text`` by ``[REDACTED]``.

    Args:
        text: Any string.
        secrets: Exact values to redact as well (e.g. keys read from the environment).

    Returns:
        The text with ``sk-…``, ``sk-ant-…``, ``xai-…``, ``AIza…``, ``gsk_…``, ``hf_…``
        keys, bearer tokens and each of ``secrets`` replaced.
    """
    for secret in secrets:
        # A value this short (e.g. "x" for a local server) would redact ordinary words.
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    if any(start in text for start in _KEY_STARTS):
        return _KEY_PATTERNS.sub(REDACTED, text)
    return text
