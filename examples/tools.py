"""The application's functions, callable from the model's code, offline.

    python examples/tools.py

`search_tickets` (async) and `customer_name` (sync) are functions of this program; with
`RLM(tools=[...])` they are functions of the REPL too, with the same names, signatures and
docstrings (the system prompt lists them). A call from model code crosses to this process as
JSON, is checked against the type hints, runs here, and its result crosses back. A scripted
model plays the root model here; set MODEL (e.g. MODEL=gpt-5-mini) and a key for a real one.
"""

from __future__ import annotations

import asyncio
import os

from rlm_async import RLM, Budget
from rlm_async.testing import ScriptedModel

TICKETS = [
    {"id": 1, "customer_id": "c1", "status": "open", "title": "Invoice is wrong"},
    {"id": 2, "customer_id": "c1", "status": "closed", "title": "Password reset"},
    {"id": 3, "customer_id": "c2", "status": "open", "title": "App crashes on start"},
]
CUSTOMERS = {"c1": "Ada", "c2": "Grace", "c3": "Linus"}


async def search_tickets(customer_id: str, status: str = "open") -> list[dict]:
    """Tickets of one customer."""
    await asyncio.sleep(0.05)  # a database query, say
    return [t for t in TICKETS if t["customer_id"] == customer_id and t["status"] == status]


def customer_name(customer_id: str) -> str:
    """The name of a customer."""
    if customer_id not in CUSTOMERS:
        raise KeyError(f"no customer {customer_id}")
    return CUSTOMERS[customer_id]


SCRIPT = [
    """Let me ask the application for each customer's open tickets, all at once.
```repl
import asyncio
ids = context.split(",")
found = await asyncio.gather(*(search_tickets(i) for i in ids))
with_open = [customer_name(i) for i, tickets in zip(ids, found) if tickets]
print(with_open)
```""",
    "FINAL_VAR(with_open)",
]


async def main() -> None:
    model = os.environ.get("MODEL") or ScriptedModel(SCRIPT)
    budget = Budget(max_tool_calls=20)
    async with RLM(model=model, tools=[search_tickets, customer_name], budget=budget) as rlm:
        result = await rlm.completion("c1,c2,c3", "Which customers have open tickets?")
    print("Answer:", result.answer)
    for event in result.trajectory:
        if event.type == "tool_call_finished":
            print(f"  {event.tool}: {event.result[:60]} ({event.latency * 1000:.0f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
