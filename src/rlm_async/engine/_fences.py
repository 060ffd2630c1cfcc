"""A model's reply split into its fenced blocks and its prose, in one pass over its lines.

A fence opens with three or more backticks and an optional info string (```` ```repl ````,
```` ```python title ````) and closes with a line of at least as many backticks. Text on
the fence line after a runnable tag is the block's first line of code when it looks like
code (```` ```repl (llm_query(...)) ````), and ignored when it is a plain word
(```` ```repl code ````). Each line is looked at a bounded number of times: no backtracking
regular expression runs over the whole reply (120,000 backticks once took 4 s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Block", "Reply", "scan"]

_RUNNABLE = frozenset({"repl", "python", "py", "python3", "py3"})
_TAG = re.compile(r"[A-Za-z0-9_+#.-]*")  # the language word of an info string
# The first word of a fence line's rest that makes it code, not a second tag word.
_STATEMENTS = frozenset(
    {
        "import", "from", "for", "while", "if", "with", "def", "class", "async", "await",
        "return", "try", "assert", "del", "raise", "global", "nonlocal", "print", "lambda",
    }
)  # fmt: skip
_CODE_CHARS = "()[]=\"'"


@dataclass(frozen=True)
class Block:
    """One fenced block of a reply: its language word and its code or text."""

    lang: str  # lower-cased language word of the info string; "" for an untagged fence
    body: str  # dedented, with code from the fence line first

    @property
    def runnable(self) -> bool:
        """Whether the engine runs it: a ``repl`` or ``python`` (``py``...) fence."""
        return self.lang in _RUNNABLE


@dataclass(frozen=True)
class Reply:
    """A reply's fenced blocks, in order, and its prose (every line outside a fence)."""

    blocks: list[Block]
    prose: str


def scan(text: str) -> Reply:
    """Split a reply into fenced blocks and prose, one pass over its lines."""
    parts = text.split("\n")
    # Every line but the last was followed by "\n"; keep it so bodies read as written.
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    blocks: list[Block] = []
    prose: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = _opening_fence(line)
        if opening is None:
            prose.append(line)
            index += 1
            continue
        indent, width, lang, first = opening
        body: list[str] = [first] if first else []
        index += 1
        while index < len(lines):
            candidate = lines[index]
            index += 1
            if _closes(candidate, width):
                break
            body.append(candidate)
        blocks.append(Block(lang=lang, body=_dedent("".join(body), indent)))
    return Reply(blocks=blocks, prose="".join(prose))


def _opening_fence(line: str) -> tuple[str, int, str, str] | None:
    """(indent, fence width, language, code on the fence line) for a fence-opening line."""
    stripped = line.lstrip(" \t")
    if not stripped.startswith("```"):
        return None
    indent = line[: len(line) - len(stripped)]
    info = stripped.lstrip("`")
    width = len(stripped) - len(info)
    info = info.strip()
    if "`" in info:
        return None  # ```inline code``` on one line, not a fence (as in CommonMark)
    match = _TAG.match(info)
    word = match.group(0) if match else ""
    rest = info[len(word) :].strip()
    lang = word.lower()
    first = ""
    if lang in _RUNNABLE and rest and _looks_like_code(rest):
        first = rest + "\n"
    return indent, width, lang, first


def _looks_like_code(rest: str) -> bool:
    # "```repl code" (a model copying the prompt) or "```python title" are tag words;
    # "```repl (llm_query(...))" or "```python import re" are code.
    if any(char in rest for char in _CODE_CHARS):
        return True
    return rest.split(None, 1)[0] in _STATEMENTS


def _closes(line: str, width: int) -> bool:
    stripped = line.strip()
    return len(stripped) >= width and stripped.startswith("```") and not stripped.strip("`")


def _dedent(body: str, indent: str) -> str:
    if not indent:
        return body
    lines = body.splitlines(keepends=True)
    return "".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
