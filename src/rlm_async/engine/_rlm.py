"""``RLM``: the public engine. Owns the provider clients and the live REPLs of its runs.

An ``RLM`` is three things: its options (an immutable ``RLMOptions``), its models (a
``ModelRoutes``) and its resources (an ``EngineResources``: clients, rate limiters, warm
REPLs, live sessions). A completion hands the first two, with per-call overrides laid
over the options, and the resources to a run (``_run.run_rlm``); the run never sees the
``RLM``. ``with_options`` is a view with other options and the same resources.

Here is what an ``RLM`` does: open, close, run completions. Its read-only properties
(``rlm.max_iterations``, ``rlm.model``, ``rlm.closed``) are its base class's
(``_rlm_properties``); how the three are made from the constructor's arguments is ``_recipe``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio

from rlm_async import events as ev
from rlm_async._exceptions import ConfigurationError
from rlm_async._tasks import run_cancel_safely
from rlm_async._types import RLMResult
from rlm_async.engine._budget import Budget
from rlm_async.engine._completion import run_completion, stream_run
from rlm_async.engine._listeners import fan_out
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._output_type import OutputSpec
from rlm_async.engine._recipe import Overrides, Recipe, options_from_arguments
from rlm_async.engine._resume import resume_run
from rlm_async.engine._rlm_properties import RLMProperties
from rlm_async.engine._routes import ModelChoice
from rlm_async.engine._session import Session
from rlm_async.engine._sync import refuse_inside_event_loop
from rlm_async.providers._ratelimit import RateLimit
from rlm_async.providers._settings import Settings
from rlm_async.repl import ReplOptions
from rlm_async.repl._pool import ReplPool
from rlm_async.repl._sandbox_options import SandboxOptions

if TYPE_CHECKING:
    import os

    from rlm_async.tools import MCPServer, Tool


__all__ = ["RLM"]


class RLM(RLMProperties):
    """A Recursive Language Model: answers a query over a context far too long for a prompt.

    The root model never reads the context. The context is the variable ``context`` in a
    persistent, sandboxed Python REPL (a child process); the model writes code to inspect
    it and calls ``llm_query(...)`` from that code to hand pieces to sub-models, which the
    engine serves concurrently.

    Args:
        model: The root model: ``"provider:model"`` or a bare name such as ``"gpt-5"``,
            ``"claude-sonnet-4-5"``, ``"gemini-2.5-pro"``, ``"grok-4"``, ``"gpt-oss:20b"``;
            or a ``Provider`` instance (e.g. ``rlm_async.testing.ScriptedModel``).
        sub_model: The model ``llm_query`` uses (default: ``model``).
        max_iterations: Root turns before the model is asked for its answer (default 20).
        max_depth: Recursion depth: 1 means ``rlm_query`` is a plain call; 2 or more
            starts sub-RLMs with their own REPLs (default 1).
        depth_models: Optional root model per depth (index 0 = root); deeper levels and
            plain sub-calls fall back to ``sub_model``.
        max_concurrency: Sub-calls in flight at once, for the whole completion (default 16);
            also the most sub-RLMs one ``rlm_query_batched`` runs at once.
        allowed_models: Extra model names code may pass as ``llm_query(..., model=...)``;
            ``model`` and ``sub_model`` are always allowed.
        cell_timeout: Seconds a REPL cell may run before it is interrupted (default 120).
        max_output_chars: Characters of a cell's output fed back to the model; the middle
            of longer output is cut with a marker. Default: half a character per token of
            the root model's context window, between 2,000 and 20,000 (a 16K-token model
            reads at most 8,192 characters of a cell's output a turn).
        max_tokens: Output token limit for root turns (provider default when ``None``).
        sub_max_tokens: Output token limit for sub-calls (default: ``max_tokens``).
        compact_at: When a root conversation is compacted, its earlier turns folded into a
            summary the root model writes: a fraction of what the root model's window holds
            for a prompt (default 0.75; needs a known window, see ``context_windows``) or
            an int of tokens; ``0`` turns it off. A conversation that does not fit even
            then raises ``ContextWindowExceeded``.
        temperature: Sampling temperature for root turns (omitted when ``None``).
        sub_temperature: Sampling temperature for sub-calls (default: ``temperature``).
        context_windows: Context windows in tokens per model, laid over the built-in
            table, e.g. ``{"openai-compatible:qwen2.5-coder": 16384}`` (keys as for
            prices: ``"provider:model"``, a bare model id, ``"provider:*"``, or a
            ``Provider`` instance's name). They size what the system prompt says one
            sub-call can read and the default ``max_output_chars``; a model not in the
            table is assumed to read 8,192 tokens, and the prompt says it is a guess.
        repl: REPL process options (timeouts, limits, interpreter, extra environment).
        sandbox: Sandbox options for the REPL child (default ``SandboxOptions()``: rlimits,
            Landlock, seccomp, never root, bwrap when it works), or ``False`` to run it with
            only the always-on protections (not a security boundary).
        settings: Keys and endpoints (default: from the environment).
        load_dotenv: Also read a ``.env`` file for keys and endpoints (only when a model
            is given by name: Provider instances need no keys from it).
        enable_logging: Print a readable, coloured view of the run to stderr.
        on_event: A callback for every event of every run (see ``rlm_async.events``).
        trajectory_preview_chars: Characters of prompts and answers kept in events.
        budget: Limits for each completion's whole tree (tokens, cost, time, sub-calls,
            live REPLs), checked before work is dispatched; see ``Budget``.
        on_budget_exceeded: ``"raise"`` (default) raises ``BudgetExceeded`` carrying the
            partial result; ``"return"`` returns that result with ``finished=False``.
        warm_repls: Keep this many fresh REPL processes pre-started while the ``RLM`` is
            open (``async with``), so a completion does not wait for a process start.
            Each process serves one completion only, never two.
        rate_limits: Per provider (``"openai"``) or per model (``"openai:gpt-5-mini"``):
            requests and tokens per minute, shared by every completion of this ``RLM``;
            a 429 from the provider slows the whole fan-out down together.
        trajectory_dir: Write each completion's trajectory (JSON Lines, see
            ``rlm_async.trajectory``) to ``<dir>/<UTC time>-<run_id>.jsonl``; its path is
            in ``result.metadata["trajectory_path"]``. View it with ``rlm-async view``. The
            directory is made by the first completion, not here.
        trajectory_context: With ``trajectory_dir``, also keep each completion's context
            beside its trajectory (``<stem>.context``, a hard link to the REPL's context
            file when it can be), so ``resume(path)`` needs no ``context=``. Off by
            default: a context can be gigabytes, and private.
        options: An ``RLMOptions`` (or a dict of its fields) to start from; the keyword
            arguments above that are given win over it.
        max_connections: HTTP connections per provider, shared by every completion of this
            ``RLM`` (default: ``max(4 * max_concurrency, 256)``); requests beyond it wait in
            one FIFO queue.
        tools: Functions of the application (sync or async; or ``rlm_async.tools.Tool``)
            that model code calls in the REPL by their names, with the same signatures and
            docstrings (listed in the system prompt). Arguments and results cross as JSON,
            validated against the type hints; each call runs here, under its timeout, and
            counts in ``Budget(max_tool_calls=...)``.
        mcp_servers: MCP servers (``rlm_async.tools.MCPServer``, stdio or HTTP) whose tools
            are exposed the same way; reached on ``async with`` (or the first completion)
            and closed by ``aclose()``. Needs the ``mcp`` extra.
        cache: The sub-call cache. ``None`` (default): identical sub-calls (same model,
            prompt and settings) of one completion tree or session are sent once, the
            others answered from memory; ``False``: every sub-call is sent (e.g. to sample
            one prompt several times). A file path (``str`` or ``PathLike``) also keeps
            answers in a SQLite store there across runs and processes, so a re-run pays
            nothing for them; ``True`` uses ``~/.cache/rlm-async/subcalls.sqlite3``
            (``$XDG_CACHE_HOME``). Only answers are kept, never errors or keys; hits count
            no usage and are marked ``cached=True`` on their ``SubCallFinished`` event.
        tracer_provider: OpenTelemetry traces (the ``otel`` extra; ``docs/tracing.md``):
            each completion a trace of spans (run, turns, cells, model calls, tool calls,
            sub-RLMs) under the caller's current span. ``None`` (default): traced with the
            global ``TracerProvider`` when the application set one; a ``TracerProvider``:
            traced with it; ``False``: never traced.

    Example:
        async with RLM(model="gpt-5", sub_model="gpt-5-mini") as rlm:
            result = await rlm.completion(huge_text, "Which city is mentioned most?")
            print(result.answer, result.usage)
            quick = await rlm.completion(huge_text, "Any dates?", options={"max_iterations": 3})
    """

    _recipe: Recipe

    def __init__(
        self,
        model: ModelChoice = "gpt-5",
        sub_model: ModelChoice | None = None,
        *,
        options: Overrides = None,
        max_iterations: int | None = None,
        max_depth: int | None = None,
        depth_models: Sequence[ModelChoice] = (),
        max_concurrency: int | None = None,
        allowed_models: Sequence[str] = (),
        cell_timeout: float | None = None,
        max_output_chars: int | None = None,
        max_tokens: int | None = None,
        sub_max_tokens: int | None = None,
        compact_at: float | None = None,
        temperature: float | None = None,
        sub_temperature: float | None = None,
        repl: ReplOptions | None = None,
        sandbox: SandboxOptions | bool | None = None,
        settings: Settings | None = None,
        load_dotenv: bool = False,
        enable_logging: bool | None = None,
        on_event: Callable[[ev.Event], None] | None = None,
        trajectory_preview_chars: int | None = None,
        budget: Budget | None = None,
        on_budget_exceeded: Literal["raise", "return"] | None = None,
        warm_repls: int = 0,
        rate_limits: Mapping[str, RateLimit] | None = None,
        trajectory_dir: str | os.PathLike[str] | None = None,
        trajectory_context: bool | None = None,
        max_connections: int | None = None,
        context_windows: Mapping[str, int] | None = None,
        tools: Sequence[Callable[..., Any] | Tool] = (),
        mcp_servers: Sequence[MCPServer] = (),
        cache: str | os.PathLike[str] | bool | None = None,
        tracer_provider: Any = None,
    ) -> None:
        given = {
            "max_iterations": max_iterations,
            "max_depth": max_depth,
            "max_concurrency": max_concurrency,
            "max_output_chars": max_output_chars,
            "max_tokens": max_tokens,
            "sub_max_tokens": sub_max_tokens,
            "compact_at": compact_at,
            "temperature": temperature,
            "sub_temperature": sub_temperature,
            "repl": repl,
            "budget": budget,
            "on_budget_exceeded": on_budget_exceeded,
            "trajectory_preview_chars": trajectory_preview_chars,
            "trajectory_dir": trajectory_dir,
            "trajectory_context": trajectory_context,
            "enable_logging": enable_logging,
            "on_event": on_event,
            "tracer_provider": tracer_provider,
        }
        chosen = options_from_arguments(options, given, cell_timeout, sandbox)
        recipe = Recipe.from_arguments(
            model,
            sub_model,
            depth_models,
            allowed_models,
            settings=settings,
            load_dotenv=load_dotenv,
            rate_limits=rate_limits,
            max_connections=max_connections,
            context_windows=context_windows,
            warm_repls=warm_repls,
            max_concurrency=chosen.max_concurrency,
            tools=tools,
            mcp_servers=mcp_servers,
            cache=cache,
        )
        self._setup(recipe, chosen)

    def _setup(self, recipe: Recipe, options: RLMOptions) -> None:
        models, resources = recipe.build()
        self._recipe = recipe
        self._options = options
        self._models = models
        self._resources = resources

    # ---- options ---------------------------------------------------------------------

    def with_options(self, options: Overrides = None, /, **changes: Any) -> RLM:
        """A view of this ``RLM`` with other options, sharing its clients, limiters and REPLs.

        Closing either closes both (they hold the same resources).

        Args:
            options: An ``RLMOptions``, or a dict of the fields to change.
            **changes: Fields to change, e.g. ``max_iterations=5``.

        Raises:
            ConfigurationError: an unknown field or a bad value, naming it.

        Example:
            quick = rlm.with_options(max_iterations=3, budget=Budget(max_seconds=30))
        """
        view = object.__new__(RLM)
        view._recipe = self._recipe
        view._models = self._models
        view._resources = self._resources
        view._options = self._options.merged(options).merged(changes or None)
        return view

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> RLM:
        resources = self._resources
        if resources.closed:
            raise ConfigurationError("this RLM is closed; create a new one")
        resources.trajectory_dir(self._options)  # a bad directory fails here, not mid-run
        if resources.warm_repls and resources.repl_pool is None:
            resources.repl_pool = ReplPool(self._options.repl, resources.warm_repls)
            await resources.repl_pool.__aenter__()
        await resources.open_tools()  # an MCP server that cannot be reached fails here
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every REPL of runs still going and every HTTP client; idempotent."""
        resources = self._resources
        if resources.closed:
            if resources.close_done is not None:  # another task is closing it: wait for that
                await resources.close_done.wait()
            return
        resources.closed = True
        resources.close_done = anyio.Event()
        try:
            # Its own task, like a completion: a native cancel of the caller (a second
            # Ctrl-C) must not leave the pool, the sessions or the clients open.
            await run_cancel_safely(resources.close)
        finally:
            resources.close_done.set()

    # ---- running --------------------------------------------------------------------------

    async def completion(
        self,
        context: Any,
        query: str,
        *,
        on_event: Callable[[ev.Event], None] | None = None,
        options: Overrides = None,
        output_type: Any = None,
    ) -> RLMResult:
        """Answer ``query`` about ``context``.

        Args:
            context: A ``str``, a list (of str or JSON values), a dict, or a list of chat
                messages. It is loaded into the REPL as ``context``; the root model never
                reads it whole.
            query: The question.
            on_event: A callback for this run's events (after the options' own ``on_event``).
            options: Options for this call only: an ``RLMOptions``, or a dict of the fields
                to change, e.g. ``{"max_iterations": 5}``.
            output_type: What the answer must be: a pydantic model, a dataclass, a
                ``TypedDict``, ``list[...]`` (any type pydantic validates), or a JSON schema
                as a dict (needs ``jsonschema``). The system prompt shows its schema; an
                answer that does not validate goes back to the model with what is wrong,
                up to ``output_retries`` times. The validated value is ``result.output``.

        Returns:
            The answer with usage per model, iterations, elapsed time and the trajectory.

        Raises:
            ConfigurationError: a bad option (named), or the ``RLM`` is already closed.
            ContextTypeError: the context is of a type the REPL cannot hold.
            ProviderError: the root model failed after retries (or a sub-model's key is bad).
            ReplCrashed: the REPL kept crashing.
            BudgetExceeded: a budget ran out (with ``on_budget_exceeded="raise"``).
            RLMClosed: the ``RLM`` was closed while the completion was running.
            OutputValidationError: the answers did not match ``output_type`` (with the last
                one and its errors).
        """
        chosen = self._options.merged(options)
        emit = fan_out(chosen.on_event, on_event)
        output = None if output_type is None else OutputSpec(output_type)
        # In a task of its own: a native cancel (asyncio.timeout, task.cancel) of the caller
        # must not cut through the shielded clean-up that kills the run's REPL processes.
        return await run_cancel_safely(
            functools.partial(self._run, chosen, context, query, emit, output=output)
        )

    def session(
        self,
        context: Any,
        *,
        on_event: Callable[[ev.Event], None] | None = None,
        budget: Budget | None = None,
    ) -> Session:
        """A conversation over one REPL: completions that see what earlier ones left.

        Args:
            context: The session's first context, ``context`` (and ``context_1``) in the
                REPL; ``Session.add_context`` adds more.
            on_event: A callback for every event of the session's completions (after the
                options' own ``on_event``, before a completion's).
            budget: Limits for the whole session: tokens, cost, seconds, sub-calls and tool
                calls summed over its completions (each completion's own budget is
                tightened to what is left; past it, ``BudgetExceeded``).

        Raises:
            ConfigurationError: ``budget`` is not a ``Budget``.

        Returns:
            A ``Session``: use it as an async context manager; its ``completion(query)``
            runs one completion over the session's REPL. Closing the ``RLM`` closes it.

        Example:
            async with rlm.session(context) as chat:
                first = await chat.completion("Which customers churned in March?")
                second = await chat.completion("And which of them had open tickets?")
        """
        return Session(
            self._options, self._models, self._resources, context, on_event=on_event, budget=budget
        )

    def resume_session(
        self,
        path_or_id: str | os.PathLike[str],
        *,
        context: Any = None,
        on_event: Callable[[ev.Event], None] | None = None,
        budget: Budget | None = None,
    ) -> Session:
        """A session whose parent died (or was stopped), continued from its trajectories.

        Starting it (``async with``) replays, in a fresh REPL, every completion of the
        recorded session that finished (their cells run again; their model, sub-call and
        tool calls answered from the record: nothing paid twice; ``query_N``/``answer_N``
        restored), then resumes the one it stopped inside, if any; after that it is a
        session like ``rlm.session``'s (``chat.resumed`` holds the replayed results). See
        ``docs/trajectory.md``.

        Args:
            path_or_id: A trajectory file of the session (any of its completions: the
                others are found beside it), or the session's id (``result.metadata
                ["session"]``), looked for in this ``RLM``'s ``trajectory_dir``.
            context: The session's first context, again; ``None``: the one kept beside its
                trajectories (recorded with ``trajectory_context=True``). Contexts added
                with ``add_context`` are not kept (a replayed cell reading one stops it).
            on_event, budget: As for ``session`` (the replayed completions spend nothing).

        Raises:
            ResumeError: (on start) no such session, another context, or a replayed cell
                printed or asked otherwise.

        Example:
            async with rlm.resume_session("runs/20250101T120000Z-3f2a.jsonl", context=docs) as chat:
                more = await chat.completion("And in April?")
        """
        return Session(
            self._options,
            self._models,
            self._resources,
            context,
            resume_from=(path_or_id, self._options.trajectory_dir),
            on_event=on_event,
            budget=budget,
        )

    async def resume(
        self,
        path: str | os.PathLike[str],
        *,
        context: Any = None,
        options: Overrides = None,
        output_type: Any = None,
    ) -> RLMResult:
        """Continue a stopped run from its trajectory file (see ``docs/trajectory.md``): its
        cells are replayed in a fresh REPL, their sub-calls and tool calls answered from the
        record (nothing paid twice), then the loop goes on. ``context``: the run's, again
        (``None``: the one kept beside the file, recorded with ``trajectory_context=True``);
        ``output_type``: a typed run's type, again (its recorded answers are checked as they
        were, and ``result.output`` is the validated answer).

        Raises:
            ConfigurationError: a bad option or ``output_type``.
            ResumeError: another context (or none given, and none kept), a typed run resumed
                without its ``output_type``, or a replayed cell printed or asked otherwise.
        """
        chosen = self._options.merged(options)
        output = None if output_type is None else OutputSpec(output_type)
        return await resume_run(
            chosen, self._models, self._resources, path, context, chosen.on_event, output=output
        )

    def stream(
        self, context: Any, query: str, *, options: Overrides = None, output_type: Any = None
    ) -> AsyncIterator[ev.Event]:
        """Run a completion and yield its events as they happen.

        The last event is ``RunFinished`` (with the answer) or ``RunFailed``, after which the
        error is raised. Leaving the loop early cancels the run and cleans up its REPLs.

        Args:
            context: As for ``completion``.
            query: The question.
            options: Options for this call only, as for ``completion``.
            output_type: What the answer must be, as for ``completion``; the validated
                value is the ``FinalAnswer`` event's ``output`` (as JSON values).

        Raises:
            ConfigurationError: a bad option or ``output_type`` (at once, before the first
                event).

        Example:
            async for event in rlm.stream(context, query):
                if event.type == "subcall_finished":
                    print(event.model, event.latency)
        """
        chosen = self._options.merged(options)
        output = None if output_type is None else OutputSpec(output_type)

        def start(emit: Callable[[ev.Event], None]) -> Awaitable[RLMResult]:
            return self._run(chosen, context, query, emit, stream_text=True, output=output)

        # The generator itself, not one wrapped in another: leaving the loop early closes
        # it (and cancels the run) at once, not when the wrapper is collected.
        return stream_run(start, chosen.on_event)

    async def _run(
        self,
        options: RLMOptions,
        context: Any,
        query: str,
        emit: Callable[[ev.Event], None] | None,
        *,
        stream_text: bool = False,
        output: OutputSpec | None = None,
    ) -> RLMResult:
        await self._resources.open_tools()  # MCP servers: reached on first use
        return await run_completion(
            options,
            self._models,
            self._resources,
            context,
            query,
            emit,
            stream_text=stream_text,
            output=output,
        )

    def completion_sync(
        self, context: Any, query: str, *, options: Overrides = None, output_type: Any = None
    ) -> RLMResult:
        """``completion`` for scripts without an event loop (runs one and closes clients).

        Raises:
            ConfigurationError: when called from inside a running event loop (use
                ``await rlm.completion(...)`` there).
        """
        refuse_inside_event_loop()
        chosen = self._options.merged(options)

        async def main() -> RLMResult:
            # HTTP clients belong to one event loop, so this call gets fresh resources made
            # the same way, closed when the call's loop ends.
            fresh = object.__new__(RLM)
            fresh._setup(self._recipe, chosen)
            async with fresh:
                return await fresh.completion(context, query, output_type=output_type)

        return asyncio.run(main())
