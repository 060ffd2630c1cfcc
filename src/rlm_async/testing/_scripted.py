"""``ScriptedModel``: a ``Provider`` answering from a list of replies or a function."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

from rlm_async import _tokens
from rlm_async._exceptions import ProviderResponseError
from rlm_async._types import Completion, Usage
from rlm_async.providers._base import CompletionRequest, TextDelta
from rlm_async.testing._replies import MockReply, Responder, estimate_tokens, respond

__all__ = ["ScriptedModel"]


class ScriptedModel:
    """A fake model for tests: replies from a list (in order) or from a function.

    Args:
        replies: The replies (text, or :class:`MockReply` for set usage or an error status),
            in order, or a function of the request returning the reply.
        name: The provider name (used as the usage key).
        latency: Seconds to wait before each reply (0 for none).

    Attributes:
        requests: Every request received, in order.
    """

    def __init__(
        self,
        replies: Sequence[str | MockReply] | Responder,
        *,
        name: str = "scripted",
        latency: float = 0.0,
    ) -> None:
        self.name = name
        self.model = name
        self.latency = latency
        self.requests: list[CompletionRequest] = []
        if callable(replies):
            self._responder: Responder = replies
        else:
            queue = list(replies)
            counter = itertools.count()

            def from_list(request: CompletionRequest) -> str | MockReply:
                index = next(counter)
                if index >= len(queue):
                    raise ProviderResponseError(
                        f"ScriptedModel {name!r} ran out of replies: {len(queue)} were given and "
                        f"request {index + 1} arrived; add more replies to the script",
                        provider=name,
                    )
                return queue[index]

            self._responder = from_list

    async def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        reply = await respond(self._responder, request)
        if isinstance(reply, MockReply):
            if reply.status != 200:
                raise ProviderResponseError(
                    f"scripted error {reply.status}", provider=self.name, status_code=reply.status
                )
            text, usage = reply.text, reply.usage
        else:
            text, usage = reply, None
        if usage is None:
            usage = Usage(
                input_tokens=_tokens.request_tokens(request),
                output_tokens=estimate_tokens(text),
            )
        return Completion(
            text=text, finish_reason="stop", usage=usage, model=self.model, provider=self.name
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[TextDelta | Completion]:
        completion = await self.complete(request)
        for start in range(0, len(completion.text), 16):
            yield TextDelta(text=completion.text[start : start + 16])
        yield completion

    async def aclose(self) -> None:
        return None
