"""The run tree of a trajectory: runs → turns → cells → sub-calls → sub-RLM runs.

Public through :mod:`rlm_async.trajectory` (``build_tree``; the nodes, ``RunNode``…, are in
``_nodes``); the HTML viewer draws this tree. Building works on any prefix of a run's
events, so a crashed or still running run has a tree too, with ``end=None`` on whatever
never finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rlm_async import events as ev
from rlm_async.trajectory._nodes import CellNode, RunNode, SubCallNode, ToolCallNode, TurnNode

__all__ = ["build_tree"]


def build_tree(events: Iterable[ev.Event]) -> list[RunNode]:
    """Arrange events as runs → turns → cells → sub-calls, sub-RLM runs under their call.

    Works on any prefix of a run (a crashed or still running one): what never finished has
    ``end=None``. A sub-RLM run is hung under its parent's ``rlm`` sub-call: by the event's
    ``parent_subcall`` when the writer recorded it, else by order (the engine emits a sub-RLM's
    ``RunStarted`` right after its ``SubCallStarted``, so the newest unclaimed ``rlm`` call of
    the parent run is the one).

    Returns:
        The root runs, in start order (normally one per completion).
    """
    runs: dict[str, RunNode] = {}
    roots: list[RunNode] = []
    turns: dict[tuple[str, int], TurnNode] = {}
    cells: dict[tuple[str, int, int], CellNode] = {}
    subcalls: dict[str, SubCallNode] = {}
    tool_calls: dict[str, ToolCallNode] = {}
    unclaimed: dict[str, list[SubCallNode]] = {}  # rlm sub-calls waiting for their run

    def turn_of(run_id: str, number: int, t: float) -> TurnNode:
        found = turns.get((run_id, number))
        if found is None:
            found = turns[(run_id, number)] = TurnNode(turn=number, start=t)
            run_of(run_id, t).turns.append(found)
        return found

    def run_of(run_id: str, t: float) -> RunNode:
        found = runs.get(run_id)
        if found is None:  # events of a run whose start is missing
            found = runs[run_id] = RunNode(run_id=run_id, depth=0, start=t)
            roots.append(found)
        return found

    def cell_of(run_id: str, turn: int, number: int, t: float) -> CellNode:
        found = cells.get((run_id, turn, number))
        if found is None:
            found = cells[(run_id, turn, number)] = CellNode(
                turn=turn, cell=number, code="", start=t
            )
            turn_of(run_id, turn, t).cells.append(found)
        return found

    for event in events:
        if isinstance(event, ev.RunStarted):
            run = RunNode(
                run_id=event.run_id,
                depth=event.depth,
                start=event.t,
                parent_run_id=event.parent_run_id,
                model=event.model,
                sub_model=event.sub_model,
                query=event.query,
                context=event.context,
                max_iterations=event.max_iterations,
                max_depth=event.max_depth,
                session=event.session,
                session_turn=event.session_turn,
            )
            runs[event.run_id] = run
            parent = _claim(event, unclaimed, subcalls)
            if parent is not None:
                parent.run = run
                run.parent_subcall = parent.subcall
            else:
                roots.append(run)
        elif isinstance(event, ev.TurnStarted):
            turn = turn_of(event.run_id, event.turn, event.t)
            turn.start, turn.final_turn = event.t, event.final_turn
        elif isinstance(event, ev.TurnFinished):
            turn = turn_of(event.run_id, event.turn, event.t)
            turn.end, turn.model, turn.text = event.t, event.model, event.text
            turn.input_tokens, turn.output_tokens = event.input_tokens, event.output_tokens
            turn.cached_tokens = event.cached_tokens
            turn.cost_usd, turn.latency = event.cost_usd, event.latency
            turn.replayed = event.replayed
        elif isinstance(event, ev.Compacted):
            fields = event.model_dump(exclude={"type", "run_id", "depth", "seq", "turn"})
            turn_of(event.run_id, event.turn, event.t).compaction = fields
        elif isinstance(event, ev.AnswerRejected):
            fields = event.model_dump(include={"answer", "errors", "retries_left"})
            turn_of(event.run_id, event.turn, event.t).rejected = fields
        elif isinstance(event, ev.CellStarted):
            cell = cell_of(event.run_id, event.turn, event.cell, event.t)
            cell.start, cell.code = event.t, event.code
            cell.replayed = turn_of(event.run_id, event.turn, event.t).replayed
        elif isinstance(event, ev.CellFinished):
            cell = cell_of(event.run_id, event.turn, event.cell, event.t)
            cell.end, cell.output, cell.error = event.t, event.output, event.error
            cell.final, cell.duration = event.final, event.duration
            cell.timed_out, cell.restarted = event.timed_out, event.restarted
        elif isinstance(event, ev.SubCallStarted):
            sub = SubCallNode(
                subcall=event.subcall,
                kind=event.kind,
                model=event.model,
                turn=event.turn,
                cell=event.cell,
                prompt=event.prompt,
                prompt_chars=event.prompt_chars,
                start=event.t,
            )
            subcalls[event.subcall] = sub
            cell_of(event.run_id, event.turn, event.cell, event.t).subcalls.append(sub)
            if event.kind == "rlm":
                unclaimed.setdefault(event.run_id, []).append(sub)
        elif isinstance(event, ev.SubCallFinished):
            sub = subcalls.get(event.subcall) or _late_subcall(event, cell_of, subcalls)
            sub.end, sub.ok, sub.answer = event.t, event.ok, event.answer
            sub.input_tokens, sub.output_tokens = event.input_tokens, event.output_tokens
            sub.cached_tokens = event.cached_tokens
            sub.cost_usd, sub.latency, sub.cached = event.cost_usd, event.latency, event.cached
            sub.replayed = event.replayed
            pending = unclaimed.get(event.run_id, [])
            if sub in pending:  # an rlm call that ended without a sub-run (depth 1, refusal)
                pending.remove(sub)
        elif isinstance(event, ev.ToolCallStarted):
            tool_call = ToolCallNode(
                call=event.call,
                tool=event.tool,
                turn=event.turn,
                cell=event.cell,
                arguments=event.arguments,
                start=event.t,
            )
            tool_calls[event.call] = tool_call
            cell_of(event.run_id, event.turn, event.cell, event.t).tool_calls.append(tool_call)
        elif isinstance(event, ev.ToolCallFinished):
            tool_call = tool_calls.get(event.call) or ToolCallNode(
                call=event.call,
                tool=event.tool,
                turn=event.turn,
                cell=event.cell,
                arguments="",
                start=event.t - event.latency,
            )
            if event.call not in tool_calls:  # its start was not recorded
                tool_calls[event.call] = tool_call
                cell_of(event.run_id, event.turn, event.cell, tool_call.start).tool_calls.append(
                    tool_call
                )
            tool_call.end, tool_call.ok, tool_call.result = event.t, event.ok, event.result
            tool_call.error_type, tool_call.latency = event.error_type, event.latency
            tool_call.replayed = event.replayed
        elif isinstance(event, ev.FinalAnswer):
            run = run_of(event.run_id, event.t)
            run.answer, run.answer_source = event.answer, event.source
        elif isinstance(event, ev.RunFinished):
            run = run_of(event.run_id, event.t)
            run.end, run.status, run.answer = event.t, "finished", event.answer
            run.iterations, run.elapsed, run.usage = event.iterations, event.elapsed, event.usage
        elif isinstance(event, ev.RunFailed):
            run = run_of(event.run_id, event.t)
            run.end, run.status = event.t, "failed"
            run.error_type, run.error = event.error_type, event.message
        elif isinstance(event, ev.ReplRestarted):
            run_of(event.run_id, event.t).restarts.append((event.t, event.reason))
        elif isinstance(event, ev.BudgetWarning):
            run_of(event.run_id, event.t).budget_warnings.append(
                {"t": event.t, "budget": event.budget, "used": event.used, "limit": event.limit}
            )
    return roots


def _claim(
    event: ev.RunStarted,
    unclaimed: dict[str, list[SubCallNode]],
    subcalls: dict[str, SubCallNode],
) -> SubCallNode | None:
    if event.parent_run_id is None:
        return None
    pending = unclaimed.get(event.parent_run_id, [])
    named = getattr(event, "parent_subcall", None)
    if isinstance(named, str) and named in subcalls:
        found = subcalls[named]
        if found in pending:
            pending.remove(found)
        return found
    return pending.pop() if pending else None


def _late_subcall(
    event: ev.SubCallFinished,
    cell_of: Callable[[str, int, int, float], CellNode],
    subcalls: dict[str, SubCallNode],
) -> SubCallNode:
    """A finished sub-call whose start is missing from the events (a partial trajectory)."""
    start = event.t - event.latency
    sub = SubCallNode(
        subcall=event.subcall,
        kind=event.kind,
        model=event.model,
        turn=event.turn,
        cell=event.cell,
        prompt="",
        prompt_chars=0,
        start=start,
    )
    subcalls[event.subcall] = sub
    cell_of(event.run_id, event.turn, event.cell, start).subcalls.append(sub)
    return sub
