"""A span that starts after its request opened gives the request its trace id.

The trace id was read only as a request opened: a span opened inside ``mon.request()``,
inside the web middleware's request, or by a framework whose server span starts after the
middleware, left the request without one (no exemplar, no ``trace_id`` in the event log).
Now the first point of the request that sees a sampled span gives it: its open, a model call
or ``r.stage()`` / ``r.prediction()`` inside it, a handler's block joining the middleware's
request, or the close.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from starlette.testclient import TestClient

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request
from inferwatch.events import EventLog
from inferwatch.events.jsonl import event_files
from inferwatch.serving.middleware import InstrumentMiddleware
from inferwatch.serving.wsgi_middleware import WSGIInstrumentMiddleware
from request_totals import request_totals

# A provider of the tests' own, never set as the global one: other modules expect a process
# without one. Its spans are sampled, current while used, and give real trace ids.
TRACER = TracerProvider().get_tracer("test")


def _hex(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def _exemplar_trace_ids(scraper) -> list[str]:
    text = openmetrics(scraper.prometheus).decode()
    family = next(f for f in parse_openmetrics(text)
                  if f.name == "inferwatch_request_duration_seconds")
    return [s.exemplar.labels["trace_id"] for s in family.samples if s.exemplar is not None]


def _events(log: EventLog, path: Path) -> list[dict]:
    assert log.flush(10)
    return [json.loads(line) for p in event_files(path) for line in p.read_text().splitlines()]


def _traced(registry: Registry, **options: object):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", exemplars=True,
                                  registry=registry, **options)
    return model, registry.monitor("m", "1")


# --- mon.request() ------------------------------------------------------------------------

def test_a_model_call_in_a_span_inside_the_request_gives_its_exemplar(scraper):
    model, mon = _traced(scraper.registry)
    with mon.request(request_id="r-1"), TRACER.start_as_current_span("score") as span:
        model(1)
    scraper.registry.drain()
    assert _exemplar_trace_ids(scraper) == [_hex(span)]


@pytest.mark.parametrize("point", ["keywords", "async", "stage", "prediction"])
def test_each_point_of_the_request_inside_a_span_gives_its_trace_id(scraper, point):
    import asyncio

    model, mon = _traced(scraper.registry)

    async def predict(x):
        return 0.5

    amodel = inferwatch.instrument(predict, name="m", version="1", exemplars=True,
                                   registry=scraper.registry)
    with mon.request(request_id="r-1") as r, TRACER.start_as_current_span("inner") as span:
        if point == "keywords":
            model(x=1)
        elif point == "async":
            asyncio.run(amodel(1))
        elif point == "stage":
            with r.stage("preprocess"):
                pass
        else:
            r.prediction(0.5)
    scraper.registry.drain()
    assert _exemplar_trace_ids(scraper) == [_hex(span)]
    assert request_totals(mon)["ok"] == 1.0


def test_a_request_closed_inside_a_span_started_after_it_opened(scraper):
    _, mon = _traced(scraper.registry)
    request = Request.open(mon, "r-1")
    with TRACER.start_as_current_span("handler") as span:
        request.close(None)
    scraper.registry.drain()
    assert _exemplar_trace_ids(scraper) == [_hex(span)]


def test_the_span_the_request_opened_in_stays_its_trace(scraper):
    model, mon = _traced(scraper.registry)
    elsewhere = trace.set_span_in_context(trace.INVALID_SPAN)  # a root span: a trace of its own
    with TRACER.start_as_current_span("outer") as outer, mon.request(request_id="r-1"), \
            TRACER.start_as_current_span("other-trace", context=elsewhere):
        model(1)
    scraper.registry.drain()
    assert _exemplar_trace_ids(scraper) == [_hex(outer)]


def test_a_cancelling_close_in_another_span_takes_no_trace_id(scraper):
    """The abandoned-request check and the garbage collector end a request from whatever
    thread runs then, inside some other request's span: that trace is not this request's."""
    _, mon = _traced(scraper.registry)
    request = Request.open(mon, "r-1")
    closer = threading.Thread(target=lambda: _close_in_a_span(request))
    closer.start()
    closer.join()
    scraper.registry.drain()
    assert _exemplar_trace_ids(scraper) == []
    assert request_totals(mon)["cancelled"] == 1.0


def _close_in_a_span(request: Request) -> None:
    with TRACER.start_as_current_span("someone-else"):
        request.close(None, cancelled=True)


def test_a_model_without_exemplars_takes_no_late_trace_id(scraper):
    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", exemplars=False,
                                  registry=scraper.registry)
    mon = scraper.registry.monitor("m", "1")
    request = Request.open(mon, "r-1")
    with TRACER.start_as_current_span("inner"):
        model(1)
        with request.stage("s"):
            request.prediction(1)
        request.close(None)
    scraper.registry.drain()
    assert _exemplar_trace_ids(scraper) == []
    assert request_totals(mon)["ok"] == 1.0


# The points of one request: each may run inside a span (trace id, sampled) or none.
_SPAN = st.none() | st.tuples(st.integers(1, 2**128 - 1), st.booleans())
_POINTS = st.lists(st.tuples(st.sampled_from(["call", "keywords", "stage", "prediction"]),
                             _SPAN), max_size=4)
_REQUEST = st.fixed_dictionaries({"opened": st.sampled_from(["block", "open"]),
                                  "at_open": _SPAN, "points": _POINTS, "at_close": _SPAN})


def _in(span: tuple[int, bool] | None):
    if span is None:
        return trace.use_span(trace.INVALID_SPAN)
    trace_id, sampled = span
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return trace.use_span(NonRecordingSpan(SpanContext(trace_id, 7, False, trace_flags=flags)))


def _run(model, mon, request_id: str, case: dict) -> None:
    with _in(case["at_open"]):
        request = mon.request(request_id=request_id).__enter__()
    for kind, span in case["points"]:
        with _in(span):
            if kind == "call":
                model(1)
            elif kind == "keywords":
                model(x=1)
            elif kind == "stage":
                with request.stage("s"):
                    pass
            else:
                request.prediction(0.5)
    if case["opened"] == "open":  # closed by its owner, inside whatever span is current
        with _in(case["at_close"]):
            request.close(None)
    else:
        request.__exit__(None, None, None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(_REQUEST, min_size=1, max_size=6))
def test_a_request_has_the_first_sampled_trace_it_was_seen_in(cases):
    """Whatever spans a request's points run in, it gets the trace id of the first sampled
    one, in the order they ran, and none without one."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.jsonl"
        log = EventLog(path)
        registry = Registry(drain_interval=3600)
        try:
            model, mon = _traced(registry, events=log)
            expected = {}
            for index, case in enumerate(cases):
                _run(model, mon, f"r-{index}", case)
                seen = [case["at_open"], *(span for _, span in case["points"])]
                if case["opened"] == "open":
                    seen.append(case["at_close"])
                first = next((span[0] for span in seen if span is not None and span[1]), None)
                expected[f"r-{index}"] = None if first is None else format(first, "032x")
            registry.drain()
            found = {event["request_id"]: event.get("trace_id")
                     for event in _events(log, path) if "request_id" in event}
            assert found == expected
        finally:
            registry.close()
            log.close()


