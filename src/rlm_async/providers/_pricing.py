"""Model prices, so a run can report what it cost.

Prices are USD per million tokens, list prices for standard (non-batch, non-priority)
use as published by each provider; they change, so the table is easy to extend or
override::

    prices = PriceTable.default().with_prices({
        "openai-compatible:my-llama": ModelPrice(input=0.0, output=0.0),
        "gpt-5": (1.25, 10.0, 0.125),            # input, output, cached input
        "claude-sonnet-4-5": (3.0, 15.0, 0.30, 3.75),  # ..., cache writes
    })
    pool = ProviderRegistry(prices=prices)

A key is ``"provider:model"`` or a bare model id (matches that id on any provider), and
``"provider:*"`` prices every model of a provider (Ollama runs locally: $0 by default).
Dated or versioned ids (``gpt-4o-2024-08-06``, ``claude-sonnet-4-5-20250929``,
``gemini-2.0-flash-001``, ``-latest``) fall back to their base id. A model that is not in
the table costs ``None`` (unknown), never 0.

Prompt caching: tokens read from a provider's cache cost ``cached_input``; tokens written
to it cost ``cache_write`` (Anthropic bills 1.25x the input rate for its default 5-minute
cache; OpenAI, Gemini and xAI write for free, so theirs is left at the input rate).
Tiered prices (Gemini 2.5 Pro above 200k prompt tokens, Anthropic's 1-hour cache writes at
2x) use the base tier: the numbers are an estimate to budget with, not an invoice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from rlm_async._exceptions import ConfigurationError
from rlm_async._types import Usage

__all__ = ["ModelPrice", "PriceTable", "lookup_keys"]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens.

    Attributes:
        input: Uncached input (prompt) tokens.
        output: Output tokens, reasoning included.
        cached_input: Input tokens read from the provider's prompt cache; ``None`` means
            the same as ``input``.
        cache_write: Input tokens written to the provider's prompt cache; ``None`` means
            the same as ``input`` (providers whose cache writes are free).
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        for field, value in (
            ("input", self.input),
            ("output", self.output),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
        ):
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise ConfigurationError(f"ModelPrice.{field} must be >= 0, got {value!r}")

    def cost(self, usage: Usage) -> float:
        """The cost of one call's usage in USD (cache reads and writes at their rates)."""
        cached = min(usage.cached_tokens, usage.input_tokens)
        written = min(usage.cache_write_tokens, usage.input_tokens - cached)
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        return (
            (usage.input_tokens - cached - written) * self.input
            + cached * cached_price
            + written * write_price
            + usage.output_tokens * self.output
        ) / 1_000_000


PriceLike: TypeAlias = (
    ModelPrice
    | tuple[float, float]
    | tuple[float, float, float]
    | tuple[float, float, float, float]
    | Mapping[str, float]
)

_M = ModelPrice

_DEFAULT_PRICES: Final[dict[str, ModelPrice]] = {
    # OpenAI
    "openai:gpt-5": _M(1.25, 10.0, 0.125),
    "openai:gpt-5-mini": _M(0.25, 2.0, 0.025),
    "openai:gpt-5-nano": _M(0.05, 0.40, 0.005),
    "openai:gpt-5-chat-latest": _M(1.25, 10.0, 0.125),
    "openai:gpt-4.1": _M(2.0, 8.0, 0.50),
    "openai:gpt-4.1-mini": _M(0.40, 1.60, 0.10),
    "openai:gpt-4.1-nano": _M(0.10, 0.40, 0.025),
    "openai:gpt-4o": _M(2.50, 10.0, 1.25),
    "openai:gpt-4o-mini": _M(0.15, 0.60, 0.075),
    "openai:o1": _M(15.0, 60.0, 7.50),
    "openai:o3": _M(2.0, 8.0, 0.50),
    "openai:o3-mini": _M(1.10, 4.40, 0.55),
    "openai:o4-mini": _M(1.10, 4.40, 0.275),
    # Anthropic (cache reads at 0.1x input, 5-minute cache writes at 1.25x)
    "anthropic:claude-opus-4-5": _M(5.0, 25.0, 0.50, 6.25),
    "anthropic:claude-opus-4-1": _M(15.0, 75.0, 1.50, 18.75),
    "anthropic:claude-opus-4": _M(15.0, 75.0, 1.50, 18.75),
    "anthropic:claude-sonnet-4-5": _M(3.0, 15.0, 0.30, 3.75),
    "anthropic:claude-sonnet-4": _M(3.0, 15.0, 0.30, 3.75),
    "anthropic:claude-3-7-sonnet": _M(3.0, 15.0, 0.30, 3.75),
    "anthropic:claude-haiku-4-5": _M(1.0, 5.0, 0.10, 1.25),
    "anthropic:claude-3-5-haiku": _M(0.80, 4.0, 0.08, 1.0),
    # Google Gemini (prompts up to 200k tokens)
    "gemini:gemini-2.5-pro": _M(1.25, 10.0, 0.31),
    "gemini:gemini-2.5-flash": _M(0.30, 2.50, 0.075),
    "gemini:gemini-2.5-flash-lite": _M(0.10, 0.40, 0.025),
    "gemini:gemini-2.0-flash": _M(0.10, 0.40, 0.025),
    "gemini:gemini-2.0-flash-lite": _M(0.075, 0.30),
    # xAI
    "xai:grok-4": _M(3.0, 15.0, 0.75),
    "xai:grok-4-fast-reasoning": _M(0.20, 0.50, 0.05),
    "xai:grok-4-fast-non-reasoning": _M(0.20, 0.50, 0.05),
    "xai:grok-code-fast-1": _M(0.20, 1.50, 0.02),
    "xai:grok-3": _M(3.0, 15.0, 0.75),
    "xai:grok-3-mini": _M(0.30, 0.50, 0.075),
    # Local models cost nothing per token.
    "ollama:*": _M(0.0, 0.0),
}

