"""The one small interface every model provider implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from rlm_async._types import Completion, Message

__all__ = ["CompletionRequest", "Provider", "TextDelta"]


class CompletionRequest(BaseModel):
    """A provider-neutral chat request; each adapter maps it to its own wire format.

    ``response_schema`` is a JSON schema the reply must match: each adapter asks for it
    with its provider's native structured-output mode where it has one (the reply's text
    is then the JSON); the engine validates the parsed reply itself either way.

    ``cache_key`` marks a request whose prompt is the prefix of the next one (a run's root
    conversation): adapters use their provider's prompt cache for it (Anthropic cache
    breakpoints, OpenAI's ``prompt_cache_key``, xAI's ``x-grok-conv-id``), keyed by it so a
    run's turns land on the same cache. One-off prompts leave it ``None``: an Anthropic
    cache write costs more than plain input and would never be read.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    messages: list[Message]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    response_schema: dict[str, object] | None = None
    cache_key: str | None = None
    extra: dict[str, object] = Field(default_factory=dict)


class TextDelta(BaseModel):
    """A piece of streamed model text."""

    model_config = ConfigDict(frozen=True)

    text: str


@runtime_checkable
class Provider(Protocol):
    """A model provider: one async call, one streaming call, and closing.

    Implementations never raise raw ``httpx`` errors: every failure is a
    ``ProviderError`` subclass. An injected ``httpx.AsyncClient`` is never closed by
    the adapter; one it created itself is closed by ``aclose()``.
    """

    name: str

    async def complete(self, request: CompletionRequest) -> Completion:
        """Send one request and return the whole completion."""
        ...

    def stream(self, request: CompletionRequest) -> AsyncIterator[TextDelta | Completion]:
        """Stream text deltas; the last item is the whole ``Completion`` (with usage)."""
        ...

    async def aclose(self) -> None:
        """Release connections the provider owns."""
        ...
