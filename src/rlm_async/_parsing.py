"""Reading a root model's reply: its code blocks and its final answer.

Code blocks are fenced as ```` ```repl ```` (the RLM convention) or ```` ```python ````;
they run in order. A final answer is a line ``FINAL(...)`` or ``FINAL_VAR(name)`` in the
reply's text *outside* code blocks (inside code they are ordinary function calls).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["FinalDirective", "find_code_blocks", "find_final", "strip_code_blocks"]

# An opening fence of three or more backticks with a repl/python tag, a body, and a closing
# fence of the same length on its own line. Unclosed blocks run to the end of the reply
# (models that hit their token limit mid-block still get their code run... but only if
# the block is not empty).
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,})[ \t]*(?P<lang>repl|python|py|python3)\b[^\n]*\n"
    r"(?P<body>.*?)"
    r"(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL | re.IGNORECASE,
)
_ANY_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,})[^\n]*\n.*?(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_FINAL_VAR = re.compile(
    r"^[ \t]*FINAL_VAR\([ \t]*['\"]?(?P<name>[A-Za-z_]\w*)['\"]?[ \t]*\)", re.MULTILINE
)
_FINAL = re.compile(r"^[ \t]*FINAL\(", re.MULTILINE)


@dataclass(frozen=True)
class FinalDirective:
    """A final answer found in reply text: the answer itself, or a variable to read."""

    kind: Literal["answer", "variable"]
    value: str


def find_code_blocks(text: str) -> list[str]:
    """The code of every ```` ```repl ```` / ```` ```python ```` block, in order."""
    blocks: list[str] = []
    for match in _FENCE.finditer(text):
        body = _dedent(match.group("body"), match.group("indent"))
        if body.strip():
            blocks.append(body)
    return blocks


def strip_code_blocks(text: str) -> str:
    """The reply without any fenced block (so FINAL inside code is not read as text)."""
    return _ANY_FENCE.sub("", text)


def find_final(text: str) -> FinalDirective | None:
    """The first ``FINAL(...)`` or ``FINAL_VAR(name)`` line outside code blocks, if any.

    ``FINAL(...)`` takes everything up to its matching closing parenthesis, so answers
    may span lines and contain parentheses; one pair of quotes around it is removed.
    """
    prose = strip_code_blocks(text)
    var = _FINAL_VAR.search(prose)
    final = _FINAL.search(prose)
    if var and (final is None or var.start() <= final.start()):
        return FinalDirective("variable", var.group("name"))
    if final is None:
        return None
    answer = _balanced(prose, final.end())
    return FinalDirective("answer", _unquote(answer.strip()))


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


def _unquote(answer: str) -> str:
    for quote in ('"""', "'''", '"', "'"):
        if len(answer) >= 2 * len(quote) and answer.startswith(quote) and answer.endswith(quote):
            return answer[len(quote) : -len(quote)]
    return answer


def _dedent(body: str, indent: str) -> str:
    if not indent:
        return body
    lines = body.splitlines(keepends=True)
    return "".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
