"""Shared httpx plumbing: the clients, sending with retries, reading streams.

:class:`HTTPProvider` is the base of every adapter. It owns its connections,
``httpx.AsyncClient`` pools behind one limiter, on aiohttp or httpcore (see ``_clients.py``
and ``_transport.py``; an injected client is used alone and never closed), sends JSON through
the retry policy (encoded once per call, ``_body.py``), maps every failure to our error tree
at one boundary, fills in the cost, and scrubs the API key out of any error text a provider
echoes back. An adapter adds only its URL, headers and the pure ``to_wire`` / ``from_wire``
mapping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ClassVar, Self

import httpx
from pydantic import SecretStr

from rlm_async._exceptions import (
    ConfigurationError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from rlm_async._options import check_int
from rlm_async._redact import scrub_secrets
from rlm_async._tokens import request_tokens
from rlm_async._types import Completion
from rlm_async.providers._base import CompletionRequest, TextDelta
from rlm_async.providers._body import encode_body, parse_json
from rlm_async.providers._clients import provider_clients
from rlm_async.providers._errors import (
    ErrorInfo,
    describe_error_body,
    error_class_for_status,
    error_for_type,
    failure_from_response,
    map_transport_errors,
    parse_body,
    request_id_from,
)
from rlm_async.providers._framing import (
    is_json_reply,
    iter_lines,
    peek_first_byte,
    read_capped,
    replay,
)
from rlm_async.providers._pricing import PriceTable
from rlm_async.providers._retry import (
    RetryableFailure,
    RetryPolicy,
    current_gate,
    run_with_retries,
)
from rlm_async.providers._settings import Settings

__all__ = ["HTTPProvider", "merge_extra"]


def merge_extra(payload: dict[str, Any], extra: Mapping[str, object]) -> dict[str, Any]:
    """``payload`` with ``request.extra`` laid over it; nested dicts merge one level deep."""
    for key, value in extra.items():
        current = payload.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            payload[key] = {**current, **value}
        else:
            payload[key] = value
    return payload


# ---- the adapter base --------------------------------------------------------------------


class HTTPProvider:
    """Base of the raw-httpx adapters.

    Args:
        api_key: The key; default from ``settings`` (its environment variable).
        base_url: The endpoint; default from ``settings`` or the provider's public URL.
        model: A default model, used when this instance is handed to ``RLM`` directly.
        settings: Where keys, URLs and timeouts come from; default ``Settings.from_env()``.
        client: An ``httpx.AsyncClient`` to share; it is never closed by the adapter.
        retry: The retry policy; default :class:`RetryPolicy()`.
        prices: Prices to fill ``Usage.cost_usd``; default the built-in table with
            ``settings.prices`` laid over it.
        max_connections: Size of the connection pool when the adapter makes its own client
            (on the transport ``settings.transport`` names).
    """

    name: str = "http"
    #: Added to connection-failure messages (e.g. how to start a local server).
    connect_hint: ClassVar[str] = ""
    #: Streams come as server-sent events (a body starting with "{" is then one JSON reply,
    #: whatever its content type says); Ollama's NDJSON streams start with "{" themselves.
    sse_streams: ClassVar[bool] = True

    def __init__(
        self,
        *,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        model: str | None = None,
        settings: Settings | None = None,
        client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        prices: PriceTable | None = None,
        max_connections: int = 64,
    ) -> None:
        if isinstance(api_key, SecretStr):
            api_key = api_key.get_secret_value()
        api_key = api_key.strip() if api_key else None
        if settings is None:
            settings = Settings.from_env()
        self._api_key: str | None = api_key or settings.api_key(self.name)
        self.base_url: str = (base_url or settings.base_url(self.name)).rstrip("/")
        self.model: str | None = model
        self._retry = retry or RetryPolicy()
        self._prices = prices if prices is not None else PriceTable(settings.prices)
        check_int("max_connections", max_connections, 1)
        self._clients = provider_clients(settings, max_connections=max_connections, client=client)
        self._closed = False

    def __repr__(self) -> str:
        model = f", model={self.model!r}" if self.model else ""
        return f"{type(self).__name__}(base_url={self.base_url!r}{model})"

    # -- what each adapter provides --

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _request_headers(self, request: CompletionRequest) -> dict[str, str]:
        """Headers of this one request beyond ``_headers()`` (xAI's cache routing)."""
        return {}

    def _url(self, request: CompletionRequest, *, stream: bool) -> str:
        raise NotImplementedError

    def _to_wire(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _from_wire(
        self, body: dict[str, Any], request: CompletionRequest, request_id: str | None
    ) -> Completion:
        raise NotImplementedError

    def _parse_stream(
        self, lines: AsyncIterator[str], response: httpx.Response, request: CompletionRequest
    ) -> AsyncIterator[TextDelta | Completion]:
        """Deltas, then the ``Completion``, from the stream's ``lines`` (``response``: headers)."""
        raise NotImplementedError

    # -- the Provider protocol --

    async def complete(self, request: CompletionRequest) -> Completion:
        """Send one request and return the whole completion (with usage and cost)."""
        payload = self._to_wire(request, stream=False)
        body, response = await self._post_json(
            self._url(request, stream=False),
            payload,
            tokens=request_tokens(request),
            headers=self._request_headers(request),
        )
        completion = self._from_wire(body, request, request_id_from(response.headers))
        return self._priced(completion, request)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[TextDelta | Completion]:
        """Stream text deltas; the last item is the whole ``Completion`` (with usage).

        A server that answers with one JSON reply instead of a stream (some
        OpenAI-compatible servers ignore ``"stream": true``) gives its text as one delta.
        """
        url = self._url(request, stream=True)
        payload = self._to_wire(request, stream=True)
        headers = self._request_headers(request)
        async with self._open_stream(url, payload, headers=headers) as response:
            chunks: AsyncIterator[bytes] = response.aiter_bytes()
            whole = is_json_reply(response)
            if not whole and self.sse_streams:
                # A JSON reply labelled text/event-stream: no event line starts with "{".
                first, chunks = await peek_first_byte(chunks, self.name)
                whole = first == b"{"
            if whole:
                # Some OpenAI-compatible servers ignore "stream": true and send one reply.
                body = await read_capped(chunks, self.name)
                completion = self._whole_reply(body, response, request)
                if completion is not None:
                    yield TextDelta(text=completion.text)
                    yield self._priced(completion, request)
                    return
                chunks = replay(body)  # a stream labelled as JSON: read it as the stream
            lines = iter_lines(chunks, self.name)
            async for item in self._parse_stream(lines, response, request):
                yield self._priced(item, request) if isinstance(item, Completion) else item

    async def aclose(self) -> None:
        """Close the client if this adapter created it; the adapter is unusable afterwards."""
        self._closed = True
        await self._clients.aclose()

    @property
    def _client(self) -> httpx.AsyncClient:
        """One of the provider's clients (they share timeouts and limits per pool)."""
        return self._clients.first

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- plumbing --

    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key,) if self._api_key else ()

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError(f"the {self.name} provider is closed; create a new one")

    @contextmanager
    def _retryable_transport(self) -> Iterator[None]:
        try:
            with map_transport_errors(self.name, hint=self.connect_hint):
                yield
        except (ProviderTimeoutError, ProviderUnavailableError) as error:
            raise RetryableFailure(error) from error

    def _request_parts(
        self, payload: dict[str, Any], extra: Mapping[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body's bytes and the headers, made once per call: every retry sends them."""
        self._check_open()
        headers = {"Content-Type": "application/json", **self._headers(), **(extra or {})}
        return encode_body(payload), headers

    async def _post_json(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        tokens: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], httpx.Response]:
        body, headers = self._request_parts(payload, headers)

        async def attempt() -> tuple[dict[str, Any], httpx.Response]:
            async with self._clients.client() as client:
                with self._retryable_transport():
                    request = client.build_request("POST", url, content=body, headers=headers)
                    response = await client.send(request, stream=True)
                    try:
                        # A reply (or error page) of hundreds of MB is no model's answer:
                        # refused as it arrives rather than held, parsed and logged whole.
                        raw = await read_capped(response.aiter_bytes(), self.name, what="the reply")
                    finally:
                        await response.aclose()
            decoded = raw.decode(response.encoding or "utf-8", errors="replace")
            text = scrub_secrets(decoded, self._secrets())
            if not response.is_success:
                raise failure_from_response(self.name, response, text)
            return self._ok_body(text, response), response

        return await run_with_retries(
            self._retry, self.name, attempt, gate=current_gate(), tokens=tokens
        )

    @asynccontextmanager
    async def _open_stream(
        self, url: str, payload: dict[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        body, headers = self._request_parts(payload, headers)

        async with self._clients.client() as client:

            async def attempt() -> httpx.Response:
                with self._retryable_transport():
                    request = client.build_request("POST", url, content=body, headers=headers)
                    response = await client.send(request, stream=True)
                if response.is_success:
                    return response
                try:
                    with self._retryable_transport():
                        await response.aread()
                finally:
                    await response.aclose()
                text = scrub_secrets(response.text, self._secrets())
                raise failure_from_response(self.name, response, text)

            response = await run_with_retries(self._retry, self.name, attempt, gate=current_gate())
            try:
                with map_transport_errors(self.name, hint=self.connect_hint):
                    yield response
            finally:
                await response.aclose()

    def _whole_reply(
        self, raw: bytes, response: httpx.Response, request: CompletionRequest
    ) -> Completion | None:
        """The completion in a JSON body sent for a streaming request; ``None`` if not one JSON."""
        decoded = raw.decode(response.encoding or "utf-8", errors="replace")
        text = scrub_secrets(decoded, self._secrets())
        if not text.strip():
            raise self._empty_reply(response)
        try:
            value = parse_json(text)
        except ValueError:
            return None
        body = self._checked_body(value, response)
        return self._from_wire(body, request, request_id_from(response.headers))

    def _ok_body(self, text: str, response: httpx.Response) -> dict[str, Any]:
        if not text.strip():
            raise self._empty_reply(response)
        return self._checked_body(parse_body(text), response)

    def _empty_reply(self, response: httpx.Response) -> ProviderResponseError:
        return ProviderResponseError(
            "empty reply body",
            provider=self.name,
            status_code=response.status_code,
            request_id=request_id_from(response.headers),
        )

    def _checked_body(self, body: Any, response: httpx.Response) -> dict[str, Any]:
        """``body`` if it is a reply object; an error for anything else, or an error inside."""
        if not isinstance(body, dict):
            summary = describe_error_body(body).message if isinstance(body, str) else repr(body)
            raise ProviderResponseError(
                f"the reply is not a JSON object: {summary[:300]}",
                provider=self.name,
                status_code=response.status_code,
                request_id=request_id_from(response.headers),
                body=body,
            )
        if body.get("error") and not any(k in body for k in ("choices", "candidates", "message")):
            # Some gateways (OpenRouter, proxies) put an error inside a 200.
            request_id = request_id_from(response.headers)
            raise self._error_in_body(body, request_id, status_code=response.status_code)
        return body

    def _error_in_body(
        self, body: dict[str, Any], request_id: str | None, *, status_code: int | None = None
    ) -> ProviderError:
        info = describe_error_body(body)
        code = info.code
        if code is not None and code.isdigit() and 400 <= int(code) < 600:
            cls = error_class_for_status(int(code), info)
            return cls(
                info.message,
                provider=self.name,
                status_code=int(code),
                request_id=request_id,
                body=body,
            )
        return error_for_type(self.name, info, body=body, request_id=request_id)

    def _stream_error(self, payload: Any, request_id: str | None) -> ProviderError:
        """The error for an error object that arrived inside a 200 stream."""
        if isinstance(payload, dict):
            return self._error_in_body(payload, request_id)
        return error_for_type(self.name, ErrorInfo(message=str(payload)), request_id=request_id)

    def _priced(self, completion: Completion, request: CompletionRequest) -> Completion:
        cost = self._prices.cost(self.name, completion.model, completion.usage)
        if cost is None and completion.model != request.model:
            cost = self._prices.cost(self.name, request.model, completion.usage)
        if cost is None:
            return completion
        usage = completion.usage.model_copy(update={"cost_usd": cost})
        return completion.model_copy(update={"usage": usage})
