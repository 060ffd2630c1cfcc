"""Any server that speaks OpenAI Chat Completions: vLLM, llama.cpp, LM Studio, OpenRouter...

Differences from :mod:`rlm_async.providers.openai`: the base URL is required
(``OPENAI_COMPATIBLE_BASE_URL``, e.g. ``http://localhost:8000/v1``), the key is optional
(``OPENAI_COMPATIBLE_API_KEY``; no ``Authorization`` header without one), the output cap is
sent as ``max_tokens`` (these servers read it, and some silently ignore
``max_completion_tokens``), temperature is sent for every model because the server,
not the model name, decides what it accepts, and a request's ``cache_key`` is not sent:
``prompt_cache_key`` is OpenAI's field, and servers that check their fields refuse it (the
ones that cache prefixes, like vLLM and llama.cpp, do so without a key).
"""

from __future__ import annotations

from typing import ClassVar

from rlm_async.providers.openai import OpenAIStyleProvider

__all__ = ["OpenAICompatibleProvider"]


class OpenAICompatibleProvider(OpenAIStyleProvider):
    """A self-hosted or third-party OpenAI-compatible endpoint."""

    name: str = "openai-compatible"
    max_tokens_field: ClassVar[str] = "max_tokens"
    drop_temperature_for_reasoning: ClassVar[bool] = False
