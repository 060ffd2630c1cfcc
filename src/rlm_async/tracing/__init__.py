"""OpenTelemetry traces of completions (the ``otel`` extra): one trace per completion.

A completion's events become spans (see ``docs/tracing.md``)::

    invoke_agent rlm                      the run (a sub-RLM's too, under its rlm_query)
    ├── rlm.turn                          a root turn: its model call, then its cells
    │   ├── chat {model}                  the root model's reply
    │   └── rlm.cell                      a code cell, with what its code called:
    │       ├── chat {model}              llm_query (and rlm_query at the last depth)
    │       ├── execute_tool {name}       a tool of RLM(tools=...)
    │       └── rlm_query {model}         a sub-RLM: its own invoke_agent rlm below
    └── chat {model}                      a compaction's summary call

Model calls follow OpenTelemetry's GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ...);
the engine's own facts are ``rlm.*`` attributes (``rlm.turn``, ``rlm.cell``, ``rlm.depth``,
``rlm.cost_usd``). The run's span is a child of the span current where the completion was
called, so a web request's trace holds its RLM run.

This module never imports ``opentelemetry`` by itself: :func:`completion_tracer` does, and
only when the application configured tracing (or passed a ``TracerProvider``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_async.tracing._spans import SpanTracer

__all__ = ["completion_tracer", "is_tracer_provider"]


def is_tracer_provider(value: object) -> bool:
    """Whether ``value`` can stand for a ``TracerProvider`` (it makes tracers)."""
    return callable(getattr(value, "get_tracer", None))


def completion_tracer(choice: Any) -> SpanTracer | None:
    """The tracer of one completion, or ``None`` when it is not traced.

    Called where a completion starts: the span current there (the caller's) becomes the
    parent of the run's span.

    Args:
        choice: ``RLMOptions.tracer_provider``: a ``TracerProvider`` (traced with it),
            ``False`` (never traced) or ``None``: traced with the global provider when the
            application set one (``opentelemetry.trace.set_tracer_provider``, or
            ``opentelemetry-instrument``), as OpenTelemetry instrumentations do.
    """
    if choice is False:
        return None
    if choice is None:
        # An application that configured tracing has imported the API: without it there is
        # nothing to look up, and nothing is imported on its behalf.
        if "opentelemetry.trace" not in sys.modules:
            return None
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None  # the API's default: no provider was set, every span would be dropped
        choice = provider
    from rlm_async.tracing._spans import SpanTracer

    return SpanTracer(choice)
