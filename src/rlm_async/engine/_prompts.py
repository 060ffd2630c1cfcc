"""The prompts the root model reads: the system prompt, each turn's feedback, the last call.

Written for this library's REPL: the model is told what ``context`` is (type, size, shape),
which functions it can call (with their real semantics: how much one sub-call reads, from
the sub-model's context window; how many run at once; failed items come back as
``"Error: ..."`` strings), and the two ways to finish.

Written so that nothing can be pasted back as code: a small model copied "Your reply should
contain ```repl code" as its reply, fence line included, for six turns. The code block is
shown as a real block that is a useful first step as it stands (a model that copies it
looks at the context), and no sentence names the fence inline.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlm_async.providers._windows import UNKNOWN_WINDOW, Window, prompt_chars_for
from rlm_async.repl._context import ContextInfo

__all__ = [
    "PROSE_IN_CODE_NOTE",
    "build_system_prompt",
    "final_turn_prompt",
    "final_turn_retry_prompt",
    "first_user_prompt",
    "no_code_prompt",
    "repeat_note",
    "turn_feedback_prompt",
    "unconfirmed_final_prompt",
]

_SYSTEM = """\
You are answering a query about a context that is far too large to read in one go. You never \
see the context directly. It is loaded as the variable `context` in a persistent Python REPL, \
and you work on it by writing code.

{context_description}

How to work:
- Write Python in a fenced code block: a line of three backticks followed by the word repl, \
your code, then a line of three backticks alone. For example:
{example}
Every block in your reply runs, in order, in the same REPL; variables persist across blocks \
and turns. You see what the code prints (at most {output_chars:,} characters a cell: print \
summaries, not whole chunks). A bare expression on a block's last line is echoed, as in a \
notebook. A cell that runs longer than {cell_timeout:g} s is interrupted.
- Look before you read: print the size, the first lines, the structure. Then slice, search \
(str methods, the `re` module) and filter in code, and give sub-models the pieces that need \
reading. The modules `re` and `json` are already imported.
- Functions available in the REPL:
  - `llm_query(prompt: str, model: str | None = None) -> str`: ask a sub-model one question. \
It sees only the prompt you pass, so include the text it must read, e.g. \
`llm_query("Which cities are named in this text?\\n" + chunk)`. {sub_capacity}
  - `llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]`: many \
questions at once. {batch_speed} Answers come back in order; a failed item is a string \
starting with "Error:" (an empty prompt is one too, and is not sent).
  - `await allm_query(prompt, model=None)`: the async form; cells may use top-level `await` \
and `asyncio.gather`.
  - All three take `schema=` for a structured answer: a type spec such as \
`{{"name": str, "year": int}}`, `[str]` or `list[dict]`, or a JSON schema dict. The answer is \
then the parsed value (dict, list...), checked; a failed one is still an "Error: ..." string.
  - `rlm_query(prompt: str, context=None) -> str` and `rlm_query_batched(prompts, contexts=None)`: \
{rlm_query_help}
  - `SHOW_VARS()`: the variables you have defined.
  - `FINAL(answer)` / `FINAL_VAR("variable_name")`: give the final answer from code.
{models_line}{tools_block}\
How to finish: when you are confident, give the final answer either by calling `FINAL(answer)` \
or `FINAL_VAR("name")` in code, or by writing a line `FINAL(your answer)` or \
`FINAL_VAR(variable_name)` in your reply, outside any code block. Give the final answer only \
after you have seen the evidence in the REPL's output; do not guess. You have {max_iterations} \
turns.\
"""

_FIRST_USER = """\
The query: {query}

Start by looking at `context`: reply with a code block such as this one, and wait for its \
output before you answer.
{example}"""

_FEEDBACK_HEADER = "REPL output of your code:"

_NEXT_STEP = """\
Turn {turn} of {max_iterations}. The query, again: {query}
Write another code block to go on, or, if the output above gives you the answer, finish \
with a line FINAL(your answer) or FINAL_VAR(variable_name)."""

_NO_CODE = """\
{why} The query: {query}
A code block starts with a line of three backticks and the word repl, and ends with a line \
of three backticks, like this:
{example}
Write one to examine `context`, or finish with a line FINAL(your answer)."""

_TOOLS = """\
- Functions of the application, also in the REPL (arguments and results are JSON values; a \
failure raises an exception with its message; call an `async def` one with `await`, and \
several at once with `asyncio.gather`):
{tools}
"""

_UNKNOWN = Window(UNKNOWN_WINDOW, known=False)

