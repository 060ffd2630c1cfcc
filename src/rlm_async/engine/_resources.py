"""``EngineResources``: what every completion of an ``RLM`` (and of its views) shares.

The provider registry (one HTTP client per provider), the rate limiters, the warm REPL pool,
the context-window table, the tools (and their MCP sessions), and the sessions and runs in
progress that ``aclose()`` ends.
Options are values and may differ per call; these are not, so a view made by
``RLM.with_options`` holds the same object.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from rlm_async._exceptions import ConfigurationError
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._prepare import prepare
from rlm_async.engine._subcall_cache import SubCallCache, SubCallStore
from rlm_async.engine._tool_box import ToolBox
from rlm_async.providers import ProviderRegistry, ResolvedModel
from rlm_async.providers._ratelimit import RateLimit, RateLimiter
from rlm_async.providers._windows import ContextWindows, Window
from rlm_async.repl import ReplSession
from rlm_async.repl._context import PreparedContext
from rlm_async.repl._pool import ReplPool
from rlm_async.tools import ToolSet

__all__ = ["EngineResources", "ReplFactory", "build_rate_limiters"]

#: How a run opens its REPL: ``ReplSession`` itself, or a fake one in tests of the run loop.
ReplFactory = Callable[..., Any]


def build_rate_limiters(rate_limits: object) -> dict[str, RateLimiter]:
    """One limiter per key of ``RLM(rate_limits=...)``.

    Raises:
        ConfigurationError: not a mapping of names to ``RateLimit``.
    """
    if rate_limits is None:
        return {}
    if not isinstance(rate_limits, Mapping):
        raise ConfigurationError(
            "rate_limits must be a mapping of provider name to rlm_async.RateLimit, "
            f"e.g. {{'openai': RateLimit(requests_per_minute=500)}}; got "
            f"{type(rate_limits).__name__}"
        )
    limiters: dict[str, RateLimiter] = {}
    for key, limit in rate_limits.items():
        if not isinstance(limit, RateLimit):
            raise ConfigurationError(
                f"rate_limits[{key!r}] must be a rlm_async.RateLimit, got {type(limit).__name__}"
            )
        limiters[key] = RateLimiter(limit)
    return limiters


@dataclass(eq=False)
class _SharedText:
    """A text context and what preparing it found, while completions in progress use it."""

    text: str
    ready: anyio.Event = field(default_factory=anyio.Event)
    prepared: PreparedContext | None = None
    users: int = 0


@dataclass(eq=False)
class EngineResources:
    """The shared, long-lived part of an ``RLM``; see the module docstring."""

    providers: ProviderRegistry
    windows: ContextWindows
    rate_limiters: dict[str, RateLimiter] = field(default_factory=dict)
    warm_repls: int = 0
    repl_factory: ReplFactory = ReplSession
    repl_pool: ReplPool | None = None
    sessions: set[Any] = field(default_factory=set)
    # The cancel scope of every run in progress: aclose() cancels them and waits, so no
    # run is left restarting a REPL that aclose() is killing.
    running: set[anyio.CancelScope] = field(default_factory=set)
    drained: anyio.Event | None = None
    close_done: anyio.Event | None = None
    closed: bool = False
    made_dirs: set[Path] = field(default_factory=set)  # trajectory directories made
    # Text contexts of the completions in progress, by identity (see ``context_for_run``).
    texts: dict[int, _SharedText] = field(default_factory=dict)
    tool_box: ToolBox | None = None  # RLM(tools=..., mcp_servers=...), when given
    # RLM(cache=...): identical sub-calls sent once per completion tree or session (unless
    # False), and answered from this store across runs when a path is given.
    dedupe_subcalls: bool = True
    subcall_store: SubCallStore | None = None

    def new_subcall_cache(self) -> SubCallCache | None:
        """A sub-call cache for one completion tree or session (``None``: caching is off)."""
        return SubCallCache(self.subcall_store) if self.dedupe_subcalls else None

    @property
    def tool_set(self) -> ToolSet | None:
        """The tools model code can call, once ``open_tools()`` has reached them."""
        return self.tool_box.ready if self.tool_box is not None else None

    async def open_tools(self) -> None:
        """Reach the MCP servers on first use (a no-op without them, or once done).

        Raises:
            ConfigurationError: a server could not be reached (or the SDK is missing).
        """
        if self.tool_box is not None:
            await self.tool_box.toolset()

    @contextlib.asynccontextmanager
    async def context_for_run(self, context: Any) -> AsyncIterator[PreparedContext]:
        """``context`` prepared for a completion's REPL, for as long as the block runs.

        Completions in progress over the very same ``str`` object (one document, many
        questions at once) share one preparation: its lines are counted once, not once
        per completion (0.4 ms for a 900 KB text, ~20 ms for 40 MB). Kept only while one
        of them runs: a ``str`` cannot be weakly referenced, and holding it longer would
        keep a big context alive after its completions ended.

        Raises:
            ContextTypeError: for a context the REPL cannot hold.
        """
        if type(context) is not str:
            yield context if isinstance(context, PreparedContext) else await prepare(context)
            return
        key = id(context)  # no other object has this id while the entry holds the text
        entry = self.texts.get(key)
        if entry is None:
            entry = self.texts[key] = _SharedText(context)
            first = True
        else:
            first = False
        entry.users += 1
        try:
            if first:
                try:
                    entry.prepared = await prepare(context)
                finally:
                    entry.ready.set()
            else:
                await entry.ready.wait()
            # The first one failed or was cancelled: prepare it here (and raise its error).
            yield entry.prepared if entry.prepared is not None else await prepare(context)
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self.texts[key]

    def trajectory_dir(self, options: RLMOptions) -> Path | None:
        """The options' trajectory directory, made the first time it is used (not when the
        ``RLM`` is built). Made once: a later failure is the writer's, said in the result.

        Raises:
            ConfigurationError: the path cannot be made into a directory.
        """
        directory = options.trajectory_dir
        if directory is not None and directory not in self.made_dirs:
            options.ensure_trajectory_dir()
            self.made_dirs.add(directory)
        return directory

    def limiter_for(self, model: ResolvedModel) -> RateLimiter | None:
        """The limiter of a model: by its full label first, then by its provider's name.

        Chosen per call from the model, never stored on a provider: one Provider object
        shared by two ``RLM``s keeps each one's limits.
        """
        if not self.rate_limiters:
            return None
        label = model.label
        return self.rate_limiters.get(label) or self.rate_limiters.get(label.split(":", 1)[0])

    def window_of(self, model: ResolvedModel) -> Window:
        """The context window of a resolved model (from ``context_windows`` and the table)."""
        return self.windows.for_label(model.label, model.model)

    def track(self, session: Any) -> None:
        """A REPL session of a run: ``aclose()`` closes it if the run is still going."""
        self.sessions.add(session)

    def untrack(self, session: Any) -> None:
        self.sessions.discard(session)

    def run_ended(self, scope: anyio.CancelScope) -> None:
        """A run's scope is done: wake ``aclose()`` when it was the last one."""
        self.running.discard(scope)
        if not self.running and self.drained is not None:
            self.drained.set()

    async def close(self) -> None:
        """Cancel the runs in progress, wait for them, then close REPLs and clients."""
        with anyio.CancelScope(shield=True):
            if self.running:
                self.drained = anyio.Event()
                for scope in list(self.running):
                    scope.cancel()
                with anyio.move_on_after(10):  # each run's own clean-up is bounded in time
                    await self.drained.wait()
            if self.repl_pool is not None:
                await self.repl_pool.aclose()
            for session in list(self.sessions):
                await session.aclose()
            if self.tool_box is not None:
                await self.tool_box.aclose()
            await self.providers.aclose()
            if self.subcall_store is not None:
                await anyio.to_thread.run_sync(self.subcall_store.close)
