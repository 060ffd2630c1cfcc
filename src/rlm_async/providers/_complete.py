"""``llm_complete``: one plain model call through the same adapters the engine uses."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from rlm_async._exceptions import ConfigurationError
from rlm_async._types import Completion, Message
from rlm_async.providers._base import CompletionRequest, Provider
from rlm_async.providers._registry import ProviderRegistry
from rlm_async.providers._settings import Settings

__all__ = ["llm_complete"]


async def llm_complete(
    model: str | Provider,
    prompt_or_messages: str | Sequence[Message | Mapping[str, Any]],
    *,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    settings: Settings | None = None,
) -> Completion:
    """Call a model once and return its completion.

    Args:
        model: ``"provider:model"``, a bare name such as ``"gpt-5"``, or a ``Provider``.
        prompt_or_messages: A user prompt, or chat messages (``Message`` or
            ``{"role": ..., "content": ...}`` dicts).
        system: A system prompt.
        max_tokens: Cap on output tokens (reasoning included).
        temperature: Sampling temperature (left out for models that refuse it).
        settings: Keys and endpoints; default ``Settings.from_env()``.

    Returns:
        The completion: text, finish reason, usage (with cost when priced), model, provider.

    Raises:
        ConfigurationError: an unknown model, a missing key, malformed messages.
        ProviderError: the provider failed after retries (see its subclasses).

    Example:
        >>> completion = await llm_complete("gpt-5-mini", "Say hi")  # doctest: +SKIP
        >>> completion.text, completion.usage.cost_usd  # doctest: +SKIP
    """
    messages = _messages(prompt_or_messages)
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ConfigurationError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
    ):
        raise ConfigurationError(f"temperature must be a number, got {temperature!r}")
    if system is not None and not isinstance(system, str):
        raise ConfigurationError(f"system must be a str, got {type(system).__name__}")
    if settings is not None and not isinstance(settings, Settings):
        raise ConfigurationError(
            f"settings must be a rlm_async.Settings, got {type(settings).__name__}"
        )
    async with ProviderRegistry(settings, max_connections=2) as pool:
        resolved = pool.resolve(model)
        request = CompletionRequest(
            model=resolved.model,
            messages=messages,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        return await resolved.provider.complete(request)


def _messages(value: str | Sequence[Message | Mapping[str, Any]]) -> list[Message]:
    if isinstance(value, str):
        return [Message(role="user", content=value)]
    if not isinstance(value, Sequence) or not value:
        raise ConfigurationError(
            "prompt_or_messages must be a string or a non-empty list of messages"
        )
    messages: list[Message] = []
    for item in value:
        if isinstance(item, Message):
            messages.append(item)
            continue
        try:
            messages.append(Message.model_validate(item))
        except ValidationError as exc:
            raise ConfigurationError(
                f"not a chat message: {item!r} (expected {{'role': 'user' | 'assistant' | "
                f"'system', 'content': str}}; {exc.error_count()} problem(s))"
            ) from None
    return messages
