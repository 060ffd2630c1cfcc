"""Resuming a run from its trajectory: replay what was recorded, then go on.

``RLM.resume(path, context=...)`` reads the trajectory of a run that was stopped (its parent
died, a budget ran out, it was cancelled) and runs the root run again in a fresh REPL, with
three seams of the run loop answered from the record instead of live:

- a root turn whose reply was recorded (``TurnFinished.text``) is that reply: no provider
  call, no usage; a compaction recorded before it (``Compacted``) is done again with the
  recorded summary, no call either (``_compaction``);
- a sub-call (``llm_query``, ``rlm_query``) or tool call made by a replayed cell is answered
  with its recorded result (``SubCallFinished.answer``, ``ToolCallFinished.result``, or the
  whole text from the trajectory's side record when the event kept a preview), matched
  by turn, cell, kind and prompt (or tool and arguments): nothing is paid twice;
- each replayed cell's output is compared with the recorded ``CellFinished.output``; a cell
  that prints something else stops the resume with a :class:`ResumeError` naming it.

The loop itself rebuilds the root conversation from those replies and outputs, and carries
on past the last recorded turn with new model calls. Requests of a cell that never finished
(the run stopped inside it) that have no recorded answer are served live.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async import events as ev
from rlm_async._exceptions import ResumeError
from rlm_async._tasks import run_cancel_safely
from rlm_async._types import RLMResult
from rlm_async.engine._completion import run_completion
from rlm_async.repl._protocol import LLMRequest, SubCallResult, ToolCallResult, ToolRequest

if TYPE_CHECKING:
    from rlm_async.engine._options import RLMOptions
    from rlm_async.engine._output_type import OutputSpec
    from rlm_async.engine._resources import EngineResources
    from rlm_async.engine._routes import ModelRoutes
    from rlm_async.engine._run_steps import RunSteps

__all__ = ["Replay", "load_replay", "resume_run"]

_Key = tuple[int, int]  # (turn, cell)


@dataclass
class _SubCall:
    started: ev.SubCallStarted
    finished: ev.SubCallFinished | None = None
    used: bool = False


@dataclass
class _ToolCall:
    started: ev.ToolCallStarted
    finished: ev.ToolCallFinished | None = None
    used: bool = False


@dataclass
class Replay:
    """What a trajectory recorded of its root run, handed out in order as the run replays."""

    path: str
    query: str
    context: str  # RunStarted.context: how the context was described
    replies: dict[int, ev.TurnFinished] = field(default_factory=dict)
    outputs: dict[_Key, str] = field(default_factory=dict)  # the cells that finished
    subcalls: dict[_Key, list[_SubCall]] = field(default_factory=dict)
    tools: dict[_Key, list[_ToolCall]] = field(default_factory=dict)
    compactions: dict[int, ev.Compacted] = field(default_factory=dict)  # by the turn after
    # The side record (``full_text`` lines): answers and results longer than their preview.
    full_texts: dict[tuple[str, str], str] = field(default_factory=dict)
    has_full_texts: bool = False  # the file was written with the side record
    context_kept: str | None = None  # its context is beside it (RLM(trajectory_context=True))
    answer: str | None = None  # the root run's RunFinished.answer: ``None``, it was cut
    typed: bool = False  # an answer was checked against an output_type (AnswerRejected...)
    replayed_turns: int = 0
    replayed_cells: int = 0
    replayed_calls: int = 0
    input_tokens: int = 0  # recorded usage of what was replayed (not paid again)
    output_tokens: int = 0
    cost_usd: float = 0.0

    # ---- the run's seams ----------------------------------------------------------------

    def check_context(self, described: str) -> None:
        """Refuse a context that is not the one the trajectory's run had."""
        if described != self.context:
            raise ResumeError(
                f"the context given is not the one recorded in {self.path}: the run had "
                f"{self.context!r}, this one is {described!r}"
            )

    def reply(self, turn: int) -> str | None:
        """The recorded reply of root turn ``turn``, counted as replayed; ``None``: none."""
        recorded = self.replies.get(turn)
        if recorded is None:
            return None
        self.replayed_turns += 1
        self._paid(recorded.input_tokens, recorded.output_tokens, recorded.cost_usd)
        return recorded.text

    def compaction(self, turn: int) -> ev.Compacted | None:
        """The compaction recorded before root turn ``turn`` (done again with its summary,
        no model call: counted as replayed), or ``None``."""
        recorded = self.compactions.get(turn)
        if recorded is not None:
            self._paid(recorded.input_tokens, recorded.output_tokens, recorded.cost_usd)
        return recorded

    def check_cell(self, turn: int, cell: int, output: str) -> None:
        """Stop when a replayed cell printed something other than its recorded output."""
        recorded = self.outputs.get((turn, cell))
        if recorded is None:
            return  # the run stopped inside this cell (or before it): nothing to compare
        self.replayed_cells += 1
        if output != recorded:
            raise ResumeError(
                f"turn {turn}, cell {cell} printed something other than its recorded output "
                f"in {self.path}, so the run cannot be resumed from it:\n"
                f"recorded: {recorded[:300]!r}\nreplayed: {output[:300]!r}"
            )

    def wrap(self, run: RunSteps, handlers: dict[str, Any]) -> dict[str, Any]:
        """The REPL's handlers, answering from the record first."""
        wrapped = dict(handlers)
        wrapped["subcall_handler"] = _ReplayedSubCalls(self, run, handlers["subcall_handler"])
        if "tool_handler" in handlers:
            wrapped["tool_handler"] = _ReplayedTools(self, run, handlers["tool_handler"])
        return wrapped

    def report(self) -> dict[str, Any]:
        """What ``result.metadata["resumed"]`` says: what was replayed, and what it had cost
        when it was recorded (not counted in ``result.usage``, which is this call's own)."""
        return {
            "path": self.path,
            "replayed_turns": self.replayed_turns,
            "replayed_cells": self.replayed_cells,
            "replayed_calls": self.replayed_calls,
            "replayed_usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cost_usd": round(self.cost_usd, 8),
            },
        }

    # ---- inside -------------------------------------------------------------------------

    def _paid(self, input_tokens: int, output_tokens: int, cost: float | None) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += cost or 0.0

    def _unmatched(self, turn: int, cell: int, what: str) -> None:
        """A request a finished cell did not make when it was recorded: refuse it."""
        if (turn, cell) in self.outputs:
            raise ResumeError(
                f"turn {turn}, cell {cell} made a request that is not in {self.path} ({what}); "
                "the replay went another way than the recorded run"
            )

    def _full(self, event: str, ident: str, text: str, run: RunSteps, what: str) -> str:
        """The whole text of a recorded preview, written again to this run's side record."""
        full = self.full_texts.get((event, ident))
        if full is None:
            # Without a side record, a preview as long as the cap may have been cut: a file
            # written before the side record existed resumes only when its previews were not.
            if not self.has_full_texts and len(text) >= run.preview:
                raise ResumeError(
                    f"{self.path} holds only the first {len(text)} characters of {what}; it "
                    "was written before trajectories kept long answers in full, so it can be "
                    "resumed only with trajectory_preview_chars larger than every sub-call "
                    "answer and tool result it recorded"
                )
            full = text
        run.shared.keep_full(event, ident, full, run.preview)  # resumable again
        return full


