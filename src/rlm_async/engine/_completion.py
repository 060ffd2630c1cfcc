"""A completion, run: from options, models and resources to a result or an event stream.

``RLM.completion`` and ``RLM.stream`` are thin: they lay per-call options over the
``RLM``'s and call :func:`run_completion` (in a task of its own) or :func:`stream_run`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async import events as ev
from rlm_async._exceptions import BudgetExceeded, ConfigurationError, RLMClosed
from rlm_async._logging import get_logger
from rlm_async._tasks import wait_out
from rlm_async._types import RLMResult
from rlm_async.engine._kept_context import ContextKeeper
from rlm_async.engine._lent_repl import ReplLender
from rlm_async.engine._listeners import fan_out
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._output_type import OutputSpec
from rlm_async.engine._resources import EngineResources
from rlm_async.engine._routes import ModelRoutes
from rlm_async.engine._run import run_rlm
from rlm_async.engine._state import CompletionState
from rlm_async.engine._subcall_cache import SubCallCache
from rlm_async.tracing import completion_tracer

if TYPE_CHECKING:
    from rlm_async.engine._budget import BudgetTracker
    from rlm_async.engine._resume import Replay
    from rlm_async.trajectory._writer_thread import BackgroundTrajectory

__all__ = ["run_completion", "stream_run"]

_log = get_logger("rlm_async.engine")


async def run_completion(
    options: RLMOptions,
    models: ModelRoutes,
    resources: EngineResources,
    context: Any,
    query: str,
    emit: Callable[[ev.Event], None] | None,
    *,
    stream_text: bool = False,
    output: OutputSpec | None = None,
    lent_repl: ReplLender | None = None,
    session_note: str = "",
    replay: Replay | None = None,
    session: tuple[str, int] | None = None,
    subcall_cache: SubCallCache | None = None,
    on_spent: Callable[[BudgetTracker], None] | None = None,
) -> RLMResult:
    """One completion: listeners, trajectory, the runs under the time budget.

    A session's completion gives its REPL (``lent_repl``: the root run neither starts nor
    closes it) and what the session has so far (``session_note``, before the query). A
    resumed run (``RLM.resume``) gives what its trajectory recorded (``replay``). A
    session's completion names itself (``session``: its id and number) in ``RunStarted``
    and shares the session's sub-call cache (``subcall_cache``), and is told what it spent
    (``on_spent``: its budget's state at the end, however it ended).

    A typed completion gives what its answer must be (``output``, from ``output_type``).

    Raises:
        ConfigurationError: the ``RLM`` is closed, or ``query`` is not a str.
        RLMClosed: the ``RLM`` was closed while it ran.
        BudgetExceeded: a budget ran out (with ``on_budget_exceeded="raise"``).
    """
    if resources.closed:
        raise ConfigurationError("this RLM is closed; create a new one")
    if not isinstance(query, str):
        raise ConfigurationError(f"query must be a str, got {type(query).__name__}")
    trajectory_dir = resources.trajectory_dir(options)
    console = None
    if options.enable_logging:
        from rlm_async.engine._console import ConsoleRenderer

        console = ConsoleRenderer()
    writer = None
    if trajectory_dir is not None:
        from rlm_async.trajectory import TrajectoryWriter
        from rlm_async.trajectory._writer_thread import BackgroundTrajectory

        # Written in a thread of its own: the loop never waits on the disk.
        writer = BackgroundTrajectory(TrajectoryWriter.in_directory(trajectory_dir))
    # Made here, in the caller's context (a task copies it): the caller's span is the
    # parent of the run's. Before the caller's listeners: one that raises must not cut a
    # trace short.
    tracer = completion_tracer(options.tracer_provider)
    shared = CompletionState(
        options=options,
        models=models,
        resources=resources,
        # The file first: it gets each event even if a callback raises.
        emit=fan_out(writer, tracer, emit, console) or _discard,
        stream_text=stream_text,
        lent_repl=lent_repl,
        session_note=session_note,
        output=output,
        session=session,
        subcall_cache=subcall_cache,
        full_text=None if writer is None else writer.full_text,
    )
    if tracer is not None:
        tracer.anchor(shared.started)
    closing = anyio.CancelScope()
    resources.running.add(closing)
    result: RLMResult | None = None
    try:
        with closing:
            result = await _run_all(shared, writer, context, query, replay)
            return result
        raise RLMClosed(
            "this RLM was closed (aclose() or the end of its `async with` block) while "
            "the completion was running; close it after its completions finish"
        )
    except BudgetExceeded as exc:
        result = exc.partial  # raised with what the run had: it reports the trajectory
        raise
    finally:
        resources.run_ended(closing)
        if on_spent is not None:
            on_spent(shared.budget)
        if tracer is not None:
            tracer.close()
        if writer is not None:
            # Never raises: a trajectory that failed is logged and said in the result,
            # and does not replace the result or the run's own exception.
            problem = await writer.aclose()
            if problem is not None and result is not None:
                result.metadata["trajectory_error"] = problem


def _discard(event: ev.Event) -> None:
    """The listener of a run nobody listens to."""


async def _run_all(
    shared: CompletionState,
    writer: BackgroundTrajectory | None,
    context: Any,
    query: str,
    replay: Replay | None = None,
) -> RLMResult:
    """The run under the time budget; a spent budget raises or returns the partial."""
    deadline = shared.options.budget.max_seconds
    if deadline is not None:
        shared.deadline = anyio.current_time() + deadline
    try:
        with anyio.move_on_after(math.inf if deadline is None else deadline):
            async with shared.resources.context_for_run(context) as prepared:
                if writer is not None and shared.options.trajectory_context:
                    shared.context_keeper = ContextKeeper(writer, prepared)
                result = await run_rlm(shared, prepared, query, replay=replay)
            if writer is not None:
                result.metadata["trajectory_path"] = writer.path
            return result
        error = BudgetExceeded(
            f"the time budget of {deadline:g} s ran out; the run was cancelled",
            budget="max_seconds",
        )
    except BudgetExceeded as exc:
        error = exc
    _log.info("rlm_async.budget_exceeded", budget=error.budget, message=str(error))
    error.partial = shared.partial_result()
    if writer is not None:
        error.partial.metadata["trajectory_path"] = writer.path
    if shared.options.on_budget_exceeded == "return":
        return error.partial
    raise error


async def stream_run(
    start: Callable[[Callable[[ev.Event], None]], Awaitable[RLMResult]],
    on_event: Callable[[ev.Event], None] | None,
) -> AsyncGenerator[ev.Event, None]:
    """The events of the run ``start(emit)`` starts, as they happen; then its error, if any.

    ``on_event`` (the options' callback) sees each event first.
    """
    queue: asyncio.Queue[ev.Event | None] = asyncio.Queue()
    scopes: list[anyio.CancelScope] = []

    emit = fan_out(on_event, queue.put_nowait) or queue.put_nowait

    async def produce() -> RLMResult | None:
        try:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                return await start(emit)
            return None  # cancelled through the scope: the consumer went away
        finally:
            queue.put_nowait(None)

    # A task owned by this generator rather than a task group: an ``async for`` that
    # breaks early finalises the generator from another task, where a task group's
    # cancel scope could not be exited. The finally below always reaps the task.
    task = asyncio.ensure_future(produce())
    try:
        while (event := await queue.get()) is not None:
            yield event
        # Raises the run's error, after its RunFailed event. Through a shield: a cancel
        # of ours must not reach the task natively (see below).
        await asyncio.shield(task)
    finally:
        if not task.done():
            # Cancel through anyio, not Task.cancel(): the run's clean-up (killing its
            # REPL processes) is shielded, and a native cancel would cut through it.
            if scopes:
                scopes[0].cancel()
            else:
                task.cancel()  # not started yet: nothing to clean up
            await wait_out(task)
