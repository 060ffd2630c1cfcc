"""Helpers for the tracing tests: a tracer provider exporting to memory, the span tree."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A fresh provider whose finished spans land in the returned exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


class SpanTree:
    """Finished spans, by parent."""

    def __init__(self, spans: Sequence[ReadableSpan]) -> None:
        self.spans = list(spans)

    def roots(self) -> list[ReadableSpan]:
        ids = {span_id(s) for s in self.spans}
        return [s for s in self.spans if s.parent is None or s.parent.span_id not in ids]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        found = [
            s for s in self.spans if s.parent is not None and s.parent.span_id == span_id(parent)
        ]
        return sorted(found, key=lambda s: s.start_time or 0)

    def names(self, parent: ReadableSpan) -> list[str]:
        return [s.name for s in self.children(parent)]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        return next((s for s in self.spans if span_id(s) == span.parent.span_id), None)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def attr(span: ReadableSpan, name: str) -> object:
    assert span.attributes is not None
    return span.attributes.get(name)
