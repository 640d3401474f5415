"""A real OpenTelemetry SDK tracer provider for a test module, taken away after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter


@contextmanager
def installed_provider(spans: SpanExporter) -> Iterator[TracerProvider]:
    """The process's tracer provider while the block runs, its spans sent to `spans`.

    OpenTelemetry sets its provider once per process; the tests of other modules expect a
    process without one (their monitors stay on the fast path), so the provider is removed
    after, the way OpenTelemetry's own test utilities do (opentelemetry.test.globals_test).
    """
    from opentelemetry.util._once import Once

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    try:
        yield provider
    finally:
        provider.shutdown()
        trace._TRACER_PROVIDER = None
        trace._TRACER_PROVIDER_SET_ONCE = Once()
