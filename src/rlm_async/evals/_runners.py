"""The methods an evaluation compares: the RLM, and the same model called directly.

``rlm`` answers with :class:`~rlm_async.RLM` (any of its options). ``direct`` is the
paper's base row: one call to the model with the whole context in its prompt, cut to the
model's context window when it does not fit (the start and the end kept, a note where the
middle was), and the fraction left out recorded in the row.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

import anyio

from rlm_async import events as ev
from rlm_async._exceptions import (
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigurationError,
)
from rlm_async._types import Message, RLMResult, UsageSummary
from rlm_async.engine._rlm import RLM
from rlm_async.engine._spend import Spend
from rlm_async.evals._task import Example
from rlm_async.providers._base import CompletionRequest, Provider
from rlm_async.providers._registry import ProviderRegistry
from rlm_async.providers._settings import Settings
from rlm_async.providers._windows import ContextWindows, prompt_chars_for

__all__ = [
    "DirectRunner",
    "ModelSpec",
    "Outcome",
    "RLMRunner",
    "Runner",
    "direct_prompt",
    "truncate_context",
]

#: A model for a runner: a name, a ``Provider``, or a function of the example giving one
#: (scripted models answer one example each).
ModelSpec: TypeAlias = "str | Provider | Callable[[Example], str | Provider]"


@dataclass
class Outcome:
    """What one method did on one example (the row, less what the example and score say).

    A failed run still has its usage so far (a spent budget's partial result) and the error.
    """

    answer: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: float | None = None
    latency_s: float = 0.0
    turns: int = 0
    subcalls: int = 0
    truncated: float | None = None
    trajectory: str | None = None
    error: str | None = None


@runtime_checkable
class Runner(Protocol):
    """A method: answers examples. Use it as an async context manager around the runs."""

    name: str
    """The method's name in the results (``"rlm"``, ``"direct"``)."""
    model: str
    """The model(s) it runs, as a label for the results (a changed model is a new run)."""

    async def __aenter__(self) -> Runner: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def run(self, example: Example) -> Outcome:
        """Answer ``example``; a provider error or a spent budget is returned in the outcome."""
        ...


def _label(model: object, label: str | None) -> str:
    if label is not None:
        return label
    if isinstance(model, str):
        return model
    if isinstance(model, Provider):
        return str(getattr(model, "model", None) or model.name)
    raise ConfigurationError(
        "a model given as a function of the example needs a label= naming it in the results"
    )


def _resolve(model: str | Provider | Callable[[Example], str | Provider], example: Example) -> Any:
    if isinstance(model, str | Provider):
        return model
    return model(example)


def _usage(outcome: Outcome, usage: UsageSummary) -> None:
    outcome.input_tokens = usage.input_tokens
    outcome.output_tokens = usage.output_tokens
    outcome.cached_tokens = sum(m.cached_tokens for m in usage.models.values())
    outcome.cost = usage.cost_usd


def _from_result(outcome: Outcome, result: RLMResult) -> None:
    _usage(outcome, result.usage)
    outcome.turns = result.iterations
    outcome.subcalls = int(result.metadata.get("subcalls") or 0)
    path = result.metadata.get("trajectory_path")
    outcome.trajectory = None if path is None else str(path)


class _RootRun(Spend):
    """What a run did, from its events, for a run that raises (no result to say it): the
    root run's id (its trajectory is ``<UTC time>-<run_id>.jsonl``), its finished turns, its
    sub-calls, and what it spent (:class:`Spend`: as ``result.usage`` adds it up)."""

    def __init__(self) -> None:
        super().__init__()
        self.run_id: str | None = None
        self.turns = 0
        self.subcalls = 0

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted) and event.depth == 0 and self.run_id is None:
            self.run_id = event.run_id
        elif isinstance(event, ev.TurnFinished) and event.depth == 0:
            self.turns += 1
        elif isinstance(event, ev.SubCallFinished):
            self.subcalls += 1
        super().__call__(event)


