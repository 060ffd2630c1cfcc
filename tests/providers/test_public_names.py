"""The providers package exports what the engine and users rely on, and nothing stale."""

from __future__ import annotations

import pytest

import rlm_async
import rlm_async.providers as providers
from rlm_async.providers._settings import Settings


def test_all_is_sorted_and_importable() -> None:
    assert providers.__all__ == sorted(providers.__all__)
    for name in providers.__all__:
        assert hasattr(providers, name), name


@pytest.mark.parametrize(
    "name", ["ModelPrice", "PriceTable", "RetryPolicy", "Settings", "llm_complete"]
)
def test_provider_names_are_exported_from_the_package_root(name: str) -> None:
    assert name in rlm_async.__all__
    assert hasattr(rlm_async, name)


@pytest.mark.parametrize(
    "cls",
    [
        providers.OpenAIProvider,
        providers.AnthropicProvider,
        providers.GeminiProvider,
        providers.XAIProvider,
        providers.OllamaProvider,
        providers.OpenAICompatibleProvider,
    ],
)
async def test_every_adapter_satisfies_the_provider_protocol(cls: type) -> None:
    settings = Settings(
        openai_api_key="k-1234",
        anthropic_api_key="k-1234",
        google_api_key="k-1234",
        xai_api_key="k-1234",
        openai_compatible_base_url="http://compat.test/v1",
    )
    adapter = cls(settings=settings)
    try:
        assert isinstance(adapter, providers.Provider)
        assert adapter.name in {
            "openai",
            "anthropic",
            "gemini",
            "xai",
            "ollama",
            "openai-compatible",
        }
    finally:
        await adapter.aclose()


def test_provider_pool_is_the_registry_under_its_first_name() -> None:
    # Renamed (a registry of providers, not a pool); the 0.1 name still imports.
    assert providers.ProviderPool is providers.ProviderRegistry
