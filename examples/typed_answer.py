"""An answer a program can use: a pydantic model instead of text, offline.

    python examples/typed_answer.py

`rlm.completion(..., output_type=Invoice)` shows the model Invoice's JSON schema and how to
finish: `FINAL(a_dict)` in code (it crosses to this process as JSON) or a line
`FINAL({...json...})`. The answer is validated here; one that does not match goes back to
the model with what is wrong (up to `output_retries` times, then `OutputValidationError`).
`result.output` is the `Invoice`; `result.answer` is its text. A scripted model plays the
root model here, and its first answer is wrong on purpose; set MODEL (e.g. MODEL=gpt-5-mini)
and a key for a real one.
"""

from __future__ import annotations

import asyncio
import os
from datetime import date

from pydantic import BaseModel

from rlm_async import RLM, OutputValidationError
from rlm_async.testing import ScriptedModel

EMAILS = """\
From: billing@acme.example  Subject: Invoice INV-2041
Dear customer, invoice INV-2041 dated 2025-03-14 is due. Lines: 3 x widget at 12.50,
1 x shipping at 7.00. Total due: 44.50 EUR.
From: news@acme.example  Subject: Spring sale
Everything 20% off this week.
"""


class Line(BaseModel):
    item: str
    quantity: int
    unit_price: float


class Invoice(BaseModel):
    number: str
    issued: date
    lines: list[Line]
    total: float
    currency: str


SCRIPT = [
    # The first answer forgets the currency and the lines: it is sent back.
    """```repl
import re
mail = context.split("From: ")[1]
number = re.search(r"INV-\\d+", mail).group()
issued = re.search(r"\\d{4}-\\d{2}-\\d{2}", mail).group()
total = float(re.search(r"Total due: (\\d+\\.\\d+)", mail).group(1))
FINAL({"number": number, "issued": issued, "total": total})
```""",
    # The second reads the feedback and fills every field.
    """```repl
lines = [
    {"item": item, "quantity": int(n), "unit_price": float(price)}
    for n, item, price in re.findall(r"(\\d+) x (\\w+) at (\\d+\\.\\d+)", mail)
]
currency = re.search(r"Total due: \\S+ (\\w+)", mail).group(1)
FINAL({"number": number, "issued": issued, "lines": lines, "total": total, "currency": currency})
```""",
]


async def main() -> Invoice:
    model = os.environ.get("MODEL") or ScriptedModel(SCRIPT)
    async with RLM(model=model) as rlm:
        try:
            result = await rlm.completion(
                EMAILS, "The invoice in these emails.", output_type=Invoice
            )
        except OutputValidationError as exc:
            print("No valid answer:", exc.errors, exc.last_attempt)
            raise
    invoice: Invoice = result.output
    print(f"{invoice.number} of {invoice.issued:%d %B %Y}: {invoice.total} {invoice.currency}")
    for line in invoice.lines:
        print(f"  {line.quantity} x {line.item} at {line.unit_price}")
    print(f"({result.iterations} turns; the answer's text: {result.answer})")
    return invoice


if __name__ == "__main__":
    asyncio.run(main())
