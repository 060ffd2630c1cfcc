"""``RLM``: the public engine. Owns the provider clients and the live REPLs of its runs."""

from __future__ import annotations

import asyncio
import functools
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio

from rlm_async import events as ev
from rlm_async._budget import Budget
from rlm_async._exceptions import BudgetExceeded, ConfigurationError
from rlm_async._logging import get_logger
from rlm_async._ratelimit import RateLimit, RateLimiter
from rlm_async._run import RunTree, run_rlm
from rlm_async._settings import Settings
from rlm_async._tasks import run_cancel_safely, wait_out
from rlm_async._types import RLMResult
from rlm_async._windows import ContextWindows, Window, output_chars_for
from rlm_async.providers import ProviderPool, ResolvedModel
from rlm_async.providers._base import Provider
from rlm_async.repl import ReplOptions, ReplSession
from rlm_async.repl._pool import ReplPool
from rlm_async.repl._sandbox_options import SandboxOptions

if TYPE_CHECKING:
    from rlm_async._trajectory_thread import BackgroundTrajectory

__all__ = ["RLM"]

_log = get_logger("rlm_async.engine")

ModelSpec = str | Provider


class RLM:
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
        load_dotenv: Also read a ``.env`` file for keys and endpoints.
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
            in ``result.metadata["trajectory_path"]``. View it with ``rlm-async view``.
        max_connections: HTTP connections per provider, shared by every completion of this
            ``RLM`` (default: ``max(4 * max_concurrency, 256)``); requests beyond it wait in
            one FIFO queue.

    Example:
        async with RLM(model="gpt-5", sub_model="gpt-5-mini") as rlm:
            result = await rlm.completion(huge_text, "Which city is mentioned most?")
            print(result.answer, result.usage)
    """

    def __init__(
        self,
        model: ModelSpec = "gpt-5",
        sub_model: ModelSpec | None = None,
        *,
        max_iterations: int = 20,
        max_depth: int = 1,
        depth_models: Sequence[ModelSpec] = (),
        max_concurrency: int = 16,
        allowed_models: Sequence[str] = (),
        cell_timeout: float | None = None,
        max_output_chars: int | None = None,
        max_tokens: int | None = None,
        sub_max_tokens: int | None = None,
        temperature: float | None = None,
        sub_temperature: float | None = None,
        repl: ReplOptions | None = None,
        sandbox: SandboxOptions | bool | None = None,
        settings: Settings | None = None,
        load_dotenv: bool = False,
        enable_logging: bool = False,
        on_event: Callable[[ev.Event], None] | None = None,
        trajectory_preview_chars: int = 2_000,
        budget: Budget | None = None,
        on_budget_exceeded: Literal["raise", "return"] = "raise",
        warm_repls: int = 0,
        rate_limits: Mapping[str, RateLimit] | None = None,
        trajectory_dir: str | os.PathLike[str] | None = None,
        max_connections: int | None = None,
        context_windows: Mapping[str, int] | None = None,
    ) -> None:
        self._init_args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        _check_int("max_iterations", max_iterations, 1)
        _check_int("max_depth", max_depth, 1)
        _check_int("max_concurrency", max_concurrency, 1)
        if max_output_chars is not None:
            _check_int("max_output_chars", max_output_chars, 100)
        _check_int("trajectory_preview_chars", trajectory_preview_chars, 0)
        _check_int("warm_repls", warm_repls, 0)
        for name, value in (("max_tokens", max_tokens), ("sub_max_tokens", sub_max_tokens)):
            if value is not None:
                _check_int(name, value, 1)
        for setting, number in (("temperature", temperature), ("sub_temperature", sub_temperature)):
            if number is not None and (
                isinstance(number, bool)
                or not isinstance(number, int | float)
                or not math.isfinite(number)
            ):
                raise ConfigurationError(f"{setting} must be a number, got {number!r}")
        self.windows = ContextWindows(context_windows)
        if repl is not None and not isinstance(repl, ReplOptions):
            raise ConfigurationError(
                f"repl must be a rlm_async.ReplOptions, got {type(repl).__name__}"
            )
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigurationError(
                f"budget must be a rlm_async.Budget, got {type(budget).__name__}"
            )
        if on_event is not None and not callable(on_event):
            raise ConfigurationError(
                f"on_event must be a function taking one event, got {type(on_event).__name__}"
            )
        if settings is not None and not isinstance(settings, Settings):
            raise ConfigurationError(
                f"settings must be a rlm_async.Settings, got {type(settings).__name__}; "
                "build one with Settings(...) or Settings.from_env()"
            )
        if rate_limits is not None and not isinstance(rate_limits, Mapping):
            raise ConfigurationError(
                "rate_limits must be a mapping of provider name to rlm_async.RateLimit, "
                f"e.g. {{'openai': RateLimit(requests_per_minute=500)}}; got "
                f"{type(rate_limits).__name__}"
            )
        depth_models = _check_names("depth_models", depth_models, models=True)
        allowed_models = _check_names("allowed_models", allowed_models, models=False)
        trajectory_dir = _check_trajectory_dir(trajectory_dir)
        if on_budget_exceeded not in ("raise", "return"):
            raise ConfigurationError(
                f"on_budget_exceeded must be 'raise' or 'return', got {on_budget_exceeded!r}"
            )
        self.budget = budget or Budget()
        self.on_budget_exceeded = on_budget_exceeded
        self.max_iterations = max_iterations
        self.max_depth = max_depth
        self.max_concurrency = max_concurrency
        self.max_tokens = max_tokens
        # Sub-calls sample like the root unless told otherwise.
        self.sub_max_tokens = max_tokens if sub_max_tokens is None else sub_max_tokens
        self.temperature = temperature
        self.sub_temperature = temperature if sub_temperature is None else sub_temperature
        self.enable_logging = enable_logging
        self.trajectory_preview_chars = trajectory_preview_chars
        self._on_event = on_event
        self.repl_options = self._repl_options(repl, cell_timeout, sandbox)

        if settings is None:
            settings = Settings.from_env(load_dotenv=load_dotenv)
        if max_connections is not None:
            _check_int("max_connections", max_connections, 1)
        # Sized for the process, not one completion: every completion of this RLM shares it.
        connections = max_connections or max(4 * max_concurrency, 256)
        self._pool = ProviderPool(settings, max_connections=connections)
        # Resolve every model now: an unknown name or a missing key fails here, with a
        # message that says how to fix it, not in the middle of a run.
        self._root = self._pool.resolve(_check_model("model", model))
        self._sub = (
            self._root
            if sub_model is None
            else self._pool.resolve(_check_model("sub_model", sub_model))
        )
        self._depth_models = [
            self._pool.resolve(_check_model("depth_models[]", m)) for m in depth_models
        ]
        # Sized for the root model: a small model reads a small cell output.
        self.max_output_chars: int = (
            max_output_chars
            if max_output_chars is not None
            else output_chars_for(self.window_of(self._root).tokens)
        )
        self._allowed: dict[str, ResolvedModel] = {}
        for resolved in (self._sub, self._root, *self._depth_models):
            self._allowed.setdefault(resolved.label, resolved)
        for name in allowed_models:
            resolved = self._pool.resolve(_check_model("allowed_models[]", name))
            self._allowed.setdefault(resolved.label, resolved)
            self._allowed.setdefault(name, resolved)
        for spec, resolved in ((model, self._root), (sub_model, self._sub)):
            if isinstance(spec, str):
                self._allowed.setdefault(spec, resolved)
        self._sessions: set[ReplSession] = set()
        # The cancel scope of every run in progress: aclose() cancels them and waits, so no
        # run is left restarting a REPL that aclose() is killing.
        self._running: set[anyio.CancelScope] = set()
        self._drained: anyio.Event | None = None
        self._close_done: anyio.Event | None = None
        self._closed = False
        self._warm_repls = warm_repls
        self.trajectory_dir = trajectory_dir
        self._rate_limiters: dict[str, RateLimiter] = {}
        for key, limit in (rate_limits or {}).items():
            if not isinstance(limit, RateLimit):
                raise ConfigurationError(
                    f"rate_limits[{key!r}] must be a rlm_async.RateLimit, "
                    f"got {type(limit).__name__}"
                )
            self._rate_limiters[key] = RateLimiter(limit)
        # Retries inside an HTTP adapter report 429s to its provider's limiter, so the
        # whole fan-out backs off together (see providers._retry.run_with_retries).
        for resolved in {
            m.label: m
            for m in (self._root, self._sub, *self._depth_models, *self._allowed.values())
        }.values():
            gate = self._rate_limiters.get(resolved.label.split(":", 1)[0])
            if gate is not None and hasattr(resolved.provider, "rate_gate"):
                resolved.provider.rate_gate = gate
        self.repl_pool: ReplPool | None = None

    # ---- configuration helpers used by runs ---------------------------------------------

    @staticmethod
    def _repl_options(
        repl: ReplOptions | None, cell_timeout: float | None, sandbox: Any
    ) -> ReplOptions:
        options = repl or ReplOptions()
        updates: dict[str, Any] = {}
        if cell_timeout is not None:
            if (
                not isinstance(cell_timeout, int | float)
                or isinstance(cell_timeout, bool)
                or not math.isfinite(cell_timeout)
                or cell_timeout <= 0
            ):
                raise ConfigurationError(
                    f"cell_timeout must be a positive number of seconds, got {cell_timeout!r}"
                )
            updates["cell_timeout"] = float(cell_timeout)
        if sandbox is False:
            updates["sandbox"] = None
        elif isinstance(sandbox, SandboxOptions):
            updates["sandbox"] = sandbox
        elif sandbox is not None and sandbox is not True:
            raise ConfigurationError(
                f"sandbox must be a rlm_async.SandboxOptions, True or False, got {sandbox!r}"
            )
        return options.model_copy(update=updates) if updates else options

    def _model_for_depth(self, depth: int) -> ResolvedModel:
        if depth < len(self._depth_models):
            return self._depth_models[depth]
        return self._root if depth == 0 else self._sub

    def _sub_model_for_depth(self, depth: int) -> ResolvedModel:
        return (
            self._model_for_depth(depth + 1) if depth + 1 < len(self._depth_models) else self._sub
        )

    def window_of(self, model: ResolvedModel) -> Window:
        """The context window of a resolved model (from ``context_windows`` and the table)."""
        return self.windows.for_label(model.label, model.model)

    def _allowed_model(self, name: str) -> ResolvedModel:
        found = self._allowed.get(name)
        if found is None:
            allowed = ", ".join(sorted({m.label for m in self._allowed.values()}))
            raise ConfigurationError(
                f"model {name!r} is not allowed here; allowed: {allowed}. "
                "(The application can allow more with RLM(allowed_models=[...]).)"
            )
        return found

    @property
    def allowed_model_names(self) -> list[str]:
        """Model labels the REPL may ask for with ``model=``, the default sub-model first."""
        names = [self._sub.label]
        names += [m.label for m in self._allowed.values() if m.label not in names]
        return names if len(names) > 1 else []

    @property
    def closed(self) -> bool:
        """``True`` once ``aclose()`` ran: no new completions are accepted."""
        return self._closed

    @property
    def model(self) -> str:
        return self._root.label

    @property
    def sub_model(self) -> str:
        return self._sub.label

    def _rate_limiter(self, label: str) -> RateLimiter | None:
        """The limiter for a model label: by full label first, then by provider name."""
        if not self._rate_limiters:
            return None
        return self._rate_limiters.get(label) or self._rate_limiters.get(label.split(":", 1)[0])

    def _track(self, session: ReplSession) -> None:
        self._sessions.add(session)

    def _untrack(self, session: ReplSession) -> None:
        self._sessions.discard(session)

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> RLM:
        if self._closed:
            raise ConfigurationError("this RLM is closed; create a new one")
        if self._warm_repls and self.repl_pool is None:
            self.repl_pool = ReplPool(self.repl_options, self._warm_repls)
            await self.repl_pool.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every REPL of runs still going and every HTTP client; idempotent."""
        if self._closed:
            if self._close_done is not None:  # another task is closing it: wait for that
                await self._close_done.wait()
            return
        self._closed = True
        self._close_done = anyio.Event()
        try:
            # Its own task, like a completion: a native cancel of the caller (a second
            # Ctrl-C) must not leave the pool, the sessions or the clients open.
            await run_cancel_safely(self._close)
        finally:
            self._close_done.set()

    async def _close(self) -> None:
        with anyio.CancelScope(shield=True):
            if self._running:
                self._drained = anyio.Event()
                for scope in list(self._running):
                    scope.cancel()
                with anyio.move_on_after(10):  # each run's own clean-up is bounded in time
                    await self._drained.wait()
            if self.repl_pool is not None:
                await self.repl_pool.aclose()
            for session in list(self._sessions):
                await session.aclose()
            await self._pool.aclose()

    # ---- running --------------------------------------------------------------------------

    async def completion(
        self,
        context: Any,
        query: str,
        *,
        on_event: Callable[[ev.Event], None] | None = None,
    ) -> RLMResult:
        """Answer ``query`` about ``context``.

        Args:
            context: A ``str``, a list (of str or JSON values), a dict, or a list of chat
                messages. It is loaded into the REPL as ``context``; the root model never
                reads it whole.
            query: The question.
            on_event: A callback for this run's events (after the ``RLM``'s own ``on_event``).

        Returns:
            The answer with usage per model, iterations, elapsed time and the trajectory.

        Raises:
            ContextTypeError: the context is of a type the REPL cannot hold.
            ProviderError: the root model failed after retries (or a sub-model's key is bad).
            ReplCrashed: the REPL kept crashing.
        """
        emit = self._on_event
        if on_event is not None:
            callbacks = [c for c in (self._on_event, on_event) if c is not None]

            def emit(event: ev.Event) -> None:
                for callback in callbacks:
                    callback(event)

        # In a task of its own: a native cancel (asyncio.timeout, task.cancel) of the caller
        # must not cut through the shielded clean-up that kills the run's REPL processes.
        return await run_cancel_safely(functools.partial(self._run, context, query, emit))

    async def stream(self, context: Any, query: str) -> AsyncIterator[ev.Event]:
        """Run a completion and yield its events as they happen.

        The last event is ``RunFinished`` (with the answer) or ``RunFailed``, after which the
        error is raised. Leaving the loop early cancels the run and cleans up its REPLs.

        Example:
            async for event in rlm.stream(context, query):
                if event.type == "subcall_finished":
                    print(event.model, event.latency)
        """
        queue: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        scopes: list[anyio.CancelScope] = []

        def emit(event: ev.Event) -> None:
            if self._on_event is not None:
                self._on_event(event)
            queue.put_nowait(event)

        async def produce() -> RLMResult | None:
            try:
                with anyio.CancelScope() as scope:
                    scopes.append(scope)
                    return await self._run(context, query, emit, stream_text=True)
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

    async def _run(
        self,
        context: Any,
        query: str,
        emit: Callable[[ev.Event], None] | None,
        *,
        stream_text: bool = False,
    ) -> RLMResult:
        if self._closed:
            raise ConfigurationError("this RLM is closed; create a new one")
        if not isinstance(query, str):
            raise ConfigurationError(f"query must be a str, got {type(query).__name__}")
        listeners: list[Callable[[ev.Event], None]] = []
        if emit is not None:
            listeners.append(emit)
        if self.enable_logging:
            from rlm_async._console import ConsoleRenderer

            listeners.append(ConsoleRenderer())

        def fan_out(event: ev.Event) -> None:
            for listener in listeners:
                listener(event)

        writer = None
        if self.trajectory_dir is not None:
            from rlm_async._trajectory_thread import BackgroundTrajectory
            from rlm_async.trajectory import TrajectoryWriter

            # Written in a thread of its own: the loop never waits on the disk.
            writer = BackgroundTrajectory(TrajectoryWriter.in_directory(self.trajectory_dir))
            listeners.insert(0, writer)  # first: the file gets each event even if a callback raises
        tree = RunTree(rlm=self, emit=fan_out, stream_text=stream_text)
        closing = anyio.CancelScope()
        self._running.add(closing)
        result: RLMResult | None = None
        try:
            with closing:
                result = await self._run_tree(tree, writer, context, query)
                return result
            raise ConfigurationError(
                "this RLM was closed (aclose() or the end of its `async with` block) while "
                "the completion was running; close it after its completions finish"
            )
        except BudgetExceeded as exc:
            result = exc.partial  # raised with what the run had: it reports the trajectory
            raise
        finally:
            self._running.discard(closing)
            if not self._running and self._drained is not None:
                self._drained.set()
            if writer is not None:
                # Never raises: a trajectory that failed is logged and said in the result,
                # and does not replace the result or the run's own exception.
                problem = await writer.aclose()
                if problem is not None and result is not None:
                    result.metadata["trajectory_error"] = problem

    async def _run_tree(
        self, tree: RunTree, writer: BackgroundTrajectory | None, context: Any, query: str
    ) -> RLMResult:
        """The run under the time budget; a spent budget raises or returns the partial."""
        deadline = self.budget.max_seconds
        if deadline is not None:
            tree.deadline = anyio.current_time() + deadline
        try:
            with anyio.move_on_after(math.inf if deadline is None else deadline):
                result = await run_rlm(tree, context, query)
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
        error.partial = tree.partial_result()
        if writer is not None:
            error.partial.metadata["trajectory_path"] = writer.path
        if self.on_budget_exceeded == "return":
            return error.partial
        raise error

    def completion_sync(self, context: Any, query: str) -> RLMResult:
        """``completion`` for scripts without an event loop (runs one and closes clients).

        Raises:
            ConfigurationError: when called from inside a running event loop (use
                ``await rlm.completion(...)`` there).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError(
                "completion_sync() cannot run inside an event loop; use `await rlm.completion(...)`"
            )

        async def main() -> RLMResult:
            # HTTP clients belong to one event loop, so this call gets its own RLM with the
            # same settings, closed when the call's loop ends.
            async with RLM(**self._init_args) as rlm:
                return await rlm.completion(context, query)

        return asyncio.run(main())


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an int ≥ {minimum}, got {value!r}")


def _check_names(name: str, value: object, *, models: bool) -> Sequence[Any]:
    """A list of model names (or, for ``depth_models``, Provider instances too)."""
    kind = "model names or Provider instances" if models else "model names"
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
        raise ConfigurationError(
            f"{name} must be a list of {kind}, e.g. {name}=['gpt-5-mini'], got {value!r}"
        )
    return list(value)


def _check_trajectory_dir(value: object) -> str | os.PathLike[str] | None:
    """A directory for trajectory files: made now, so a bad path fails here, not mid-run."""
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigurationError(
            f"trajectory_dir must be a path (str or pathlib.Path), got {type(value).__name__}"
        )
    try:
        os.makedirs(value, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"trajectory_dir {os.fspath(value)!r} cannot be used as a directory: "
            f"{exc.strerror or exc}; pass a writable directory"
        ) from exc
    return value


def _check_model(name: str, value: object) -> ModelSpec:
    if isinstance(value, str):
        if not value.strip():
            raise ConfigurationError(
                f"{name} must not be empty; e.g. 'gpt-5' or 'anthropic:claude-sonnet-4-5'"
            )
        return value
    if isinstance(value, Provider):
        return value
    raise ConfigurationError(
        f"{name} must be a model name (e.g. 'gpt-5', 'openai:gpt-4o', 'ollama:llama3.1') or a "
        f"Provider instance, got {type(value).__name__}"
    )
