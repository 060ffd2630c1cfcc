"""The nodes of a trajectory's run tree: runs, turns, cells, sub-calls and tool calls, each
with its totals. :func:`~rlm_async.trajectory.build_tree` (``_tree``) arranges events into
them; public through :mod:`rlm_async.trajectory`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CellNode",
    "RunNode",
    "SubCallNode",
    "ToolCallNode",
    "Totals",
    "TurnNode",
]


@dataclass
class Totals:
    """Model calls, tokens and cost summed over a node and everything under it."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    cached_tokens: int = 0  # of input_tokens, read from the providers' prompt caches

    def add(self, other: Totals) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd

    def add_call(
        self, input_tokens: int, output_tokens: int, cost_usd: float | None, cached_tokens: int = 0
    ) -> None:
        self.add(Totals(1, input_tokens, output_tokens, cost_usd, cached_tokens))


@dataclass
class SubCallNode:
    """One ``llm_query`` / ``rlm_query`` call, under the cell that made it.

    ``start``/``end`` are seconds since the completion started (``end`` is ``None`` if the
    call never finished). ``run`` is the sub-RLM run of an ``rlm`` call at depth > 1.
    """

    subcall: str
    kind: str
    model: str
    turn: int
    cell: int
    prompt: str
    prompt_chars: int
    start: float
    end: float | None = None
    ok: bool | None = None
    answer: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    latency: float | None = None
    cached: bool = False  # answered by the sub-call cache (nothing paid)
    replayed: bool = False  # answered by RLM.resume from the record (not paid again)
    run: RunNode | None = None

    def totals(self) -> Totals:
        if self.run is not None:
            return self.run.totals()
        totals = Totals()
        # A hit is not a paid call; a failed one is when it carries usage (a structured
        # sub-call whose replies, paid for, never matched its schema).
        paid = self.ok or self.input_tokens or self.output_tokens
        if self.end is not None and paid and not self.cached:
            totals.add_call(
                self.input_tokens, self.output_tokens, self.cost_usd, self.cached_tokens
            )
        return totals


@dataclass
class ToolCallNode:
    """One call of an application's tool (``RLM(tools=...)``), under the cell that made it.

    ``arguments`` and ``result`` are JSON previews (``result`` is the error when ``ok`` is
    false); ``end`` is ``None`` if the call never finished.
    """

    call: str
    tool: str
    turn: int
    cell: int
    arguments: str
    start: float
    end: float | None = None
    ok: bool | None = None
    result: str = ""
    error_type: str | None = None
    latency: float | None = None
    replayed: bool = False  # answered by RLM.resume from the record


@dataclass
class CellNode:
    """One code cell of a turn, with the sub-calls and tool calls its code made."""

    turn: int
    cell: int
    code: str
    start: float
    end: float | None = None
    output: str = ""
    error: bool = False
    final: str | None = None
    duration: float | None = None
    timed_out: bool = False
    restarted: bool = False
    replayed: bool = False  # run again by RLM.resume from a replayed reply, checked
    subcalls: list[SubCallNode] = field(default_factory=list)
    tool_calls: list[ToolCallNode] = field(default_factory=list)

    def totals(self) -> Totals:
        totals = Totals()
        for sub in self.subcalls:
            totals.add(sub.totals())
        return totals


@dataclass
class TurnNode:
    """One root-model turn of a run: the reply, and the cells run from it."""

    turn: int
    start: float
    final_turn: bool = False
    end: float | None = None
    model: str = ""
    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    latency: float | None = None
    replayed: bool = False  # the recorded reply, given again by RLM.resume (its cells re-ran)
    cells: list[CellNode] = field(default_factory=list)
    # Before this turn, earlier turns were folded into a summary (the ``compacted`` event's
    # fields: summary, kept_turns, tokens_before/after, the summary call's usage).
    compaction: dict[str, Any] | None = None
    # This turn's answer did not match the completion's output_type (the
    # ``answer_rejected`` event's fields: answer, errors, retries_left).
    rejected: dict[str, Any] | None = None

    def totals(self) -> Totals:
        totals = Totals()
        if self.end is not None:
            totals.add_call(
                self.input_tokens, self.output_tokens, self.cost_usd, self.cached_tokens
            )
        if self.compaction is not None:  # the call that wrote the summary
            c = self.compaction
            totals.add_call(
                c["input_tokens"], c["output_tokens"], c["cost_usd"], c["cached_tokens"]
            )
        for cell in self.cells:
            totals.add(cell.totals())
        return totals


@dataclass
class RunNode:
    """One RLM run (the root, or a sub-RLM) with its turns, in order."""

    run_id: str
    depth: int
    start: float
    parent_run_id: str | None = None
    parent_subcall: str | None = None
    model: str = ""
    sub_model: str = ""
    query: str = ""
    context: str = ""
    max_iterations: int = 0
    max_depth: int = 0
    session: str | None = None  # a session's completion: the session's id
    session_turn: int | None = None  # and which completion (its query_N's N)
    end: float | None = None
    status: Literal["running", "finished", "failed"] = "running"
    answer: str | None = None
    answer_source: str | None = None
    iterations: int | None = None
    elapsed: float | None = None
    error_type: str | None = None
    error: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    turns: list[TurnNode] = field(default_factory=list)
    restarts: list[tuple[float, str]] = field(default_factory=list)
    budget_warnings: list[dict[str, Any]] = field(default_factory=list)

    def totals(self) -> Totals:
        """Calls, tokens and cost of this run and every sub-run under it."""
        totals = Totals()
        for turn in self.turns:
            totals.add(turn.totals())
        return totals

    def walk(self) -> Iterator[RunNode]:
        """This run, then every sub-RLM run under it, depth first."""
        yield self
        for sub in self.subcalls():
            if sub.run is not None:
                yield from sub.run.walk()

    def subcalls(self) -> Iterator[SubCallNode]:
        """This run's own sub-calls (not those of its sub-runs), in start order."""
        for turn in self.turns:
            for cell in turn.cells:
                yield from cell.subcalls
