"""A tiny task of the tests' own (count the apples), its scripted solvers and a direct reader.

It stands in for the kit's tasks so the harness, the runners and the report are tested on
their own: the thing under test is the harness, not this task.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import anyio
import anyio.lowlevel

from rlm_async.evals._task import Example
from rlm_async.providers._base import CompletionRequest
from rlm_async.testing import Responder

WORDS = ("apple", "pear", "plum", "fig")


class CountTask:
    """Records ``record N: word``; the question: how many records say ``apple``."""

    name = "count"
    metric = "exact count"

    def generate(self, seed: int, size: int) -> Example:
        rng = random.Random(f"{seed}-{size}")
        lines: list[str] = []
        length = 0
        while length < size * 4:
            line = f"record {len(lines)}: {rng.choice(WORDS)}"
            lines.append(line)
            length += len(line) + 1
        gold = sum(line.endswith(": apple") for line in lines)
        return Example(
            id=f"count-{size}-s{seed}",
            task=self.name,
            size=size,
            seed=seed,
            context="\n".join(lines),
            query="How many records say apple? Answer with the number.",
            gold=gold,
        )

    def score(self, answer: str, example: Example) -> float:
        numbers = re.findall(r"-?\d+", answer)
        return 1.0 if numbers and int(numbers[-1]) == example.gold else 0.0


CODE = "```repl\nFINAL(sum(line.endswith(': apple') for line in context.splitlines()))\n```"


def right_solver(example: Example) -> Callable[[CompletionRequest], str]:
    """A root model that writes the code that counts every record."""
    del example
    return lambda request: CODE


def wrong_solver(example: Example) -> Callable[[CompletionRequest], str]:
    """A root model that answers without looking."""
    del example
    return lambda request: "FINAL(-1)"


def read_prompt(request: CompletionRequest) -> str:
    """A direct model that counts the apples it can see in its prompt: right when the whole
    context fits, short of the gold when the prompt was cut."""
    return str(request.messages[-1].content.count(": apple"))


class InFlight:
    """Counts the model calls in flight at once, across every provider it wraps.

    With ``hold``, the first calls are held until ``hold`` of them are in flight together
    (no timing: a bound that let fewer through never releases them, and the test's deadline
    fails it); later calls pass straight through.
    """

    def __init__(self, hold: int | None = None) -> None:
        self.now = 0
        self.most = 0
        self.calls = 0
        self._hold = hold
        self._reached = anyio.Event()

    def wrap(self, responder: Callable[[CompletionRequest], str]) -> Responder:
        async def counted(request: CompletionRequest) -> str:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
            try:
                if self._hold is not None:
                    if self.now >= self._hold:
                        self._reached.set()
                    with anyio.fail_after(10):
                        await self._reached.wait()
                await anyio.lowlevel.checkpoint()  # lets other runs start
                return responder(request)
            finally:
                self.now -= 1

        return counted
