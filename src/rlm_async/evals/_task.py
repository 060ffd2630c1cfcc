"""What every evaluation task is: a seeded generator of examples and an exact scorer.

A task makes an :class:`Example` from a seed and a size (the context's length in tokens,
estimated at 4 characters a token) and scores an answer against the example's gold with no
model involved. The same ``(seed, size)`` always makes the same example, so a run can be
repeated, compared across models, and resumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

from rlm_async.evals._sizes import format_size
from rlm_async.providers._base import CompletionRequest

__all__ = ["Example", "Solver", "Solvers", "Task", "example_id"]


@dataclass(frozen=True)
class Example:
    """One generated example of a task.

    Attributes:
        id: Stable id, e.g. ``"oolong-128k-s3"``: task, size and seed.
        task: The task's name.
        size: The context's target length in tokens (4 characters a token).
        seed: The seed it was generated from.
        context: What the RLM gets as ``context`` (a str, or a list of documents).
        query: The question.
        gold: The exact answer the scorer compares with (JSON-serialisable).
        meta: Anything else worth keeping in the results (JSON-serialisable): the needle's
            position, the number of records, ...
    """

    id: str
    task: str
    size: int
    seed: int
    context: str | list[str]
    query: str
    gold: Any
    meta: dict[str, Any] = field(default_factory=dict)


def example_id(task: str, size: int, seed: int) -> str:
    """An example's :attr:`Example.id`: ``"oolong-128k-s3"`` for task, size and seed."""
    return f"{task}-{format_size(size)}-s{seed}"


#: A scripted root model for one example (``ScriptedModel``'s responder): writes the code
#: that solves it, so the harness runs offline end to end.
Solver: TypeAlias = Callable[[Example], Callable[[CompletionRequest], str]]


@dataclass(frozen=True)
class Solvers:
    """A task's scripted models, so every task runs offline end to end.

    Attributes:
        solver: The root model of an RLM run: reads ``context`` in the REPL with the right
            code (and ``llm_query`` where a model would) and answers with ``FINAL_VAR``. It
            also answers sub-calls (requests without a system prompt) as ``sub_solver``
            does, so one scripted model can serve as both.
        sub_solver: The sub-model: answers the prompts ``solver``'s code sends.
        wrong_solver: A root model making a plausible mistake (reading part of the
            records, an off-by-one, confusing two keys): proves the scorer can fail.
        direct_solver: The direct call (the context in the prompt): a perfect reader of what
            the prompt shows, so a context truncated to the window loses what was cut.
    """

    solver: Solver
    sub_solver: Solver
    wrong_solver: Solver
    direct_solver: Solver


@runtime_checkable
class Task(Protocol):
    """A task: a generator and an exact scorer (no model-graded scoring)."""

    name: str
    """The name ``rlm-async eval --task`` takes."""
    metric: str
    """What ``score`` computes, in a few words (the paper's metric where it defines one)."""

    def generate(self, seed: int, size: int) -> Example:
        """The example for ``seed`` with a context of about ``size`` tokens.

        Raises:
            ConfigurationError: a size the task cannot make (the generated tasks need 1k).
        """
        ...

    def score(self, answer: str, example: Example) -> float:
        """The answer's score against ``example.gold``, from 0.0 to 1.0."""
        ...
