"""OpenTelemetry edges: which spans give a trace id, and so an exemplar and an event field.

No global tracer provider is set here: spans are made current with ``trace.use_span`` or a
local provider's tracer, which is what ``current_trace_id`` reads, so these tests leave the
process as they found it.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

import inferwatch
from inferwatch.core.tracing import current_trace_id


@given(trace_id=st.integers(1, 2**128 - 1), span_id=st.integers(1, 2**64 - 1),
       flags=st.integers(0, 255), remote=st.booleans())
def test_only_a_sampled_span_gives_a_trace_id(trace_id, span_id, flags, remote):
    context = SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(flags))
    with trace.use_span(NonRecordingSpan(context)):
        found = current_trace_id()
    assert found == (format(trace_id, "032x") if flags & TraceFlags.SAMPLED else None)


def test_an_invalid_span_context_gives_no_trace_id():
    with trace.use_span(NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
        assert current_trace_id() is None


def _exemplar_trace_ids(scraper) -> list[str]:
    text = openmetrics(scraper.prometheus).decode()
    family = next(f for f in parse_openmetrics(text)
                  if f.name == "inferwatch_request_duration_seconds")
    return [s.exemplar.labels["trace_id"] for s in family.samples if s.exemplar is not None]


def test_a_call_in_an_unsampled_span_leaves_no_exemplar(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", exemplars=True,
                                  registry=scraper.registry)
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with unsampled.start_as_current_span("predict"):
        model(1)
    scraper.registry.drain()
    # The trace of an unsampled span is never exported: an exemplar would point nowhere.
    assert _exemplar_trace_ids(scraper) == []
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1

    sampled = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with sampled.start_as_current_span("predict") as span:
        model(1)
    scraper.registry.drain()
    assert _exemplar_trace_ids(scraper) == [format(span.get_span_context().trace_id, "032x")]


def test_a_tracer_provider_set_after_instrument_gives_exemplars(scraper, monkeypatch):
    """Models instrumented at import time, OpenTelemetry set up later in main(): the
    background pass notices the provider, and later calls carry their trace ids."""
    from opentelemetry.trace import ProxyTracerProvider

    provider = TracerProvider(sampler=ALWAYS_ON)
    current = [ProxyTracerProvider()]
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: current[0])
    follows = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                    registry=scraper.registry)
    declined = inferwatch.instrument(lambda x: 0.5, name="off", version="1", exemplars=False,
                                     registry=scraper.registry)
    scraper.registry.follow_tracing()
    assert not scraper.registry.monitor("m", "1").traces  # nothing set up yet
    current[0] = provider  # trace.set_tracer_provider(provider) in main()
    scraper.registry.follow_tracing()
    with provider.get_tracer("test").start_as_current_span("predict") as span:
        follows(1)
        declined(1)
    scraper.registry.drain()
    assert _exemplar_trace_ids(scraper) == [format(span.get_span_context().trace_id, "032x")]
    assert not scraper.registry.monitor("off", "1").traces


def test_the_background_pass_follows_a_provider_set_later(monkeypatch):
    import time

    from opentelemetry.trace import ProxyTracerProvider

    from inferwatch.core.registry import Registry

    current = [ProxyTracerProvider()]
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: current[0])
    registry = Registry(drain_interval=0.02)
    try:
        inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
        monitor = registry.monitor("m", "1")
        current[0] = TracerProvider()
        deadline = time.monotonic() + 30  # a safety net only: the condition ends the wait
        while not monitor.traces:
            assert time.monotonic() < deadline, "the background pass never looked"
            time.sleep(0.01)
    finally:
        registry.close()


@given(flags=st.integers(0, 255))
def test_a_traceparent_gives_its_trace_id_only_when_sampled(flags):
    from inferwatch.serving.request_ids import trace_id_from_traceparent

    header = f"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags:02x}"
    assert trace_id_from_traceparent(header) == (
        "4bf92f3577b34da6a3ce929d0e0e4736" if flags & 1 else None)