_BATCH_ONE_AT_A_TIME = (
    "They run one at a time (max_concurrency is 1), so a batch of 20 prompts takes as long "
    "as 20 single calls: keep each batch small enough to finish within the cell's "
    "{cell_timeout:g} s limit, and spread a long list over several cells."
)
_BATCH_CONCURRENT = (
    "They run concurrently, up to {max_concurrency} at a time, so a batch of "
    "{max_concurrency} prompts takes about as long as one call: prefer it to a loop of "
    "`llm_query`, but keep each batch small enough to finish within the cell's "
    "{cell_timeout:g} s limit."
)
_SUB_KNOWN = (
    "It reads at most about {chars:,} characters at once (its context window is "
    "{tokens:,} tokens, less room for its answer)."
)
_SUB_UNKNOWN = (
    "Its context window is not known to this library, so assume {tokens:,} tokens: at most "
    "about {chars:,} characters a prompt."
)

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
    sub_window: Window = _UNKNOWN,
    sub_reply_tokens: int | None = None,
    cell_timeout: float = 120.0,
    output_chars: int = 20_000,
    tools: str = "",
) -> str:
    """The system prompt for a root model at ``depth`` of ``max_depth``.

    ``tools`` is ``ToolSet.describe()`` of the application's tools: listed only when there
    are any.

    What one sub-call reads comes from ``sub_window`` (less ``sub_reply_tokens`` for its
    answer); what a batch costs in time, from ``max_concurrency`` and ``cell_timeout``.
    """
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
    sub_text = _SUB_KNOWN if sub_window.known else _SUB_UNKNOWN
    speed = _BATCH_ONE_AT_A_TIME if max_concurrency == 1 else _BATCH_CONCURRENT
    return _SYSTEM.format(
        context_description=info.describe(),
        example=_example_block(info),
        output_chars=output_chars,
        cell_timeout=cell_timeout,
        sub_capacity=sub_text.format(
            tokens=sub_window.tokens,
            chars=prompt_chars_for(sub_window.tokens, sub_reply_tokens),
        ),
        batch_speed=speed.format(max_concurrency=max_concurrency, cell_timeout=cell_timeout),
        rlm_query_help=rlm_help,
        models_line=models_line,
        tools_block=_TOOLS.format(tools=_indented(tools)) if tools else "",
        max_iterations=max_iterations,
    )


def _indented(text: str) -> str:
    """Lines under a list item (not a code fence: the model's own blocks are ``repl`` ones)."""
    return "\n".join(f"    {line}" if line else "" for line in text.splitlines())


def _example_block(info: ContextInfo | None) -> str:
    """A first look at ``context`` as a real code block, right for its type."""
    if info is None or info.type_name == "str":
        code = 'print(len(context), "characters")\nprint(context[:1000])'
    elif info.type_name == "dict":
        code = 'print(len(context), "keys")\nprint(list(context)[:20])'
    else:
        code = 'print(len(context), "items")\nprint(context[:3])'
    return f"```repl\n{code}\n```"


def first_user_prompt(query: str, info: ContextInfo | None = None) -> str:
    """The first user message: the query and a first code block to start from."""
    return _FIRST_USER.format(query=query, example=_example_block(info))


def turn_feedback_prompt(
    outputs: Sequence[str], *, turn: int, max_iterations: int, query: str, note: str = ""
) -> str:
    """The user message after a turn: each block's output, a note on it, then the next step.

    ``note`` says what the turn's output means when the code alone would not tell the model
    (a repeated cell: see :func:`repeat_note`).
    """
    parts = [_FEEDBACK_HEADER]
    many = len(outputs) > 1
    for index, output in enumerate(outputs, start=1):
        if many:
            parts.append(f"[block {index}]")
        parts.append(output)
    if note:
        parts.append("")
        parts.append(note)
    if turn <= max_iterations:
        # After the last turn the final-turn prompt follows instead: "write another code
        # block" next to "no more code will run" would contradict it.
        parts.append("")
        parts.append(_NEXT_STEP.format(turn=turn, max_iterations=max_iterations, query=query))
    return "\n".join(parts)


PROSE_IN_CODE_NOTE = (
    "Note: your code block holds a sentence, not Python, and the REPL runs only Python. "
    "To give your answer, write FINAL(your answer) on a line of its own outside any code "
    "block; to go on, write Python code in the block."
)


_NOTHING_RAN = "Your reply had no code block and no FINAL(...) line, so nothing ran."
_UNTAGGED = (
    "Your reply's block had no word repl after its opening backticks, so nothing ran: only a "
    "```repl block runs, and only the REPL's output tells you what `context` holds. Do not "
    "write the output you expect; write the code and wait for its real output."
)


