"""``RLMOptions``: how an ``RLM`` runs its completions, as one immutable, validated value.

Everything a completion reads from its ``RLM`` that is not a shared resource (provider
clients, rate limiters, warm REPLs, the live-session set) is here. That makes per-call
overrides a plain copy (``options.merged(max_iterations=5)``) rather than a shallow copy of
the engine with attributes set on it, and lets a run be started from values alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from rlm_async import events as ev
from rlm_async._exceptions import ConfigurationError
from rlm_async._options import OptionsModel, describe_validation_error
from rlm_async.engine._budget import Budget
from rlm_async.repl import ReplOptions
from rlm_async.repl._sandbox_options import SandboxOptions
from rlm_async.tracing import is_tracer_provider

__all__ = ["RLMOptions", "with_repl_shortcuts"]


class RLMOptions(OptionsModel):
    """The options of an ``RLM``'s completions (see ``RLM`` for what each one does).

    Build one and pass it as ``RLM(..., options=...)``, ``rlm.with_options(...)`` or
    ``rlm.completion(..., options=...)``; the last two also take a dict of the fields to
    change. Unknown fields and bad values are a ``ConfigurationError`` naming the field.

    Attributes:
        max_iterations: Root turns before the model is asked for its answer.
        max_depth: Recursion depth (1: ``rlm_query`` is a plain call).
        max_concurrency: Sub-calls in flight at once for the whole completion.
        max_output_chars: Characters of a cell's output fed back to the model
            (``None``: sized from the root model's context window).
        max_tokens: Output token limit for root turns (``None``: provider default).
        compact_at: When a run's root conversation is compacted (its earlier turns folded
            into a summary the root model writes): a float in (0, 1] is a fraction of what
            the root model's context window holds for a prompt (the window less the reply's
            room; default 0.75), an int (at least 100) a number of tokens; ``None`` or ``0``
            turns compaction off. A fraction needs a known window (the table, or
            ``context_windows``); an assumed one never triggers compaction.
        sub_max_tokens: Output token limit for sub-calls (``None``: ``max_tokens``).
        temperature: Sampling temperature for root turns (``None``: omitted).
        sub_temperature: Sampling temperature for sub-calls (``None``: ``temperature``).
        repl: REPL process options (cell timeout, sandbox, limits).
        budget: Limits for each completion's whole tree.
        on_budget_exceeded: ``"raise"`` or ``"return"`` the partial result.
        trajectory_preview_chars: Characters of prompts and answers kept in events.
        trajectory_dir: Directory for each completion's trajectory file (made on first use).
        trajectory_context: Also keep each completion's context beside its trajectory file
            (``<stem>.context``: a hard link to the file the REPL loads, or a copy), so
            ``RLM.resume(path)`` needs no ``context=``. Off by default: a context can be
            gigabytes, and private; the trajectory then holds all of it.
        enable_logging: Print a readable view of the run to stderr.
        on_event: A callback for every event of every run.
        output_retries: With ``output_type``: answers that did not match it sent back to the
            model, with what was wrong, before ``OutputValidationError`` (default 2).
        tracer_provider: OpenTelemetry traces of completions (the ``otel`` extra; see
            ``docs/tracing.md``): ``None`` traces with the global ``TracerProvider`` when
            the application set one, a ``TracerProvider`` traces with it, ``False`` never.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    max_iterations: int = Field(default=20, ge=1, strict=True)
    max_depth: int = Field(default=1, ge=1, strict=True)
    max_concurrency: int = Field(default=16, ge=1, strict=True)
    max_output_chars: int | None = Field(default=None, ge=100, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    compact_at: float | int | None = 0.75
    sub_max_tokens: int | None = Field(default=None, ge=1, strict=True)
    temperature: float | None = None
    sub_temperature: float | None = None
    repl: ReplOptions = Field(default_factory=ReplOptions)
    budget: Budget = Field(default_factory=Budget)
    on_budget_exceeded: Literal["raise", "return"] = "raise"
    trajectory_preview_chars: int = Field(default=2_000, ge=0, strict=True)
    trajectory_dir: Path | None = None
    trajectory_context: bool = Field(default=False, strict=True)
    enable_logging: bool = False
    on_event: Callable[[ev.Event], None] | None = None
    output_retries: int = Field(default=2, ge=0, strict=True)
    tracer_provider: Any = None

    @field_validator("temperature", "sub_temperature", mode="before")
    @classmethod
    def _finite_number(cls, value: object) -> object:
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"must be a number, got {value!r}")
        return value

    @field_validator("compact_at", mode="before")
    @classmethod
    def _compact_at(cls, value: object) -> object:
        if value is None or (type(value) in (int, float) and value == 0):
            return None
        if isinstance(value, float) and math.isfinite(value) and 0 < value <= 1:
            return value
        if type(value) is int and value >= 100:
            return value
        hint = " (an int is tokens: for the whole window write 1.0)" if value == 1 else ""
        raise ValueError(
            f"compact_at must be a fraction of the window (a float in (0, 1], e.g. 0.75), a "
            f"number of tokens (an int of at least 100), or None / 0 for off; got {value!r}{hint}"
        )

    @field_validator("trajectory_dir", mode="before")
    @classmethod
    def _path(cls, value: object) -> object:
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ValueError(
                f"trajectory_dir must be a path (str or pathlib.Path), got {type(value).__name__}"
            )
        return value

    @field_validator("on_event", mode="before")
    @classmethod
    def _callable(cls, value: object) -> object:
        if value is not None and not callable(value):
            raise ValueError(
                f"on_event must be a function taking one event, got {type(value).__name__}"
            )
        return value

    @field_validator("tracer_provider", mode="before")
    @classmethod
    def _tracer_provider(cls, value: object) -> object:
        if value is None or value is False or is_tracer_provider(value):
            return value
        raise ValueError(
            "tracer_provider must be an OpenTelemetry TracerProvider, None (the global one, "
            f"when the application set one) or False (no traces), got {type(value).__name__}"
        )

    @field_validator("repl", "budget", mode="before")
    @classmethod
    def _option_object(cls, value: object, info: Any) -> object:
        # A dict is not taken: a typo inside it would read as this object's field.
        kind = {"repl": ReplOptions, "budget": Budget}[info.field_name]
        if not isinstance(value, kind):
            raise ValueError(
                f"{info.field_name} must be a rlm_async.{kind.__name__}, got {type(value).__name__}"
            )
        return value

    @property
    def sub_call_max_tokens(self) -> int | None:
        """Output token limit of sub-calls: they sample like the root unless told otherwise."""
        return self.max_tokens if self.sub_max_tokens is None else self.sub_max_tokens

    @property
    def sub_call_temperature(self) -> float | None:
        """Sampling temperature of sub-calls (``temperature`` unless set)."""
        return self.temperature if self.sub_temperature is None else self.sub_temperature

    def merged(self, overrides: RLMOptions | Mapping[str, Any] | None) -> RLMOptions:
        """These options with ``overrides`` laid over them (a whole value, or some fields).

        Raises:
            ConfigurationError: an unknown field or a bad value, naming it.
        """
        if overrides is None:
            return self
        if isinstance(overrides, RLMOptions):
            return overrides
        if not isinstance(overrides, Mapping):
            raise ConfigurationError(
                "options must be a rlm_async.RLMOptions or a dict of its fields, "
                f"e.g. {{'max_iterations': 5}}; got {type(overrides).__name__}"
            )
        unknown = sorted(set(overrides) - set(type(self).model_fields))
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(map(repr, unknown))}; "
                f"the options are: {', '.join(type(self).model_fields)}"
            )
        # Validated again as a whole: model_copy(update=...) would skip validation.
        try:
            return type(self).model_validate({**dict(self), **overrides})
        except ValidationError as exc:
            fields = type(self).model_fields
            raise ConfigurationError(describe_validation_error("RLMOptions", exc, fields)) from None

    def ensure_trajectory_dir(self) -> Path | None:
        """Make ``trajectory_dir`` (on first use, not at construction) and return it.

        Raises:
            ConfigurationError: the path cannot be made into a directory.
        """
        if self.trajectory_dir is None:
            return None
        try:
            os.makedirs(self.trajectory_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"trajectory_dir {os.fspath(self.trajectory_dir)!r} cannot be used as a "
                f"directory: {exc.strerror or exc}; pass a writable directory"
            ) from exc
        return self.trajectory_dir


def with_repl_shortcuts(options: ReplOptions, cell_timeout: object, sandbox: object) -> ReplOptions:
    """``options`` with the ``cell_timeout`` and ``sandbox`` shortcuts of ``RLM`` applied."""
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
