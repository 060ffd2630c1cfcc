"""Span attributes from events: OpenTelemetry's GenAI semantic conventions, and ``rlm.*``."""

from __future__ import annotations

from typing import Any

from rlm_async import events as ev

__all__ = ["AGENT_NAME", "chat_request", "chat_usage", "model_parts", "run_usage"]

AGENT_NAME = "rlm"

# The engine's provider names -> the conventions' well-known ``gen_ai.provider.name`` values
# (others, and a Provider instance's own name, are used as they are).
_PROVIDER_NAMES = {"gemini": "gcp.gemini", "xai": "x_ai"}


def model_parts(label: str) -> tuple[str, str]:
    """``(provider, model)`` of an engine model label: ``"openai:gpt-5"`` ->
    ``("openai", "gpt-5")``; a ``Provider`` instance's label (no provider prefix) is both."""
    provider, sep, model = label.partition(":")
    if not sep:
        return label, label
    return _PROVIDER_NAMES.get(provider, provider), model


def chat_request(label: str, *, depth: int) -> dict[str, Any]:
    """A model call's attributes known when it starts."""
    provider, model = model_parts(label)
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the name before semantic conventions 1.37
        "gen_ai.request.model": model,
        "rlm.model": label,
        "rlm.depth": depth,
    }


def chat_usage(
    event: ev.TurnFinished | ev.SubCallFinished | ev.Compacted,
) -> dict[str, Any]:
    """A model call's attributes known when it ends: the model that answered, its usage."""
    found: dict[str, Any] = {
        "gen_ai.response.model": model_parts(event.model)[1],
        "gen_ai.usage.input_tokens": event.input_tokens,
        "gen_ai.usage.output_tokens": event.output_tokens,
        "rlm.latency_s": event.latency,
        "rlm.replayed": event.replayed,
    }
    # Only when there are some: each attribute costs the SDK time, on the event loop.
    if event.cached_tokens:
        found["gen_ai.usage.cache_read.input_tokens"] = event.cached_tokens
    if event.cache_write_tokens:
        found["gen_ai.usage.cache_creation.input_tokens"] = event.cache_write_tokens
    if event.cost_usd is not None:
        found["rlm.cost_usd"] = event.cost_usd
    return found


def run_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """The whole completion's usage (a root ``RunFinished``'s ``usage``: per model)."""
    models = usage.get("models") or {}
    calls = input_tokens = output_tokens = 0
    costs: list[float] = []
    for model in models.values():
        calls += int(model.get("calls", 0))
        input_tokens += int(model.get("input_tokens", 0))
        output_tokens += int(model.get("output_tokens", 0))
        if model.get("cost_usd") is not None:
            costs.append(float(model["cost_usd"]))
    found: dict[str, Any] = {
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "rlm.calls": calls,
    }
    if costs:
        found["rlm.cost_usd"] = sum(costs)
    return found
