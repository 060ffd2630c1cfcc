"""A REPL that a run uses but does not own: a session's, lent to one completion at a time.

A run opens its REPL through a factory (``EngineResources.repl_factory``: start it, load the
context, close it at the end). A session's REPL lives longer than any one run, so the
session gives the run a :class:`ReplLender` in place of the factory: called with the same
arguments, it starts nothing and loads nothing; it points the REPL's sub-call, tool and
restart callbacks at the run for as long as the run lasts, and leaves the REPL open after.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async.repl._protocol import SubCallResult, ToolCallResult, ToolRequest

if TYPE_CHECKING:
    from rlm_async.repl import ReplSession
    from rlm_async.repl._cell_result import CellResult

__all__ = ["Relay", "ReplLender"]

_NO_RUN = "no completion of the session is running; nothing serves this call"


class Relay:
    """A REPL callback that forwards to whichever run holds the REPL now (``target``).

    It forwards ``abandon`` too (``SubCallHandler``'s optional method), so an interrupted
    ``llm_query_batched`` keeps what finished, as in a run's own REPL.
    """

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, request: Any) -> Any:
        target = self.target
        if target is None:  # no cell runs between completions: a forged request
            if isinstance(request, ToolRequest):
                return ToolCallResult.failure(_NO_RUN, error_type="RuntimeError")
            return [SubCallResult.failure(_NO_RUN)] * len(request.prompts)
        return await target(request)

    def abandon(self, request_id: int) -> bool:
        abandon = getattr(self.target, "abandon", None)
        return callable(abandon) and abandon(request_id) is True

    def restarted(self, reason: str) -> None:
        """``on_restart``: the run's own, when a run holds the REPL."""
        if self.target is not None:
            self.target(reason)


class _LentRepl:
    """What the run sees of the session's REPL: cells run, closing it is not the run's."""

    def __init__(self, repl: ReplSession) -> None:
        self._repl = repl
        self.cell_in_flight = False

    @property
    def sandbox_report(self) -> dict[str, Any]:
        return self._repl.sandbox_report

    @property
    def warm(self) -> bool:
        return self._repl.warm

    @property
    def context_path(self) -> str:
        return self._repl.context_path

    async def execute(self, code: str, *, time_limit: float | None = None) -> CellResult:
        self.cell_in_flight = True
        result = await self._repl.execute(code, time_limit=time_limit)
        self.cell_in_flight = False
        return result

    async def aclose(self) -> None:
        """Closing the ``RLM`` while the run goes closes the session's REPL too."""
        await self._repl.aclose()


class ReplLender:
    """Lends one ``ReplSession`` to run after run, as a run's ``repl_factory`` would give one.

    Args:
        repl: The session's REPL, made with ``subcall``, ``tools`` and ``restart`` as its
            ``subcall_handler``, ``tool_handler`` and ``on_restart``.
    """

    def __init__(self, repl: ReplSession, subcall: Relay, tools: Relay, restart: Relay) -> None:
        self.repl = repl
        self._subcall = subcall
        self._tools = tools
        self._restart = restart
        self.state_lost = False  # a run was cancelled in a cell: the REPL was started afresh

    def __call__(
        self,
        prepared: Any,
        *,
        subcall_handler: Any = None,
        on_restart: Any = None,
        tool_handler: Any = None,
        **_how_a_new_one_would_start: Any,
    ) -> contextlib.AbstractAsyncContextManager[_LentRepl]:
        return self._lend(subcall_handler, on_restart, tool_handler)

    @contextlib.asynccontextmanager
    async def _lend(
        self, subcall_handler: Any, on_restart: Any, tool_handler: Any
    ) -> AsyncIterator[_LentRepl]:
        lent = _LentRepl(self.repl)
        self._subcall.target, self._restart.target = subcall_handler, on_restart
        self._tools.target = tool_handler
        try:
            yield lent
        finally:
            self._subcall.target = self._restart.target = self._tools.target = None
            if lent.cell_in_flight:
                # The run was cancelled (or failed) inside a cell that still runs in the
                # child: stopped the only sure way, the child killed. The next cell starts a
                # fresh one with every context loaded; the next completion is told.
                with anyio.CancelScope(shield=True):
                    await self.repl.discard_state()
                self.state_lost = True
