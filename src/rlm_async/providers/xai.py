"""xAI (Grok) through its OpenAI-shaped ``POST {base}/chat/completions``.

Differences from OpenAI: ``completion_tokens`` excludes reasoning tokens (xAI's total is
prompt + completion + reasoning), so the reasoning tokens are added back into
``Usage.output_tokens``, which is what is billed; errors come as
``{"code": "...", "error": "<message>"}``, and a wrong key is a 400 whose message says
"Incorrect API key": both are read by the shared error mapping (a bad key becomes
:class:`~rlm_async.AuthenticationError`, not a bad request). Prompt caching is automatic; a
request's ``cache_key`` goes in the ``x-grok-conv-id`` header, which xAI's Chat Completions
reads to route a conversation's requests to the server holding its cache (the body field
``prompt_cache_key`` is its Responses API's, not this endpoint's).
"""

from __future__ import annotations

from typing import ClassVar

from rlm_async.providers._base import CompletionRequest
from rlm_async.providers.openai import OpenAIStyleProvider

__all__ = ["XAIProvider"]


class XAIProvider(OpenAIStyleProvider):
    """xAI's API (key: ``XAI_API_KEY``, URL: ``XAI_BASE_URL``, default ``https://api.x.ai/v1``)."""

    name: str = "xai"
    # Grok reasoning models take a temperature; only OpenAI's refuse it.
    drop_temperature_for_reasoning: ClassVar[bool] = False
    reasoning_excluded: ClassVar[bool] = True

    def _request_headers(self, request: CompletionRequest) -> dict[str, str]:
        return {"x-grok-conv-id": request.cache_key} if request.cache_key else {}
