"""The parent side of a REPL: a persistent child process that runs cells one at a time.

A :class:`ReplSession` owns a private work directory (the context file lives there), one
child process at a time, and the restart policy. While a cell runs, it serves the cell's
``llm_query`` requests concurrently through the ``subcall_handler`` the engine gives it,
drains the child's fds 1 and 2, and enforces the cell's time limit: SIGINT first (state
kept), then SIGKILL and a restart after a grace period (state lost, context reloaded).
The cell itself (sending it, serving its requests, interrupting it) is ``_cell_run.py``'s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async._exceptions import ConfigurationError, ReplCrashed, ReplError
from rlm_async._logging import get_logger
from rlm_async.repl._cell_outcome import lost_cell_reason, lost_cell_result, result_from_child
from rlm_async.repl._cell_result import CellResult
from rlm_async.repl._cell_run import CellRun, SubCallHandler, ToolCallHandler
from rlm_async.repl._context import PreparedContext, prepare_context
from rlm_async.repl._named_contexts import (
    NamedContext,
    check_context_name,
    context_file_name,
    load_contexts,
    load_named_context,
    prepare_added_context,
    write_context_file,
    write_context_files,
)
from rlm_async.repl._options import ReplOptions
from rlm_async.repl._process import ChildProcess
from rlm_async.repl._protocol import (
    DefineToolsMessage,
    ResultMessage,
    ShutdownMessage,
    encode_message,
)
from rlm_async.repl._start import (
    StartedChild,
    make_work_dir,
    remove_work_dir,
    remove_work_dir_now,
    start_child,
)

if TYPE_CHECKING:
    from rlm_async.repl._pool import ReplPool

__all__ = ["ReplSession"]

_log = get_logger("rlm_async.repl")
_SHUTDOWN = encode_message(ShutdownMessage())
DEFAULT_MAX_PENDING_SUBCALLS = 64  # 4 x the engine's default max_concurrency of 16
_CLOSED_WHILE_STARTING = "this ReplSession was closed while it was starting"


class ReplSession:
    """A persistent REPL child process holding ``context``; cells run one at a time.

    More contexts can be added under other names (:meth:`add_context`); every one of them
    is loaded again after a restart.

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
        tools: The stubs' specs of the tools model code can call (``ToolSet.stub_specs()``),
            defined in the child after its contexts are loaded (after a restart too).
        tool_handler: Serves the cell's tool calls (``None``: they fail).

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
        tools: Sequence[Mapping[str, Any]] = (),
        tool_handler: ToolCallHandler | None = None,
    ) -> None:
        if max_pending_subcalls < 1:
            raise ConfigurationError(
                f"max_pending_subcalls must be at least 1, got {max_pending_subcalls}"
            )
        self.options = pool.options if pool is not None else (options or ReplOptions())
        self._pool = pool
        self.warm = False
        self._context_path = ""
        self._source = context
        self._named: list[NamedContext] = []
        self._prepared: PreparedContext = (
            context if isinstance(context, PreparedContext) else prepare_context(context)
        )
        self._handler = subcall_handler
        self._tools = [dict(spec) for spec in tools]
        self._tool_handler = tool_handler
        self._on_restart = on_restart
        self._work_dir: str | None = None
        self._child: ChildProcess | None = None
        self._cell = 0
        self._lock = anyio.Lock()
        self._state = "new"
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

    @property
    def context_path(self) -> str:
        """The file the child loads ``context`` from, in the work dir (``""`` before the
        start); model code can change it, so read it before any cell ran."""
        return self._context_path

    @property
    def context_names(self) -> list[str]:
        """The variables holding contexts: ``context``, then those added, in order."""
        return ["context", *(named.name for named in self._named)]

    async def add_context(self, value: Any, name: str) -> None:
        """Load one more context into the REPL as the variable ``name``.

        It is written to the work directory like the first one and loaded again after
        every restart. The first context given again (the same object) is not written a
        second time: ``name`` then holds the same value as ``context`` did when loaded.
        A large value is prepared in a worker thread.

        Args:
            value: A context of any type the first one may have (str, list, dict, chat
                messages), or a ``PreparedContext``.
            name: A Python identifier, not ``context`` and not one already added. Names of
                the REPL's own functions (``llm_query``, ``FINAL``, ...) are refused by
                the child.

        Raises:
            ConfigurationError: a bad or taken name.
            ContextTypeError: a value that cannot be a context.
            ReplCrashed: the child could not load it (the context is not kept).
        """
        check_context_name(name, self.context_names)
        if self._state != "open":
            raise ReplError(f"this ReplSession is {self._state}")
        if value is self._source:
            named = NamedContext(name, self._context_path, self._prepared, value)
        else:
            prepared = await prepare_added_context(value)
            if self._work_dir is None:  # closed while the value was prepared
                raise ReplError(f"this ReplSession is {self._state}")
            path = os.path.join(self._work_dir, context_file_name(name, prepared))
            named = NamedContext(name, path, prepared, value)
        async with self._lock:
            if self._state != "open":
                raise ReplError(f"this ReplSession is {self._state}")
            self._named.append(named)
            try:
                if named.path != self._context_path:
                    await anyio.to_thread.run_sync(self._write_file, named.path, named.prepared)
                if self._child is None:
                    await self._spawn()  # loads every context, this one too
                else:
                    await load_named_context(self._child, named, within=self.options.start_timeout)
            except BaseException:
                self._named.remove(named)
                raise

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
            name = context_file_name("context", self._prepared)
            self._context_path = os.path.join(self._work_dir, name)
            await anyio.to_thread.run_sync(self._write_context)
            self._check_not_closed()
            if self._child is None:
                # Adopted even when closed meanwhile: aclose() then kills it (below).
                self._adopt(await start_child(self.options, self._work_dir))
                self._check_not_closed()
            await self._load()
            self._check_not_closed()
            self.start_seconds = time.perf_counter() - started
        except BaseException as exc:
            closed_meanwhile = self._state == "closed"
            await self.aclose()  # kills a child taken after a close too
            if closed_meanwhile and isinstance(exc, Exception):
                # Whatever the close broke under the start (a removed work dir, a killed
                # child) is not the error: the close is.
                raise ReplError(_CLOSED_WHILE_STARTING) from exc
            raise

    def _check_not_closed(self) -> None:
        """Raise when ``aclose()`` ran while ``start()`` was waiting."""
        if self._state == "closed":
            raise ReplError(_CLOSED_WHILE_STARTING)

    async def aclose(self) -> None:
        """Stop the child (bounded in time, even when cancelled) and remove the work dir.

        Idempotent; called again after the close, it still kills a child that a ``start()``
        in progress took meanwhile.
        """
        if self._state == "closed" and self._child is None and self._work_dir is None:
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

    async def discard_state(self) -> None:
        """Kill the child, and with it every variable but the contexts.

        For a cell abandoned while it ran (its caller was cancelled): the child may still be
        running it. The next cell starts a fresh child, with every context loaded.
        """
        async with self._lock:
            if self._child is not None:
                child, self._child = self._child, None
                await child.terminate(grace=0)

    def _write_context(self) -> None:
        """Write every context's file (blocking)."""
        write_context_files(self._write_file, (self._context_path, self._prepared), self._named)

    def _write_file(self, path: str, prepared: PreparedContext) -> None:
        work_dir = self._work_dir
        if work_dir is None:  # closed (and the dir removed) while this waited for a thread
            raise ReplError(f"this ReplSession is {self._state}")
        write_context_file(work_dir, path, prepared)

    def _adopt(self, started: StartedChild) -> None:
        self._child = started.child
        self.sandbox_report = started.ready.sandbox

    async def _load(self) -> None:
        assert self._child is not None
        self.context_load_seconds = await load_contexts(
            self._child,
            (self._context_path, self._prepared),
            self._named,
            within=self.options.start_timeout,
        )
        if self._tools:  # after every start: a restarted child is blank too
            message = encode_message(DefineToolsMessage(tools=self._tools))
            await self._child.send(message, within=self.options.write_timeout)

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
            run = CellRun(self.options, self._handler, self._max_pending, self._tool_handler)
            outcome, timed_out = await run.run(child, cell, code, limit)
            child.drain_now()
            if run.handler_error is not None:
                raise run.handler_error
            duration = time.perf_counter() - started
            if isinstance(outcome, ResultMessage):
                return result_from_child(
                    outcome,
                    cell=cell,
                    output_limit=self.options.output_limit,
                    process_output=child.output.take(),
                    duration=duration,
                    timed_out=timed_out,
                )
            reason = lost_cell_reason(
                outcome, limit=limit, interrupt_grace=self.options.interrupt_grace
            )
            process_output = child.output.take()
            await self._restart(reason)
            return lost_cell_result(
                reason, cell=cell, process_output=process_output, duration=duration,
                timed_out=timed_out,
            )  # fmt: skip