class _ReplayedSubCalls:
    """A run's sub-call handler: recorded answers first, the live server for the rest."""

    def __init__(self, replay: Replay, run: RunSteps, live: Any) -> None:
        self.replay, self.run, self.live = replay, run, live
        reserve = getattr(live, "reserve", None)
        if callable(reserve):  # replayed sub-calls carry their recorded ids: no live one gets one
            for calls in replay.subcalls.values():
                for call in calls:
                    reserve(call.started.subcall)

    def abandon(self, request_id: int) -> bool:
        return bool(self.live.abandon(request_id))

    async def __call__(self, request: LLMRequest) -> list[SubCallResult]:
        run, replay = self.run, self.replay
        turn, cell = run.turn.number, run.turn.cell
        results: list[SubCallResult | None] = [None] * len(request.prompts)
        for index, prompt in enumerate(request.prompts):
            if prompt and not prompt.isspace():  # empty ones: the server refuses them
                results[index] = self._recorded(turn, cell, request.kind, prompt)
        rest = [i for i, r in enumerate(results) if r is None]
        if any(request.prompts[i] and not request.prompts[i].isspace() for i in rest):
            replay._unmatched(turn, cell, f"a {request.kind}_query prompt")
        if rest:
            contexts = request.contexts
            live = await self.live(
                request.model_copy(
                    update={
                        "prompts": [request.prompts[i] for i in rest],
                        "contexts": None if contexts is None else [contexts[i] for i in rest],
                    }
                )
            )
            for index, result in zip(rest, live, strict=True):
                results[index] = result
        return [r for r in results if r is not None]

    def _recorded(self, turn: int, cell: int, kind: str, prompt: str) -> SubCallResult | None:
        for call in self.replay.subcalls.get((turn, cell), []):
            started, finished = call.started, call.finished
            if (
                call.used
                or finished is None
                or started.kind != kind
                or started.prompt_chars != len(prompt)
                or not prompt.startswith(started.prompt)
            ):
                continue
            call.used = True
            answer = self.replay._full(
                "subcall_finished",
                started.subcall,
                finished.answer,
                self.run,
                f"sub-call {started.subcall}",
            )
            self.replay.replayed_calls += 1
            self.replay._paid(finished.input_tokens, finished.output_tokens, finished.cost_usd)
            self.run.turn.prompt_chars.append(len(prompt))
            self.run.event(ev.SubCallStarted, **_fields(started))
            self.run.event(ev.SubCallFinished, **_fields(finished, replayed=True))
            if not finished.ok:
                return SubCallResult.failure(answer)
            return SubCallResult.answer(answer)
        return None


