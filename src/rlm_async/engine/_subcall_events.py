"""A sub-call's two events: ``SubCallStarted`` once it starts, ``SubCallFinished`` when it ends.

Who a sub-call is (:class:`SubCall`), its start announced once (:class:`SubCallStart`),
and the two events with what they count: the run's sub-calls and the turn's prompt sizes
as one starts, the full answer a resume reads back as one ends.
:class:`~rlm_async.engine._subcalls.SubCallServer` sends them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rlm_async import events as ev
from rlm_async._types import Completion
from rlm_async.engine._model_calls import usage_fields

if TYPE_CHECKING:
    from rlm_async.engine._run import _Run

__all__ = ["SubCall", "SubCallStart", "subcall_finished", "subcall_started"]


@dataclass(frozen=True)
class SubCall:
    """Who a sub-call is, for its events: its id, and the turn and cell that made it."""

    id: str
    turn: int
    cell: int
    kind: Literal["llm", "rlm"]
    request: int  # the REPL's request id


class SubCallStart:
    """A sub-call's start, announced once (``SubCallStarted``) when it takes a slot to be
    sent, or when the sub-call cache answers it or it starts waiting for an identical call
    in flight; calling it again gives the time it started."""

    def __init__(self, run: _Run, call: SubCall, model: str, prompt: str) -> None:
        self.run, self.call, self.model, self.prompt = run, call, model, prompt
        self.at: float | None = None

    def __call__(self) -> float:
        if self.at is None:
            self.at = subcall_started(self.run, self.call, self.model, self.prompt)
        return self.at


def subcall_started(run: _Run, call: SubCall, model: str, prompt: str) -> float:
    """Announce a sub-call's start (``SubCallStarted``); returns the time it started."""
    run.shared.subcalls += 1
    run.turn.prompt_chars.append(len(prompt))
    run.event(
        ev.SubCallStarted,
        subcall=call.id,
        turn=call.turn,
        cell=call.cell,
        kind=call.kind,
        model=model,
        prompt=prompt[: run.preview],
        prompt_chars=len(prompt),
    )
    return time.perf_counter()


def subcall_finished(
    run: _Run,
    call: SubCall,
    model: str,
    started: float,
    *,
    completion: Completion | None = None,
    error: BaseException | None = None,
    answer: str | None = None,
    cached: bool = False,
    structured: bool = False,
) -> None:
    """Announce a sub-call's end (``SubCallFinished``): its answer, or why it failed."""
    usage = completion.usage if completion is not None and not cached else None
    text = answer if answer is not None else (completion.text if completion else str(error))
    if run.depth == 0:  # what a resume answers from (a sub-RLM's calls are not replayed)
        run.shared.keep_full("subcall_finished", call.id, text, run.preview)
    run.event(
        ev.SubCallFinished,
        subcall=call.id,
        turn=call.turn,
        cell=call.cell,
        kind=call.kind,
        model=model,
        ok=error is None,
        answer=text[: run.preview],
        **usage_fields(usage),
        latency=round(time.perf_counter() - started, 6),
        cached=cached,
        structured=structured,
    )
