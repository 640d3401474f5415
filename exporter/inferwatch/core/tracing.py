"""OpenTelemetry links: the active trace id for exemplars and events, and stage spans.

OpenTelemetry is an optional extra (``pip install inferwatch[otel]``). inferwatch never
imports it on its own: it reads the active span only when the application has already
imported ``opentelemetry.trace``.

>>> current_trace_id() is None  # no span is active here
True
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from inferwatch import faults

TRACER_NAME = "inferwatch"
_SAMPLED = 0x01  # the W3C trace-flags bit
_MAX_TRACE_ID = 2**128 - 1


def otel_configured() -> bool:
    """True when the application has set up OpenTelemetry tracing (an SDK tracer provider).

    Importing the API is not enough: web frameworks import it whether or not anyone
    traces, and following a trace that cannot exist would only cost every call.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    try:
        provider = trace.get_tracer_provider()
    except Exception as exc:
        # OTEL_PYTHON_TRACER_PROVIDER naming no installed provider raises here: a tracing
        # setup that cannot trace is no reason to fail the host's instrument() or the drain.
        faults.record("tracing", exc)
        return False
    return type(provider).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider")


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None without a sampled span."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    # Read at the start of every traced call and request: a span of the application's own
    # (or a third party's) that answers no usable context must not fail the call.
    try:
        context = trace.get_current_span().get_span_context()
        # An unsampled span's trace is never exported: an exemplar or event pointing at it
        # would lead to a trace that no backend holds. SpanContext keeps its flags as given,
        # and a propagator of the application's own may give a plain int: read the bit.
        flags = context.trace_flags
        sampled = flags & _SAMPLED if isinstance(flags, int) else flags.sampled
        if not context.is_valid or not sampled:
            return None
        trace_id = context.trace_id
        if trace_id.__class__ is not int or not 0 < trace_id <= _MAX_TRACE_ID:
            # A context of a tracer of its own that calls itself valid: an id past 128 bits
            # would make an exemplar over OpenMetrics' 128 characters, failing every scrape.
            faults.record("tracing")
            return None
        return format(trace_id, "032x")
    except Exception as exc:
        faults.record("tracing", exc)
        return None


def stage_span(stage: str, attributes: dict[str, Any]) -> AbstractContextManager:
    """A span for one stage of a request, or a no-op without OpenTelemetry."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return nullcontext()
    tracer = trace.get_tracer(TRACER_NAME)
    return tracer.start_as_current_span(f"inferwatch.{stage}", attributes=attributes)
