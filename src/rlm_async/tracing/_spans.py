"""``SpanTracer``: one completion's events as OpenTelemetry spans, parents linked by ids.

A span opens at each ``*Started`` event and ends at its ``*Finished`` one, both at the
events' own times (``t``, seconds since the completion started, laid on the wall clock
read when the completion started), so a span lasts what the step did, not what the
listener saw. Parents come from the ids the events carry, as in the trajectory's tree
(``trajectory._tree``): a run's turns, a turn's cells, a cell's sub-calls and tool calls,
and a sub-RLM's run under the ``rlm_query`` call that started it (``parent_subcall``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from rlm_async import events as ev
from rlm_async._logging import get_logger
from rlm_async._version import __version__
from rlm_async.tracing._attributes import (
    AGENT_NAME,
    chat_request,
    chat_usage,
    model_parts,
    run_usage,
)

__all__ = ["SpanTracer"]

_log = get_logger("rlm_async.tracing")

_Key = tuple[Any, ...]


@dataclass
class _Run:
    """One run's open spans."""

    span: Span
    depth: int
    model: str  # its root model's label
    open: dict[_Key, Span] = field(default_factory=dict)  # turns, chats, cells, calls
    turn: int | None = None  # the turn whose span is open
    turn_end: int = 0  # ns: the latest end of anything under that turn
    rlm_calls: list[str] = field(default_factory=list)  # rlm_query calls without a run yet