# What may follow a priced id and still be the same model: a date or a version pin.
_VERSION_SUFFIX: Final = re.compile(r"-(latest|\d{3}|\d{4}|\d{8}|\d{4}-\d{2}-\d{2}|\d{2}-\d{2})$")


class PriceTable:
    """Prices per model, immutable; :meth:`with_prices` returns an extended copy.

    Args:
        prices: ``{"provider:model" | "model" | "provider:*": price}``; a price is a
            :class:`ModelPrice`, an ``(input, output[, cached_input[, cache_write]])`` tuple
            or a mapping with those keys.
        include_defaults: Start from the built-in table (default) or from nothing.
    """

    def __init__(
        self, prices: Mapping[str, PriceLike] | None = None, *, include_defaults: bool = True
    ) -> None:
        table = dict(_DEFAULT_PRICES) if include_defaults else {}
        for key, value in (prices or {}).items():
            table[_normalise_key(key)] = _to_price(key, value)
        self._prices: dict[str, ModelPrice] = table

    @classmethod
    def default(cls) -> PriceTable:
        """The built-in table."""
        return cls()

    def with_prices(self, prices: Mapping[str, PriceLike]) -> PriceTable:
        """A copy of this table with ``prices`` added or replacing existing entries."""
        new = PriceTable(include_defaults=False)
        new._prices = dict(self._prices)
        for key, value in prices.items():
            new._prices[_normalise_key(key)] = _to_price(key, value)
        return new

    def price(self, provider: str, model: str) -> ModelPrice | None:
        """The price of ``model`` served by ``provider``, or ``None`` when unknown."""
        for key in lookup_keys(provider, model):
            if key in self._prices:
                return self._prices[key]
        return None

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """The cost of one call in USD, or ``None`` when the model has no price."""
        price = self.price(provider, model)
        return None if price is None else price.cost(usage)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._prices

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models)"


def lookup_keys(provider: str, model: str) -> list[str]:
    """The keys a per-model table is searched by, most specific first.

    ``"provider:model"`` then the bare ``"model"``, again for the id without its date or
    version suffix, and last ``"provider:*"``. Shared by the price and context-window tables.
    """
    candidates = [model]
    stripped = model
    while True:
        shorter = _VERSION_SUFFIX.sub("", stripped)
        if shorter == stripped:
            break
        candidates.append(shorter)
        stripped = shorter
    keys = [key for candidate in candidates for key in (f"{provider}:{candidate}", candidate)]
    keys.append(f"{provider}:*")
    return keys


def _normalise_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"a price key must be a model name, got {key!r}")
    provider, colon, model = key.partition(":")
    if colon and provider in {"google"}:
        return f"gemini:{model}"
    return key


def _to_price(key: str, value: PriceLike) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3, 4):
        return ModelPrice(*value)
    if isinstance(value, Mapping):
        try:
            return ModelPrice(**value)
        except TypeError as exc:
            raise ConfigurationError(
                f"price for {key!r}: expected keys input, output, cached_input, cache_write ({exc})"
            ) from None
    raise ConfigurationError(
        f"price for {key!r} must be a ModelPrice, an (input, output[, cached_input[, "
        f"cache_write]]) tuple or a mapping, got {value!r}"
    )
