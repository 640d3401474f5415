"""``mon.request()`` and its trace ids as a web service uses them: request ids of any
type, outcomes handed to ``close()`` as the error handler has them, stages run twice, the
open request entered again by a handler, and span contexts of tracers of the
application's own; each read back through the drain and the OpenMetrics exposition."""

from __future__ import annotations

import builtins

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

import inferwatch
from conftest import Scraper
from inferwatch import faults
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request, current_request
from inferwatch.core.tracing import current_trace_id
from request_totals import request_totals


def _errors(monitor: object) -> dict[str, float]:
    monitor.drain()
    return {labels[0]: value for labels, value in
            monitor.state.counters.get("inferwatch_errors_total", {}).items()}


def _stage_counts(monitor: object) -> dict[str, int]:
    monitor.drain()
    series = monitor.state.histograms.get("inferwatch_stage_duration_seconds", {})
    return {labels[0]: int(histogram.count) for labels, histogram in series.items()}


# --- request ids ----------------------------------------------------------------------

_REQUEST_IDS = st.one_of(
    st.integers(), st.uuids(), st.binary(min_size=1, max_size=40),
    st.text(min_size=1, max_size=2000), st.floats(allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(request_id=_REQUEST_IDS, opened=st.sampled_from(["open", "constructor", "monitor"]))
def test_a_request_id_of_any_type_joins_its_outcome(request_id, opened):
    """Middleware and handlers open requests with the id they have (a database int, a
    UUID): the delayed ground truth sent later with that same id must join the prediction,
    whichever way the request was opened."""
    registry = Registry()
    try:
        mon = registry.monitor("fraud", "1")
        if opened == "open":
            request = Request.open(mon, request_id)
        elif opened == "constructor":
            request = Request(mon, request_id).__enter__()
        else:
            request = mon.request(request_id=request_id).__enter__()
        request.prediction([[0.2, 0.8]], probabilities=True)
        request.close(None)
        mon.drain()
        assert isinstance(request.request_id, str)
        mon.record_outcome(request_id, 1)
        mon.drain()
        assert mon.state.counters.get("inferwatch_outcomes_total") == {("correct",): 1.0}
        assert "inferwatch_outcomes_unmatched_total" not in mon.state.counters or \
            sum(mon.state.counters["inferwatch_outcomes_unmatched_total"].values()) == 0
    finally:
        registry.close()


# --- outcomes given to close() --------------------------------------------------------

def test_close_with_an_exception_object_counts_its_class_and_loses_no_request(registry):
    """An error handler that has the exception object (``except Exception as exc:
    request.close(exc)``) or a status text: the request counts as an error, and the other
    requests of the same drain are not lost with it."""
    mon = registry.monitor("m", "1")
    with mon.request(request_id="fine"):
        pass
    Request.open(mon, "a").close(ValueError("bad payload"))
    Request.open(mon, "b").close(TimeoutError)
    Request.open(mon, "c").close("upstream timeout")
    before = faults.internal_error_counts().get("drain", 0)
    assert request_totals(mon) == {"ok": 1.0, "error": 3.0, "cancelled": 0.0, "in_flight": 0}
    assert _errors(mon) == {"ValueError": 1.0, "TimeoutError": 1.0, "Exception": 1.0}
    assert faults.internal_error_counts().get("drain", 0) == before


def test_close_with_a_cancellation_object_is_cancelled(registry):
    import asyncio

    mon = registry.monitor("m", "1")
    Request.open(mon, "a").close(asyncio.CancelledError())
    assert request_totals(mon) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0, "in_flight": 0}


# --- stages ---------------------------------------------------------------------------

def test_a_stage_run_twice_logs_the_time_of_both(registry):
    """A retried stage (or two model calls) in one request: the event log's seconds per
    stage are the time spent in it, not the time of its last run only."""
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", registry=registry)
    mon = registry.monitor("m", "1")
    with mon.request(request_id="r-1") as request:
        for _ in range(3):
            with request.stage("retrieve"):
                sum(range(20000))
        model(1.0)
        model(2.0)
    record = request.record
    event = record.event("m", "1")
    for name in ("retrieve", "inference"):
        runs = [seconds for stage, seconds in record.stages if stage == name]
        assert len(runs) in (2, 3)
        assert event["stages"][name] == pytest.approx(sum(runs))
    assert _stage_counts(mon) == {"retrieve": 3, "inference": 2}


_GROUP = getattr(builtins, "ExceptionGroup", None)


@settings(max_examples=40, deadline=None)
@given(names=st.lists(st.one_of(st.text(max_size=300), st.integers(), st.binary(max_size=20)),
                      min_size=1, max_size=40))
def test_hostile_stage_names_and_odd_error_types_keep_the_exposition_valid(names):
    """Stage names from user data and exception classes made at run time: label values
    stay bounded in number and length, and the OpenMetrics exposition parses."""
    scraper = Scraper()
    try:
        mon = scraper.registry.monitor("m", "1")
        odd = type("Odd \"name\"\n{x}\\", (Exception,), {})
        for name in names:
            with pytest.raises(odd), mon.request() as request, request.stage(name):
                raise odd()
        if _GROUP is not None:  # Python 3.11 on
            with pytest.raises(_GROUP), mon.request():
                raise _GROUP("batch", [ValueError(), KeyError()])
        scraper.registry.drain()
        families = {f.name: f for f in parse_openmetrics(openmetrics(scraper.prometheus).decode())}
        stages = {s.labels["stage"] for s in families["inferwatch_stage_duration_seconds"].samples}
        assert len(stages) <= 20 + 1
        assert all(len(stage) <= 128 for stage in stages)
        errors = {s.labels["error_type"]: s.value for s in families["inferwatch_errors"].samples
                  if s.name == "inferwatch_errors_total"}
        assert errors == {odd.__name__: len(names),
                          **({"ExceptionGroup": 1.0} if _GROUP is not None else {})}
    finally:
        scraper.registry.close()


# --- the same request entered again ---------------------------------------------------

def test_a_handler_entering_the_open_request_again_leaves_its_end_to_the_opener(registry):
    """The middleware opened the request; the handler wraps its work in ``with
    current_request():``. The handler's exit must not end the request: what comes after
    (a stage, the error status the middleware reports) is still the request's."""
    mon = registry.monitor("m", "1")
    request = Request.open(mon, "r-1")
    with current_request() as again, again.stage("handler"):
        pass
    assert again is request
    assert request.is_open
    assert current_request() is request
    with request.stage("serialize"):
        pass
    request.close(RuntimeError)
    assert request_totals(mon) == {"ok": 0.0, "error": 1.0, "cancelled": 0.0, "in_flight": 0}
    assert _stage_counts(mon) == {"handler": 1, "serialize": 1}
    assert current_request() is None


def test_nested_blocks_of_one_request_end_it_once_at_the_outermost(registry):
    mon = registry.monitor("m", "1")
    request = mon.request(request_id="r-1")
    with request:
        with request, request:
            assert request.is_open
        assert request.is_open
    assert not request.is_open
    with request:  # entered again after it ended: a request of its own
        pass
    assert request_totals(mon) == {"ok": 2.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}


# --- span contexts --------------------------------------------------------------------

def _traced_monitor(scraper, **options: object) -> object:
    inferwatch.instrument(lambda x: 0.5, name="m", version="1", exemplars=True,
                          registry=scraper.registry, **options)
    return scraper.registry.monitor("m", "1")


def _exemplars(scraper) -> list[dict[str, str]]:
    text = openmetrics(scraper.prometheus).decode()
    family = next(f for f in parse_openmetrics(text)
                  if f.name == "inferwatch_request_duration_seconds")
    return [s.exemplar.labels for s in family.samples if s.exemplar is not None]


@given(trace_id=st.integers(1, 2**128 - 1), flags=st.integers(0, 255))
def test_a_span_context_with_int_flags_gives_a_trace_id_when_sampled(trace_id, flags):
    """``SpanContext`` keeps its ``trace_flags`` as given: a propagator of the application's
    own passing the header's flags as an int is read by the sampled bit, not a fault."""
    before = faults.internal_error_counts().get("tracing", 0)
    with trace.use_span(NonRecordingSpan(SpanContext(trace_id, 7, False, trace_flags=flags))):
        found = current_trace_id()
    assert found == (format(trace_id, "032x") if flags & TraceFlags.SAMPLED else None)
    assert faults.internal_error_counts().get("tracing", 0) == before


def test_a_request_in_a_span_with_int_flags_has_its_exemplar(scraper):
    mon = _traced_monitor(scraper)
    context = SpanContext(0xABC, 7, True, trace_flags=1)
    with trace.use_span(NonRecordingSpan(context)), mon.request(request_id="r-1"):
        pass
    scraper.registry.drain()
    assert _exemplars(scraper) == [{"trace_id": format(0xABC, "032x")}]


class _Context:
    """A span context of a tracer of the application's own that calls itself valid."""

    def __init__(self, trace_id: object, sampled: bool = True) -> None:
        self.trace_id = trace_id
        self.span_id = 7
        self.is_valid = True
        self.trace_flags = TraceFlags(TraceFlags.SAMPLED if sampled else 0)


class _Span(NonRecordingSpan):
    def __init__(self, context: _Context) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self._context = context

    def get_span_context(self) -> _Context:
        return self._context


@given(trace_id=st.one_of(st.integers(), st.booleans(), st.text(max_size=5), st.floats()))
def test_a_trace_id_from_any_context_is_32_hex_digits_or_none(trace_id):
    with trace.use_span(_Span(_Context(trace_id))):
        found = current_trace_id()
    valid = type(trace_id) is int and 0 < trace_id < 2**128
    assert found == (format(trace_id, "032x") if valid else None)


def test_a_trace_id_past_128_bits_makes_no_exemplar_that_breaks_the_scrape(scraper):
    """An exemplar's labels may hold 128 characters in all: one from a 600-bit id would
    make every OpenMetrics scrape of the model fail."""
    mon = _traced_monitor(scraper)
    # Each alone: the latest exemplar of a bucket wins, and would hide an earlier one.
    for trace_id in (2**600, 0, -5):
        with trace.use_span(_Span(_Context(trace_id))), mon.request(request_id="r-1"):
            pass
        scraper.registry.drain()
        assert _exemplars(scraper) == []
    with trace.use_span(_Span(_Context(0xDEF))), mon.request(request_id="r-2"):
        pass
    scraper.registry.drain()
    assert _exemplars(scraper) == [{"trace_id": format(0xDEF, "032x")}]
    assert request_totals(mon)["ok"] == 4.0


def test_a_tracer_whose_spans_raise_never_fails_the_request(scraper, monkeypatch):
    """A tracer provider that raises on every call: stages and the request still count."""
    class Broken:
        def get_tracer(self, *args, **kwargs):
            raise RuntimeError("exporter misconfigured")

    class BrokenSpan(NonRecordingSpan):
        def get_span_context(self):
            raise RuntimeError("no context")

    monkeypatch.setattr(trace, "get_tracer", Broken().get_tracer)
    mon = _traced_monitor(scraper, trace_stages=True)
    span = BrokenSpan(trace.INVALID_SPAN_CONTEXT)
    with trace.use_span(span), mon.request(request_id="r-1") as request, request.stage("score"):
        pass
    assert request_totals(mon) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0, "in_flight": 0}
    assert _stage_counts(mon) == {"score": 1}
    assert _exemplars(scraper) == []


@pytest.mark.parametrize("exemplars", [True, False])
def test_configure_exemplars_turns_trace_ids_on_and_off(scraper, exemplars):
    # As README's option table says of `exemplars`: given to configure(), as to instrument().
    inferwatch.instrument(lambda x: 0.5, name="m", version="1", exemplars=not exemplars,
                          registry=scraper.registry)
    mon = scraper.registry.monitor("m", "1").configure(exemplars=exemplars)
    context = SpanContext(0xABC, 7, True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with trace.use_span(NonRecordingSpan(context)), mon.request(request_id="r-1"):
        pass
    scraper.registry.drain()
    assert _exemplars(scraper) == ([{"trace_id": format(0xABC, "032x")}] if exemplars else [])
