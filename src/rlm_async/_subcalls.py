"""Serving a run's sub-calls: every prompt of an ``llm_query_batched`` concurrently.

The REPL sends one request per batch; this fans its prompts out to at most
``max_concurrency`` workers, each call under the completion's shared limiter, checks the
budget before anything is sent, records each call's usage from its own response, and answers
in order. ``rlm_query`` with a context below the last depth starts a sub-RLM (a run one level
deeper, with its own REPL) instead.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from rlm_async import events as ev
from rlm_async._budget import estimate_tokens
from rlm_async._exceptions import (
    AuthenticationError,
    BudgetExceeded,
    ConfigurationError,
    ContextTypeError,
    NotFoundError,
    ProviderError,
    RLMError,
)
from rlm_async._types import Completion, Message
from rlm_async.providers._base import CompletionRequest
from rlm_async.repl._protocol import LLMRequest

if TYPE_CHECKING:
    from rlm_async._run import _Run
    from rlm_async.providers import ResolvedModel

__all__ = ["FATAL_SUBCALL_ERRORS", "SubCallServer"]

# Errors that will fail every sub-call the same way: end the run instead of feeding the
# model hundreds of identical error strings. A spent budget ends the run too.
FATAL_SUBCALL_ERRORS = (AuthenticationError, NotFoundError, ConfigurationError, BudgetExceeded)


@dataclass(frozen=True)
class _SubCall:
    """Who a sub-call is, for its events: its id, and the turn and cell that made it."""

    id: str
    turn: int
    cell: int
    kind: Literal["llm", "rlm"]


class SubCallServer:
    """Serves the sub-call requests of one run's REPL (its ``subcall_handler``)."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    async def serve(self, request: LLMRequest) -> list[dict[str, Any]]:
        """Answer one request from the REPL: every prompt concurrently, order kept."""
        turn, cell = self.run.turn.number, self.run.turn.cell
        count = len(request.prompts)
        recursive = request.kind == "rlm" and self.run.depth + 1 < self.run.rlm.max_depth
        try:
            target = (
                self.run.sub
                if request.model is None
                else self.run.rlm._allowed_model(request.model)
            )
        except ConfigurationError as exc:
            return [{"ok": False, "error": str(exc)}] * count
        if request.contexts is not None and len(request.contexts) != count:
            error = "one context per prompt is needed (or none)"
            return [{"ok": False, "error": error}] * count
        output_reserve = self.run.rlm.sub_max_tokens or 0
        refusal = self.run.tree.budget.refuse_batch(
            [len(p) for p in request.prompts], output_reserve
        )
        if refusal is not None:
            return [{"ok": False, "error": refusal}] * count
        results: list[dict[str, Any]] = [{"ok": False, "error": "not run"}] * count
        fatal: list[BaseException] = []
        # One shared queue of prompts and only as many workers as can be in flight: a task
        # per prompt would cost ~20 µs each to spawn before the first request could leave
        # (200 ms for a batch of 10,000), and a queue of tasks parked on the limiter.
        todo = iter(enumerate(request.prompts))
        unsettled = [estimate_tokens(len(p)) + output_reserve for p in request.prompts]

        async def worker() -> None:
            for index, prompt in todo:
                context = request.contexts[index] if request.contexts else None
                call = _SubCall(f"{self.run.run_id}.{request.id}.{index}", turn, cell, request.kind)
                try:
                    if recursive and context is not None:
                        results[index] = await self._sub_rlm(call, prompt, context)
                    else:
                        results[index] = await self._sub_llm(call, target, prompt)
                except Exception as exc:
                    # A bad key, a spent budget, or a bug in a user's Provider: end the run
                    # with that error itself, not an ExceptionGroup around it.
                    fatal.append(exc)
                    tg.cancel_scope.cancel()
                finally:
                    self.run.tree.budget.settle(unsettled[index])
                    unsettled[index] = 0

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(min(count, self.run.rlm.max_concurrency)):
                    tg.start_soon(worker)
        finally:
            # Prompts never started (the batch was cancelled) give their reservation back.
            self.run.tree.budget.settle(sum(unsettled))
        if fatal:
            raise fatal[0]
        return results

    async def _sub_llm(self, call: _SubCall, target: ResolvedModel, prompt: str) -> dict[str, Any]:
        async with self.run.tree.limiter:
            started = self._subcall_started(call, target.label, prompt)
            request = CompletionRequest(
                model=target.model,
                messages=[Message(role="user", content=prompt)],
                max_tokens=self.run.rlm.sub_max_tokens,
            )
            try:
                completion = await self.run.call_model(target, request)
            except ProviderError as exc:
                self._subcall_finished(call, target.label, started, error=exc)
                if isinstance(exc, FATAL_SUBCALL_ERRORS):
                    raise
                return {"ok": False, "error": str(exc)}
            except BaseException as exc:  # cancelled, or a bug in a user's provider
                with contextlib.suppress(Exception):  # a raising listener must not mask it
                    self._subcall_finished(call, target.label, started, error=self._ended_by(exc))
                raise
            self.run.tree.usage.record(target.label, completion.usage, depth=self.run.depth + 1)
            self._subcall_finished(call, target.label, started, completion=completion)
            self.run.after_usage()
            return {"ok": True, "text": completion.text}

    async def _sub_rlm(self, call: _SubCall, prompt: str, context: Any) -> dict[str, Any]:
        """A full RLM one level deeper, with its own REPL holding ``context``."""
        from rlm_async._run import prepare, run_rlm  # a sub-RLM is a run one level deeper

        try:
            # Model code chose this context: one the REPL cannot hold is its error to read,
            # not the end of the completion.
            prepared = await prepare(context)
        except ContextTypeError as exc:
            return {"ok": False, "error": f"rlm_query: {exc}"}
        refusal = self.run.tree.budget.acquire_repl()
        if refusal is not None:
            return {"ok": False, "error": refusal}
        label = self.run.rlm._model_for_depth(self.run.depth + 1).label
        started = self._subcall_started(call, label, prompt)
        try:
            result = await run_rlm(
                self.run.tree,
                prepared,
                prompt,
                depth=self.run.depth + 1,
                parent_run_id=self.run.run_id,
                parent_subcall=call.id,
            )
        except RLMError as exc:
            self._subcall_finished(call, label, started, error=exc)
            if isinstance(exc, FATAL_SUBCALL_ERRORS):
                raise
            return {"ok": False, "error": str(exc)}
        except BaseException as exc:
            with contextlib.suppress(Exception):  # a raising listener must not mask it
                self._subcall_finished(call, label, started, error=self._ended_by(exc))
            raise
        self._subcall_finished(call, label, started, answer=result.answer)
        return {"ok": True, "text": result.answer}

    def _subcall_started(self, call: _SubCall, model: str, prompt: str) -> float:
        self.run.tree.subcalls += 1
        self.run.event(
            ev.SubCallStarted,
            subcall=call.id,
            turn=call.turn,
            cell=call.cell,
            kind=call.kind,
            model=model,
            prompt=prompt[: self.run.preview],
            prompt_chars=len(prompt),
        )
        return time.perf_counter()

    def _ended_by(self, exc: BaseException) -> BaseException:
        """What a sub-call's finished event says when it did not get to finish."""
        if isinstance(exc, Exception):
            return exc
        return RuntimeError(self.run.tree.cancel_reason()[1])

    def _subcall_finished(
        self,
        call: _SubCall,
        model: str,
        started: float,
        *,
        completion: Completion | None = None,
        error: BaseException | None = None,
        answer: str | None = None,
    ) -> None:
        usage = completion.usage if completion is not None else None
        text = answer if answer is not None else (completion.text if completion else str(error))
        self.run.event(
            ev.SubCallFinished,
            subcall=call.id,
            turn=call.turn,
            cell=call.cell,
            kind=call.kind,
            model=model,
            ok=error is None,
            answer=text[: self.run.preview],
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cost_usd=usage.cost_usd if usage else None,
            latency=round(time.perf_counter() - started, 6),
        )
