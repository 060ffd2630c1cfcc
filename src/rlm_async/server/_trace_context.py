"""``TraceContext``: a request's W3C trace context is the current one while it is served.

A caller that sends ``traceparent`` (and ``tracestate``) headers gets the runs its request
starts as spans of its own trace: the run's span (see ``rlm_async.tracing``) is a child of
the caller's. Extracted with OpenTelemetry's global propagator (W3C Trace Context and
Baggage unless ``OTEL_PROPAGATORS`` says otherwise). Without the API imported (nobody
configured tracing in this process) a request passes through untouched, at no cost.
"""

from __future__ import annotations

import sys

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TraceContext"]


class TraceContext:
    """ASGI middleware: attach the trace context a request carries for its whole handling
    (the completion it starts, in whatever task, copies it from there)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "opentelemetry.trace" not in sys.modules:
            await self.app(scope, receive, send)
            return
        from opentelemetry import context, propagate

        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }

        token = context.attach(propagate.extract(headers))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)
