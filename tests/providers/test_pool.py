"""ProviderRegistry: resolving names, one provider per name, closing what it made."""

from __future__ import annotations

import httpx
import pytest
import respx

from rlm_async._exceptions import ConfigurationError
from rlm_async.providers import (
    AnthropicProvider,
    CompletionRequest,
    GeminiProvider,
    HTTPProvider,
    OllamaProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
    ProviderRegistry,
    RetryPolicy,
    XAIProvider,
)
from rlm_async.providers._pricing import PriceTable
from rlm_async.providers._settings import Settings
from tests.providers.support import fixture_body, pool_size, request


@pytest.mark.parametrize(
    ("name", "cls", "model", "label"),
    [
        ("gpt-5", OpenAIProvider, "gpt-5", "openai:gpt-5"),
        (
            "claude-sonnet-4-5",
            AnthropicProvider,
            "claude-sonnet-4-5",
            "anthropic:claude-sonnet-4-5",
        ),
        ("gemini-2.5-pro", GeminiProvider, "gemini-2.5-pro", "gemini:gemini-2.5-pro"),
        ("grok-4", XAIProvider, "grok-4", "xai:grok-4"),
        ("gpt-oss:20b", OllamaProvider, "gpt-oss:20b", "ollama:gpt-oss:20b"),
        ("openai-compatible:qwen", OpenAICompatibleProvider, "qwen", "openai-compatible:qwen"),
    ],
)
async def test_resolve_maps_names_to_providers_models_and_labels(
    settings: Settings, name: str, cls: type, model: str, label: str
) -> None:
    async with ProviderRegistry(settings) as pool:
        resolved = pool.resolve(name)
    assert isinstance(resolved.provider, cls)
    assert (resolved.model, resolved.label) == (model, label)


async def test_one_provider_per_name_is_created_and_reused(settings: Settings) -> None:
    async with ProviderRegistry(settings) as pool:
        a = pool.resolve("gpt-5")
        b = pool.resolve("openai:gpt-5-mini")
    assert a.provider is b.provider
    assert a.label != b.label


async def test_resolved_model_is_frozen(settings: Settings) -> None:
    async with ProviderRegistry(settings) as pool:
        resolved = pool.resolve("gpt-5")
        with pytest.raises(AttributeError):
            resolved.model = "other"  # type: ignore[misc]


async def test_unknown_name_is_a_configuration_error(settings: Settings) -> None:
    async with ProviderRegistry(settings) as pool:
        with pytest.raises(ConfigurationError, match="provider:model"):
            pool.resolve("mystery")


async def test_missing_key_is_a_configuration_error_at_resolve() -> None:
    async with ProviderRegistry(Settings()) as pool:
        with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
            pool.resolve("claude-haiku-4-5")


async def test_settings_none_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAI_API_KEY", "xai-from-env")
    async with ProviderRegistry() as pool:
        assert pool.resolve("grok-4").label == "xai:grok-4"


async def test_a_provider_instance_is_used_as_is_and_never_closed(settings: Settings) -> None:
    mine = OpenAIProvider(settings=settings, model="gpt-5-mini")
    async with ProviderRegistry(settings) as pool:
        resolved = pool.resolve(mine)
    assert resolved.provider is mine
    assert (resolved.model, resolved.label) == ("gpt-5-mini", "openai")
    assert not mine._client.is_closed
    await mine.aclose()


async def test_a_provider_without_a_model_attribute_uses_its_name(settings: Settings) -> None:
    class Minimal:
        name = "fake"

        async def complete(self, request: CompletionRequest) -> None: ...
        def stream(self, request: CompletionRequest) -> None: ...
        async def aclose(self) -> None: ...

    async with ProviderRegistry(settings) as pool:
        resolved = pool.resolve(Minimal())  # type: ignore[arg-type]
    assert (resolved.model, resolved.label) == ("fake", "fake")


async def test_aclose_closes_every_client_it_created_and_refuses_use(settings: Settings) -> None:
    pool = ProviderRegistry(settings)
    providers = [pool.resolve(n).provider for n in ("gpt-5", "claude-haiku-4-5", "grok-4")]
    await pool.aclose()
    assert all(p._client.is_closed for p in providers)  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="closed"):
        pool.resolve("gpt-5")
    await pool.aclose()  # idempotent


async def test_pool_settings_retry_and_prices_reach_the_providers(
    settings: Settings, respx_mock: respx.MockRouter
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=fixture_body("openai_ok"))]
    )
    prices = PriceTable().with_prices({"openai:gpt-4o": (1.0, 1.0)})
    retry = RetryPolicy(jitter=0, sleep=sleep)
    async with ProviderRegistry(settings, retry=retry, prices=prices, max_connections=3) as pool:
        resolved = pool.resolve("gpt-4o")
        completion = await resolved.provider.complete(request(resolved.model))
    assert waits == [0.5]
    assert completion.usage.cost_usd == pytest.approx((14 + 37) / 1e6)


def test_invalid_max_connections_is_a_configuration_error(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="max_connections"):
        ProviderRegistry(settings, max_connections=0)


async def test_pool_client_limits_follow_max_connections(settings: Settings) -> None:
    async with ProviderRegistry(settings, max_connections=7) as pool:
        provider = pool.resolve("gpt-5").provider
        assert isinstance(provider, HTTPProvider)
        assert sum(pool_size(client) for client in provider._clients.clients) >= 7


async def test_settings_prices_are_laid_over_the_default_table(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post("http://compat.test/v1/chat/completions").respond(
        200, json=fixture_body("openai_ok") | {"model": "my-llama"}
    )
    settings = Settings(
        openai_compatible_base_url="http://compat.test/v1",
        prices={"openai-compatible:my-llama": (1.0, 2.0)},
    )
    async with ProviderRegistry(settings) as pool:
        resolved = pool.resolve("openai-compatible:my-llama")
        completion = await resolved.provider.complete(request(resolved.model))
    assert completion.usage.cost_usd == pytest.approx((14 * 1.0 + 37 * 2.0) / 1e6)