def no_code_prompt(query: str, info: ContextInfo | None = None, *, untagged: bool = False) -> str:
    """After a reply with no code block and no final answer.

    ``untagged``: the reply had a fenced block without a language word, which did not run
    (models write the output they expect in one, as if the REPL had answered).
    """
    why = _UNTAGGED if untagged else _NOTHING_RAN
    return _NO_CODE.format(why=why, query=query, example=_example_block(info))


def repeat_note(
    *,
    same_code: Sequence[int],
    same_output: Sequence[int],
    longest_prompt: int | None,
    short_prompt: bool,
    info: ContextInfo,
    chunk_chars: int = 20_000,
) -> str:
    """What to tell a model whose turn repeated an earlier one (by code or by output).

    ``same_code`` and ``same_output`` are the earlier turns with the same code and the
    same output; ``longest_prompt`` is the longest sub-call prompt this turn sent (``None``
    for none), ``short_prompt`` whether it was too short to hold any of the context;
    ``chunk_chars`` sizes the example chunk for the sub-model.
    """
    lines: list[str] = []
    if same_code:
        also = " and the same output" if same_output else ""
        lines.append(
            f"Note: this is the same code as in {_turns(same_code)}{also}. Running it again "
            "will not give a different result: change the approach."
        )
    elif same_output:
        lines.append(
            f"Note: this is the same output as in {_turns(same_output)}: your change made no "
            "difference to the result. Look at why before trying again."
        )
    if longest_prompt is not None and short_prompt:
        lines.append(
            "The sub-model sees only the prompt you pass, and the longest prompt this turn "
            f"sent was {longest_prompt:,} characters: too short to hold any of `context`. "
            "Put the text it must read into the prompt, for example:\n"
            f"{_chunk_example(info, chunk_chars)}"
        )
    elif longest_prompt is None:
        lines.append(
            "Try something else: print a different part of `context`, search it with `re`, "
            "or give a sub-model a piece of it to read with llm_query."
        )
    return "\n".join(lines)


def _turns(numbers: Sequence[int]) -> str:
    if len(numbers) == 1:
        return f"turn {numbers[0]}"
    listed = ", ".join(str(n) for n in numbers[:-1])
    return f"turns {listed} and {numbers[-1]}"


def _chunk_example(info: ContextInfo, chunk_chars: int) -> str:
    if info.type_name == "str":
        chunk = f"context[:{chunk_chars}]"
    elif info.type_name == "dict":
        chunk = f"json.dumps(context)[:{chunk_chars}]"
    else:
        chunk = f'"\\n".join(str(item) for item in context[:50])[:{chunk_chars}]'
    code = (
        f"chunk = {chunk}\n"
        'answer = llm_query("Answer from this text: <your question>\\n\\n" + chunk)\n'
        "print(answer)"
    )
    return f"```repl\n{code}\n```"


def final_turn_prompt(query: str, *, max_iterations: int) -> str:
    return _FINAL_TURN.format(query=query, max_iterations=max_iterations)


_UNCONFIRMED_FINAL = """\
You wrote FINAL({answer}) in the same reply as code, before you had seen what the code \
printed, so it was not taken as your answer. Check it against the real output below: if the \
output confirms it, reply with the FINAL line again and no code; if not, go on.

"""

_UNCONFIRMED_FINAL_LAST = """\
You wrote FINAL({answer}) in the same reply as code, before you had seen what the code \
printed, so it was not taken as your answer. Check it against the real output below.

"""

_FINAL_TURN_RETRY = """\
Your last reply gave no answer: {why}. No code runs now. Reply with one line \
FINAL(your answer), your best answer from what the REPL has shown you. The query: {query}"""


def unconfirmed_final_prompt(answer: str, *, last: bool = False) -> str:
    """Said before a turn's output when the reply gave a literal FINAL next to its code.

    After the last regular turn (``last``) the final-turn prompt follows, which asks for
    the answer with no code: "if not, go on" would contradict it.
    """
    shown = answer if len(answer) <= 200 else answer[:200] + "..."
    return (_UNCONFIRMED_FINAL_LAST if last else _UNCONFIRMED_FINAL).format(answer=shown)


def final_turn_retry_prompt(query: str, *, why: str) -> str:
    """The one extra last turn, after a last reply that was code or named no variable."""
    return _FINAL_TURN_RETRY.format(query=query, why=why)
