"""The parent side of a REPL: a persistent child process that runs cells one at a time.

A :class:`ReplSession` owns a private work directory (the context file lives there), one
child process at a time, and the restart policy. While a cell runs, it serves the cell's
``llm_query`` requests concurrently through the ``subcall_handler`` the engine gives it,
drains the child's fds 1 and 2, and enforces the cell's time limit: SIGINT first (state
kept), then SIGKILL and a restart after a grace period (state lost, context reloaded).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel

from rlm_async._exceptions import (
    ConfigurationError,
    ReplCrashed,
    ReplError,
    ReplProtocolError,
)
from rlm_async._logging import get_logger
from rlm_async._text import cap_middle
from rlm_async.repl._context import PreparedContext, prepare_context
from rlm_async.repl._options import ReplOptions
from rlm_async.repl._process import ChildProcess, ChildStoppedReading
from rlm_async.repl._protocol import (
    CancelMessage,
    ExecMessage,
    LLMRequest,
    LLMResponse,
    ResultMessage,
    ShutdownMessage,
    SubCallResult,
    encode_message,
    sub_call_results,
)
from rlm_async.repl._start import (
    StartedChild,
    load_context,
    make_work_dir,
    remove_work_dir,
    remove_work_dir_now,
    start_child,
)
from rlm_async.repl._work_dir import create_child_file

if TYPE_CHECKING:
    from rlm_async.repl._pool import ReplPool

__all__ = ["CellResult", "ReplSession", "SubCallHandler"]

_log = get_logger("rlm_async.repl")
_SHUTDOWN = encode_message(ShutdownMessage())
DEFAULT_MAX_PENDING_SUBCALLS = 64  # 4 x the engine's default max_concurrency of 16

SubCallHandler = Callable[[LLMRequest], Awaitable[list[SubCallResult] | list[dict[str, Any]]]]
"""Serves one sub-call request; returns one ``SubCallResult`` per prompt (or the same as a
``{"ok": bool, "text"|"error": str}`` dict, validated into one).

When the child gives a request up (its cell was interrupted), the handler is cancelled;
unless it has an ``abandon(request_id) -> bool`` method that returns ``True``: then it
stops the request itself and answers with what finished, which an interrupted
``llm_query_batched`` keeps for the model."""


class CellResult(BaseModel):
    """What one cell did.

    Attributes:
        cell: The cell's number in this session (1, 2, ...).
        stdout: What the cell printed (capped, head and tail kept).
        stderr: What it wrote to ``sys.stderr``.
        error: A traceback of the model's code, or what happened to the process.
        final: The answer given with ``FINAL(...)`` / ``FINAL_VAR(...)`` in this cell
            (capped at ``max_answer_chars``).
        final_chars: The answer's length before that cap, when it was capped.
        process_output: Output written to fds 1/2 directly (``os.write``, ``os.system``).
        duration: Seconds the cell took.
        timed_out: The cell ran past its time limit.
        restarted: The child was restarted after this cell (crash, kill or protocol error).
        state_lost: Variables from earlier cells are gone (``context`` was reloaded).
    """

    cell: int
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final: str | None = None
    final_chars: int | None = None
    process_output: str = ""
    duration: float = 0.0
    timed_out: bool = False
    restarted: bool = False
    state_lost: bool = False

    def render(self) -> str:
        """The cell's output as the model reads it."""
        parts: list[str] = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr.rstrip("\n"))
        if self.process_output:
            parts.append("[process output]\n" + self.process_output.rstrip("\n"))
        if self.error:
            parts.append(self.error.rstrip("\n"))
        if self.state_lost:
            parts.append(
                "[The REPL process was restarted: every variable from earlier cells is lost. "
                "`context` and the functions were loaded again.]"
            )
        return "\n".join(parts) if parts else "[no output]"


