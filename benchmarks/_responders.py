"""Scripted models for the benchmarks, served by the mock server (in or out of process).

A responder answers one ``CompletionRequest``. Root turns carry a system prompt; sub-calls do
not. The NIAH responder speaks two dialects, picked from the caller's system prompt:

* **rlm-async**: code in ```` ```repl ```` blocks, the answer with ``FINAL_VAR(name)``.
* **rlms** (the official library): code in ```` ```repl ```` blocks, the answer by setting
  ``answer["content"]`` and ``answer["ready"] = True`` in code (its system prompt says so).

The query carries the strategy: ``[chunks=K]`` (how many sub-calls) and ``[sequential]`` (one
``llm_query`` after another, the minimal version's way, instead of ``llm_query_batched``).
The script is turn based (peek, fan out, answer), so every library sees the same work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rlm_async.demo import demo_responder
from rlm_async.providers import CompletionRequest

__all__ = ["RESPONDERS", "niah_query"]

_NEEDLE = re.compile(r"magic number is (\d+)")


def niah_query(chunks: int, *, sequential: bool = False) -> str:
    """The NIAH question, with the strategy the scripted root should follow."""
    mode = " [sequential]" if sequential else ""
    return (
        "What is the magic number hidden in the text? Answer with the number only. "
        f"[chunks={chunks}]{mode}"
    )


_PEEK = """I'll look at the size and shape of the context first.

```repl
lines = context.splitlines()
print(f"{len(context):,} characters, {len(lines):,} lines")
print("first lines:", lines[:3])
```"""

_FAN_OUT = """Too long to read at once: {chunks} chunks, one sub-call each.

```repl
import re
size = -(-len(lines) // {chunks})
chunks = ["\\n".join(lines[i:i + size]) for i in range(0, len(lines), size)]
prompts = [
    "If this text states a magic number, reply with just that number, else NONE.\\n\\n" + c
    for c in chunks
]
{call}
found = [m.group(0) for a in replies if (m := re.search(r"\\d{{4,}}", a))]
print(f"{{len(chunks)}} chunks read; numbers found: {{found}}")
result = found[0] if len(found) == 1 else "not found"
```"""

_BATCHED = "replies = llm_query_batched(prompts)"
_SEQUENTIAL = "replies = [llm_query(p) for p in prompts]"

_FINAL = {
    "rlm-async": "The sub-calls agree on one number.\n\nFINAL_VAR(result)",
    "rlms": (
        "The sub-calls agree on one number.\n\n```repl\n"
        'answer["content"] = result\nanswer["ready"] = True\n```'
    ),
}


def _dialect(system: str) -> str:
    return "rlms" if 'answer["ready"]' in system else "rlm-async"


def niah_responder(request: CompletionRequest) -> str:
    """Root turns: peek, fan out over ``[chunks=K]`` chunks, answer. Sub-calls: read a chunk."""
    if request.system is None:
        match = _NEEDLE.search(request.messages[-1].content if request.messages else "")
        return match.group(1) if match else "NONE"
    dialect = _dialect(request.system)
    everything = "\n".join(m.content for m in request.messages)
    chunks_match = re.search(r"\[chunks=(\d+)\]", everything)
    chunks = int(chunks_match.group(1)) if chunks_match else 10
    call = _SEQUENTIAL if "[sequential]" in everything else _BATCHED
    turns = sum(1 for m in request.messages if m.role == "assistant")
    if turns == 0:
        return _PEEK
    if turns == 1:
        return _FAN_OUT.format(chunks=chunks, call=call)
    return _FINAL[dialect]


def echo_responder(request: CompletionRequest) -> str:
    """Sub-calls answer ``ok``; a root turn (unused: the root is a ScriptedModel) ends."""
    return "ok" if request.system is None else "FINAL(done)"


RESPONDERS: dict[str, Callable[[CompletionRequest], Any]] = {
    "echo": echo_responder,
    "niah": niah_responder,
    "demo": demo_responder,
}
