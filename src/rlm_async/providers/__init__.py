"""Model providers over raw httpx: one small adapter per API behind one Protocol.

The engine uses a :class:`ProviderRegistry` (one provider per name, made on first use);
users can also build an adapter directly, e.g. ``OpenAIProvider(api_key=..., model="gpt-5")``,
and pass it wherever a model name goes.
"""

from rlm_async.providers._base import CompletionRequest, Provider, TextDelta
from rlm_async.providers._http import HTTPProvider
from rlm_async.providers._pricing import ModelPrice, PriceTable
from rlm_async.providers._registry import ProviderRegistry, ResolvedModel
from rlm_async.providers._retry import RetryPolicy
from rlm_async.providers.anthropic import AnthropicProvider
from rlm_async.providers.gemini import GeminiProvider
from rlm_async.providers.ollama import OllamaProvider
from rlm_async.providers.openai import OpenAIProvider
from rlm_async.providers.openai_compatible import OpenAICompatibleProvider
from rlm_async.providers.xai import XAIProvider

#: The registry's first name (it is a registry of providers, not a pool); kept so that code
#: written against 0.1 keeps working.
ProviderPool = ProviderRegistry

__all__ = [
    "AnthropicProvider",
    "CompletionRequest",
    "GeminiProvider",
    "HTTPProvider",
    "ModelPrice",
    "OllamaProvider",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "PriceTable",
    "Provider",
    "ProviderPool",
    "ProviderRegistry",
    "ResolvedModel",
    "RetryPolicy",
    "TextDelta",
    "XAIProvider",
]
