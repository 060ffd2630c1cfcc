"""What all runs of one completion share: :class:`CompletionState`.

A completion is a tree of runs: the root run, and (with ``max_depth > 1``) the sub-RLM runs
that ``rlm_query`` starts. They share one usage summary, one sub-call limiter, one budget,
one event sequence and one trajectory; each run (``_run``) holds only what is its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from rlm_async import events as ev
from rlm_async._types import RLMResult, UsageSummary
from rlm_async.engine._budget import BudgetTracker
from rlm_async.engine._kept_context import ContextKeeper
from rlm_async.engine._lent_repl import ReplLender
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._output_type import OutputSpec
from rlm_async.engine._resources import EngineResources
from rlm_async.engine._routes import ModelRoutes
from rlm_async.engine._subcall_cache import SubCallCache
from rlm_async.providers._windows import output_chars_for

__all__ = ["MAX_KEPT_EVENTS", "CompletionState"]

# The result's trajectory keeps a run's events up to this many; past it, sub-call and tool
# call events (a cell can start 50,000 sub-calls or tool calls: 100,000 events, +200 MiB and
# second-long garbage collections) are counted, not kept. Listeners and trajectory files
# still get them all.
MAX_KEPT_EVENTS = 20_000
_COUNTED_PAST_THE_CAP = (
    ev.SubCallStarted,
    ev.SubCallFinished,
    ev.ToolCallStarted,
    ev.ToolCallFinished,
    ev.ModelDelta,
)


@dataclass
class CompletionState:
    """What all runs of one completion share: its options, models and resources, never
    the ``RLM`` itself (a run needs nothing else from it)."""

    options: RLMOptions
    models: ModelRoutes
    resources: EngineResources
    emit: Callable[[ev.Event], None]
    started: float = field(default_factory=time.perf_counter)
    usage: UsageSummary = field(default_factory=UsageSummary)
    limiter: anyio.CapacityLimiter = field(init=False)
    seq: int = 0
    subcalls: int = 0
    restarts: int = 0
    trajectory: list[ev.Event] = field(default_factory=list)
    trajectory_dropped: int = 0  # events past MAX_KEPT_EVENTS not kept in ``trajectory``
    sandbox_report: dict[str, Any] = field(default_factory=dict)
    budget: BudgetTracker = field(init=False)
    root_turns: int = 0
    last_root_reply: str = ""
    stream_text: bool = False  # root turns stream their text as ModelDelta events
    repl_warm: bool = False
    deadline: float | None = None  # anyio.current_time() when the time budget runs out
    # A session's completion: the root run uses the session's REPL (lent, not started or
    # closed by the run), and its first message starts with what the session has so far.
    lent_repl: ReplLender | None = None
    session_note: str = ""
    # Identical sub-calls sent once (``_subcall_cache``): a session gives its own, shared by
    # its completions; otherwise one is made per completion (``None`` too if caching is off).
    subcall_cache: SubCallCache | None = None
    cached_subcalls: int = 0  # sub-calls answered by the cache, not paid
    output: OutputSpec | None = None  # output_type: what the root run's answer must be
    session: tuple[str, int] | None = None  # (session id, completion number), for RunStarted
    # The trajectory's side record (``BackgroundTrajectory.full_text``): a root sub-call
    # answer or tool result longer than its event's preview, in full, so the run can be
    # resumed; ``None`` without a trajectory file.
    full_text: Callable[[str, str, str], None] | None = None
    # RLM(trajectory_context=True): keeps the root REPL's context file beside the trajectory.
    context_keeper: ContextKeeper | None = None

    def keep_full(self, event: str, ident: str, text: str, preview: int) -> None:
        """Record ``text`` in full in the trajectory file when its event keeps a cut one."""
        if self.full_text is not None and len(text) > preview:
            self.full_text(event, ident, text)

    def cancel_reason(self) -> tuple[str, str]:
        """Why the runs are being cancelled, for their last event."""
        if self.deadline is not None and anyio.current_time() >= self.deadline:
            seconds = self.options.budget.max_seconds
            return "BudgetExceeded", f"the time budget of {seconds:g} s ran out"
        return "Cancelled", "the run was cancelled (by its caller, or the RLM was closed)"

    def __post_init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(self.options.max_concurrency)
        self.budget = BudgetTracker(self.options.budget, self.usage)
        if self.subcall_cache is None:
            self.subcall_cache = self.resources.new_subcall_cache()
        # Sized for the root model: a small model reads a small cell output.
        self.output_chars = self.options.max_output_chars or output_chars_for(
            self.resources.window_of(self.models.root).tokens
        )

    def partial_result(self) -> RLMResult:
        """What a run that a budget ended has to show: usage, trajectory, last root reply."""
        return RLMResult(
            answer=self.last_root_reply,
            iterations=self.root_turns,
            usage=self.usage,
            elapsed=time.perf_counter() - self.started,
            trajectory=self.trajectory,
            metadata=self.metadata(),
            finished=False,
        )

    def metadata(self) -> dict[str, Any]:
        """Facts about the run for ``RLMResult.metadata``."""
        facts: dict[str, Any] = {
            "subcalls": self.subcalls,
            "repl_restarts": self.restarts,
            "repl_warm": self.repl_warm,
            "sandbox": self.sandbox_report,
        }
        if self.cached_subcalls:
            facts["subcalls_cached"] = self.cached_subcalls
        if self.trajectory_dropped:
            facts["trajectory_dropped"] = self.trajectory_dropped
        return facts

    def event(self, cls: type[Any], **fields: Any) -> None:
        self.seq += 1
        event = cls(seq=self.seq, t=round(time.perf_counter() - self.started, 6), **fields)
        if len(self.trajectory) < MAX_KEPT_EVENTS or not isinstance(event, _COUNTED_PAST_THE_CAP):
            self.trajectory.append(event)
        else:
            self.trajectory_dropped += 1
        self.emit(event)
