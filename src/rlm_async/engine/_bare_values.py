"""What a fence means on the last turn, where no code runs: a value, or code.

A reply to the last turn often holds its answer in a fence: a ``repl`` fence holding ``7``,
an untagged fence holding ``Paris (France)``, or ``FINAL(answer.upper())`` in a fence.
These functions read such text as Python (``ast``, never run) to tell a literal, a variable
name, an expression for the REPL to evaluate, plain text and code apart.
"""

from __future__ import annotations

import ast
import builtins
import warnings
from typing import Any

from rlm_async.engine._directives import FinalDirective, unquote
from rlm_async.engine._fences import Block

__all__ = ["block_value", "fenced_final"]

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


def fenced_final(raw: str) -> FinalDirective:
    """What ``FINAL(raw)`` inside a fence means on the last turn, where no code runs."""
    source = raw.strip()
    if len(source) > _MAX_VALUE_CHARS:
        return FinalDirective("answer", unquote(source))
    expr = _expression(source)
    if expr is None:
        return FinalDirective("answer", unquote(source))  # not Python: "Ostrava Minor"
    if isinstance(expr, ast.Name):
        return FinalDirective("variable", expr.id, fallback=expr.id)
    literal = _literal(expr)
    if literal is not None:
        return FinalDirective("answer", literal if isinstance(literal, str) else source)
    if all(isinstance(node, _PLAIN_NODES) for node in ast.walk(expr)):
        return FinalDirective("answer", source)  # names and commas: "Tokyo, Japan"
    return FinalDirective("expression", source)


def quiet_parse(source: str, mode: str = "exec") -> Any:
    """``ast.parse`` without its warnings: a model's text (``0x1for``, ``"\\d"``, ``x is 1``)
    would otherwise print ``SyntaxWarning``s on the host application's stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source, mode=mode)


def _expression(source: str) -> ast.expr | None:
    try:
        tree: ast.Expression = quiet_parse(source, mode="eval")
        return tree.body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _literal(expr: ast.expr) -> object | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.literal_eval(expr)  # type: ignore[no-any-return]
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None


def block_value(block: Block) -> FinalDirective | None:
    """What a fenced block holds when it is a bare value; ``None`` when it is code."""
    body = block.body.strip()
    if not block.lang:
        return _untagged_value(body)
    if not block.runnable:
        return FinalDirective("answer", body)  # ```text, ```json ...: not ours to run
    if len(body) > _MAX_VALUE_CHARS:
        return None
    try:
        tree = quiet_parse(body)
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
        tree = quiet_parse(body)
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
