"""Serving a run's sub-calls: every prompt of an ``llm_query_batched`` concurrently.

The REPL sends one request per batch; this fans its prompts out to at most
``max_concurrency`` workers, each call sent to a provider under the completion's shared
limiter (one the sub-call cache answers takes no slot), checks the budget before anything
is sent, records each call's usage from its own response, and answers in order.
``rlm_query`` with a context below the last depth starts a sub-RLM (a run one level
deeper, with its own REPL) instead.

An empty (or whitespace) prompt is never sent: it is an error item for the model's code
(a small model sent 27 of them, each 20-130 s of a provider's time for nothing).

A batch the REPL gives up on (its cell ran past the time limit, or its code stopped
waiting) is stopped by :meth:`SubCallServer.abandon`, not cancelled from outside: the
answers that finished are sent back with an error item for each prompt that did not, and
the REPL keeps them for the model (21 of 39 answers were once lost this way, and the model
asked for all 39 again). The calls stopped are recorded as timed out, not as a cancelled
run.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async._exceptions import (
    AuthenticationError,
    BudgetExceeded,
    ConfigurationError,
    ContextTypeError,
    NotFoundError,
    ProviderError,
    RLMError,
)
from rlm_async._tokens import estimate_tokens
from rlm_async._types import Completion, Message
from rlm_async.engine._prepare import prepare
from rlm_async.engine._structured import StructuredReply, ask_structured, check_schema
from rlm_async.engine._subcall_events import (
    SubCall,
    SubCallStart,
    subcall_finished,
    subcall_started,
)
from rlm_async.providers._base import CompletionRequest
from rlm_async.repl._protocol import LLMRequest, SubCallResult

if TYPE_CHECKING:
    from rlm_async.engine._run import _Run
    from rlm_async.providers import ResolvedModel

__all__ = ["EMPTY_PROMPT", "FATAL_SUBCALL_ERRORS", "SubCallServer", "prompt_too_big"]

# Errors that will fail every sub-call the same way: end the run instead of feeding the
# model hundreds of identical error strings. A spent budget ends the run too.
FATAL_SUBCALL_ERRORS = (AuthenticationError, NotFoundError, ConfigurationError, BudgetExceeded)

#: The error item for an empty prompt (the model's code reads it as "Error: ...").
EMPTY_PROMPT = (
    "the prompt is empty, so nothing was sent; put the question and the text to read in it"
)


def prompt_too_big(tokens: int, model: str, window: int) -> str:
    """The error item for a prompt over its model's window (model code reads "Error: ...")."""
    return f"prompt of {tokens} tokens exceeds {model}'s window of {window}; split it"


# A prompt not answered (yet): compared by identity.
_NOT_RUN = SubCallResult.failure("not run")


