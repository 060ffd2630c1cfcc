"""Reading a root model's reply: its code blocks and its final answer.

Code blocks are fenced as ```` ```repl ```` (the RLM convention) or ```` ```python ````
(``py``, ``python3`` too, any case); they run in order. Text written on the fence line
after the tag is the block's first line of code when it looks like code
(```` ```repl (llm_query(...)) ````), and ignored when it is a plain word (```` ```repl code ````).

A final answer is a line ``FINAL(...)`` or ``FINAL_VAR(name)`` in the reply's text
*outside* code blocks (inside code they are ordinary function calls). The case variants
``Final(`` / ``final(`` count only where the line is a call: its closing parenthesis ends
the line, so prose such as "final(ly), I think..." is not an answer. On the last turn,
where no code runs, the reply is read more widely: see :func:`read_last_reply`.

Everything here runs in time linear in the reply's length: a reply is split into lines
once and each line is looked at a bounded number of times (no backtracking regular
expression over the whole reply: 120,000 backticks once took 4 s).

The reading is done in three modules: :mod:`._fences` splits a reply into fenced blocks and
prose, :mod:`._directives` finds ``FINAL``/``FINAL_VAR`` lines, and :mod:`._bare_values`
tells a value from code inside a fence on the last turn. This module puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlm_async.engine._bare_values import block_value, fenced_final
from rlm_async.engine._directives import FinalDirective, find_directive, unquote
from rlm_async.engine._fences import scan

__all__ = [
    "FinalDirective",
    "LastReply",
    "find_code_blocks",
    "find_final",
    "has_untagged_block",
    "read_last_reply",
    "strip_code_blocks",
]


@dataclass(frozen=True)
class LastReply:
    """The answer read from a reply to the last turn, and how it was written.

    ``source`` is ``"forced"`` for a ``FINAL``/``FINAL_VAR`` directive (in text or in a
    fence), ``"last_reply"`` for a bare value (fenced, quoted, or the reply's text).
    ``beside_code`` marks the prose of a reply that also holds code: it may be the answer
    ("The answer is 7. I computed it with: ...") or an announcement ("Let me run some
    code."), so the engine asks once more before it takes it.
    """

    directive: FinalDirective
    source: Literal["forced", "last_reply"]
    beside_code: bool = False


def find_code_blocks(text: str) -> list[str]:
    """The code of every non-empty ```` ```repl ```` / ```` ```python ```` block, in order."""
    return [b.body for b in scan(text).blocks if b.runnable and b.body.strip()]


def has_untagged_block(text: str) -> bool:
    """Whether the reply has a non-empty fenced block with no language word (which never runs).

    A small model answered the example ```` ```repl ```` block of the first prompt with a
    plain ```` ``` ```` block holding the output it expected ("492 characters ...").
    """
    return any(b.lang == "" and b.body.strip() for b in scan(text).blocks)


def strip_code_blocks(text: str) -> str:
    """The reply without any fenced block (so FINAL inside code is not read as text)."""
    return scan(text).prose


def find_final(text: str) -> FinalDirective | None:
    """The first ``FINAL(...)`` or ``FINAL_VAR(name)`` line outside code blocks, if any.

    ``FINAL(...)`` takes everything up to its matching closing parenthesis, so answers
    may span lines and contain parentheses; one pair of quotes around it is removed.
    The name is matched in any case (``Final(``, ``final(``), at the start of a line.
    """
    found = find_directive(scan(text).prose)
    if found is None:
        return None
    kind, raw = found
    return FinalDirective(kind, raw if kind == "variable" else unquote(raw.strip()))


def read_last_reply(text: str) -> LastReply | None:
    """The answer in a reply to the last turn, where no code runs; ``None`` if it has none.

    In order:

    1. A ``FINAL(...)`` / ``FINAL_VAR(name)`` line outside fences, then an unindented one
       inside a fence (the model often fences it; one inside a loop or a branch needs
       the code to run, so it is not read). Inside a fence ``FINAL(...)`` is code: a
       literal (``"Tokyo"``, ``7``) is that value, a name is the variable when the REPL has
       one (else the text), other Python (``answer.upper()``) is an ``"expression"`` for
       the REPL to evaluate, and what is not Python (``Ostrava Minor``) or only names and
       commas (``Tokyo, Japan``) is the text.
    2. A bare value: a ``repl``/``python`` fence holding a literal (``7``, ``'10'``) or a
       name (a variable if the REPL has one); a fence of another language, or an untagged
       fence of text (see :mod:`rlm_async.engine._bare_values`); a reply that is one quoted value
       (``'10'``); or the reply's plain text when it has no fence.
    3. The reply's prose, fences removed, when it has prose and a fence of code
       ("The answer is 7. I computed it with: ```python ...```"), marked ``beside_code``.
    4. ``None`` when the reply is nothing but code (and whitespace): code is not an
       answer, and no code runs on the last turn. A ``repl``/``python`` fence that is not
       valid Python (the prompt pasted back) is broken code, not an answer.
    """
    reply = scan(text)
    found = find_directive(reply.prose)
    if found is not None:
        kind, raw = found
        value = raw if kind == "variable" else unquote(raw.strip())
        return LastReply(FinalDirective(kind, value), "forced")
    for block in reply.blocks:
        found = find_directive(block.body, top_level=True)
        if found is not None:
            kind, raw = found
            if kind == "variable":
                return LastReply(FinalDirective(kind, raw), "forced")
            return LastReply(fenced_final(raw), "forced")
    values: list[FinalDirective] = []
    code = False
    for block in reply.blocks:
        if not block.body.strip():
            continue
        held = block_value(block)
        if held is None:
            code = True
        else:
            values.append(held)
    prose = reply.prose.strip()
    if code:
        if not prose:
            return None  # code with no answer
        return LastReply(FinalDirective("answer", unquote(prose)), "last_reply", beside_code=True)
    if len(values) == 1:
        return LastReply(values[0], "last_reply")
    if values:
        return LastReply(FinalDirective("answer", text.strip()), "last_reply")
    if not prose:
        return None
    return LastReply(FinalDirective("answer", unquote(prose)), "last_reply")
