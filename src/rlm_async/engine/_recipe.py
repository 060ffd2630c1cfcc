"""How an ``RLM`` is made: its options from the constructor's arguments, and its models and
resources from a :class:`Recipe`.

The recipe is kept: ``completion_sync`` makes fresh resources from it for the event loop
it starts (HTTP clients belong to one event loop).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlm_async._exceptions import ConfigurationError
from rlm_async._options import check_int
from rlm_async.engine._options import RLMOptions, with_repl_shortcuts
from rlm_async.engine._resources import EngineResources, build_rate_limiters
from rlm_async.engine._routes import ModelRoutes, needs_settings
from rlm_async.engine._subcall_cache import SubCallStore, cache_path
from rlm_async.engine._tool_box import ToolBox
from rlm_async.providers import ProviderRegistry
from rlm_async.providers._settings import Settings
from rlm_async.providers._windows import ContextWindows
from rlm_async.tools import MCPServer, ToolSet

__all__ = ["Overrides", "Recipe", "options_from_arguments"]

#: Options given in a call: a whole ``RLMOptions`` or a dict of the fields to change.
Overrides = RLMOptions | Mapping[str, Any] | None


def options_from_arguments(
    options: Overrides, given: Mapping[str, object], cell_timeout: object, sandbox: object
) -> RLMOptions:
    """The options of ``RLM(...)``: ``options`` over the defaults, then the keyword
    arguments that were given (``given``, ``None`` meaning not given), then the REPL
    shortcuts ``cell_timeout`` and ``sandbox``.

    Raises:
        ConfigurationError: an unknown field or a bad value, naming it.
    """
    base = RLMOptions().merged(options)
    chosen = base.merged({k: v for k, v in given.items() if v is not None})
    return chosen.merged({"repl": with_repl_shortcuts(chosen.repl, cell_timeout, sandbox)})


@dataclass(frozen=True)
class Recipe:
    """How an RLM's models and resources are made (see the module docstring)."""

    model: object
    sub_model: object
    depth_models: object
    allowed_models: object
    settings: Settings | None
    rate_limits: object
    connections: int
    context_windows: Mapping[str, int] | None
    warm_repls: int
    tools: ToolSet = field(default_factory=ToolSet)
    mcp_servers: tuple[MCPServer, ...] = ()
    cache: object = None  # RLM(cache=...): None, False, True or a path (checked)

    @classmethod
    def from_arguments(
        cls,
        model: object,
        sub_model: object,
        depth_models: object,
        allowed_models: object,
        *,
        settings: Settings | None,
        load_dotenv: bool,
        rate_limits: object,
        max_connections: int | None,
        context_windows: Mapping[str, int] | None,
        warm_repls: int,
        max_concurrency: int,
        tools: Iterable[Any] = (),
        mcp_servers: Iterable[MCPServer] = (),
        cache: object = None,
    ) -> Recipe:
        """The recipe of ``RLM(...)``'s arguments, checked; keys and endpoints are read
        from the environment (and ``.env`` with ``load_dotenv``) when a model is a name.

        Raises:
            ConfigurationError: a bad argument, named.
        """
        check_int("warm_repls", warm_repls, 0)
        cache_path(cache)  # a bad value fails here, not in a run
        toolset, servers = _check_tools(tools, mcp_servers)
        if max_connections is not None:
            check_int("max_connections", max_connections, 1)
        if settings is not None and not isinstance(settings, Settings):
            raise ConfigurationError(
                f"settings must be a rlm_async.Settings, got {type(settings).__name__}; "
                "build one with Settings(...) or Settings.from_env()"
            )
        if settings is None and needs_settings(model, sub_model, depth_models, allowed_models):
            # Only a model given by name needs keys: Provider instances read no .env file.
            settings = Settings.from_env(load_dotenv=load_dotenv)
        return cls(
            model=model,
            sub_model=sub_model,
            depth_models=depth_models,
            allowed_models=allowed_models,
            settings=settings,
            rate_limits=rate_limits,
            # Sized for the process, not one completion: every completion shares it.
            connections=max_connections or max(4 * max_concurrency, 256),
            context_windows=context_windows,
            warm_repls=warm_repls,
            tools=toolset,
            mcp_servers=servers,
            cache=cache,
        )

    def build(self) -> tuple[ModelRoutes, EngineResources]:
        """Fresh models and resources: a provider registry with its own HTTP clients.

        Raises:
            ConfigurationError: an unknown model name, a missing key or bad rate limits.
        """
        windows = ContextWindows(self.context_windows)
        limiters = build_rate_limiters(self.rate_limits)
        registry = ProviderRegistry(self.settings, max_connections=self.connections)
        # Resolve every model now: an unknown name or a missing key fails here, with a
        # message that says how to fix it, not in the middle of a run.
        models = ModelRoutes.resolve(
            registry, self.model, self.sub_model, self.depth_models, self.allowed_models
        )
        resources = EngineResources(
            providers=registry,
            windows=windows,
            rate_limiters=limiters,
            warm_repls=self.warm_repls,
            tool_box=ToolBox(self.tools, self.mcp_servers)
            if self.tools or self.mcp_servers
            else None,
            dedupe_subcalls=self.cache is not False,
            subcall_store=SubCallStore(path) if (path := cache_path(self.cache)) else None,
        )
        return models, resources


def _check_tools(
    tools: Iterable[Any], mcp_servers: Iterable[MCPServer]
) -> tuple[ToolSet, tuple[MCPServer, ...]]:
    """``RLM(tools=..., mcp_servers=...)`` checked now: a function that cannot be a tool, or
    two with one name, fails here, not in a run. (MCP tools are known only once reached.)"""
    if isinstance(tools, str) or not isinstance(tools, Iterable):
        raise ConfigurationError(
            f"tools must be a list of functions (or rlm_async.tools.Tool), got {tools!r}"
        )
    if isinstance(mcp_servers, MCPServer):
        servers: tuple[MCPServer, ...] = (mcp_servers,)
    elif isinstance(mcp_servers, str) or not isinstance(mcp_servers, Iterable):
        raise ConfigurationError(
            f"mcp_servers must be a list of rlm_async.tools.MCPServer, got {mcp_servers!r}"
        )
    else:
        servers = tuple(mcp_servers)
    for server in servers:
        if not isinstance(server, MCPServer):
            raise ConfigurationError(
                f"mcp_servers takes rlm_async.tools.MCPServer descriptions, not {server!r}"
            )
    return ToolSet(tools), servers
