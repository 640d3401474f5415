"""OpenTelemetry: trace ids as exemplars (read back from a real Prometheus) and in events."""

from __future__ import annotations

import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import inferwatch
from inferwatch.core.tracing import current_trace_id
from otel_provider import installed_provider

SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider():
    with installed_provider(SPANS) as provider:
        yield provider


def test_trace_id_is_an_exemplar_in_openmetrics_only(scraper):
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("predict"):
        expected = current_trace_id()
        model(1)
    model(2)  # outside a span: no exemplar, still counted
    assert expected is not None and len(expected) == 32
    text = openmetrics(scraper.prometheus).decode()
    exemplar_lines = [line for line in text.splitlines() if "# {" in line]
    assert len(exemplar_lines) == 1
    assert f'trace_id="{expected}"' in exemplar_lines[0]
    assert exemplar_lines[0].startswith("inferwatch_request_duration_seconds_bucket")
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert "trace_id" not in scraper.text()  # the classic text format carries no exemplars


def test_stage_spans_and_trace_id_in_events(scraper, tmp_path):
    from inferwatch.events import EventLog

    log = EventLog(tmp_path / "events.jsonl")
    inferwatch.instrument(lambda x: 0.5, name="m", version="1", trace_stages=True, events=log,
                          registry=scraper.registry)
    mon = inferwatch.monitor("m", "1", registry=scraper.registry)
    SPANS.clear()
    with trace.get_tracer("test").start_as_current_span("request"):
        trace_id = current_trace_id()
        with mon.request(request_id="r-1") as r:
            with r.stage("preprocess"):
                pass
            r.prediction(0.5)
    scraper.registry.drain()
    assert log.flush(5)
    names = [span.name for span in SPANS.get_finished_spans()]
    assert "inferwatch.preprocess" in names
    stage_span = next(s for s in SPANS.get_finished_spans() if s.name == "inferwatch.preprocess")
    assert format(stage_span.context.trace_id, "032x") == trace_id
    assert stage_span.attributes["inferwatch.model"] == "m"
    import json

    from inferwatch.events.jsonl import event_files

    # The log's files, not the link at its configured path to the newest of them.
    events = [json.loads(line) for p in event_files(tmp_path / "events.jsonl")
              for line in p.read_text().splitlines()]
    assert [e["trace_id"] for e in events] == [trace_id]
    log.close()


@pytest.mark.integration
def test_exemplars_reach_a_real_prometheus(scraper, tmp_path):
    from processes import prometheus

    model = inferwatch.instrument(lambda x: 0.5, name="m", version="1",
                                  registry=scraper.registry)
    server = inferwatch.serve(port=0, addr="127.0.0.1", registry=scraper.prometheus)
    tracer = trace.get_tracer("test")
    trace_ids = set()
    try:
        with prometheus(tmp_path, [f"127.0.0.1:{server.port}"],
                        flags=["--enable-feature=exemplar-storage"]) as prom:
            start = time.time()
            deadline = time.monotonic() + 90  # a safety net: the first exemplar ends the wait
            found: set[str] = set()
            while time.monotonic() < deadline and not found:
                with tracer.start_as_current_span("predict"):
                    trace_ids.add(current_trace_id())
                    model(1)
                time.sleep(0.5)
                data = prom.api("query_exemplars",
                                query="inferwatch_request_duration_seconds_bucket",
                                start=str(start - 60), end=str(time.time() + 60))
                found = {e["labels"]["trace_id"] for series in data for e in series["exemplars"]}
            assert found and found <= trace_ids
    finally:
        server.shutdown()


def test_importing_the_api_alone_keeps_the_fast_path(monkeypatch):
    from opentelemetry.trace import ProxyTracerProvider

    import inferwatch.core.tracing as tracing

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: ProxyTracerProvider())
    assert not tracing.otel_configured()
    monkeypatch.undo()
    assert tracing.otel_configured()  # the SDK provider this module installed
