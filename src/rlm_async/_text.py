"""Text helpers shared by the engine and the REPL session."""

from __future__ import annotations

import re

__all__ = ["cap_middle"]

# The marker cap_middle (and the REPL child, which cannot import this module) writes.
_MARKER = re.compile(r"\n\[\.\.\. (\d{1,20}) characters truncated \.\.\.\]\n")
_MARKER_MAX = 60  # characters of the longest marker


def cap_middle(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail with a marker.

    The middle is what goes: the start of output says what a program did, the end how it
    finished (the traceback, the last lines).

    Text capped before (by the REPL child) keeps one honest marker: an earlier marker
    that falls in the part cut out is cut out whole, and the characters it stood for are
    added to the new marker's count (cutting through it said "38 characters truncated"
    where 105,751 were).
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    start, end = half, len(text) - half
    earlier = 0  # characters dropped by earlier caps, behind markers cut out now
    # One pass finds every marker the cut touches; widening the cut to whole markers
    # reaches no other, since matches never overlap.
    for match in _MARKER.finditer(text, max(0, start - _MARKER_MAX), end + _MARKER_MAX):
        if match.end() > start and match.start() < end:
            earlier += int(match.group(1)) - len(match.group(0))
            start, end = min(start, match.start()), max(end, match.end())
    dropped = end - start + earlier
    return f"{text[:start]}\n[... {dropped} characters truncated ...]\n{text[end:]}"
