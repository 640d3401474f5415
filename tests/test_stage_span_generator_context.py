"""``trace_stages=True`` with a stage inside a streamed body (a sync generator).

Starlette's ``StreamingResponse`` runs each step of a sync iterator in a thread, in a copy
of the request's context: a stage entered in one step and left in a later one left its span
in another context, and ``start_as_current_span`` then logged OpenTelemetry's ERROR "Failed
to detach context" per stage. The stage's span now ends without it, and is given back as
the current span only where it still is.
"""

from __future__ import annotations

import contextvars
import logging

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.testclient import TestClient

import inferwatch
from inferwatch.core.registry import Registry
from otel_provider import installed_provider
from request_totals import request_totals

SPANS = InMemorySpanExporter()
DETACH_FAILED = "Failed to detach context"


@pytest.fixture(scope="module", autouse=True)
def tracer_provider():
    with installed_provider(SPANS) as provider:
        yield provider


@pytest.fixture(autouse=True)
def fresh_spans():
    SPANS.clear()
    yield
    SPANS.clear()


def _stage_spans(name: str = "inferwatch.generate") -> list:
    return [span for span in SPANS.get_finished_spans() if span.name == name]


def _detach_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if DETACH_FAILED in r.getMessage()]


def _streaming_app(registry: Registry) -> FastAPI:
    inferwatch.instrument(lambda x: 0.5, name="llm", version="1", trace_stages=True,
                          registry=registry)
    mon = registry.monitor("llm", "1")
    app = FastAPI()

    @app.get("/stream")
    def stream() -> StreamingResponse:
        def tokens():
            # The stage is entered in the first step and left in the last.
            with mon.request() as r, r.stage("generate"):
                yield from ("a", "b", "c")

        return StreamingResponse(tokens(), media_type="text/plain")

    @app.get("/fails")
    def fails() -> StreamingResponse:
        def tokens():
            with mon.request() as r, r.stage("generate"):
                yield "a"
                raise ValueError("model went away")

        return StreamingResponse(tokens(), media_type="text/plain")

    return app


def test_a_stage_in_a_streamed_sync_generator_ends_its_span_quietly(caplog):
    caplog.set_level(logging.DEBUG)
    registry = Registry(drain_interval=3600)
    try:
        with TestClient(_streaming_app(registry)) as client:
            for _ in range(3):
                assert client.get("/stream").text == "abc"
        assert _detach_errors(caplog) == []
        stages = _stage_spans()
        assert len(stages) == 3 and all(span.end_time is not None for span in stages)
        # Each stream's stage belongs to its own request's trace: no stage span was left
        # current to become the parent of the next request's spans.
        assert len({span.context.trace_id for span in stages}) == 3
        assert all(span.attributes["inferwatch.model"] == "llm" for span in stages)
        assert request_totals(registry.monitor("llm", "1"))["ok"] == 3.0
    finally:
        registry.close()


def test_a_stage_that_fails_in_a_streamed_generator_records_the_error(caplog):
    caplog.set_level(logging.DEBUG)
    registry = Registry(drain_interval=3600)
    try:
        with TestClient(_streaming_app(registry), raise_server_exceptions=False) as client:
            client.get("/fails")
        assert _detach_errors(caplog) == []
        (stage,) = _stage_spans()
        assert stage.end_time is not None
        assert stage.status.status_code is StatusCode.ERROR
        assert [event.name for event in stage.events] == ["exception"]
    finally:
        registry.close()


def test_a_stage_is_the_current_span_inside_it_and_gives_back_the_one_before():
    registry = Registry(drain_interval=3600)
    try:
        inferwatch.instrument(lambda x: 0.5, name="m", version="1", trace_stages=True,
                              registry=registry)
        mon = registry.monitor("m", "1")
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("handler") as handler, mon.request() as r:
            with r.stage("score"), tracer.start_as_current_span("inside"):
                pass
            assert trace.get_current_span() is handler
        (stage,) = _stage_spans("inferwatch.score")
        (inside,) = _stage_spans("inside")
        assert inside.parent.span_id == stage.context.span_id
        assert stage.parent.span_id == handler.get_span_context().span_id
    finally:
        registry.close()


# Each step of a generator holding one stage runs in the context it was first entered in
# ("same"), or in a fresh copy of the consumer's context ("copy", as a thread pool runs it).
@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.sampled_from(["same", "copy"]), min_size=1, max_size=6),
       stage=st.text(min_size=1, max_size=30))
def test_a_stage_left_in_any_context_ends_its_span_without_an_error(steps, stage):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(logging.DEBUG)
    logger = logging.getLogger("opentelemetry.context")
    logger.addHandler(keep)
    registry = Registry(drain_interval=3600)
    SPANS.clear()
    try:
        inferwatch.instrument(lambda x: 0.5, name="m", version="1", trace_stages=True,
                              registry=registry)
        mon = registry.monitor("m", "1")

        def body():
            with mon.request() as r, r.stage(stage):
                for _ in steps:
                    yield

        generator = body()
        home = contextvars.copy_context()
        for where in [*steps, steps[-1]]:  # one step past the last item ends it
            context = home if where == "same" else contextvars.copy_context()
            context.run(next, generator, None)
        assert [r.getMessage() for r in records if DETACH_FAILED in r.getMessage()] == []
        (span,) = SPANS.get_finished_spans()
        assert span.end_time is not None
        assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked out here
        assert request_totals(mon)["ok"] == 1.0
    finally:
        logger.removeHandler(keep)
        registry.close()