class SubCallServer:
    """Serves the sub-call requests of one run's REPL (its ``subcall_handler``)."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self._batches: dict[int, anyio.CancelScope] = {}  # request id -> its batch's scope
        self._abandoned: set[int] = set()
        self._numbers = itertools.count(1)
        self._taken: set[str] = set()

    def reserve(self, subcall: str) -> None:
        """Keep a sub-call id's request prefix from being given to a live request (a resumed
        run's replayed sub-call carries its recorded id)."""
        self._taken.add(subcall.rpartition(".")[0])

    def _new_prefix(self) -> str:
        # Numbered here, per run, never by the request's id: the child chooses that one, and
        # a repeated id would merge sub-calls in the trajectory tree and in a resume's replay.
        while True:
            prefix = f"{self.run.run_id}.{next(self._numbers)}"
            if prefix not in self._taken:
                self._taken.add(prefix)
                return prefix

    async def __call__(self, request: LLMRequest) -> list[SubCallResult]:
        return await self.serve(request)

    def abandon(self, request_id: int) -> bool:
        """Stop a request the REPL gave up on; it answers with what finished.

        Returns:
            ``True`` when the request is being served here (it will answer, with an error
            item for each prompt that did not finish); ``False`` when it is not.
        """
        scope = self._batches.get(request_id)
        if scope is None:
            return False
        self._abandoned.add(request_id)
        scope.cancel()
        return True

    def _abandon_reason(self) -> str:
        """Why the calls of an abandoned request did not finish."""
        limit = self.run.options.repl.cell_timeout
        if anyio.current_time() >= self.run.turn.cell_started + limit:
            return f"timed out: the cell ran past its {limit:g} s limit before this answer came"
        return "abandoned: the cell stopped waiting for this answer"

    async def serve(self, request: LLMRequest) -> list[SubCallResult]:
        """Answer one request from the REPL: every prompt concurrently, order kept."""
        turn, cell = self.run.turn.number, self.run.turn.cell
        prefix = self._new_prefix()
        count = len(request.prompts)
        recursive = request.kind == "rlm" and self.run.depth + 1 < self.run.options.max_depth
        try:
            target = (
                self.run.sub
                if request.model is None
                else self.run.shared.models.allowed_model(request.model)
            )
        except ConfigurationError as exc:
            return [SubCallResult.failure(str(exc))] * count
        if request.contexts is not None and len(request.contexts) != count:
            error = "one context per prompt is needed (or none)"
            return [SubCallResult.failure(error)] * count
        schema = request.response_schema
        if schema is not None:
            # In a thread: jsonschema checks a schema at ~0.2 ms a property (model code may
            # build thousands); once per request, so the hop costs less than the check.
            bad_schema = await anyio.to_thread.run_sync(check_schema, schema)
            if bad_schema is not None:
                return [SubCallResult.failure(bad_schema)] * count  # nothing sent
        results: list[SubCallResult] = [_NOT_RUN] * count
        sent: list[int] = []  # the prompts to send: not the empty ones
        for index, prompt in enumerate(request.prompts):
            # Not ``prompt.strip()``: that copies each prompt ending in a newline (40 MB for
            # a big batch) to find out whether there is text in it.
            if not prompt or prompt.isspace():
                results[index] = SubCallResult.failure(EMPTY_PROMPT)
            elif (too_big := self._over_window(request, index, target, recursive)) is not None:
                results[index] = SubCallResult.failure(too_big)
            else:
                sent.append(index)
        if not sent:
            return results
        output_reserve = self.run.options.sub_call_max_tokens or 0
        refusal = self.run.shared.budget.refuse_batch(
            [len(request.prompts[i]) for i in sent], output_reserve
        )
        if refusal is not None:
            return [SubCallResult.failure(refusal) if r is _NOT_RUN else r for r in results]
        fatal: list[BaseException] = []
        # One shared queue of prompts and only as many workers as can be in flight: a task
        # per prompt would cost ~20 µs each to spawn before the first request could leave
        # (200 ms for a batch of 10,000), and a queue of tasks parked on the limiter.
        todo = ((i, request.prompts[i]) for i in sent)
        unsettled = [estimate_tokens(len(p)) + output_reserve for p in request.prompts]
        for index in range(count):
            if results[index] is not _NOT_RUN:
                unsettled[index] = 0

        async def worker() -> None:
            for index, prompt in todo:
                context = request.contexts[index] if request.contexts else None
                call = SubCall(f"{prefix}.{index}", turn, cell, request.kind, request.id)
                try:
                    if recursive and context is not None:
                        results[index] = await self._sub_rlm(call, prompt, context)
                    else:
                        results[index] = await self._sub_llm(call, target, prompt, schema)
                except Exception as exc:
                    # A bad key, a spent budget, or a bug in a user's Provider: end the run
                    # with that error itself, not an ExceptionGroup around it.
                    fatal.append(exc)
                    tg.cancel_scope.cancel()
                finally:
                    self.run.shared.budget.settle(unsettled[index])
                    unsettled[index] = 0

        try:
            # Its own scope, so that abandon() stops the batch and it still answers.
            with anyio.CancelScope() as batch:
                self._batches[request.id] = batch
                async with anyio.create_task_group() as tg:
                    for _ in range(min(len(sent), self.run.options.max_concurrency)):
                        tg.start_soon(worker)
        finally:
            self._batches.pop(request.id, None)
            self._abandoned.discard(request.id)
            # Prompts never started (the batch was cancelled) give their reservation back.
            self.run.shared.budget.settle(sum(unsettled))
        if fatal:
            raise fatal[0]
        if batch.cancelled_caught:
            stopped = SubCallResult.failure(self._abandon_reason(), unfinished=True)
            return [stopped if r is _NOT_RUN else r for r in results]
        return results

    def _over_window(
        self, request: LLMRequest, index: int, target: ResolvedModel, recursive: bool
    ) -> str | None:
        """Why a prompt is refused unsent: more tokens than its model's known window.

        A window only assumed (a model not in the table) refuses nothing: the guess is small
        on purpose and would refuse prompts the model reads. A prompt that goes to a sub-RLM
        (``rlm_query`` with a context) is not read by a sub-model at once: not checked.
        """
        if recursive and request.contexts is not None and request.contexts[index] is not None:
            return None
        window = self.run.shared.resources.window_of(target)
        tokens = estimate_tokens(len(request.prompts[index]))
        if not window.known or tokens <= window.tokens:
            return None
        return prompt_too_big(tokens, target.label, window.tokens)

    async def _sub_llm(
        self,
        call: SubCall,
        target: ResolvedModel,
        prompt: str,
        schema: dict[str, Any] | None = None,
    ) -> SubCallResult:
        start = SubCallStart(self.run, call, target.label, prompt)
        request = CompletionRequest(
            model=target.model,
            messages=[Message(role="user", content=prompt)],
            max_tokens=self.run.options.sub_call_max_tokens,
            temperature=self.run.options.sub_call_temperature,
            response_schema=schema,
        )
        structured: StructuredReply | None = None
        try:
            if schema is None:
                completion, cached = await self._answer(target, request, start)
            else:  # checked against the schema, asked once more when it does not match
                structured = await ask_structured(
                    request,
                    lambda retry: self._answer(target, retry, start),
                    lambda completion, cached: self._paid(target, completion, cached),
                )
        except ProviderError as exc:
            subcall_finished(self.run, call, target.label, start(), error=exc)
            if isinstance(exc, FATAL_SUBCALL_ERRORS):
                raise
            return SubCallResult.failure(str(exc))
        except BaseException as exc:  # cancelled, or a bug in a user's provider
            if start.at is not None:  # not while it waited for a slot: it had not started
                with contextlib.suppress(Exception):  # a raising listener must not mask it
                    subcall_finished(
                        self.run, call, target.label, start.at, error=self._ended_by(exc, call)
                    )
            raise
        if structured is not None:
            return self._structured_finished(call, target.label, start(), structured)
        self._paid(target, completion, cached)
        subcall_finished(
            self.run, call, target.label, start(), completion=completion, cached=cached
        )
        self.run.check_budgets()
        return SubCallResult.answer(completion.text)

    def _paid(self, target: ResolvedModel, completion: Completion, cached: bool) -> None:
        """A sub-call (or one attempt of a structured one) counted as it ends: its usage, or
        a cache hit (nothing paid, no usage)."""
        if cached:
            self.run.shared.cached_subcalls += 1
        else:
            usage = completion.usage
            self.run.shared.usage.record(target.label, usage, depth=self.run.depth + 1)

    def _structured_finished(
        self, call: SubCall, model: str, started: float, reply: StructuredReply
    ) -> SubCallResult:
        """The end of a structured sub-call (its attempts' usage already counted)."""
        error = None if reply.problem is None else ValueError(reply.problem)
        text = reply.answer if reply.answer is not None else str(reply.problem)
        subcall_finished(
            self.run,
            call,
            model,
            started,
            completion=reply.completion,
            error=error,
            answer=text,
            cached=reply.cached,
            structured=True,
        )
        self.run.check_budgets()
        if reply.answer is None:
            return SubCallResult.failure(text)
        return SubCallResult.answer(text)

    async def _answer(
        self, target: ResolvedModel, request: CompletionRequest, start: SubCallStart
    ) -> tuple[Completion, bool]:
        """The sub-call's completion, and whether the sub-call cache gave it (not paid).

        Only a call sent to the provider takes a ``max_concurrency`` slot: one the cache
        answers, or a duplicate waiting for an identical call in flight, takes none, so it
        does not wait behind slow calls, nor keep a slot from the next call to send.
        """

        async def send() -> Completion:
            async with self.run.shared.limiter:
                start()
                return await self.run.call_model(target, request)

        cache = self.run.shared.subcall_cache
        if cache is None:  # RLM(cache=False)
            return await send(), False
        return await cache.complete(target, request, send, begin=start)

    async def _sub_rlm(self, call: SubCall, prompt: str, context: Any) -> SubCallResult:
        """A full RLM one level deeper, with its own REPL holding ``context``."""
        try:
            # Model code chose this context: one the REPL cannot hold is its error to read,
            # not the end of the completion.
            prepared = await prepare(context)
        except ContextTypeError as exc:
            return SubCallResult.failure(f"rlm_query: {exc}")
        refusal = self.run.shared.budget.acquire_repl()
        if refusal is not None:
            return SubCallResult.failure(refusal)
        label = self.run.shared.models.for_depth(self.run.depth + 1).label
        started = subcall_started(self.run, call, label, prompt)
        try:
            result = await self.run.child_run(prepared, prompt, call.id)
        except RLMError as exc:
            subcall_finished(self.run, call, label, started, error=exc)
            if isinstance(exc, FATAL_SUBCALL_ERRORS):
                raise
            return SubCallResult.failure(str(exc))
        except BaseException as exc:
            with contextlib.suppress(Exception):  # a raising listener must not mask it
                subcall_finished(self.run, call, label, started, error=self._ended_by(exc, call))
            raise
        subcall_finished(self.run, call, label, started, answer=result.answer)
        return SubCallResult.answer(result.answer)

    def _ended_by(self, exc: BaseException, call: SubCall) -> BaseException:
        """What a sub-call's finished event says when it did not get to finish."""
        if isinstance(exc, Exception):
            return exc
        if call.request in self._abandoned:
            return RuntimeError(self._abandon_reason())
        return RuntimeError(self.run.shared.cancel_reason()[1])
