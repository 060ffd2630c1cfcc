"""One RLM run: the loop of root turns, cells and sub-calls over one REPL.

A completion is a tree of runs: the root run, and (with ``max_depth > 1``) the sub-RLM
runs that ``rlm_query`` starts, each with its own REPL. Everything shared by the tree,
usage, the sub-call limiter, the event sequence, lives in :class:`CompletionState`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from rlm_async import events as ev
from rlm_async._exceptions import (
    BudgetExceeded,
    ProviderResponseError,
    RateLimitError,
)
from rlm_async._logging import get_logger
from rlm_async._text import cap_middle
from rlm_async._tokens import request_tokens
from rlm_async._types import Completion, Message, RLMResult, UsageSummary
from rlm_async.engine._budget import BudgetTracker
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._parsing import (
    FinalDirective,
    find_code_blocks,
    find_final,
    has_untagged_block,
    read_last_reply,
)
from rlm_async.engine._prepare import prepare
from rlm_async.engine._prompts import (
    build_system_prompt,
    final_turn_prompt,
    final_turn_retry_prompt,
    first_user_prompt,
    no_code_prompt,
    turn_feedback_prompt,
    unconfirmed_final_prompt,
)
from rlm_async.engine._resources import EngineResources
from rlm_async.engine._routes import ModelRoutes
from rlm_async.engine._subcalls import SubCallServer
from rlm_async.engine._turns import RepeatWatch, prose_note
from rlm_async.providers._base import CompletionRequest
from rlm_async.providers._retry import pacing
from rlm_async.providers._windows import output_chars_for, prompt_chars_for
from rlm_async.repl._context import PreparedContext

if TYPE_CHECKING:
    from rlm_async.providers import ResolvedModel
    from rlm_async.repl import ReplSession

__all__ = ["CompletionState", "run_rlm"]

_log = get_logger("rlm_async.engine")

# The result's trajectory keeps a run's events up to this many; past it, sub-call events
# (a cell can start 50,000 sub-calls: 100,000 events, +200 MiB and second-long garbage
# collections) are counted, not kept. Listeners and trajectory files still get them all.
MAX_KEPT_EVENTS = 20_000
_COUNTED_PAST_THE_CAP = (ev.SubCallStarted, ev.SubCallFinished, ev.ModelDelta)


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

    def cancel_reason(self) -> tuple[str, str]:
        """Why the runs are being cancelled, for their last event."""
        if self.deadline is not None and anyio.current_time() >= self.deadline:
            seconds = self.options.budget.max_seconds
            return "BudgetExceeded", f"the time budget of {seconds:g} s ran out"
        return "Cancelled", "the run was cancelled (by its caller, or the RLM was closed)"

    def __post_init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(self.options.max_concurrency)
        self.budget = BudgetTracker(self.options.budget, self.usage)
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


# Reading a reply costs ~2 µs a character in pure Python: past this size it runs in a worker
# thread, which hands the GIL back every few ms, so a 16 MB reply cannot stall the loop.
_OFF_LOOP_CHARS = 1 << 16
_T = TypeVar("_T")


async def _off_loop_if_large(read: Callable[[str], _T], text: str) -> _T:
    if len(text) < _OFF_LOOP_CHARS:
        return read(text)
    return await anyio.to_thread.run_sync(read, text)


@dataclass
class _Turn:
    number: int = 0
    cell: int = 0
    cell_started: float = 0.0  # anyio.current_time() when the current cell was sent
    prompt_chars: list[int] = field(default_factory=list)  # each sub-call prompt's length


async def run_rlm(
    shared: CompletionState,
    context: Any,
    query: str,
    *,
    depth: int = 0,
    parent_run_id: str | None = None,
    parent_subcall: str | None = None,
) -> RLMResult:
    """Run one RLM level to its final answer (the root, or a sub-RLM at ``depth``)."""
    prepared = context if isinstance(context, PreparedContext) else await prepare(context)
    run = _Run(shared, prepared, query, depth=depth, parent_run_id=parent_run_id)
    run.parent_subcall = parent_subcall
    return await run.run()


class _Run:
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
        self.prepared = prepared
        self.root: ResolvedModel = shared.models.for_depth(depth)
        self.sub: ResolvedModel = shared.models.sub_for_depth(depth)
        self.turn = _Turn()
        self.preview = self.options.trajectory_preview_chars

    @contextlib.asynccontextmanager
    async def _paced(
        self, target: ResolvedModel, request: CompletionRequest
    ) -> AsyncIterator[None]:
        """A provider call under the target's rate limiter, every attempt of it.

        The first attempt is paced here; an HTTP adapter's retries queue on the same
        limiter (handed to them per call through ``pacing``), so a per-model limit paces
        retries too and one Provider object shared by two ``RLM``s keeps each one's limits.
        """
        limiter = self.shared.resources.limiter_for(target)
        if limiter is None:
            yield
            return
        await limiter.acquire(request_tokens(request))
        try:
            with pacing(limiter):
                yield
        except RateLimitError as exc:
            limiter.backoff(exc.retry_after if exc.retry_after is not None else 1.0)
            raise
        limiter.succeeded()

    async def call_model(self, target: ResolvedModel, request: CompletionRequest) -> Completion:
        """One provider call, paced by the target's rate limiter when there is one."""
        if not self.shared.resources.rate_limiters:  # the common case: no context manager
            return await target.provider.complete(request)
        async with self._paced(target, request):
            return await target.provider.complete(request)
        raise AssertionError("unreachable")  # pragma: no cover  (mypy: the block returns)

    async def child_run(self, prepared: PreparedContext, prompt: str, subcall: str) -> RLMResult:
        """A sub-RLM: a run one level deeper in the same tree, with its own REPL."""
        return await run_rlm(
            self.shared,
            prepared,
            prompt,
            depth=self.depth + 1,
            parent_run_id=self.run_id,
            parent_subcall=subcall,
        )

    def event(self, cls: type[Any], **fields: Any) -> None:
        if cls is ev.FinalAnswer:
            self.answer_source = fields["source"]
        self.shared.event(cls, run_id=self.run_id, depth=self.depth, **fields)

    async def run(self) -> RLMResult:
        options = self.options
        resources = self.shared.resources
        started = time.perf_counter()
        self.event(
            ev.RunStarted,
            parent_run_id=self.parent_run_id,
            parent_subcall=self.parent_subcall,
            model=self.root.label,
            sub_model=self.sub.label,
            query=self.query,
            context=self.prepared.info.describe(),
            max_iterations=options.max_iterations,
            max_depth=options.max_depth,
        )
        if self.depth == 0:
            refusal = self.shared.budget.acquire_repl()
            if refusal is not None:
                raise BudgetExceeded(refusal, budget="max_live_repls")
        try:
            async with resources.repl_factory(
                self.prepared,
                options=options.repl,
                subcall_handler=SubCallServer(self),
                on_restart=self._on_restart,
                pool=resources.repl_pool,
                # Requests past this wait in the child's pipe, not as tasks in the parent.
                max_pending_subcalls=4 * options.max_concurrency,
            ) as repl:
                resources.track(repl)
                try:
                    if self.depth == 0:
                        self.shared.sandbox_report = repl.sandbox_report
                        self.shared.repl_warm = repl.warm
                    answer, iterations = await self._loop(repl)
                finally:
                    resources.untrack(repl)
        except BaseException as exc:
            # Every run ends with an event, cancelled ones too: a trajectory reader must
            # not be left with a run that just stops.
            if isinstance(exc, Exception):
                self.event(ev.RunFailed, error_type=type(exc).__name__, message=str(exc)[:2000])
            else:
                error_type, message = self.shared.cancel_reason()
                # A listener that raises here must not turn the cancellation into its error.
                with contextlib.suppress(Exception):
                    self.event(ev.RunFailed, error_type=error_type, message=message)
            raise
        finally:
            self.shared.budget.release_repl()
        elapsed = time.perf_counter() - started
        self.event(
            ev.RunFinished,
            answer=answer,
            iterations=iterations,
            elapsed=round(elapsed, 6),
            usage=self.shared.usage.model_dump() if self.depth == 0 else {},
        )
        metadata: dict[str, Any] = {"run_id": self.run_id, "answer_source": self.answer_source}
        if self.answer_truncated is not None:
            metadata["answer_truncated"] = self.answer_truncated
        return RLMResult(
            answer=answer,
            iterations=iterations,
            usage=self.shared.usage,
            elapsed=elapsed,
            trajectory=self.shared.trajectory if self.depth == 0 else [],
            metadata={**metadata, **self.shared.metadata()},
            finished=self.finished,
        )

    # ---- the loop -------------------------------------------------------------------

    async def _loop(self, repl: ReplSession) -> tuple[str, int]:
        opts = self.options
        sub_window = self.shared.resources.window_of(self.sub)
        system = build_system_prompt(
            self.prepared.info,
            max_iterations=opts.max_iterations,
            max_concurrency=opts.max_concurrency,
            depth=self.depth,
            max_depth=opts.max_depth,
            allowed_models=self.shared.models.allowed_names,
            sub_window=sub_window,
            sub_reply_tokens=opts.sub_call_max_tokens,
            cell_timeout=opts.repl.cell_timeout,
            output_chars=self.shared.output_chars,
        )
        info = self.prepared.info
        # The example chunk in a repeat note: what one sub-call reads, less its question.
        chunk = prompt_chars_for(sub_window.tokens, opts.sub_call_max_tokens) * 4 // 5
        watch = RepeatWatch(self.query, info, chunk_chars=chunk)
        messages: list[Message] = [
            Message(role="user", content=first_user_prompt(self.query, info))
        ]
        for number in range(1, opts.max_iterations + 1):
            self.turn = _Turn(number=number)
            reply = await self._root_turn(system, messages)
            messages.append(Message(role="assistant", content=reply.text))
            blocks = await _off_loop_if_large(find_code_blocks, reply.text)
            outputs: list[str] = []
            for code in blocks:
                result = await self._run_cell(repl, code)
                outputs.append(result[0])
                if result[1] is not None:
                    return self._finish(result[1], "code"), number
            directive = await _off_loop_if_large(find_final, reply.text)
            unconfirmed: str | None = None
            if directive is not None:
                if directive.kind == "answer" and not blocks:
                    return self._finish(directive.value, "text"), number
                if directive.kind == "answer":
                    # A literal written next to code, before its output was seen (rlms
                    # #127: models invent the output): one turn to confirm it.
                    unconfirmed = directive.value
                else:
                    output, value = await self._run_cell(repl, f"FINAL_VAR({directive.value!r})")
                    if value is not None:
                        return self._finish(value, "variable"), number
                    outputs.append(output)
            if not blocks and directive is None:
                if number < opts.max_iterations:  # else the final-turn prompt says what to do
                    untagged = await _off_loop_if_large(has_untagged_block, reply.text)
                    prompt = no_code_prompt(self.query, info, untagged=untagged)
                    messages.append(Message(role="user", content=prompt))
                continue
            messages.append(
                Message(
                    role="user",
                    content=(
                        unconfirmed_final_prompt(unconfirmed, last=number == opts.max_iterations)
                        if unconfirmed
                        else ""
                    )
                    + turn_feedback_prompt(
                        outputs,
                        turn=number + 1,
                        max_iterations=opts.max_iterations,
                        query=self.query,
                        note="\n".join(
                            note
                            for note in (
                                prose_note(blocks, outputs),
                                watch.note(number, blocks, outputs, self.turn.prompt_chars),
                            )
                            if note
                        ),
                    ),
                )
            )
        return await self._final_turn(repl, system, messages)

    async def _final_turn(
        self, repl: ReplSession, system: str, messages: list[Message]
    ) -> tuple[str, int]:
        """The last turn: no code runs, the reply is read for an answer in any form.

        A reply that is code with no answer (or names a variable the REPL lacks, or an
        expression that fails), or prose next to code, gets one more turn saying so; if
        that one has no answer either, the run ends with the first reply's prose when it
        had some (``"last_reply"``), else unfinished (``finished=False``, an empty answer,
        ``answer_source`` ``None``).
        """
        number = self.options.max_iterations + 1
        prompt = final_turn_prompt(self.query, max_iterations=self.options.max_iterations)
        kept: str | None = None  # prose written next to code, the answer if nothing better
        for attempt in range(2):
            self.turn = _Turn(number=number + attempt)
            if messages[-1].role == "user":
                # The last turn's output: one user message with it, not two in a row (some
                # chat templates reject or merge consecutive user messages).
                last = messages.pop()
                messages.append(Message(role="user", content=f"{last.content}\n\n{prompt}"))
            else:
                messages.append(Message(role="user", content=prompt))
            reply = await self._root_turn(system, messages, final_turn=True)
            reading = await _off_loop_if_large(read_last_reply, reply.text)
            if reading is not None and reading.beside_code and attempt == 0:
                # Prose next to code may be an answer or "Let me run some code.": ask once
                # more, and keep the prose as the answer if the next reply has none.
                kept = reading.directive.value
                why = "it was code, and no code runs now"
            elif reading is not None:
                answer, source, why = await self._read_directive(repl, reading.directive)
                if answer is not None:
                    return self._finish(answer, source or reading.source), number + attempt
            else:
                why = "it was code, with no answer"
            messages.append(Message(role="assistant", content=reply.text))
            prompt = final_turn_retry_prompt(self.query, why=why)
        if kept is not None:
            return self._finish(kept, "last_reply"), number + 1
        self.finished = False
        return "", number + 1

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
        self.event(ev.FinalAnswer, answer=answer, source=source)
        return answer

    async def _root_turn(
        self, system: str, messages: list[Message], *, final_turn: bool = False
    ) -> Completion:
        chars = len(system) + sum(len(m.content) for m in messages)
        self.shared.budget.check_root_turn(chars)
        self.event(ev.TurnStarted, turn=self.turn.number, final_turn=final_turn)
        started = time.perf_counter()
        request = CompletionRequest(
            model=self.root.model,
            messages=list(messages),
            system=system,
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
        )
        if self.shared.stream_text:
            completion = await self._stream_turn(request)
        else:
            completion = await self.call_model(self.root, request)
        self.shared.usage.record(self.root.label, completion.usage, depth=self.depth)
        if self.depth == 0:
            self.shared.root_turns = self.turn.number
            self.shared.last_root_reply = completion.text
        self.event(
            ev.TurnFinished,
            turn=self.turn.number,
            model=self.root.label,
            text=completion.text,
            input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens,
            cost_usd=completion.usage.cost_usd,
            latency=round(time.perf_counter() - started, 6),
        )
        self.check_budgets()
        return completion

    async def _stream_turn(self, request: CompletionRequest) -> Completion:
        completion: Completion | None = None
        async with self._paced(self.root, request):
            async for item in self.root.provider.stream(request):
                if isinstance(item, Completion):
                    completion = item
                elif item.text:
                    self.event(ev.ModelDelta, turn=self.turn.number, text=item.text)
        if completion is None:
            raise ProviderResponseError(
                "the stream ended without a final completion", provider=self.root.provider.name
            )
        return completion

    def check_budgets(self) -> None:
        """Warn near a budget, and end the run when one is spent."""
        for name, used, limit in self.shared.budget.warnings():
            self.event(ev.BudgetWarning, budget=name, used=used, limit=limit)
        self.shared.budget.check_spent()

    async def _run_cell(self, repl: ReplSession, code: str) -> tuple[str, str | None]:
        self.turn.cell += 1
        cell = self.turn.cell
        self.event(ev.CellStarted, turn=self.turn.number, cell=cell, code=code)
        self.turn.cell_started = anyio.current_time()  # before the REPL starts its clock
        result = await repl.execute(code)
        final, self._final_chars = result.final, result.final_chars
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
        return output, final

    def _on_restart(self, reason: str) -> None:
        self.shared.restarts += 1
        self.event(ev.ReplRestarted, reason=reason)
