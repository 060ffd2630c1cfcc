"""``Session``: a conversation of completions over one REPL (``rlm.session(context)``).

One REPL process for the whole conversation: what a completion's code leaves in it
(variables, functions, imports) is there for the next. Each completion is a run of its own
(its own root conversation, events, budgets, trajectory, cancellation) over the session's
REPL, lent to it (``_lent_repl``); its first message starts with a short summary of the
session so far: the contexts, and the earlier queries and answers, which are in the REPL
too as ``query_1``, ``answer_1``, ... Every context, query and answer is a named context of
the REPL (``ReplSession.add_context``), so a restart of the child loads them all again.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async import events as ev
from rlm_async._exceptions import BudgetExceeded, ConfigurationError, ResumeError, RLMClosed
from rlm_async._tasks import run_cancel_safely
from rlm_async._text import cap_middle
from rlm_async._types import RLMResult, UsageSummary
from rlm_async.engine._completion import run_completion
from rlm_async.engine._lent_repl import Relay, ReplLender
from rlm_async.engine._listeners import fan_out
from rlm_async.engine._output_type import OutputSpec
from rlm_async.engine._prepare import prepare
from rlm_async.engine._session_budget import SessionBudget
from rlm_async.repl._context import PreparedContext

if TYPE_CHECKING:
    from rlm_async.engine._budget import Budget
    from rlm_async.engine._options import RLMOptions
    from rlm_async.engine._recipe import Overrides
    from rlm_async.engine._resources import EngineResources
    from rlm_async.engine._resume import Replay
    from rlm_async.engine._routes import ModelRoutes
    from rlm_async.repl import ReplSession

__all__ = ["Session"]

# What the first message of a completion shows of each earlier turn, and of how many: the
# rest is in the REPL (query_N, answer_N), where the model can read all of it.
_QUERY_CHARS = 300
_ANSWER_CHARS = 600
_TURNS_SHOWN = 8
_CLOSED_WHILE_STARTING = "the session was closed while it was starting"


@dataclass(frozen=True)
class _Turn:
    query: str
    answer: str


class Session:
    """A conversation over one REPL: completions that see what earlier ones left.

    Made by ``RLM.session(context)``; use it as an async context manager. Closing it (or
    the ``RLM``) kills its REPL.

    In the REPL, ``context`` (also ``context_1``) is the session's first context;
    ``add_context`` adds ``context_2``, ``context_3``, ...; after each completion its query
    and answer are ``query_N`` and ``answer_N``. All of them are loaded again if the REPL
    is restarted; other variables are then lost, and the model is told.

    Completions of one session run one at a time (a second waits for the first). The
    REPL's own options (``cell_timeout``, sandbox, ...) are the ``RLM``'s when the session
    starts; per-completion ``options`` change everything else.

    Events and budgets hold per completion (``completion(on_event=..., options=...)``) and
    per session: the session's ``on_event`` sees every event of its completions, and its
    ``budget`` bounds them all together (tokens, cost, seconds, sub-calls and tool calls
    summed over the completions; each completion's own budget is tightened to what is left).

    Example:
        async with rlm.session(context) as chat:
            first = await chat.completion("Which customers churned in March?")
            second = await chat.completion("And which of them had open tickets?")
            await chat.add_context(more_documents)  # context_2
    """

    def __init__(
        self,
        options: RLMOptions,
        models: ModelRoutes,
        resources: EngineResources,
        context: Any,
        *,
        resume_from: tuple[str | os.PathLike[str], str | os.PathLike[str] | None] | None = None,
        on_event: Callable[[ev.Event], None] | None = None,
        budget: Budget | None = None,
    ) -> None:
        self._options = options
        self._on_event = on_event
        self._budget = SessionBudget.of(budget)
        self._models = models
        self._resources = resources
        self._context = context
        self._prepared: PreparedContext | None = None
        self._contexts: list[tuple[str, PreparedContext]] = []  # context_2, ...
        self._turns: list[_Turn] = []
        self._lender: ReplLender | None = None
        self._lock = anyio.Lock()
        self._scope: anyio.CancelScope | None = None
        self._start_scope: anyio.CancelScope | None = None
        self._start_done = anyio.Event()
        self._state = "new"
        self.session_id = uuid.uuid4().hex[:12]  # in its completions' trajectories
        # RLM.resume_session: (a trajectory file of the session, or its id; the directory)
        self._resume_from = resume_from
        self._replay: Replay | None = None  # the recorded completion being replayed
        self._replays: list[Replay] | None = None  # what the session recorded, once read
        self._resumed: list[RLMResult] = []
        # One sub-call cache for the whole conversation: a later completion's identical
        # sub-call is answered, not paid again.
        self._subcall_cache = resources.new_subcall_cache()

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the session's REPL with its context (``async with`` calls it).

        Raises:
            ConfigurationError: the ``RLM`` is closed, or the session was started before.
            ContextTypeError: the context is of a type the REPL cannot hold.
        """
        if self._state != "new":
            raise ConfigurationError(f"this session is {self._state}; make a new one")
        resources = self._resources
        if resources.closed:
            raise ConfigurationError("this RLM is closed; create a new one")
        self._state = "open"
        resources.track(self)  # closing the RLM closes the session
        # aclose() during the start cancels it and waits for it: it must not kill the REPL
        # under a start that would then take a new child nobody kills.
        self._start_done = anyio.Event()
        try:
            with anyio.CancelScope() as self._start_scope:
                await self._start_repl(resources)
                if self._resume_from is not None:
                    await self._replay_recorded(*self._resume_from)
            if self._state == "closed":
                raise RLMClosed(_CLOSED_WHILE_STARTING)
        except BaseException as exc:
            closed_meanwhile = self._state == "closed"
            self._start_scope = None  # so that the aclose() below does not wait for itself
            await self._close_repl()  # aclose() waits for this start; it cannot close it
            await self.aclose()
            if closed_meanwhile and isinstance(exc, Exception) and not isinstance(exc, RLMClosed):
                raise RLMClosed(_CLOSED_WHILE_STARTING) from exc
            raise
        finally:
            self._start_scope = None
            self._start_done.set()

    async def _start_repl(self, resources: EngineResources) -> None:
        """Prepare the context, make the REPL, start it and load the context into it."""
        await resources.open_tools()  # MCP servers: reached on first use
        if self._context is None and self._resume_from is not None:
            self._context = await self._recorded_context(*self._resume_from)
        self._prepared = await prepare(self._context)
        subcall, tools, restart = Relay(), Relay(), Relay()
        tool_set = resources.tool_set
        # The tools are defined once, in the session's REPL; each run serves their calls.
        with_tools = {"tools": tool_set.stub_specs(), "tool_handler": tools} if tool_set else {}
        repl: ReplSession = resources.repl_factory(
            self._prepared,
            options=self._options.repl,
            subcall_handler=subcall,
            on_restart=restart.restarted,
            pool=resources.repl_pool,
            max_pending_subcalls=4 * self._options.max_concurrency,
            **with_tools,
        )
        self._lender = ReplLender(repl, subcall, tools, restart)
        await repl.start()
        # The same object: the REPL shares the file and the value, no second copy.
        await repl.add_context(self._prepared, "context_1")

    async def _close_repl(self) -> None:
        if self._lender is not None:
            with anyio.CancelScope(shield=True):
                await self._lender.repl.aclose()

    async def aclose(self) -> None:
        """Cancel a start or a completion in progress and kill the REPL; idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._resources.untrack(self)
        with anyio.CancelScope(shield=True):
            if self._start_scope is not None:
                self._start_scope.cancel()
                with anyio.move_on_after(10):  # the start's own clean-up is bounded too
                    await self._start_done.wait()
            if self._scope is not None:
                self._scope.cancel()
            with anyio.move_on_after(10):  # a run's own clean-up is bounded in time
                await self._lock.acquire()
                self._lock.release()
            if self._lender is not None:
                await self._lender.repl.aclose()

    # ---- what it holds ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The REPL child's pid (``None`` before the start and after the close)."""
        return self._lender.repl.pid if self._lender is not None else None

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    @property
    def history(self) -> list[tuple[str, str]]:
        """The ``(query, answer)`` of each completion so far: ``query_N``, ``answer_N``."""
        return [(turn.query, turn.answer) for turn in self._turns]

    @property
    def context_names(self) -> list[str]:
        """The REPL's variables holding contexts: ``context``, ``context_1``, ``context_2``..."""
        return ["context", "context_1", *(name for name, _ in self._contexts)]

    # ---- using it -------------------------------------------------------------------------

    async def add_context(self, value: Any) -> str:
        """Load one more context into the REPL as ``context_2`` (then ``context_3``, ...).

        Waits for a completion in progress to finish; the next one is told of it.

        Args:
            value: A str, a list (of str or JSON values), a dict, or chat messages.

        Returns:
            The variable's name.

        Raises:
            ContextTypeError: the value is of a type the REPL cannot hold.
            ConfigurationError: the session is not open.
            RLMClosed: the session was closed while this waited for a completion.
        """
        prepared = await prepare(value)
        was_closed = self._state == "closed"
        async with self._lock:
            lender = self._open(waited=not was_closed)
            name = f"context_{len(self._contexts) + 2}"
            await lender.repl.add_context(prepared, name)
            self._contexts.append((name, prepared))
        return name

    async def completion(
        self,
        query: str,
        *,
        options: Overrides = None,
        on_event: Callable[[ev.Event], None] | None = None,
        output_type: Any = None,
    ) -> RLMResult:
        """Answer ``query`` with the REPL as earlier completions left it.

        Args:
            query: The question.
            options: Options for this completion only, as for ``RLM.completion``.
            on_event: A callback for this completion's events.
            output_type: What the answer must be, as for ``RLM.completion``
                (``result.output``); the session keeps the answer's text.

        Returns:
            The result, as ``RLM.completion``'s; its query and answer become ``query_N``
            and ``answer_N`` in the REPL.

        Raises:
            ConfigurationError: a bad option, or the session is not open.
            RLMClosed: the session (or the ``RLM``) was closed while it ran, or while it
                waited for the completion before it.
            BudgetExceeded, ProviderError, ReplCrashed: as for ``RLM.completion``.
        """
        if not isinstance(query, str):
            raise ConfigurationError(f"query must be a str, got {type(query).__name__}")
        chosen = self._options.merged(options)
        emit = fan_out(chosen.on_event, self._on_event, on_event)
        output = None if output_type is None else OutputSpec(output_type)
        was_closed = self._state == "closed"
        async with self._lock:
            self._open(waited=not was_closed)
            # In a task of its own, as RLM.completion: a native cancel of the caller must
            # not cut through the shielded clean-up.
            return await run_cancel_safely(
                functools.partial(self._complete, chosen, query, emit, output)
            )

    async def _complete(
        self,
        options: RLMOptions,
        query: str,
        emit: Callable[[ev.Event], None] | None,
        output: OutputSpec | None = None,
    ) -> RLMResult:
        lender = self._open()
        assert self._prepared is not None
        chosen_by_session: set[str] = set()
        if self._budget is not None:
            try:
                budget, chosen_by_session = self._budget.for_completion(options.budget)
            except BudgetExceeded:
                if options.on_budget_exceeded == "raise":
                    raise
                # As a run a budget stops returns what it has: here, nothing yet.
                return RLMResult(
                    answer="", iterations=0, usage=UsageSummary(), elapsed=0.0, finished=False
                )
            options = options.merged({"budget": budget})
        note = self._note(lost=lender.state_lost)
        lender.state_lost = False
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                result = await run_completion(
                    options,
                    self._models,
                    self._resources,
                    self._prepared,
                    query,
                    emit,
                    lent_repl=lender,
                    session_note=note,
                    output=output,
                    replay=self._replay,
                    session=(self.session_id, len(self._turns) + 1),
                    subcall_cache=self._subcall_cache,
                    on_spent=None if self._budget is None else self._budget.recorder(),
                )
                number = len(self._turns) + 1
                await lender.repl.add_context(query, f"query_{number}")
                await lender.repl.add_context(result.answer, f"answer_{number}")
                self._turns.append(_Turn(query, result.answer))
                result.metadata["session_turn"] = number
                result.metadata["session"] = self.session_id
                return result
            except BudgetExceeded as exc:
                if self._budget is not None:
                    self._budget.explain(exc, chosen_by_session)
                raise
            finally:
                self._scope = None
        raise RLMClosed("the session was closed while the completion was running")

    @property
    def resumed(self) -> list[RLMResult]:
        """A session made by ``RLM.resume_session``: the results of the completions it
        replayed when it started, in order (each with ``metadata["resumed"]``); the last
        one went on live if the recorded session had stopped inside it."""
        return list(self._resumed)

    async def _replay_recorded(
        self, source: str | os.PathLike[str], directory: str | os.PathLike[str] | None
    ) -> None:
        """Replay what the session of ``source`` recorded into this session's fresh REPL:
        each completion that finished (its cells run again, its model and tool calls
        answered from the record), then the one it stopped inside, resumed."""
        from rlm_async.engine._session_resume import load_session

        replays = self._replays
        if replays is None:
            replays = await anyio.to_thread.run_sync(load_session, source, directory)
        async with self._lock:
            for replay in replays:
                self._replay = replay
                try:
                    result = await run_cancel_safely(
                        functools.partial(
                            self._complete,
                            self._options,
                            replay.query,
                            fan_out(self._options.on_event, self._on_event),
                        )
                    )
                finally:
                    self._replay = None
                if replay.answer is not None and result.answer != replay.answer:
                    raise ResumeError(
                        f"the replay of {replay.path} ended with another answer than the "
                        f"recorded one ({result.answer[:200]!r}, recorded "
                        f"{replay.answer[:200]!r}); the session cannot be resumed from it"
                    )
                result.metadata["resumed"] = replay.report()
                self._resumed.append(result)

    async def _recorded_context(
        self, source: str | os.PathLike[str], directory: str | os.PathLike[str] | None
    ) -> Any:
        """The session's first context, as kept beside its trajectories
        (``RLM(trajectory_context=True)``), for a resume given no context."""
        from rlm_async.engine._resume import recorded_context
        from rlm_async.engine._session_resume import load_session

        self._replays = await anyio.to_thread.run_sync(load_session, source, directory)
        kept = [replay for replay in self._replays if replay.context_kept is not None]
        call = "rlm.resume_session(path_or_id, context=...)"
        return await recorded_context(kept[0] if kept else self._replays[0], call)

    def _open(self, *, waited: bool = False) -> ReplLender:
        """The session's REPL, when it is open. ``waited``: the caller found the session
        not closed and waited for the lock; a close meanwhile cut it short (``RLMClosed``),
        where a call on a session closed before is a mistake (``ConfigurationError``)."""
        if waited and self._state == "closed":
            raise RLMClosed("the session was closed while this call waited for the one before it")
        if self._state != "open" or self._lender is None:
            raise ConfigurationError(f"this session is {self._state}; use it in `async with`")
        if self._resources.closed:
            raise ConfigurationError("this RLM is closed; create a new one")
        return self._lender

    def _note(self, *, lost: bool) -> str:
        """What the completion's first message says of the session, before the query."""
        if not self._turns and not self._contexts and not lost:
            return ""
        number = len(self._turns) + 1
        lines = [
            f"This is completion {number} of a session over one REPL: what earlier "
            "completions left in it (variables, functions, imports) is still there; "
            "SHOW_VARS() lists it. `context_1` is `context`."
        ]
        if lost:
            lines.append(
                "The REPL was restarted since the last completion (it was stopped in a "
                "cell): its variables are gone; the contexts, queries and answers are "
                "loaded again."
            )
        for name, prepared in self._contexts:
            lines.append(prepared.info.describe().replace("`context`", f"`{name}`", 1))
        if self._turns:
            first = max(len(self._turns) - _TURNS_SHOWN + 1, 1)
            lines.append(
                f"Earlier queries and answers (all of them are the REPL's `query_1` ... "
                f"`query_{len(self._turns)}` and `answer_1` ... `answer_{len(self._turns)}`"
                + (f"; the {first - 1} oldest are left out here" if first > 1 else "")
                + "):"
            )
            for index in range(first, len(self._turns) + 1):
                turn = self._turns[index - 1]
                lines.append(f"query_{index}: {cap_middle(turn.query, _QUERY_CHARS)}")
                lines.append(f"answer_{index}: {cap_middle(turn.answer, _ANSWER_CHARS)}")
        return "\n".join(lines) + "\n\n"
