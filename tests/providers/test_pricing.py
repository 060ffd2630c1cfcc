"""PriceTable: lookups, dated ids, overrides, unknown models."""

from __future__ import annotations

import pytest

from rlm_async._exceptions import ConfigurationError
from rlm_async._types import Usage
from rlm_async.providers._pricing import ModelPrice, PriceTable


def test_cost_uses_the_cached_price_for_cached_input() -> None:
    price = ModelPrice(input=2.0, output=8.0, cached_input=0.5)
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cached_tokens=400_000)
    assert price.cost(usage) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5 + 0.5 * 8.0)


def test_cached_price_defaults_to_the_input_price() -> None:
    usage = Usage(input_tokens=1_000_000, cached_tokens=1_000_000)
    assert ModelPrice(input=3.0, output=0.0).cost(usage) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("provider", "model", "base"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gemini", "gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("xai", "grok-4-0709", "grok-4"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ],
)
def test_dated_and_pinned_ids_fall_back_to_their_base_price(
    provider: str, model: str, base: str
) -> None:
    table = PriceTable()
    assert table.price(provider, model) == table.price(provider, base)
    assert table.price(provider, model) is not None


def test_unknown_model_costs_none_not_zero() -> None:
    assert PriceTable().cost("openai", "gpt-99", Usage(input_tokens=10)) is None


def test_a_model_on_another_provider_is_not_priced_by_provider_keys() -> None:
    assert PriceTable().price("openai-compatible", "gpt-4o") is None


def test_ollama_models_are_free_by_default() -> None:
    assert PriceTable().cost("ollama", "llama3.1:8b", Usage(input_tokens=10**6)) == 0.0


def test_with_prices_adds_and_overrides_without_changing_the_original() -> None:
    base = PriceTable()
    custom = base.with_prices(
        {
            "openai:gpt-4o": (1.0, 2.0),
            "openai-compatible:my-llama": {"input": 0.1, "output": 0.2},
            "my-bare-model": ModelPrice(5.0, 5.0),
        }
    )
    assert custom.price("openai", "gpt-4o") == ModelPrice(1.0, 2.0)
    assert base.price("openai", "gpt-4o") == ModelPrice(2.50, 10.0, 1.25)
    assert custom.price("openai-compatible", "my-llama") == ModelPrice(0.1, 0.2)
    assert custom.price("anything", "my-bare-model") == ModelPrice(5.0, 5.0)


def test_provider_keys_win_over_bare_keys() -> None:
    table = PriceTable({"m": (1.0, 1.0), "xai:m": (2.0, 2.0)}, include_defaults=False)
    assert table.price("xai", "m") == ModelPrice(2.0, 2.0)
    assert table.price("openai", "m") == ModelPrice(1.0, 1.0)


def test_empty_table_prices_nothing() -> None:
    assert PriceTable(include_defaults=False).price("openai", "gpt-4o") is None


@pytest.mark.parametrize("value", [(1.0,), "cheap", {"inp": 1.0}, (-1.0, 1.0)])
def test_malformed_prices_are_configuration_errors(value: object) -> None:
    with pytest.raises(ConfigurationError):
        PriceTable({"x": value})  # type: ignore[dict-item]
