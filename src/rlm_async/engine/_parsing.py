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
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FinalDirective",
    "LastReply",
    "find_code_blocks",
    "find_final",
    "has_untagged_block",
    "read_last_reply",
    "strip_code_blocks",
]

_RUNNABLE = frozenset({"repl", "python", "py", "python3", "py3"})
_TAG = re.compile(r"[A-Za-z0-9_+#.-]*")  # the language word of an info string
_VAR_NAME = re.compile(r"[ \t]*['\"]?([A-Za-z_]\w*)['\"]?[ \t]*\)")
# The first word of a fence line's rest that makes it code, not a second tag word.
_STATEMENTS = frozenset(
    {
        "import", "from", "for", "while", "if", "with", "def", "class", "async", "await",
        "return", "try", "assert", "del", "raise", "global", "nonlocal", "print", "lambda",
    }
)  # fmt: skip
_CODE_CHARS = "()[]=\"'"
_MAX_VALUE_CHARS = 20_000  # a bare value is short; longer fenced text is not parsed as one
_MAX_TEXT_LINES = 5  # an untagged fence of valid Python longer than this is code
# What model code calls in the REPL (its API, case variants included) and Python's
# builtins: an untagged fence that uses one of these is code, not text ("Paris (France)"
# parses as a call too, of a name nothing defines).
_REPL_NAMES = frozenset(
    {
        "context", "llm_query", "llm_query_batched", "allm_query", "rlm_query",
        "rlm_query_batched", "FINAL", "Final", "final", "FINAL_VAR", "Final_Var", "final_var",
        "SHOW_VARS", "re", "json",
    }
    | set(dir(builtins))
)  # fmt: skip
_CODE_NODES = (
    ast.Await,
    ast.NamedExpr,
    ast.Lambda,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.Starred,
    ast.JoinedStr,
    ast.Yield,
    ast.YieldFrom,
)
_PLAIN_NODES = (ast.Name, ast.Constant, ast.Tuple, ast.Load)  # "Tokyo, Japan": text
_NOT_VALUES = (
    *_CODE_NODES,
    ast.Call,
    ast.Attribute,
    ast.Subscript,
    ast.BinOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
)


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


@dataclass(frozen=True)
class _Block:
    lang: str  # lower-cased language word of the info string; "" for an untagged fence
    body: str  # dedented, with code from the fence line first

    @property
    def runnable(self) -> bool:
        return self.lang in _RUNNABLE


@dataclass(frozen=True)
class _Reply:
    blocks: list[_Block]
    prose: str  # every line outside a fence


def find_code_blocks(text: str) -> list[str]:
    """The code of every non-empty ```` ```repl ```` / ```` ```python ```` block, in order."""
    return [b.body for b in _scan(text).blocks if b.runnable and b.body.strip()]


def has_untagged_block(text: str) -> bool:
    """Whether the reply has a non-empty fenced block with no language word (which never runs).

    A small model answered the example ```` ```repl ```` block of the first prompt with a
    plain ```` ``` ```` block holding the output it expected ("492 characters ...").
    """
    return any(b.lang == "" and b.body.strip() for b in _scan(text).blocks)


def strip_code_blocks(text: str) -> str:
    """The reply without any fenced block (so FINAL inside code is not read as text)."""
    return _scan(text).prose


