"""A conversation over one REPL: the second question builds on what the first one computed.

    python examples/chat_session.py

`rlm.session(context)` keeps one sandboxed REPL process for the whole conversation: a
variable set while answering the first question is there for the second; earlier queries
and answers are the REPL's `query_1`, `answer_1`, ...; `add_context` adds `context_2`.
A scripted model plays the root model here; set MODEL (e.g. MODEL=gpt-5-mini) and a key for
a real one.
"""

from __future__ import annotations

import asyncio
import os

from rlm_async import RLM
from rlm_async.testing import ScriptedModel

CUSTOMERS = [
    {"id": "c1", "name": "Ada", "churned": "2026-03-04"},
    {"id": "c2", "name": "Grace", "churned": None},
    {"id": "c3", "name": "Linus", "churned": "2026-03-28"},
    {"id": "c4", "name": "Barbara", "churned": "2026-02-11"},
]
TICKETS = [
    {"customer": "c1", "status": "open", "title": "Invoice is wrong"},
    {"customer": "c3", "status": "closed", "title": "Password reset"},
    {"customer": "c2", "status": "open", "title": "App crashes on start"},
]

SCRIPT = [
    # Completion 1: the churned customers, kept in a variable of the REPL.
    """```repl
march = [c for c in context if (c["churned"] or "").startswith("2026-03")]
names = ", ".join(c["name"] for c in march)
print(names)
```""",
    "FINAL_VAR(names)",
    # Completion 2: reads `march` from completion 1, and the tickets added as context_2.
    """```repl
open_ids = {t["customer"] for t in context_2 if t["status"] == "open"}
print(query_1, "->", answer_1)
FINAL(', '.join(c['name'] for c in march if c['id'] in open_ids) or 'none')
```""",
]


async def main() -> None:
    model = os.environ.get("MODEL") or ScriptedModel(SCRIPT)
    async with RLM(model=model) as rlm, rlm.session(CUSTOMERS) as chat:
        first = await chat.completion("Which customers churned in March?")
        print("1:", first.answer)
        await chat.add_context(TICKETS)  # context_2
        second = await chat.completion("And which of them had open tickets?")
        print("2:", second.answer)
        print(f"one REPL (pid {chat.pid}) for {len(chat.history)} completions")


if __name__ == "__main__":
    asyncio.run(main())