class _ReplayedTools:
    """A run's tool handler: recorded results first, the live tools for the rest."""

    def __init__(self, replay: Replay, run: RunSteps, live: Any) -> None:
        self.replay, self.run, self.live = replay, run, live
        reserve = getattr(live, "reserve", None)
        if callable(reserve):  # replayed calls carry their recorded ids: no live call gets one
            for calls in replay.tools.values():
                for call in calls:
                    reserve(call.started.call)

    async def __call__(self, request: ToolRequest) -> ToolCallResult:
        turn, cell = self.run.turn.number, self.run.turn.cell
        arguments = _json({"args": request.args, "kwargs": request.keywords})
        for call in self.replay.tools.get((turn, cell), []):
            started, finished = call.started, call.finished
            if call.used or finished is None or started.tool != request.name:
                continue
            if not arguments.startswith(started.arguments):
                continue
            call.used = True
            what = f"tool call {started.call} ({request.name})"
            text = self.replay._full(
                "tool_call_finished", started.call, finished.result, self.run, what
            )
            self.replay.replayed_calls += 1
            self.run.event(ev.ToolCallStarted, **_fields(started))
            self.run.event(ev.ToolCallFinished, **_fields(finished, replayed=True))
            if not finished.ok:
                return ToolCallResult.failure(text, error_type=finished.error_type or "ToolError")
            try:
                return ToolCallResult(ok=True, value=json.loads(text))
            except json.JSONDecodeError as exc:
                raise ResumeError(
                    f"{self.replay.path}, {what}: the recorded result is not JSON"
                ) from exc
        self.replay._unmatched(turn, cell, f"a call of {request.name}")
        result: ToolCallResult = await self.live(request)
        return result


async def recorded_context(replay: Replay, call: str = "rlm.resume(path, context=...)") -> Any:
    """The context kept beside ``replay``'s file (``RLM(trajectory_context=True)``), read in
    a worker thread (``call``: how to give it instead, for the error).

    Raises:
        ResumeError: it was not kept, or it is gone.
    """
    from rlm_async.engine._kept_context import kept_context_path, load_kept_context

    if replay.context_kept is None:
        raise ResumeError(
            f"{replay.path} does not hold its context (it was recorded without "
            f"RLM(trajectory_context=True)): give it again, {call}; "
            f"the run had {replay.context!r}"
        )
    try:
        return await anyio.to_thread.run_sync(load_kept_context, replay.path, replay.context_kept)
    except (OSError, ValueError) as exc:
        raise ResumeError(
            f"the context kept beside {replay.path} ({kept_context_path(replay.path)}) cannot "
            f"be read ({exc}): give it again, {call}"
        ) from exc


