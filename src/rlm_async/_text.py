"""Text helpers shared by the engine and the REPL session."""

from __future__ import annotations

__all__ = ["cap_middle"]


def cap_middle(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail with a marker.

    The middle is what goes: the start of output says what a program did, the end how it
    finished (the traceback, the last lines).
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n[... {dropped} characters truncated ...]\n{text[-half:]}"
