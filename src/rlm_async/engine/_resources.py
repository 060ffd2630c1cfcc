"""``EngineResources``: what every completion of an ``RLM`` (and of its views) shares.

The provider registry (one HTTP client per provider), the rate limiters, the warm REPL pool,
the context-window table, and the sessions and runs in progress that ``aclose()`` ends.
Options are values and may differ per call; these are not, so a view made by
``RLM.with_options`` holds the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from rlm_async._exceptions import ConfigurationError
from rlm_async.engine._options import RLMOptions
from rlm_async.providers import ProviderRegistry, ResolvedModel
from rlm_async.providers._ratelimit import RateLimit, RateLimiter
from rlm_async.providers._windows import ContextWindows, Window
from rlm_async.repl import ReplSession
from rlm_async.repl._pool import ReplPool

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
            await self.providers.aclose()
