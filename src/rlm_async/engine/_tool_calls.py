"""Serving a run's tool calls: one of the application's tools, called from model code.

Each call is counted in the budget (``Budget(max_tool_calls=...)``: past it, the call is
refused with an error model code reads), runs under its tool's timeout (the cell's time
limit by default), and is recorded by a ``ToolCallStarted`` and a ``ToolCallFinished``
event hung under the cell that made it. A call the REPL gives up on (its cell was
interrupted) is cancelled like a sub-call; its finished event says so.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from typing import TYPE_CHECKING, Any

from rlm_async import events as ev
from rlm_async.repl._protocol import ToolCallResult, ToolRequest
from rlm_async.tools import ToolResult, ToolSet

if TYPE_CHECKING:
    from rlm_async.engine._run import _Run

__all__ = ["ToolCallServer", "tool_arguments"]


def tool_arguments(run: _Run) -> dict[str, Any]:
    """What a run's REPL needs for its tools (none: nothing, so fake REPLs in tests of the
    loop need not know tools): their specs and the handler serving their calls."""
    tools = run.shared.resources.tool_set
    if not tools:
        return {}
    return {"tools": tools.stub_specs(), "tool_handler": ToolCallServer(run, tools)}


def tools_description(run: _Run) -> str:
    """The tools for the system prompt (empty without tools)."""
    tools = run.shared.resources.tool_set
    return tools.describe() if tools else ""


class ToolCallServer:
    """Serves the tool calls of one run's REPL (its ``tool_handler``)."""

    def __init__(self, run: _Run, tools: ToolSet) -> None:
        self.run = run
        self.tools = tools
        self._numbers = itertools.count(1)
        self._taken: set[str] = set()

    def reserve(self, call: str) -> None:
        """Keep a call id from being given to a live call (a resumed run's replayed call
        carries its recorded id)."""
        self._taken.add(call)

    def _new_call_id(self) -> str:
        # Numbered here, per run, never by the request's id: the child chooses that one, and
        # a repeated id would merge calls in the trajectory tree and in a resume's replay.
        while True:
            call = f"{self.run.run_id}.tool.{next(self._numbers)}"
            if call not in self._taken:
                self._taken.add(call)
                return call

    async def __call__(self, request: ToolRequest) -> ToolCallResult:
        run = self.run
        call = self._new_call_id()
        turn, cell = run.turn.number, run.turn.cell
        run.event(
            ev.ToolCallStarted,
            call=call,
            turn=turn,
            cell=cell,
            tool=request.name,
            arguments=_json_preview(
                {"args": request.args, "kwargs": request.keywords}, run.preview
            ),
        )
        started = time.perf_counter()
        refusal = run.shared.budget.acquire_tool_call(request.name)
        try:
            if refusal is not None:
                result = ToolResult.failure(refusal, error_type="BudgetExceeded")
            else:
                result = await self.tools.call(
                    request.name,
                    request.args,
                    request.keywords,
                    default_timeout=run.options.repl.cell_timeout,
                )
        except BaseException:  # cancelled: the cell was interrupted, or the run ended
            with contextlib.suppress(Exception):  # a raising listener must not mask it
                self._finished(call, turn, cell, request.name, started, _STOPPED)
            raise
        self._finished(call, turn, cell, request.name, started, result)
        return ToolCallResult(
            ok=result.ok, value=result.value, error=result.error, error_type=result.error_type
        )

    def _finished(
        self, call: str, turn: int, cell: int, name: str, started: float, result: ToolResult
    ) -> None:
        preview = self.run.preview
        text = _json_text(result.value) if result.ok else (result.error or "")
        if self.run.depth == 0:  # what a resume answers from (a sub-RLM's calls are not replayed)
            self.run.shared.keep_full("tool_call_finished", call, text, preview)
        self.run.event(
            ev.ToolCallFinished,
            call=call,
            turn=turn,
            cell=cell,
            tool=name,
            ok=result.ok,
            result=text[:preview],
            error_type=result.error_type,
            latency=round(time.perf_counter() - started, 6),
        )


_STOPPED = ToolResult.failure(
    "stopped: the cell stopped waiting for this call (it was interrupted)", error_type="Cancelled"
)


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _json_preview(value: Any, limit: int) -> str:
    return _json_text(value)[:limit]