def _trajectory_dir(options: Mapping[str, Any]) -> Path | None:
    """Where the RLM these options make writes its trajectories (the keyword first, as RLM
    reads it, then its ``options``)."""
    found = options.get("trajectory_dir")
    if found is None:
        base = options.get("options")
        found = base.get("trajectory_dir") if isinstance(base, Mapping) else None
        found = getattr(base, "trajectory_dir", None) if found is None else found
    return None if found is None else Path(found)


def _trajectory_of(directory: Path | None, run: _RootRun) -> str | None:
    if directory is None or run.run_id is None:
        return None
    found = sorted(directory.glob(f"*-{run.run_id}.jsonl"))
    return str(found[-1]) if found else None


class RLMRunner:
    """The ``rlm`` method: each example answered by an :class:`~rlm_async.RLM`.

    Args:
        model: The root model: a name, a ``Provider``, or a function of the example.
        sub_model: The sub-call model (default: the root model), same forms.
        options: Any other ``RLM`` keyword arguments (``max_iterations``, ``budget``,
            ``trajectory_dir``, ``settings``...).
        label: The model's name in the results (needed when ``model`` is a function).

    With names or providers, one ``RLM`` serves every example (its connections and rate
    limits shared); with a function, each example gets an ``RLM`` of its own.
    """

    name = "rlm"

    def __init__(
        self,
        model: ModelSpec,
        sub_model: ModelSpec | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        label: str | None = None,
    ) -> None:
        self._model = model
        self._sub_model = sub_model
        self._options = dict(options or {})
        if label is None:
            label = _label(model, None)
            if sub_model is not None:
                label += f" + {_label(sub_model, None)}"
        self.model = label
        self._shared: RLM | None = None
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> RLMRunner:
        model, sub_model = self._model, self._sub_model
        if isinstance(model, str | Provider) and (
            sub_model is None or isinstance(sub_model, str | Provider)
        ):
            self._shared = await self._stack.enter_async_context(
                RLM(model=model, sub_model=sub_model, **self._options)
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def run(self, example: Example) -> Outcome:
        outcome = Outcome()
        started = time.perf_counter()
        root = _RootRun()
        try:
            if self._shared is not None:
                result = await self._shared.completion(
                    example.context, example.query, on_event=root
                )
            else:
                sub = None if self._sub_model is None else _resolve(self._sub_model, example)
                async with RLM(
                    model=_resolve(self._model, example), sub_model=sub, **self._options
                ) as rlm:
                    result = await rlm.completion(example.context, example.query, on_event=root)
            _from_result(outcome, result)
            outcome.answer = result.answer
            if not result.finished:
                outcome.error = (
                    "no final answer: the run ended before one (a budget, or the last turn)"
                )
        except BudgetExceeded as exc:
            if exc.partial is not None:
                _from_result(outcome, exc.partial)
            outcome.error = f"BudgetExceeded: {exc}"
        except _FATAL:
            raise
        except Exception as exc:  # every other failure is this row's only
            outcome.error = f"{type(exc).__name__}: {exc}"
            # A run that raised has no result to say where its trajectory went, and a failed
            # row is the one to look at: found by the run's id (a directory listing, in a
            # thread: a long evaluation's directory holds thousands of files).
            outcome.turns, outcome.subcalls = root.turns, root.subcalls
            outcome.input_tokens, outcome.output_tokens = root.input_tokens, root.output_tokens
            outcome.cached_tokens, outcome.cost = root.cached_tokens, root.cost_usd
            directory = _trajectory_dir(self._options)
            outcome.trajectory = await anyio.to_thread.run_sync(_trajectory_of, directory, root)
        outcome.latency_s = time.perf_counter() - started
        return outcome


# A bad setup (an unknown model, a missing or refused key) fails every row the same way:
# the evaluation stops and says it once, instead of writing a failed row per example.
_FATAL = (ConfigurationError, AuthenticationError)

# What a provider's refusal of a prompt too long for the model says (OpenAI: "maximum context
# length", "context_length_exceeded"; Anthropic: "prompt is too long"; Gemini: "exceeds the
# maximum number of tokens").
_TOO_LONG = re.compile(r"(?i)context.length|too long|too many tokens|maximum.{0,20}tokens")

_PROMPT_HEAD = "Read the context below and answer the question after it.\n\n<context>\n"
_PROMPT_TAIL = "\n</context>\n\nQuestion: {query}\n\nReply with the answer only."


def truncate_context(text: str, limit: int) -> tuple[str, float]:
    """``text`` cut to about ``limit`` characters, and the fraction of it left out.

    The start and the end are kept (instructions and a question's subject are often at
    either end) and a note says how much of the middle is missing, so the model knows it
    did not see everything.
    """
    if len(text) <= limit:
        return text, 0.0
    note_template = (
        "\n\n[... {cut:,} characters ({share:.0%} of the context) left out here: the context "
        "is longer than the model's context window ...]\n\n"
    )
    keep = max(limit - len(note_template) - 24, 0)
    head, tail = keep - keep // 2, keep // 2
    cut = len(text) - head - tail
    note = note_template.format(cut=cut, share=cut / len(text))
    return text[:head] + note + text[len(text) - tail :], cut / len(text)


def _context_text(context: str | list[str]) -> str:
    if isinstance(context, str):
        return context
    return "\n\n".join(f"[document {i}]\n{doc}" for i, doc in enumerate(context, 1))


def direct_prompt(example: Example, max_chars: int) -> tuple[str, float]:
    """The direct call's prompt for ``example`` in at most ``max_chars`` characters, and the
    fraction of the context left out to fit."""
    tail = _PROMPT_TAIL.format(query=example.query)
    room = max(max_chars - len(_PROMPT_HEAD) - len(tail), 0)
    context, cut = truncate_context(_context_text(example.context), room)
    return _PROMPT_HEAD + context + tail, cut


class DirectRunner:
    """The ``direct`` method: the model answers with the context in its prompt, once.

    Args:
        model: The model: a name, a ``Provider``, or a function of the example.
        settings: Keys and endpoints (default: from the environment).
        context_windows: Windows in tokens for models the built-in table does not know
            (``{"openai-compatible:qwen": 32768}``), as for ``RLM``.
        max_tokens: Cap on the reply's tokens (default: the provider's).
        label: The model's name in the results (needed when ``model`` is a function).
    """

    name = "direct"

    def __init__(
        self,
        model: ModelSpec,
        *,
        settings: Settings | None = None,
        context_windows: Mapping[str, int] | None = None,
        max_tokens: int | None = None,
        label: str | None = None,
    ) -> None:
        self._model = model
        self.model = _label(model, label)
        self._settings = settings
        self._windows = ContextWindows(context_windows)
        self._max_tokens = max_tokens
        self._registry: ProviderRegistry | None = None

    async def __aenter__(self) -> DirectRunner:
        self._registry = ProviderRegistry(self._settings, max_connections=64)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._registry is not None:
            await self._registry.aclose()

    async def run(self, example: Example) -> Outcome:
        if self._registry is None:
            raise ConfigurationError("use the DirectRunner in 'async with' before run()")
        outcome = Outcome(turns=1)
        started = time.perf_counter()
        try:
            resolved = self._registry.resolve(_resolve(self._model, example))
            window = self._windows.for_label(resolved.label, resolved.model).tokens
            limit = prompt_chars_for(window, self._max_tokens)
            for attempt in range(2):
                prompt, outcome.truncated = direct_prompt(example, limit)
                request = CompletionRequest(
                    model=resolved.model,
                    messages=[Message(role="user", content=prompt)],
                    max_tokens=self._max_tokens,
                )
                try:
                    completion = await resolved.provider.complete(request)
                    break
                except BadRequestError as exc:
                    # The window is the model's input and output together; some models take
                    # less as input (gpt-5: 272k of its 400k), and dense text has fewer
                    # characters a token: once more, with a third less.
                    if attempt or not _TOO_LONG.search(str(exc)):
                        raise
                    limit = limit * 2 // 3
            outcome.answer = completion.text.strip()
            summary = UsageSummary()
            summary.record(resolved.label, completion.usage)
            _usage(outcome, summary)
        except _FATAL:
            raise
        except Exception as exc:  # a provider error fails this row only
            outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.latency_s = time.perf_counter() - started
        return outcome