class ReplSession:
    """A persistent REPL child process holding ``context``; cells run one at a time.

    Use it as an async context manager; closing it (or cancelling the task using it)
    kills the child's whole process group and removes the work directory.

    Args:
        context: What the REPL's ``context`` variable holds.
        options: How the child runs (ignored when ``pool`` is given: the pool's options).
        subcall_handler: Serves the cell's ``llm_query`` / ``rlm_query`` requests.
        on_restart: Called with the reason whenever the child is restarted.
        pool: A warm pool to take an already started child from.
        max_pending_subcalls: Sub-call requests served at once; the child's pipe is not
            read beyond them (its requests wait), so code queueing 50,000 of them cannot
            grow the parent. A small multiple of the engine's ``max_concurrency``.

    Example:
        async with ReplSession(["a", "b"]) as repl:
            result = await repl.execute("len(context)")
            print(result.stdout)  # 2
    """

    def __init__(
        self,
        context: Any,
        *,
        options: ReplOptions | None = None,
        subcall_handler: SubCallHandler | None = None,
        on_restart: Callable[[str], None] | None = None,
        pool: ReplPool | None = None,
        max_pending_subcalls: int = DEFAULT_MAX_PENDING_SUBCALLS,
    ) -> None:
        if max_pending_subcalls < 1:
            raise ConfigurationError(
                f"max_pending_subcalls must be at least 1, got {max_pending_subcalls}"
            )
        self.options = pool.options if pool is not None else (options or ReplOptions())
        self._pool = pool
        self.warm = False
        self._context_path = ""
        self._prepared: PreparedContext = (
            context if isinstance(context, PreparedContext) else prepare_context(context)
        )
        self._handler = subcall_handler
        self._on_restart = on_restart
        self._work_dir: str | None = None
        self._child: ChildProcess | None = None
        self._cell = 0
        self._lock = anyio.Lock()
        self._state = "new"
        self._serving: dict[int, anyio.CancelScope] = {}
        self._handler_error: BaseException | None = None
        self._hung: str | None = None  # why the child was found hung during this cell
        self._max_pending = max_pending_subcalls
        self.restarts = 0
        self.sandbox_report: dict[str, Any] = {}
        self.start_seconds: float | None = None
        self.context_load_seconds: float | None = None

    # ---- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> ReplSession:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def pid(self) -> int | None:
        """The current child's pid (changes on restart)."""
        return self._child.pid if self._child else None

    @property
    def work_dir(self) -> str | None:
        return self._work_dir

    async def start(self) -> None:
        """Get a child (warm from the pool, or started now), write and load the context."""
        if self._state != "new":
            raise ReplError(f"this ReplSession is {self._state}; create a new one")
        self._state = "open"
        try:
            started = time.perf_counter()
            warm = self._pool.take() if self._pool is not None else None
            if warm is not None:
                self.warm = True
                self._work_dir = warm.work_dir
                self._adopt(warm)
            else:
                self._work_dir = make_work_dir()
            name = "context.txt" if self._prepared.format == "text" else "context.json"
            self._context_path = os.path.join(self._work_dir, name)
            await anyio.to_thread.run_sync(self._write_context)
            if self._child is None:
                self._adopt(await start_child(self.options, self._work_dir))
            await self._load()
            self.start_seconds = time.perf_counter() - started
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop the child (bounded in time, even when cancelled) and remove the work dir."""
        if self._state == "closed":
            return
        self._state = "closed"
        with anyio.CancelScope(shield=True):
            try:
                if self._child is not None:
                    child, self._child = self._child, None
                    await child.terminate(
                        grace=min(self.options.interrupt_grace, 1.0), shutdown_message=_SHUTDOWN
                    )
            finally:
                if self._work_dir is not None:
                    work_dir, self._work_dir = self._work_dir, None
                    try:
                        await remove_work_dir(work_dir)
                    except BaseException:
                        # Cancelled natively through the shield: remove it here and now.
                        remove_work_dir_now(work_dir)
                        raise

    def _write_context(self) -> None:
        assert self._work_dir is not None
        # Model code may have made its work dir read-only (fchmod on the open dir).
        with contextlib.suppress(OSError):
            os.chmod(self._work_dir, 0o700)
        with create_child_file(self._context_path) as handle:
            self._prepared.write(handle)

    def _adopt(self, started: StartedChild) -> None:
        self._child = started.child
        self.sandbox_report = started.ready.sandbox

    async def _load(self) -> None:
        assert self._child is not None
        self.context_load_seconds = await load_context(
            self._child,
            self._context_path,
            self._prepared.format,
            within=self.options.start_timeout,
        )

    async def _spawn(self) -> None:
        assert self._work_dir is not None
        self._adopt(await start_child(self.options, self._work_dir))
        await self._load()

    async def _restart(self, reason: str) -> None:
        if self._child is not None:
            await self._child.terminate(grace=0)
            self._child = None
        self.restarts += 1
        _log.warning("rlm_async.repl.restart", reason=reason, restarts=self.restarts)
        if self.restarts > self.options.max_restarts:
            raise ReplCrashed(
                f"the REPL was restarted {self.options.max_restarts} times and failed again "
                f"({reason}); giving up on this run"
            )
        if self._on_restart is not None:
            self._on_restart(reason)
        # Written again, not trusted: model code may have changed or replaced the file, and
        # "the context is reloaded" means the context the run started with.
        try:
            await anyio.to_thread.run_sync(self._write_context)
        except OSError as exc:
            raise ReplCrashed(
                f"the REPL could not be restarted ({reason}): its work dir is no longer "
                f"usable ({exc.strerror or exc}); the run's code may have changed it"
            ) from exc
        await self._spawn()

    # ---- cells ----------------------------------------------------------------------

    async def execute(self, code: str, *, time_limit: float | None = None) -> CellResult:
        """Run one cell and return what it did.

        Errors in the model's code come back in ``CellResult.error``; a crashed or killed
        child is restarted and reported there too. Only failures the session cannot recover
        from raise (``ReplCrashed`` after too many restarts, or an ``RLMError`` the sub-call
        handler raised to end the run).
        """
        if not isinstance(code, str):
            raise ConfigurationError(f"code must be a str, got {type(code).__name__}")
        if self._state != "open":
            raise ReplError(f"this ReplSession is {self._state}")
        limit = self.options.cell_timeout if time_limit is None else time_limit
        async with self._lock:
            if self._child is None:
                await self._spawn()
            child = self._child
            assert child is not None
            self._cell += 1
            cell = self._cell
            started = time.perf_counter()
            self._handler_error = None
            self._hung = None
            outcome, timed_out = await self._run_cell(child, cell, code, limit)
            child.drain_now()
            if self._handler_error is not None:
                raise self._handler_error
            duration = time.perf_counter() - started
            if isinstance(outcome, ResultMessage):
                # The child caps its own output, but the line is the child's to write: a
                # forged one must not carry 400 MB into the trajectory and the events.
                cap = self.options.output_limit + 200  # room for the child's own marker
                return CellResult(
                    cell=cell,
                    stdout=cap_middle(outcome.stdout, cap),
                    stderr=cap_middle(outcome.stderr, cap),
                    error=None if outcome.error is None else cap_middle(outcome.error, cap),
                    final=outcome.final,
                    final_chars=outcome.final_chars,
                    process_output=child.output.take(),
                    duration=duration,
                    timed_out=timed_out,
                )
            if outcome is None:
                reason = (
                    f"the cell ran past its {limit:g} s limit and did not stop within "
                    f"{self.options.interrupt_grace:g} s of being interrupted, "
                    "so the REPL was killed"
                )
            else:
                reason = outcome
            process_output = child.output.take()
            await self._restart(reason)
            return CellResult(
                cell=cell,
                error=f"[{reason}]",
                process_output=process_output,
                duration=duration,
                timed_out=timed_out,
                restarted=True,
                state_lost=True,
            )

    async def _run_cell(
        self, child: ChildProcess, cell: int, code: str, limit: float
    ) -> tuple[ResultMessage | str | None, bool]:
        """Send the cell and serve it within its limits: (its result or why not, timed out).

        ``None`` means it ran past its limit and did not stop when interrupted. Every write
        has a deadline: a child that stops reading its input is hung, not waited for.
        """
        write_timeout = self.options.write_timeout
        try:
            message = encode_message(ExecMessage(cell=cell, code=code))
            await child.send(message, within=write_timeout)
        except ChildStoppedReading as exc:
            return f"{exc}, so the cell was not run and the REPL was killed", False
        except OSError:
            return (
                f"the REPL process had died before the cell ran ({child.exit_description()})",
                False,
            )
        outcome: ResultMessage | str | None = None
        timed_out = False
        slots = anyio.Semaphore(self._max_pending)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(child.drain_output)
                with anyio.move_on_after(limit):
                    outcome = await self._pump(child, cell, tg, slots)
                if outcome is None and self._handler_error is None and self._hung is None:
                    timed_out = True
                    try:
                        await child.interrupt(cell, within=write_timeout)
                    except ChildStoppedReading as exc:
                        self._hung = f"{exc} to interrupt the cell, so the REPL was killed"
                    else:
                        with anyio.move_on_after(self.options.interrupt_grace):
                            outcome = await self._pump(child, cell, tg, None)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _sole_error(group) from None
        if outcome is None and self._hung is not None:
            outcome = self._hung
        return outcome, timed_out

    async def _pump(
        self, child: ChildProcess, cell: int, tg: Any, slots: anyio.Semaphore | None
    ) -> ResultMessage | str:
        """Handle the child's messages until this cell's result; a str says why it died.

        ``slots`` bounds the requests served at once: with none free, the pump stops
        reading and the child's next write waits. ``None`` (the cell is past its limit
        and interrupted): new requests are refused, one at a time and without a task per
        request (a cell that floods forged requests then cannot grow the parent), so the
        result is still read; past ``max_pending_subcalls`` refusals the cell is only
        spending its grace on requests, and is ended.
        """
        refused = 0
        while True:
            try:
                message = await child.receive()
            except ReplProtocolError as exc:
                return f"protocol violation: {exc}; the REPL was restarted"
            if message is None:
                await child.wait_exit(0.2)
                return f"the REPL process crashed ({child.exit_description()})"
            if isinstance(message, ResultMessage):
                if message.cell == cell:
                    return message
                continue  # a stale result of an earlier, abandoned cell
            if isinstance(message, LLMRequest):
                if slots is None:
                    refused += 1
                    if refused > self._max_pending:
                        return (
                            f"the cell ran past its time limit and, once interrupted, kept "
                            f"sending sub-call requests ({refused:,} refused), so the REPL "
                            "was killed"
                        )
                    results = [_PAST_LIMIT] * len(message.prompts)
                    # Inline: the next request is read once this refusal is written.
                    await self._answer(child, message.id, results, tg.cancel_scope)
                    if self._hung is not None:
                        return self._hung
                else:
                    await slots.acquire()
                    tg.start_soon(self._serve, child, message, tg.cancel_scope, slots)
            elif isinstance(message, CancelMessage):
                scope = self._serving.get(message.id)
                if scope is not None and not self._handler_stops(message.id):
                    scope.cancel()
            else:
                return f"protocol violation: unexpected {message.type!r} message; REPL restarted"

    def _handler_stops(self, request_id: int) -> bool:
        """Whether the handler stops a given-up request itself (see ``SubCallHandler``)."""
        abandon = getattr(self._handler, "abandon", None)
        return callable(abandon) and abandon(request_id) is True

    async def _serve(
        self,
        child: ChildProcess,
        request: LLMRequest,
        cell_scope: anyio.CancelScope,
        slots: anyio.Semaphore,
    ) -> None:
        try:
            results: list[SubCallResult] | None = None
            with anyio.CancelScope() as scope:
                self._serving[request.id] = scope
                try:
                    if self._handler is None:
                        results = [_NO_SUBCALLS] * len(request.prompts)
                    else:
                        results = sub_call_results(await self._handler(request))
                except Exception as exc:
                    # The handler decided this error ends the run (bad key, budget, a bug in
                    # a user's provider): stop the cell and raise it from execute() as it is.
                    self._handler_error = exc
                    cell_scope.cancel()
                finally:
                    self._serving.pop(request.id, None)
            if results is None:
                return  # cancelled by the child (interrupted cell): nobody is waiting
            await self._answer(child, request.id, results, cell_scope)
        finally:
            slots.release()

    async def _answer(
        self,
        child: ChildProcess,
        request_id: int,
        results: list[SubCallResult],
        cell_scope: anyio.CancelScope,
    ) -> None:
        message = encode_message(LLMResponse(id=request_id, results=results))
        try:
            await child.send(message, within=self.options.write_timeout)
        except ChildStoppedReading as exc:
            # Nothing more can reach the child: end the cell; execute() kills and restarts.
            self._hung = self._hung or f"{exc}, so the REPL was killed"
            cell_scope.cancel()
        except OSError:
            pass  # the child is gone: the pump sees its pipe close


_PAST_LIMIT = SubCallResult.failure(
    "the cell ran past its time limit and was interrupted; no more sub-calls are served"
)
_NO_SUBCALLS = SubCallResult.failure("sub-calls are not available in this REPL")


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside a task group's group, or a ``ReplError`` naming them all.

    Tasks of a cell handle their own errors; this is the guard that keeps a group (of a
    bug) from reaching ``completion()``'s caller as an ``ExceptionGroup``.
    """
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    if len(leaves) == 1:
        return leaves[0]
    summary = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
    error = ReplError(f"the REPL session failed in {len(leaves)} ways at once: {summary}")
    error.__cause__ = group
    return error
