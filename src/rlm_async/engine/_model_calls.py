"""A provider call under its model's rate limiter: whole, or streamed delta by delta.

Root turns and sub-calls both go through :func:`call_model`; a root turn that streams its
text (``RLM.stream``) goes through :func:`stream_model`. Without rate limits (the common
case) a call goes straight to the provider. :func:`usage_fields` is what the events
saying a call ended record of its usage.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from rlm_async._exceptions import ProviderResponseError, RateLimitError
from rlm_async._tokens import request_tokens
from rlm_async._types import Completion, Usage
from rlm_async.providers._base import CompletionRequest
from rlm_async.providers._retry import pacing

if TYPE_CHECKING:
    from rlm_async.engine._resources import EngineResources
    from rlm_async.providers import ResolvedModel

__all__ = ["call_model", "stream_model", "usage_fields"]


def usage_fields(usage: Usage | None) -> dict[str, Any]:
    """A model call's usage as the fields of the event that says it ended (``TurnFinished``,
    ``Compacted``, ``SubCallFinished``); ``None``: nothing was paid (a cached or failed
    sub-call), all zero and no cost."""
    if usage is None:
        usage = Usage()
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cost_usd": usage.cost_usd,
    }


@contextlib.asynccontextmanager
async def _paced(
    resources: EngineResources, target: ResolvedModel, request: CompletionRequest
) -> AsyncIterator[None]:
    """A provider call under the target's rate limiter, every attempt of it.

    The first attempt is paced here; an HTTP adapter's retries queue on the same
    limiter (handed to them per call through ``pacing``), so a per-model limit paces
    retries too and one Provider object shared by two ``RLM``s keeps each one's limits.
    """
    limiter = resources.limiter_for(target)
    if limiter is None:
        yield
        return
    await limiter.acquire(request_tokens(request))
    try:
        with pacing(limiter):
            yield
    except RateLimitError as exc:
        limiter.backoff(exc.retry_after if exc.retry_after is not None else 1.0)
        raise
    limiter.succeeded()


async def call_model(
    resources: EngineResources, target: ResolvedModel, request: CompletionRequest
) -> Completion:
    """One provider call, paced by the target's rate limiter when there is one."""
    if not resources.rate_limiters:  # the common case: no context manager
        return await target.provider.complete(request)
    async with _paced(resources, target, request):
        return await target.provider.complete(request)
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: the block returns)


async def stream_model(
    resources: EngineResources,
    target: ResolvedModel,
    request: CompletionRequest,
    on_text: Callable[[str], None],
) -> Completion:
    """One streamed provider call, paced like :func:`call_model`: ``on_text`` gets each
    non-empty text delta as it comes, the return value is the final completion.

    Raises:
        ProviderResponseError: the stream ended without a final completion.
    """
    completion: Completion | None = None
    async with _paced(resources, target, request):
        async for item in target.provider.stream(request):
            if isinstance(item, Completion):
                completion = item
            elif item.text:
                on_text(item.text)
    if completion is None:
        raise ProviderResponseError(
            "the stream ended without a final completion", provider=target.provider.name
        )
    return completion
