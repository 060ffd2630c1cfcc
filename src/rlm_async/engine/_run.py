"""One RLM run: the loop of root turns and cells over one REPL, from its start to its answer.

A completion is a tree of runs: the root run, and (with ``max_depth > 1``) the sub-RLM
runs that ``rlm_query`` starts, each with its own REPL. Everything shared by the tree,
usage, the sub-call limiter, the event sequence, lives in ``_state.CompletionState``; the
steps the loop takes (a root turn, a cell, the answer) are ``_run_steps.RunSteps``'.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from rlm_async import events as ev
from rlm_async._exceptions import BudgetExceeded
from rlm_async._types import Message, RLMResult
from rlm_async.engine._parsing import (
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
from rlm_async.engine._run_steps import RunSteps, Turn
from rlm_async.engine._subcalls import SubCallServer
from rlm_async.engine._tool_calls import tool_arguments, tools_description
from rlm_async.engine._turns import RepeatWatch, prose_note
from rlm_async.providers._windows import prompt_chars_for
from rlm_async.repl._context import PreparedContext

if TYPE_CHECKING:
    from rlm_async.engine._resources import ReplFactory
    from rlm_async.engine._resume import Replay
    from rlm_async.engine._state import CompletionState
    from rlm_async.repl import ReplSession

__all__ = ["run_rlm"]

# Reading a reply costs ~2 µs a character in pure Python: past this size it runs in a worker
# thread, which hands the GIL back every few ms, so a 16 MB reply cannot stall the loop.
_OFF_LOOP_CHARS = 1 << 16
_T = TypeVar("_T")


async def _off_loop_if_large(read: Callable[[str], _T], text: str) -> _T:
    if len(text) < _OFF_LOOP_CHARS:
        return read(text)
    return await anyio.to_thread.run_sync(read, text)


async def run_rlm(
    shared: CompletionState,
    context: Any,
    query: str,
    *,
    depth: int = 0,
    parent_run_id: str | None = None,
    parent_subcall: str | None = None,
    replay: Replay | None = None,
) -> RLMResult:
    """Run one RLM level to its final answer (the root, or a sub-RLM at ``depth``); a root
    run being resumed replays what ``replay`` recorded first."""
    prepared = context if isinstance(context, PreparedContext) else await prepare(context)
    run = _Run(shared, prepared, query, depth=depth, parent_run_id=parent_run_id)
    run.parent_subcall = parent_subcall
    run.replay = replay
    return await run.run()


class _Run(RunSteps):
    """A run from its start to its end: its REPL, its events, its loop of steps."""

    async def run(self) -> RLMResult:
        options = self.options
        resources = self.shared.resources
        started = time.perf_counter()
        if self.replay is not None:
            self.replay.check_context(self.prepared.info.describe())
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
            **self._session_fields(),
        )
        if self.depth == 0:
            refusal = self.shared.budget.acquire_repl()
            if refusal is not None:
                raise BudgetExceeded(refusal, budget="max_live_repls")
        handlers = {"subcall_handler": SubCallServer(self), **tool_arguments(self)}
        if self.replay is not None:
            handlers = self.replay.wrap(self, handlers)  # recorded answers first
        try:
            async with self._repl_factory()(
                self.prepared,
                options=options.repl,
                on_restart=self._on_restart,
                pool=resources.repl_pool,
                # Requests past this wait in the child's pipe, not as tasks in the parent.
                max_pending_subcalls=4 * options.max_concurrency,
                **handlers,
            ) as repl:
                resources.track(repl)
                try:
                    if self.depth == 0:
                        self.shared.sandbox_report = repl.sandbox_report
                        self.shared.repl_warm = repl.warm
                        if self.shared.context_keeper is not None:  # before any model code
                            await self.shared.context_keeper.keep(repl.context_path)
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
            output=self.output_value,
        )

    def _session_fields(self) -> dict[str, Any]:
        """``RunStarted``'s session and completion number, for a session's root run."""
        session = self.shared.session
        if session is None or self.depth != 0:
            return {}
        return {"session": session[0], "session_turn": session[1]}

    def _repl_factory(self) -> ReplFactory:
        """How the run gets its REPL: started for it (and closed after), or a session's,
        lent to the root run of each of its completions."""
        lent = self.shared.lent_repl
        if lent is not None and self.depth == 0:
            return lent
        return self.shared.resources.repl_factory

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
            tools=tools_description(self),
        )
        if self.output is not None:
            system += self.output.prompt()  # the answer's schema and how to give it
        info = self.prepared.info
        # The example chunk in a repeat note: what one sub-call reads, less its question.
        chunk = prompt_chars_for(sub_window.tokens, opts.sub_call_max_tokens) * 4 // 5
        watch = RepeatWatch(self.query, info, chunk_chars=chunk)
        note = self.shared.session_note if self.depth == 0 else ""
        messages: list[Message] = [
            Message(role="user", content=note + first_user_prompt(self.query, info))
        ]
        for number in range(1, opts.max_iterations + 1):
            self.turn = Turn(number=number)
            reply = await self._root_turn(system, messages)
            messages.append(Message(role="assistant", content=reply.text))
            blocks = await _off_loop_if_large(find_code_blocks, reply.text)
            outputs: list[str] = []
            for code in blocks:
                result = await self._run_cell(repl, code)
                outputs.append(result[0])
                if result[1] is not None:
                    rejected = await self._rejected(result[1], "code", final_turn=False)
                    if rejected is None:
                        return self._finish(result[1], "code"), number
                    outputs[-1] += f"\n\n{rejected}"  # a typed answer that did not match
                    break
            directive = await _off_loop_if_large(find_final, reply.text)
            unconfirmed: str | None = None
            if directive is not None:
                if directive.kind == "answer" and not blocks:
                    rejected = await self._rejected(directive.value, "text", final_turn=False)
                    if rejected is None:
                        return self._finish(directive.value, "text"), number
                    outputs.append(rejected)
                elif directive.kind == "answer":
                    # A literal written next to code, before its output was seen (rlms
                    # #127: models invent the output): one turn to confirm it.
                    unconfirmed = directive.value
                else:
                    output, value = await self._run_cell(repl, f"FINAL_VAR({directive.value!r})")
                    if value is not None:
                        rejected = await self._rejected(value, "variable", final_turn=False)
                        if rejected is None:
                            return self._finish(value, "variable"), number
                        output += f"\n\n{rejected}"
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
        attempt, attempts = 0, 2
        while attempt < attempts:  # more than 2 only for typed answers that did not match
            self.turn = Turn(number=number + attempt)
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
                    source = source or reading.source
                    rejected = await self._rejected(answer, source, final_turn=True)
                    if rejected is None:
                        return self._finish(answer, source), number + attempt
                    messages.append(Message(role="assistant", content=reply.text))
                    prompt, attempts, attempt = rejected, attempt + 2, attempt + 1
                    continue  # output_retries bounds these extra turns
            else:
                why = "it was code, with no answer"
            messages.append(Message(role="assistant", content=reply.text))
            prompt = final_turn_retry_prompt(self.query, why=why)
            attempt += 1
        if kept is not None:
            await self._rejected(kept, "last_reply", final_turn=True, last=True)
            return self._finish(kept, "last_reply"), number + attempt - 1
        self.finished = False
        return "", number + attempt - 1
