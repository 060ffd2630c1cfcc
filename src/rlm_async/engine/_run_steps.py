"""The steps of one RLM run, each announced by its events: a root turn, a cell, the answer.

:class:`RunSteps` holds what one run is (its id, depth, models and the turn it is on) and
takes one step at a time: a root turn (one model call, streamed or whole, under the
budgets), a cell run in the REPL (its output capped, its ``FINAL`` checked), and the answer
that ends the run. The loop that strings the steps together, and the REPL they run in, are
``_run._Run``'s.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async import events as ev
from rlm_async._exceptions import OutputValidationError
from rlm_async._text import cap_middle
from rlm_async._tokens import request_chars
from rlm_async._types import Completion, Message
from rlm_async.engine._compaction import Compactor
from rlm_async.engine._model_calls import call_model, stream_model, usage_fields
from rlm_async.engine._parsing import FinalDirective
from rlm_async.providers._base import CompletionRequest

if TYPE_CHECKING:
    from rlm_async.engine._output_type import OutputSpec
    from rlm_async.engine._resume import Replay
    from rlm_async.engine._state import CompletionState
    from rlm_async.providers import ResolvedModel
    from rlm_async.repl import ReplSession
    from rlm_async.repl._context import PreparedContext

__all__ = ["RunSteps", "Turn"]


@dataclass
class Turn:
    """Where a run is: its turn, the cell of that turn, and the turn's sub-call prompts."""

    number: int = 0
    cell: int = 0
    cell_started: float = 0.0  # anyio.current_time() when the current cell was sent
    prompt_chars: list[int] = field(default_factory=list)  # each sub-call prompt's length


