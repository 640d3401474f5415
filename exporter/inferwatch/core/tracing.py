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


class Unreadable:
    """A span context that could not be read: the fault, for the reader to count (once
    per request, however many times the request looks for its span)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def count(self) -> None:
        """Count the fault in ``inferwatch_internal_errors_total{component="tracing"}``."""
        faults.record("tracing", self.error)


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None without a sampled span."""
    found = read_trace_id()
    if found is None or found.__class__ is str:
        return found  # type: ignore[return-value]
    found.count()  # type: ignore[union-attr]
    return None


def read_trace_id() -> str | Unreadable | None:
    """As :func:`current_trace_id`, but a context that cannot be read is returned as an
    :class:`Unreadable`, not yet counted."""
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
            return Unreadable()
        return format(trace_id, "032x")
    except Exception as exc:
        return Unreadable(exc)


def stage_span(stage: str, attributes: dict[str, Any]) -> AbstractContextManager:
    """A span for one stage of a request, or a no-op without OpenTelemetry."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return nullcontext()
    return _StageSpan(trace, f"inferwatch.{stage}", attributes)


class _StageSpan(AbstractContextManager):
    """The span of one stage, current while the stage runs.

    Not ``start_as_current_span``: a stage inside a generator (a streamed response's body)
    may be entered in one context and left in another (Starlette runs each step of a sync
    iterator in a copy of the request's context), where detaching the token fails and
    OpenTelemetry logs an ERROR per stage. The context is given back only where it is still
    the one this span made current; elsewhere it is left alone, and the span ends all the
    same.
    """

    __slots__ = ("_attributes", "_context", "_name", "_span", "_token", "_trace")

    def __init__(self, trace: Any, name: str, attributes: dict[str, Any]) -> None:
        self._trace = trace
        self._name = name
        self._attributes = attributes
        self._span: Any = None
        self._context: Any = None
        self._token: Any = None

    def __enter__(self) -> Any:
        from opentelemetry import context

        trace = self._trace
        span = trace.get_tracer(TRACER_NAME).start_span(self._name,
                                                        attributes=self._attributes)
        self._span = span
        try:
            made = trace.set_span_in_context(span)
            self._token = context.attach(made)
            self._context = made
        except BaseException:
            span.end()  # never made current: a span left open would never be exported
            raise
        return span

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        span = self._span
        if span is None:
            return False
        self._span = None
        try:
            # As start_as_current_span records an error; GeneratorExit and other
            # BaseExceptions are no failure of the stage (a consumer that stopped reading).
            if isinstance(exc, Exception) and span.is_recording():
                span.record_exception(exc)
                span.set_status(self._trace.Status(
                    self._trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            try:
                self._detach()
            finally:
                span.end()
        return False

    def _detach(self) -> None:
        from opentelemetry import context

        made, token = self._context, self._token
        self._context = self._token = None
        if made is not None and context.get_current() is made:
            context.detach(token)
