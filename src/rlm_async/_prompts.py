"""The prompts the root model reads: the system prompt, each turn's feedback, the last call.

Written for this library's REPL: the model is told what ``context`` is (type, size, shape),
which functions it can call (with their real semantics: batched calls run concurrently,
failed items come back as ``"Error: ..."`` strings), and the two ways to finish.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlm_async._context import ContextInfo

__all__ = [
    "build_system_prompt",
    "final_turn_prompt",
    "final_turn_retry_prompt",
    "first_user_prompt",
    "no_code_prompt",
    "turn_feedback_prompt",
    "unconfirmed_final_prompt",
]

_SYSTEM = """\
You are answering a query about a context that is far too large to read in one go. You never \
see the context directly. It is loaded as the variable `context` in a persistent Python REPL, \
and you work on it by writing code.

{context_description}

How to work:
- Write Python in fenced blocks that start with ```repl (```python also works). Every block in \
your reply runs, in order, in the same REPL; variables persist across blocks and turns. You \
see what the code prints (long output is truncated, so print summaries, not whole chunks). \
A bare expression on a block's last line is echoed, as in a notebook.
- Look before you read: print the size, the first lines, the structure. Then slice, search \
(str methods, `re`) and filter in code, and give sub-models the pieces that need reading.
- Functions available in the REPL:
  - `llm_query(prompt: str, model: str | None = None) -> str`: ask a sub-model one question \
(it can read roughly {sub_capacity} characters at once). It sees only the prompt you pass, so \
include the text it must read.
  - `llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]`: many \
questions at once. They run concurrently (up to {max_concurrency} at a time), so one batch of \
100 prompts takes about as long as a few single calls: prefer it to a loop of `llm_query`. \
Answers come back in order; a failed item is a string starting with "Error:".
  - `await allm_query(prompt, model=None)`: the async form; cells may use top-level `await` \
and `asyncio.gather`.
  - `rlm_query(prompt: str, context=None) -> str` and `rlm_query_batched(prompts, contexts=None)`: \
{rlm_query_help}
  - `SHOW_VARS()`: the variables you have defined.
  - `FINAL(answer)` / `FINAL_VAR("variable_name")`: give the final answer from code.
{models_line}\
How to finish: when you are confident, give the final answer either by calling `FINAL(answer)` \
or `FINAL_VAR("name")` in code, or by writing a line `FINAL(your answer)` or \
`FINAL_VAR(variable_name)` in your reply, outside any code block. Give the final answer only \
after you have seen the evidence in the REPL's output; do not guess. You have {max_iterations} \
turns.\
"""

_FIRST_USER = """\
The query: {query}

Start by looking at `context` in the REPL. Your reply should contain ```repl code; do not \
answer yet."""

_FEEDBACK_HEADER = "REPL output of your code:"

_NEXT_STEP = """\
Turn {turn} of {max_iterations}. The query, again: {query}
Continue with more ```repl code, or, if the output above gives you the answer, finish with \
FINAL(...) or FINAL_VAR(...)."""

_NO_CODE = """\
Your reply had no ```repl code block and no FINAL(...) line, so nothing ran. The query: \
{query}
Write ```repl code to examine `context`, or finish with FINAL(your answer)."""

_FINAL_TURN = """\
You have used all {max_iterations} turns. Give your final answer to the query now, based on \
what you have found, as a single line FINAL(your answer) (or FINAL_VAR(variable_name) for a \
variable already in the REPL). No more code will run. The query: {query}"""


def build_system_prompt(
    info: ContextInfo,
    *,
    max_iterations: int,
    max_concurrency: int,
    depth: int = 0,
    max_depth: int = 1,
    allowed_models: Sequence[str] = (),
    sub_capacity_chars: int = 400_000,
) -> str:
    """The system prompt for a root model at ``depth`` of ``max_depth``."""
    if depth + 1 < max_depth:
        rlm_help = (
            "hand a sub-question with its own (large) context to a sub-RLM, which works in its "
            "own REPL exactly as you do. Use it when a piece is still too large for one "
            "llm_query. Without a context it is a plain sub-model call."
        )
    else:
        rlm_help = "at this depth these are plain sub-model calls, the same as llm_query."
    models_line = ""
    if allowed_models:
        names = ", ".join(f'"{m}"' for m in allowed_models)
        models_line = f"- Models you may pass as `model=`: {names} (default: the first).\n"
    return _SYSTEM.format(
        context_description=info.describe(),
        sub_capacity=f"{sub_capacity_chars:,}",
        max_concurrency=max_concurrency,
        rlm_query_help=rlm_help,
        models_line=models_line,
        max_iterations=max_iterations,
    )


def first_user_prompt(query: str) -> str:
    return _FIRST_USER.format(query=query)


def turn_feedback_prompt(
    outputs: Sequence[str], *, turn: int, max_iterations: int, query: str
) -> str:
    """The user message after a turn: each block's output, then the next step."""
    parts = [_FEEDBACK_HEADER]
    many = len(outputs) > 1
    for index, output in enumerate(outputs, start=1):
        if many:
            parts.append(f"[block {index}]")
        parts.append(output)
    parts.append("")
    parts.append(_NEXT_STEP.format(turn=turn, max_iterations=max_iterations, query=query))
    return "\n".join(parts)


def no_code_prompt(query: str) -> str:
    return _NO_CODE.format(query=query)


def final_turn_prompt(query: str, *, max_iterations: int) -> str:
    return _FINAL_TURN.format(query=query, max_iterations=max_iterations)


_UNCONFIRMED_FINAL = """\
You wrote FINAL({answer}) in the same reply as code, before you had seen what the code \
printed, so it was not taken as your answer. Check it against the real output below: if the \
output confirms it, reply with the FINAL line again and no code; if not, go on.

"""

_FINAL_TURN_RETRY = """\
Your last reply gave no answer: {why}. No code runs now. Reply with one line \
FINAL(your answer), your best answer from what the REPL has shown you. The query: {query}"""


def unconfirmed_final_prompt(answer: str) -> str:
    """Said before a turn's output when the reply gave a literal FINAL next to its code."""
    shown = answer if len(answer) <= 200 else answer[:200] + "..."
    return _UNCONFIRMED_FINAL.format(answer=shown)


def final_turn_retry_prompt(query: str, *, why: str) -> str:
    """The one extra last turn, after a last reply that was code or named no variable."""
    return _FINAL_TURN_RETRY.format(query=query, why=why)