class SpanTracer:
    """A listener turning one completion's events into spans (made by ``completion_tracer``).

    Args:
        provider: The ``TracerProvider`` the spans go to.

    The span current when it is made (the caller's) is the root run's parent.
    """

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("rlm_async", __version__)
        self._parent = otel_context.get_current()
        self._origin = time.time_ns()
        self._runs: dict[str, _Run] = {}
        self._claimed: set[str] = set()  # rlm_query calls that started a sub-RLM run
        self._failed = False
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            ev.RunStarted: self._run_started,
            ev.TurnStarted: self._turn_started,
            ev.TurnFinished: self._turn_finished,
            ev.Compacted: self._compacted,
            ev.CellStarted: self._cell_started,
            ev.CellFinished: self._cell_finished,
            ev.SubCallStarted: self._subcall_started,
            ev.SubCallFinished: self._subcall_finished,
            ev.ToolCallStarted: self._tool_call_started,
            ev.ToolCallFinished: self._tool_call_finished,
            ev.FinalAnswer: self._final_answer,
            ev.AnswerRejected: self._run_event,
            ev.ReplRestarted: self._run_event,
            ev.BudgetWarning: self._run_event,
            ev.RunFinished: self._run_finished,
            ev.RunFailed: self._run_failed,
        }

    def anchor(self, started: float) -> None:
        """Set when ``t == 0`` is: ``started``, a ``time.perf_counter()`` reading."""
        self._origin = time.time_ns() - round((time.perf_counter() - started) * 1e9)

    def __call__(self, event: ev.Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is None or self._failed:
            return
        try:
            handler(event)
        except Exception as exc:
            # Tracing must never break a run, nor the listeners after it: say it once, stop.
            self._failed = True
            _log.warning("rlm_async.tracing_failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """End what is still open (a completion stopped before its runs' last events)."""
        now = time.time_ns()
        for run in self._runs.values():
            for span in [*run.open.values(), run.span]:
                _fail(span, "Incomplete", "the completion ended before this step did")
                span.end(end_time=now)
        self._runs.clear()

    # ---- spans ------------------------------------------------------------------------

    def _ns(self, t: float) -> int:
        return self._origin + round(t * 1e9)

    def _start(
        self,
        name: str,
        parent: Span | None,
        attributes: dict[str, Any],
        t: float,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Span:
        ctx = self._parent if parent is None else trace.set_span_in_context(parent)
        return self._tracer.start_span(
            name, context=ctx, kind=kind, attributes=attributes, start_time=self._ns(t)
        )

    def _step_parent(self, run: _Run, turn: int, cell: int) -> Span:
        """Where a call made by code hangs: its cell, else its turn, else the run."""
        return run.open.get(("cell", turn, cell)) or run.open.get(("turn", turn)) or run.span

    # ---- runs -------------------------------------------------------------------------

    def _run_started(self, event: ev.RunStarted) -> None:
        provider, model = model_parts(event.model)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": AGENT_NAME,
            "gen_ai.agent.id": event.run_id,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "rlm.run_id": event.run_id,
            "rlm.depth": event.depth,
            "rlm.model": event.model,
            "rlm.sub_model": event.sub_model,
            "rlm.max_iterations": event.max_iterations,
            "rlm.max_depth": event.max_depth,
        }
        if event.parent_run_id is not None:
            attributes["rlm.parent_run_id"] = event.parent_run_id
        if event.session is not None:
            attributes["gen_ai.conversation.id"] = event.session
            attributes["rlm.session_turn"] = event.session_turn or 0
        span = self._start(
            f"invoke_agent {AGENT_NAME}", self._run_parent(event), attributes, event.t
        )
        self._runs[event.run_id] = _Run(span=span, depth=event.depth, model=event.model)

    def _run_parent(self, event: ev.RunStarted) -> Span | None:
        """A sub-RLM's run hangs under its rlm_query call: the one it names, else the newest
        of its parent run's without a run yet (the engine starts it right after the call)."""
        parent = self._runs.get(event.parent_run_id or "")
        if parent is None:
            return None  # the root run: under the caller's span
        call = event.parent_subcall
        if call is None or ("sub", call) not in parent.open:
            call = parent.rlm_calls[-1] if parent.rlm_calls else None
        if call is None:
            return parent.span
        if call in parent.rlm_calls:
            parent.rlm_calls.remove(call)
        self._claimed.add(call)
        return parent.open.get(("sub", call), parent.span)

    def _run_finished(self, event: ev.RunFinished) -> None:
        run = self._runs.pop(event.run_id, None)
        if run is None:
            return
        self._end_turn(run)
        end = self._ns(event.t)
        for span in run.open.values():
            span.end(end_time=end)
        run.span.set_attribute("rlm.iterations", event.iterations)
        run.span.set_attribute("rlm.elapsed_s", event.elapsed)
        if event.usage:  # the root run's: the whole completion's
            run.span.set_attributes(run_usage(event.usage))
        run.span.end(end_time=end)

    def _run_failed(self, event: ev.RunFailed) -> None:
        run = self._runs.pop(event.run_id, None)
        if run is None:
            return
        end = self._ns(event.t)
        for span in run.open.values():  # what was going on when the run failed
            _fail(span, event.error_type, event.message)
            span.end(end_time=end)
        _fail(run.span, event.error_type, event.message)
        run.span.add_event(
            "exception",
            {"exception.type": event.error_type, "exception.message": event.message},
            timestamp=end,
        )
        run.span.end(end_time=end)

    def _final_answer(self, event: ev.FinalAnswer) -> None:
        run = self._runs.get(event.run_id)
        if run is not None:
            run.span.set_attribute("rlm.answer_source", event.source)

    def _run_event(self, event: ev.AnswerRejected | ev.ReplRestarted | ev.BudgetWarning) -> None:
        """A fact about a run, at a moment: an event on its span."""
        run = self._runs.get(event.run_id)
        if run is None:
            return
        if isinstance(event, ev.AnswerRejected):
            facts: dict[str, Any] = {"rlm.turn": event.turn, "rlm.retries_left": event.retries_left}
        elif isinstance(event, ev.ReplRestarted):
            facts = {"rlm.reason": event.reason}
        else:
            facts = {"rlm.budget": event.budget, "rlm.used": event.used, "rlm.limit": event.limit}
        run.span.add_event(f"rlm.{event.type}", facts, timestamp=self._ns(event.t))

    # ---- turns and cells --------------------------------------------------------------

    def _turn_started(self, event: ev.TurnStarted) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        self._end_turn(run)
        attributes = {"rlm.turn": event.turn, "rlm.depth": run.depth}
        if event.final_turn:
            attributes["rlm.final_turn"] = True
        turn = self._start("rlm.turn", run.span, attributes, event.t)
        run.open[("turn", event.turn)] = turn
        run.turn, run.turn_end = event.turn, self._ns(event.t)
        chat = chat_request(run.model, depth=run.depth) | {"rlm.turn": event.turn}
        name = f"chat {chat['gen_ai.request.model']}"
        run.open[("chat", event.turn)] = self._start(name, turn, chat, event.t, SpanKind.CLIENT)

    def _turn_finished(self, event: ev.TurnFinished) -> None:
        run = self._runs.get(event.run_id)
        chat = None if run is None else run.open.pop(("chat", event.turn), None)
        if run is None or chat is None:
            return
        chat.set_attributes(chat_usage(event))
        self._end_step(run, chat, event.t)

    def _end_turn(self, run: _Run) -> None:
        """End the open turn's span where the last thing under it ended."""
        if run.turn is None:
            return
        span = run.open.pop(("turn", run.turn), None)
        if span is not None:
            span.end(end_time=run.turn_end)
        run.turn = None

    def _end_step(self, run: _Run, span: Span, t: float) -> None:
        end = self._ns(t)
        span.end(end_time=end)
        run.turn_end = max(run.turn_end, end)

    def _compacted(self, event: ev.Compacted) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        self._end_turn(run)  # the turns before were folded: the next one starts after this
        attributes = chat_request(event.model, depth=run.depth) | chat_usage(event)
        attributes |= {
            "rlm.compaction": True,
            "rlm.turn": event.turn,
            "rlm.kept_turns": event.kept_turns,
            "rlm.tokens_before": event.tokens_before,
            "rlm.tokens_after": event.tokens_after,
        }
        name = f"chat {attributes['gen_ai.request.model']}"
        start = event.t - event.latency
        self._start(name, run.span, attributes, start, SpanKind.CLIENT).end(
            end_time=self._ns(event.t)
        )

    def _cell_started(self, event: ev.CellStarted) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        parent = run.open.get(("turn", event.turn), run.span)
        attributes = {
            "rlm.turn": event.turn,
            "rlm.cell": event.cell,
            "rlm.depth": run.depth,
            "rlm.code_chars": len(event.code),
        }
        run.open[("cell", event.turn, event.cell)] = self._start(
            "rlm.cell", parent, attributes, event.t
        )

    def _cell_finished(self, event: ev.CellFinished) -> None:
        run = self._runs.get(event.run_id)
        span = None if run is None else run.open.pop(("cell", event.turn, event.cell), None)
        if run is None or span is None:
            return
        span.set_attributes(
            {
                "rlm.cell.error": event.error,
                "rlm.cell.timed_out": event.timed_out,
                "rlm.cell.restarted": event.restarted,
                "rlm.cell.final": event.final is not None,
            }
        )
        self._end_step(run, span, event.t)

    # ---- calls made by code -----------------------------------------------------------

    def _subcall_started(self, event: ev.SubCallStarted) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        attributes = chat_request(event.model, depth=run.depth + 1)
        attributes |= {
            "rlm.turn": event.turn,
            "rlm.cell": event.cell,
            "rlm.subcall.id": event.subcall,
            "rlm.subcall.kind": event.kind,
            "rlm.prompt_chars": event.prompt_chars,
        }
        model = attributes["gen_ai.request.model"]
        if event.kind == "rlm":
            # A sub-RLM or, at the last depth, a plain call: known when it ends.
            del attributes["gen_ai.operation.name"]
            name = f"rlm_query {model}"
            run.rlm_calls.append(event.subcall)
        else:
            name = f"chat {model}"
        parent = self._step_parent(run, event.turn, event.cell)
        run.open[("sub", event.subcall)] = self._start(
            name, parent, attributes, event.t, SpanKind.CLIENT
        )

    def _subcall_finished(self, event: ev.SubCallFinished) -> None:
        run = self._runs.get(event.run_id)
        span = None if run is None else run.open.pop(("sub", event.subcall), None)
        if run is None or span is None:
            return
        if event.subcall in run.rlm_calls:
            run.rlm_calls.remove(event.subcall)
        if event.subcall in self._claimed:
            # Its sub-RLM's own spans hold the model calls (and their usage).
            self._claimed.discard(event.subcall)
        else:
            if event.kind == "rlm":
                span.update_name(f"chat {model_parts(event.model)[1]}")
                span.set_attribute("gen_ai.operation.name", "chat")
            if event.cached:  # answered by the sub-call cache: no model call was paid
                span.set_attribute("rlm.cached", True)
            else:
                span.set_attributes(chat_usage(event))
        if not event.ok:
            _fail(span, "_OTHER", event.answer[:500])
        span.end(end_time=self._ns(event.t))

    def _tool_call_started(self, event: ev.ToolCallStarted) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": event.tool,
            "gen_ai.tool.call.id": event.call,
            "gen_ai.tool.type": "function",
            "rlm.turn": event.turn,
            "rlm.cell": event.cell,
            "rlm.depth": run.depth,
        }
        parent = self._step_parent(run, event.turn, event.cell)
        run.open[("tool", event.call)] = self._start(
            f"execute_tool {event.tool}", parent, attributes, event.t
        )

    def _tool_call_finished(self, event: ev.ToolCallFinished) -> None:
        run = self._runs.get(event.run_id)
        span = None if run is None else run.open.pop(("tool", event.call), None)
        if span is None:
            return
        span.set_attribute("rlm.replayed", event.replayed)
        if not event.ok:
            _fail(span, event.error_type or "_OTHER", event.result[:500])
        span.end(end_time=self._ns(event.t))


def _fail(span: Span, error_type: str, message: str) -> None:
    """Mark ``span`` failed, as the conventions ask: ERROR status and ``error.type``."""
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"))
    span.set_attribute("error.type", error_type)