def _json(value: Any) -> str:
    """As ``_tool_calls`` previews arguments, uncut."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _fields(event: ev.Event, **changes: Any) -> dict[str, Any]:
    """A recorded event's own fields, for the same event in this run (a replayed call is
    free: no usage, no latency)."""
    fields = event.model_dump()
    for name in ("run_id", "depth", "seq", "t", "type"):
        fields.pop(name, None)
    if changes.get("replayed"):
        fields["latency"] = 0.0
        if "input_tokens" in fields:
            fields.update(input_tokens=0, output_tokens=0, cost_usd=None)
    fields.update(changes)
    return fields


def load_replay(path: str | os.PathLike[str]) -> Replay:
    """What ``path``'s root run recorded, ready to replay.

    Raises:
        ResumeError: no such file (or it cannot be read), or it holds no root run.
        TrajectoryError: not a trajectory file (or a malformed one).
    """
    from rlm_async.trajectory import read_trajectory

    if not Path(path).exists():
        raise ResumeError(
            f"no trajectory file {str(path)!r}: give the path of the run's .jsonl file "
            "(result.metadata['trajectory_path'] of the run, in its trajectory_dir)"
        )
    try:
        trajectory = read_trajectory(path)
    except OSError as exc:  # a directory, no permission, ...: not a file this can resume
        raise ResumeError(
            f"{str(path)!r} is not a trajectory file that can be read ({exc.strerror or exc}): "
            "give the path of the run's .jsonl file"
        ) from exc
    events = trajectory.events
    root = next(
        (e for e in events if isinstance(e, ev.RunStarted) and e.parent_run_id is None), None
    )
    if root is None:
        raise ResumeError(f"{path} holds no root run (no run_started event without a parent)")
    replay = Replay(
        path=str(Path(path)),
        query=root.query,
        context=root.context,
        full_texts=trajectory.full_texts,
        has_full_texts=trajectory.header.full_texts,
        context_kept=trajectory.header.context_kept,
    )
    subcalls: dict[str, _SubCall] = {}
    tools: dict[str, _ToolCall] = {}
    for event in events:
        if event.run_id != root.run_id:
            continue  # a sub-RLM's own events: its answer is its rlm_query's
        if isinstance(event, ev.TurnFinished):
            replay.replies[event.turn] = event
        elif isinstance(event, ev.RunFinished):
            replay.answer = event.answer
        elif isinstance(event, ev.CellFinished):
            replay.outputs[event.turn, event.cell] = event.output
        elif isinstance(event, ev.Compacted):
            replay.compactions[event.turn] = event
        elif isinstance(event, ev.AnswerRejected) or (
            isinstance(event, ev.FinalAnswer) and event.output is not None
        ):
            replay.typed = True
        elif isinstance(event, ev.SubCallStarted):
            subcalls[event.subcall] = _SubCall(event)
            replay.subcalls.setdefault((event.turn, event.cell), []).append(subcalls[event.subcall])
        elif isinstance(event, ev.SubCallFinished) and event.subcall in subcalls:
            subcalls[event.subcall].finished = event
        elif isinstance(event, ev.ToolCallStarted):
            tools[event.call] = _ToolCall(event)
            replay.tools.setdefault((event.turn, event.cell), []).append(tools[event.call])
        elif isinstance(event, ev.ToolCallFinished) and event.call in tools:
            tools[event.call].finished = event
    return replay


async def resume_run(
    options: RLMOptions,
    models: ModelRoutes,
    resources: EngineResources,
    path: str | os.PathLike[str],
    context: Any,
    emit: Callable[[ev.Event], None] | None,
    *,
    output: OutputSpec | None = None,
) -> RLMResult:
    """``RLM.resume``: replay ``path``'s root run over ``context``, then continue it
    (``output``: a typed run's ``output_type``)."""
    replay = await anyio.to_thread.run_sync(load_replay, path)
    if context is None:
        context = await recorded_context(replay)
    if replay.typed and output is None:
        # Untyped, a recorded answer that was rejected would end the run where it went on.
        raise ResumeError(
            f"{path} recorded a typed run (its answers were checked against an output_type): "
            "resume it with the same type, rlm.resume(path, context=..., output_type=...)"
        )

    async def run() -> RLMResult:
        await resources.open_tools()  # MCP servers: reached on first use
        result = await run_completion(
            options, models, resources, context, replay.query, emit, replay=replay, output=output
        )
        result.metadata["resumed"] = replay.report()
        return result

    # In a task of its own, like a completion (see RLM.completion).
    return await run_cancel_safely(run)
