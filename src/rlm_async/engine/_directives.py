"""``FINAL(...)`` and ``FINAL_VAR(name)`` lines: finding one in text and what it says.

``FINAL(`` / ``FINAL_VAR(`` count wherever they start a line. The case variants
(``Final(``, ``final_var(``...) count only where the line is a call: its closing
parenthesis ends the line, so prose such as "final(ly), I think..." is not an answer.
Parentheses are matched in one pass over the text, so a reply with many ``final(`` lines
is still read in linear time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["FinalDirective", "find_directive", "unquote"]

_VAR_NAME = re.compile(r"[ \t]*['\"]?([A-Za-z_]\w*)['\"]?[ \t]*\)")


@dataclass(frozen=True)
class FinalDirective:
    """A final answer found in reply text: the answer itself, or a variable to read.

    ``fallback`` (variables only) is the answer to take when the REPL has no such
    variable: ``FINAL(Paris)`` inside a fence on the last turn means the variable
    ``Paris`` if there is one, else the text. An ``"expression"`` (a fenced
    ``FINAL(answer.upper())`` on the last turn) is Python for the REPL to evaluate.
    """

    kind: Literal["answer", "variable", "expression"]
    value: str
    fallback: str | None = None


def find_directive(
    text: str, *, top_level: bool = False
) -> tuple[Literal["answer", "variable"], str] | None:
    """The first line starting with FINAL_VAR(name) or FINAL(...), any case: (kind, raw).

    ``FINAL(`` / ``FINAL_VAR(`` count wherever they start a line. Their case variants
    count only where the line is a call: the closing parenthesis ends its line (prose
    like "final(ly), I think..." does not). With ``top_level``, only unindented lines.
    """
    closers: dict[int, int] | None = None
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        line = text[start:end]
        stripped = line.lstrip(" \t")
        offset = start + len(line) - len(stripped)
        if top_level and offset != start:
            start = end
            continue
        head = stripped[:10]
        lowered = head.lower()
        if lowered.startswith("final_var("):
            match = _VAR_NAME.match(stripped, 10)
            exact = head == "FINAL_VAR("
            if match is not None and (exact or _ends_line(stripped, match.end())):
                return "variable", match.group(1)
        elif lowered.startswith("final("):
            if head.startswith("FINAL("):
                return "answer", _balanced(text, offset + 6)
            if closers is None:
                closers = _matching_parens(text)  # once: later lines reuse it (linear)
            close = closers.get(offset + 5)
            if close is not None and _ends_line(text, close + 1):
                return "answer", text[offset + 6 : close]
        start = end
    return None


def _ends_line(text: str, index: int) -> bool:
    """Whether only spaces and tabs follow ``index`` up to the end of its line."""
    end = text.find("\n", index)
    return not text[index : len(text) if end < 0 else end].strip(" \t\r")


def _matching_parens(text: str) -> dict[int, int]:
    """The index of each ``(`` that is closed, mapped to its ``)``: one pass, a stack."""
    opened: list[int] = []
    pairs: dict[int, int] = {}
    for index, char in enumerate(text):
        if char == "(":
            opened.append(index)
        elif char == ")" and opened:
            pairs[opened.pop()] = index
    return pairs


def _balanced(text: str, start: int) -> str:
    depth = 1
    for index in range(start, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[start:index]
    # No matching parenthesis: take the rest, minus a trailing ')' on the last line.
    rest = text[start:].rstrip()
    return rest[:-1] if rest.endswith(")") else rest


def unquote(answer: str) -> str:
    """The answer without one pair of quotes (or backticks, one or three) around it."""
    for quote in ('"""', "'''", "```", '"', "'", "`"):
        if len(answer) >= 2 * len(quote) and answer.startswith(quote) and answer.endswith(quote):
            return answer[len(quote) : -len(quote)]
    return answer
