"""The engine's way to the providers: resolve a model name once, reuse one client per provider."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Final

from rlm_async._exceptions import ConfigurationError
from rlm_async._options import check_int
from rlm_async.providers._base import Provider
from rlm_async.providers._http import HTTPProvider
from rlm_async.providers._pricing import PriceTable
from rlm_async.providers._retry import RetryPolicy
from rlm_async.providers._settings import Settings, parse_model_name
from rlm_async.providers.anthropic import AnthropicProvider
from rlm_async.providers.gemini import GeminiProvider
from rlm_async.providers.ollama import OllamaProvider
from rlm_async.providers.openai import OpenAIProvider
from rlm_async.providers.openai_compatible import OpenAICompatibleProvider
from rlm_async.providers.xai import XAIProvider

__all__ = ["PROVIDER_CLASSES", "ProviderRegistry", "ResolvedModel"]

PROVIDER_CLASSES: Final[dict[str, type[HTTPProvider]]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "xai": XAIProvider,
    "ollama": OllamaProvider,
    "openai-compatible": OpenAICompatibleProvider,
}


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model name resolved to the provider that serves it.

    Attributes:
        provider: The provider to call.
        model: The model id to put in ``CompletionRequest.model``.
        label: ``"provider:model"``, the key usage is recorded under.
    """

    provider: Provider
    model: str
    label: str


class ProviderRegistry:
    """Providers created on demand, one per provider name, each with its own connections.

    Args:
        settings: Keys, URLs and timeouts; default ``Settings.from_env()``.
        max_connections: Connection-pool size of each provider's client; size it to the
            concurrency you run (sub-calls in flight) plus a little.
        retry: The retry policy for every provider; default :class:`RetryPolicy()`.
        prices: Prices for ``Usage.cost_usd``; default the built-in :class:`PriceTable`
            with ``settings.prices`` laid over it.

    Use it as an async context manager, or call :meth:`aclose`: it closes every client it
    created (never a provider instance it was given) and refuses use afterwards.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        max_connections: int = 64,
        retry: RetryPolicy | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        check_int("max_connections", max_connections, 1)
        self._settings = settings if settings is not None else Settings.from_env()
        self._max_connections = max_connections
        self._retry = retry or RetryPolicy()
        self._prices = prices if prices is not None else PriceTable(self._settings.prices)
        self._providers: dict[str, HTTPProvider] = {}
        self._closed = False

    @property
    def settings(self) -> Settings:
        return self._settings

    def resolve(self, model: str | Provider) -> ResolvedModel:
        """The provider and wire model id for ``model`` (a name or a provider instance).

        Raises:
            ConfigurationError: an unknown model name, a missing key, or a closed registry.
        """
        if self._closed:
            raise ConfigurationError("this ProviderRegistry is closed; create a new one")
        if not isinstance(model, str):
            if not isinstance(model, Provider):
                raise ConfigurationError(
                    f"model must be a name such as 'openai:gpt-5' or a Provider, got {model!r}"
                )
            wire = getattr(model, "model", None) or model.name
            return ResolvedModel(provider=model, model=str(wire), label=model.name)
        spec = parse_model_name(model)
        provider = self._providers.get(spec.provider)
        if provider is None:
            provider = PROVIDER_CLASSES[spec.provider](
                settings=self._settings,
                retry=self._retry,
                prices=self._prices,
                max_connections=self._max_connections,
            )
            self._providers[spec.provider] = provider
        return ResolvedModel(provider=provider, model=spec.model, label=spec.label)

    async def aclose(self) -> None:
        """Close every provider this registry created (idempotent)."""
        self._closed = True
        providers, self._providers = list(self._providers.values()), {}
        async with AsyncExitStack() as stack:  # close them all even if one fails
            for provider in providers:
                stack.push_async_callback(provider.aclose)

    async def __aenter__(self) -> ProviderRegistry:
        if self._closed:
            raise ConfigurationError("this ProviderRegistry is closed; create a new one")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{sorted(self._providers)}"
        return f"ProviderRegistry({state})"