# --- the web middleware's request --------------------------------------------------------

class _SpanMiddleware:
    """An ASGI middleware that starts a server span, added inside inferwatch's, as a
    framework's or an instrumentation's span may start after inferwatch's request opened."""

    def __init__(self, app, seen: dict[str, str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with TRACER.start_as_current_span(f"GET {scope['path']}") as span:
            self.seen[scope["path"]] = _hex(span)
            await self.app(scope, receive, send)


def _started_spans(app, seen: list[str]):
    def wrapped(environ, start_response):
        with TRACER.start_as_current_span(environ["PATH_INFO"]) as span:
            seen.append(_hex(span))
            return app(environ, start_response)
    return wrapped


def test_asgi_a_server_span_inside_the_middleware_gives_the_trace_id(registry, tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    model, mon = _traced(registry, events=log)
    app = FastAPI(telemetry={"tracing": False})  # the span below is the only one

    @app.get("/call")
    def call() -> dict:
        return {"p": model(1)}

    @app.get("/block")
    async def block() -> dict:
        async with mon.request(request_id="b-1") as r:  # joins the middleware's request
            r.action("shown")
        return {}

    spans: dict[str, str] = {}
    app.add_middleware(_SpanMiddleware, seen=spans)
    app.add_middleware(InstrumentMiddleware, routes={"/call": "m", "/block": "m"},
                       registry=registry)
    client = TestClient(app)
    assert client.get("/call", headers={"X-Request-ID": "c-1"}).status_code == 200
    assert client.get("/block").status_code == 200
    registry.drain()
    events = {event["request_id"]: event.get("trace_id") for event in _events(log, path)}
    assert events == {"c-1": spans["/call"], "b-1": spans["/block"]}
    assert request_totals(mon)["ok"] == 2.0
    log.close()


def test_wsgi_a_span_inside_the_middleware_gives_the_trace_id(registry, tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    model, _mon = _traced(registry, events=log)
    app = Flask(__name__)

    @app.get("/call")
    def call() -> dict:
        return {"p": model(1)}

    spans: list[str] = []
    app.wsgi_app = WSGIInstrumentMiddleware(_started_spans(app.wsgi_app, spans),
                                            registry=registry, routes={"/call": "m"})
    client = app.test_client()
    response = client.get("/call", headers={"X-Request-ID": "w-1"}, buffered=True)
    assert response.status_code == 200
    registry.drain()
    events = {event["request_id"]: event.get("trace_id") for event in _events(log, path)}
    assert events == {"w-1": spans[0]}
    log.close()


# --- without OpenTelemetry ----------------------------------------------------------------

def test_a_process_without_opentelemetry_never_imports_it():
    """Following a trace costs an application that never imported OpenTelemetry nothing:
    no import, however many points of a request look for a span."""
    script = """
import sys
import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request
registry = Registry(drain_interval=3600)
model = inferwatch.instrument(lambda x: 0.5, name="m", version="1", exemplars=True,
                              registry=registry)
mon = registry.monitor("m", "1")
with mon.request(request_id="r-1") as r:
    model(1)
    model(x=1)
    with r.stage("s"):
        r.prediction(1)
request = Request.open(mon, "r-2")
request.close(None)
registry.drain()
assert mon.state.counters["inferwatch_requests_total"][("ok",)] == 2.0
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


class _UnreadableSpan(NonRecordingSpan):
    """A span of a tracing shim whose context cannot be read."""

    def get_span_context(self):
        raise RuntimeError("span context unavailable")


def test_an_unreadable_span_inside_a_request_is_one_fault_of_it(scraper):
    """Each point of a request looks for a span it has none of yet: one whose context cannot
    be read is counted once for the request, however many points then run in it."""
    from inferwatch import faults

    model, mon = _traced(scraper.registry)
    before = faults.internal_error_counts().get("tracing", 0)
    request = Request.open(mon, "r-1")
    with trace.use_span(_UnreadableSpan(trace.INVALID_SPAN_CONTEXT)):
        for _ in range(3):
            model(1)
            with request.stage("s"):
                request.prediction(1)
        request.close(None)
    assert faults.internal_error_counts().get("tracing", 0) - before == 1
    assert request_totals(mon)["ok"] == 1.0
