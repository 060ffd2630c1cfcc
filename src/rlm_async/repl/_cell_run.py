"""One cell on one REPL child: sent, its sub-call requests served, its time limit kept.

While the cell runs, the child's requests are served concurrently through the session's
``SubCallHandler`` and its tool calls through its ``ToolCallHandler`` (together at most
``max_pending_subcalls`` at once: beyond them the child's pipe is not read), its fds 1 and
2 are drained, and past the limit it is interrupted (SIGINT in
the child, state kept). What is left to the session (``_session.py``): the kill and
restart when the cell did not end, and the ``CellResult``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from rlm_async._exceptions import ReplError, ReplProtocolError
from rlm_async.repl._options import ReplOptions
from rlm_async.repl._pipes import ChildStoppedReading
from rlm_async.repl._process import ChildProcess
from rlm_async.repl._protocol import (
    CancelMessage,
    ExecMessage,
    LLMRequest,
    LLMResponse,
    ResultMessage,
    SubCallResult,
    ToolCallResult,
    ToolRequest,
    ToolResponse,
    encode_message,
    sub_call_results,
)

__all__ = ["CellRun", "SubCallHandler", "ToolCallHandler"]

SubCallHandler = Callable[[LLMRequest], Awaitable[list[SubCallResult] | list[dict[str, Any]]]]
"""Serves one sub-call request; returns one ``SubCallResult`` per prompt (or the same as a
``{"ok": bool, "text"|"error": str}`` dict, validated into one).

When the child gives a request up (its cell was interrupted), the handler is cancelled;
unless it has an ``abandon(request_id) -> bool`` method that returns ``True``: then it
stops the request itself and answers with what finished, which an interrupted
``llm_query_batched`` keeps for the model."""

ToolCallHandler = Callable[[ToolRequest], Awaitable[ToolCallResult]]
"""Serves one tool call; returns its result (a failure is a result too, with the error model
code sees). Cancelled when the child gives the call up (its cell was interrupted)."""


class CellRun:
    """Runs one cell: build one per cell (``run`` once), then read ``handler_error``.

    Args:
        options: The session's options (write timeout, interrupt grace).
        handler: Serves the cell's sub-call requests; ``None`` refuses them.
        max_pending: Sub-call and tool requests served at once (``max_pending_subcalls``).
        tool_handler: Serves the cell's tool calls; ``None`` refuses them.
    """

    def __init__(
        self,
        options: ReplOptions,
        handler: SubCallHandler | None,
        max_pending: int,
        tool_handler: ToolCallHandler | None = None,
    ) -> None:
        self.options = options
        self._handler = handler
        self._tool_handler = tool_handler
        self._max_pending = max_pending
        self._serving: dict[int, anyio.CancelScope] = {}
        self._handler_error: BaseException | None = None
        self._hung: str | None = None  # why the child was found hung during this cell

    @property
    def handler_error(self) -> BaseException | None:
        """What the sub-call handler raised to end the run, if it did: the session raises it."""
        return self._handler_error

    async def run(
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
                # fds 1 and 2 are read all along (into a capped buffer): a child blocked on
                # a full stdout pipe could neither finish nor be interrupted.
                with child.draining():
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
                # Requests still being served (each holds a slot until it ends) are stopped.
                # Not cancelled when none is: anyio's cancel() formats the current task's
                # repr for its message, ~50 us a cell for nothing.
                if slots.value < self._max_pending:
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
            if isinstance(message, LLMRequest | ToolRequest):
                refusal = self._out_of_place(message, cell)
                if refusal is not None:
                    # Answered inline, the handler never called: the next line is read once
                    # this one is refused, so a flood of them cannot grow the parent.
                    await self._refuse(child, message, refusal, tg.cancel_scope)
                    if self._hung is not None:
                        return self._hung
                    continue
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
                    served = self._serving[message.id] = anyio.CancelScope()
                    tg.start_soon(self._serve, child, message, tg.cancel_scope, slots, served)
            elif isinstance(message, ToolRequest):
                if slots is None:
                    refused += 1
                    if refused > self._max_pending:
                        return (
                            f"the cell ran past its time limit and, once interrupted, kept "
                            f"calling tools ({refused:,} refused), so the REPL was killed"
                        )
                    await self._send(
                        child, ToolResponse(id=message.id, result=_TOOL_PAST_LIMIT), tg.cancel_scope
                    )
                    if self._hung is not None:
                        return self._hung
                else:
                    await slots.acquire()
                    served = self._serving[message.id] = anyio.CancelScope()
                    tg.start_soon(self._serve_tool, child, message, tg.cancel_scope, slots, served)
            elif isinstance(message, CancelMessage):
                scope = self._serving.get(message.id)
                if scope is not None and not self._handler_stops(message.id):
                    scope.cancel()
            else:
                return f"protocol violation: unexpected {message.type!r} message; REPL restarted"

    def _out_of_place(self, message: LLMRequest | ToolRequest, cell: int) -> str | None:
        """Why a request is not served, if it is not: the child's own code only asks for the
        cell it runs, under an id it has not used yet; anything else is a forged line."""
        if message.cell != cell:
            return f"refused: the request names cell {message.cell}, but cell {cell} is running"
        if message.id in self._serving:
            return f"refused: request id {message.id} is already being served"
        return None

    async def _refuse(
        self,
        child: ChildProcess,
        message: LLMRequest | ToolRequest,
        why: str,
        cell_scope: anyio.CancelScope,
    ) -> None:
        if isinstance(message, LLMRequest):
            results = [SubCallResult.failure(why)] * len(message.prompts)
            await self._answer(child, message.id, results, cell_scope)
        else:
            result = ToolCallResult.failure(why, error_type="ReplProtocolError")
            await self._send(child, ToolResponse(id=message.id, result=result), cell_scope)

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
        scope: anyio.CancelScope,
    ) -> None:
        # ``scope`` is registered under the request's id by the pump, before this task
        # starts: a repeated id arriving in between is then seen as one being served.
        try:
            results: list[SubCallResult] | None = None
            with scope:
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

    async def _serve_tool(
        self,
        child: ChildProcess,
        request: ToolRequest,
        cell_scope: anyio.CancelScope,
        slots: anyio.Semaphore,
        scope: anyio.CancelScope,
    ) -> None:
        """One tool call, like a sub-call request: cancelled when the child gives it up."""
        try:
            result: ToolCallResult | None = None
            with scope:
                try:
                    if self._tool_handler is None:
                        result = _NO_TOOLS
                    else:
                        result = await self._tool_handler(request)
                except Exception as exc:
                    self._handler_error = exc  # a bug in the engine: end the run with it
                    cell_scope.cancel()
                finally:
                    self._serving.pop(request.id, None)
            if result is None:
                return  # given up by the child: nobody is waiting
            await self._send(child, ToolResponse(id=request.id, result=result), cell_scope)
        finally:
            slots.release()

    async def _answer(
        self,
        child: ChildProcess,
        request_id: int,
        results: list[SubCallResult],
        cell_scope: anyio.CancelScope,
    ) -> None:
        await self._send(child, LLMResponse(id=request_id, results=results), cell_scope)

    async def _send(
        self,
        child: ChildProcess,
        response: LLMResponse | ToolResponse,
        cell_scope: anyio.CancelScope,
    ) -> None:
        message = encode_message(response)
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
_TOOL_PAST_LIMIT = ToolCallResult.failure(
    "the cell ran past its time limit and was interrupted; no more tool calls are served",
    error_type="TimeoutError",
)
_NO_TOOLS = ToolCallResult.failure(
    "tools are not available in this REPL", error_type="RuntimeError"
)


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