def find_final(text: str) -> FinalDirective | None:
    """The first ``FINAL(...)`` or ``FINAL_VAR(name)`` line outside code blocks, if any.

    ``FINAL(...)`` takes everything up to its matching closing parenthesis, so answers
    may span lines and contain parentheses; one pair of quotes around it is removed.
    The name is matched in any case (``Final(``, ``final(``), at the start of a line.
    """
    found = _find_directive(_scan(text).prose)
    if found is None:
        return None
    kind, raw = found
    return FinalDirective(kind, raw if kind == "variable" else _unquote(raw.strip()))


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
       fence of text (see :func:`_untagged_value`); a reply that is one quoted value
       (``'10'``); or the reply's plain text when it has no fence.
    3. The reply's prose, fences removed, when it has prose and a fence of code
       ("The answer is 7. I computed it with: ```python ...```"), marked ``beside_code``.
    4. ``None`` when the reply is nothing but code (and whitespace): code is not an
       answer, and no code runs on the last turn. A ``repl``/``python`` fence that is not
       valid Python (the prompt pasted back) is broken code, not an answer.
    """
    reply = _scan(text)
    found = _find_directive(reply.prose)
    if found is not None:
        kind, raw = found
        value = raw if kind == "variable" else _unquote(raw.strip())
        return LastReply(FinalDirective(kind, value), "forced")
    for block in reply.blocks:
        found = _find_directive(block.body, top_level=True)
        if found is not None:
            kind, raw = found
            if kind == "variable":
                return LastReply(FinalDirective(kind, raw), "forced")
            return LastReply(_fenced_final(raw), "forced")
    values: list[FinalDirective] = []
    code = False
    for block in reply.blocks:
        if not block.body.strip():
            continue
        held = _block_value(block)
        if held is None:
            code = True
        else:
            values.append(held)
    prose = reply.prose.strip()
    if code:
        if not prose:
            return None  # code with no answer
        return LastReply(FinalDirective("answer", _unquote(prose)), "last_reply", beside_code=True)
    if len(values) == 1:
        return LastReply(values[0], "last_reply")
    if values:
        return LastReply(FinalDirective("answer", text.strip()), "last_reply")
    if not prose:
        return None
    return LastReply(FinalDirective("answer", _unquote(prose)), "last_reply")


# ---- the line scanner ------------------------------------------------------------------


def _scan(text: str) -> _Reply:
    """Split a reply into fenced blocks and prose, one pass over its lines."""
    parts = text.split("\n")
    # Every line but the last was followed by "\n"; keep it so bodies read as written.
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    blocks: list[_Block] = []
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
        blocks.append(_Block(lang=lang, body=_dedent("".join(body), indent)))
    return _Reply(blocks=blocks, prose="".join(prose))


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


def _find_directive(
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


def _fenced_final(raw: str) -> FinalDirective:
    """What ``FINAL(raw)`` inside a fence means on the last turn, where no code runs."""
    source = raw.strip()
    if len(source) > _MAX_VALUE_CHARS:
        return FinalDirective("answer", _unquote(source))
    expr = _expression(source)
    if expr is None:
        return FinalDirective("answer", _unquote(source))  # not Python: "Ostrava Minor"
    if isinstance(expr, ast.Name):
        return FinalDirective("variable", expr.id, fallback=expr.id)
    literal = _literal(expr)
    if literal is not None:
        return FinalDirective("answer", literal if isinstance(literal, str) else source)
    if all(isinstance(node, _PLAIN_NODES) for node in ast.walk(expr)):
        return FinalDirective("answer", source)  # names and commas: "Tokyo, Japan"
    return FinalDirective("expression", source)


def _expression(source: str) -> ast.expr | None:
    try:
        return ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _literal(expr: ast.expr) -> object | None:
    try:
        return ast.literal_eval(expr)  # type: ignore[no-any-return]
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None


def _block_value(block: _Block) -> FinalDirective | None:
    """What a fenced block holds when it is a bare value; ``None`` when it is code."""
    body = block.body.strip()
    if not block.lang:
        return _untagged_value(body)
    if not block.runnable:
        return FinalDirective("answer", body)  # ```text, ```json ...: not ours to run
    if len(body) > _MAX_VALUE_CHARS:
        return None
    try:
        tree = ast.parse(body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # broken code in a code fence ("repl code; do not answer yet.")
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None  # statements: an assignment, an import, a loop
    expr = tree.body[0].value
    if any(isinstance(node, _NOT_VALUES) for node in ast.walk(expr)):
        return None
    if isinstance(expr, ast.Name):
        return FinalDirective("variable", expr.id, fallback=expr.id)
    literal = _literal(expr)
    if literal is None:
        return FinalDirective("answer", body)  # names and commas: "Tokyo, Japan"
    return FinalDirective("answer", literal if isinstance(literal, str) else body)


def _untagged_value(body: str) -> FinalDirective | None:
    """An untagged fence: text unless it reads as code for the REPL.

    What does not compile as Python is text ("It is 7.", "Tokyo (Japan"). What compiles is
    text when it is a few short lines (at most 5) of expressions only (no assignment,
    import, loop...) that use nothing of the REPL or of Python's builtins and call no
    method: ``Paris (France)`` and ``3 + 4`` are text, as written; ``print(x)``,
    ``llm_query(...)``, ``len(context)``, ``text.split()`` are code. A single name may be
    a variable (the text when the REPL has none); a literal is its value.
    """
    if len(body) > _MAX_VALUE_CHARS:
        return FinalDirective("answer", body)
    try:
        tree = ast.parse(body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return FinalDirective("answer", body)  # prose: "Ostrava Minor", "It is 7."
    if body.count("\n") >= _MAX_TEXT_LINES:
        return None
    if not all(isinstance(statement, ast.Expr) for statement in tree.body):
        return None
    for node in ast.walk(tree):
        if isinstance(node, _CODE_NODES):
            return None
        if isinstance(node, ast.Name) and node.id in _REPL_NAMES:
            return None
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
            return None  # a method call: context.split(), "x".join(...)
    if len(tree.body) == 1:
        expr = tree.body[0]
        assert isinstance(expr, ast.Expr)
        if isinstance(expr.value, ast.Name):
            return FinalDirective("variable", expr.value.id, fallback=expr.value.id)
        literal = _literal(expr.value)
        if isinstance(literal, str):
            return FinalDirective("answer", literal)
    return FinalDirective("answer", body)


def _unquote(answer: str) -> str:
    for quote in ('"""', "'''", "```", '"', "'", "`"):
        if len(answer) >= 2 * len(quote) and answer.startswith(quote) and answer.endswith(quote):
            return answer[len(quote) : -len(quote)]
    return answer


def _dedent(body: str, indent: str) -> str:
    if not indent:
        return body
    lines = body.splitlines(keepends=True)
    return "".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)