class RunSteps:
    """One run's state and its steps (the loop over them is the subclass's)."""

    def __init__(
        self,
        shared: CompletionState,
        prepared: PreparedContext,
        query: str,
        *,
        depth: int,
        parent_run_id: str | None,
    ) -> None:
        self.shared = shared
        self.options = shared.options
        self.query = query
        self.depth = depth
        self.parent_run_id = parent_run_id
        self.parent_subcall: str | None = None
        self.run_id = uuid.uuid4().hex[:12]
        self.answer_source: str | None = None  # how the run ended: FinalAnswer.source
        self.finished = True  # False: the last turn gave no answer (see _final_turn)
        self.answer_truncated: dict[str, int] | None = None
        self._final_chars: int | None = None  # the last cell's answer length before the cap
        self._final_json = False  # the last cell's answer is the JSON of a dict or list
        # A typed answer (output_type): the root run's only; sub-RLMs answer in text.
        self.output: OutputSpec | None = shared.output if depth == 0 else None
        self.output_value: Any = None  # the validated answer
        self.output_json: Any = None  # ... as JSON values (for FinalAnswer)
        self._output_failures = 0
        self.prepared = prepared
        self.root: ResolvedModel = shared.models.for_depth(depth)
        self.sub: ResolvedModel = shared.models.sub_for_depth(depth)
        self.turn = Turn()
        self.preview = self.options.trajectory_preview_chars
        self.replay: Replay | None = None  # a resumed root run: what its trajectory recorded
        self.compactor = Compactor(self)  # folds the root conversation when it outgrows

    def event(self, cls: type[Any], **fields: Any) -> None:
        if cls is ev.FinalAnswer:
            self.answer_source = fields["source"]
        self.shared.event(cls, run_id=self.run_id, depth=self.depth, **fields)

    async def call_model(self, target: ResolvedModel, request: CompletionRequest) -> Completion:
        """One provider call, paced by the target's rate limiter when there is one."""
        return await call_model(self.shared.resources, target, request)

    def check_budgets(self) -> None:
        """Warn near a budget, and end the run when one is spent."""
        for name, used, limit in self.shared.budget.warnings():
            self.event(ev.BudgetWarning, budget=name, used=used, limit=limit)
        self.shared.budget.check_spent()

    # ---- a root turn -------------------------------------------------------------------

    async def _root_turn(
        self, system: str, messages: list[Message], *, final_turn: bool = False
    ) -> Completion:
        await self.compactor.before_turn(system, messages)  # may fold earlier turns
        request = CompletionRequest(
            model=self.root.model,
            messages=list(messages),
            system=system,
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
            cache_key=self.run_id,  # each turn's prompt is the next one's prefix: cache it
        )
        self.shared.budget.check_root_turn(request_chars(request))
        self.event(ev.TurnStarted, turn=self.turn.number, final_turn=final_turn)
        started = time.perf_counter()
        recorded = self.replay.reply(self.turn.number) if self.replay is not None else None
        if recorded is not None:  # resumed: the recorded reply, not paid again
            completion = Completion(text=recorded, model=self.root.model, provider="replay")
        elif self.shared.stream_text:
            completion = await stream_model(
                self.shared.resources, self.root, request, on_text=self._delta
            )
        else:
            completion = await self.call_model(self.root, request)
        if recorded is None:
            self.shared.usage.record(self.root.label, completion.usage, depth=self.depth)
        if self.depth == 0:
            self.shared.root_turns = self.turn.number
            self.shared.last_root_reply = completion.text
        self.event(
            ev.TurnFinished,
            turn=self.turn.number,
            model=self.root.label,
            text=completion.text,
            **usage_fields(completion.usage),
            latency=round(time.perf_counter() - started, 6),
            replayed=recorded is not None,
        )
        self.check_budgets()
        return completion

    def _delta(self, text: str) -> None:
        self.event(ev.ModelDelta, turn=self.turn.number, text=text)

    # ---- a cell --------------------------------------------------------------------------

    async def _run_cell(self, repl: ReplSession, code: str) -> tuple[str, str | None]:
        self.turn.cell += 1
        cell = self.turn.cell
        self.event(ev.CellStarted, turn=self.turn.number, cell=cell, code=code)
        self.turn.cell_started = anyio.current_time()  # before the REPL starts its clock
        result = await repl.execute(code)
        final, self._final_chars = result.final, result.final_chars
        self._final_json = result.final_json
        limit = self.options.repl.max_answer_chars
        if final is not None and len(final) > limit + 100:  # not capped by our child: forged
            final, self._final_chars = cap_middle(final, limit), len(final)
        output = cap_middle(result.render(), self.shared.output_chars)
        self.event(
            ev.CellFinished,
            turn=self.turn.number,
            cell=cell,
            output=output,
            error=result.error is not None,
            final=final,
            duration=round(result.duration, 6),
            timed_out=result.timed_out,
            restarted=result.restarted,
        )
        if self.replay is not None:
            self.replay.check_cell(self.turn.number, cell, output)
        return output, final

    def _on_restart(self, reason: str) -> None:
        self.shared.restarts += 1
        self.event(ev.ReplRestarted, reason=reason)

    # ---- the answer ----------------------------------------------------------------------

    async def _read_directive(
        self, repl: ReplSession, directive: FinalDirective
    ) -> tuple[str | None, str | None, str]:
        """The answer a last-turn directive gives, its source when the REPL gave it, and
        why there is none.

        A fenced ``FINAL(expression)`` is evaluated as the one-line cell
        ``FINAL(expression)``: the model meant that value, and the REPL's own ``FINAL``
        gives it (source ``"code"``). Nothing else of the reply runs.
        """
        if directive.kind == "answer":
            return directive.value, None, ""
        if directive.kind == "expression":
            output, value = await self._run_cell(repl, f"FINAL({directive.value})")
            if value is not None:
                return value, "code", ""
            return None, None, f"FINAL({directive.value}) did not give a value: {output[:500]}"
        _, value = await self._run_cell(repl, f"FINAL_VAR({directive.value!r})")
        if value is not None:
            return value, "variable", ""
        return directive.fallback, None, f"the REPL has no variable named {directive.value!r}"

    async def _rejected(
        self, answer: str, source: str, *, final_turn: bool, last: bool = False
    ) -> str | None:
        """With an ``output_type``: ``None`` when ``answer`` validates (its value is kept),
        else what the model is told about it, for another turn.

        Raises:
            OutputValidationError: no retry is left (``output_retries``), or no turn
                (``last``).
        """
        if self.output is None:
            return None
        crossed_as_json = source in ("code", "variable") and self._final_json
        checked = await self.output.acheck(answer, crossed_as_json=crossed_as_json)
        if checked.ok:
            self.output_value, self.output_json = checked.value, checked.dumped
            return None
        self._output_failures += 1
        left = 0 if last else max(self.options.output_retries - self._output_failures + 1, 0)
        self.event(
            ev.AnswerRejected,
            turn=self.turn.number,
            answer=cap_middle(answer, self.preview),
            errors=checked.errors[:50],
            retries_left=left,
        )
        if left == 0:
            raise OutputValidationError(
                f"the answer did not match {self.output.name} "
                f"({self._output_failures} attempt(s)):\n{checked.describe()}\n"
                "The last attempt and its errors are in .last_attempt and .errors; raise "
                "output_retries, or make the type easier to fill (optional fields, looser "
                "types).",
                last_attempt=answer,
                errors=checked.errors,
                partial=self.shared.partial_result(),
            )
        return self.output.feedback(checked, left=left, final_turn=final_turn)

    def _finish(self, answer: str, source: str) -> str:
        """The run's answer, capped at ``max_answer_chars``, announced as ``FinalAnswer``.

        The child caps answers from code before sending them (and says how long they
        were); answers from text are capped here. A cap is reported in the result.
        """
        limit = self.options.repl.max_answer_chars
        original = len(answer)
        if source in ("code", "variable") and self._final_chars is not None:
            original = self._final_chars  # capped by the child (or _run_cell) already
        elif original > limit:
            answer = cap_middle(answer, limit)
        if original > limit:
            self.answer_truncated = {"original_chars": original, "max_answer_chars": limit}
        output = None if self.output is None else self.output_json
        self.event(ev.FinalAnswer, answer=answer, source=source, output=output)
        return answer
