"""/metrics edges: Accept headers as Prometheus 2.x / 3.x and other clients send them, and
OpenMetrics validity of what inferwatch writes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.exposition import metrics_response, render

CLASSIC = "text/plain; version=0.0.4; charset=utf-8"
# The media ranges Prometheus 3's scrape_protocols put in its Accept header, and whether
# prometheus_client can write each (it writes no OpenMetrics 0.0.1 and no protobuf).
RANGES = {
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8": True,
    "application/openmetrics-text;version=1.0.0": True,
    "application/openmetrics-text;version=0.0.1": False,
    "text/plain;version=1.0.0;escaping=allow-utf-8": True,
    "text/plain;version=0.0.4": True,
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited": False,
}


@pytest.fixture(scope="module")
def user_and_inferwatch_registry():
    monitors = Registry(drain_interval=3600)
    registry = CollectorRegistry()
    Counter("app_logins", "Logins.", ["method"], registry=registry).labels('pass"word').inc(2)
    Gauge("app_queue_depth", "Queue depth.", registry=registry).set(float("nan"))
    Histogram("app_payload_bytes", "Payload size in bytes.", buckets=(10, 100),
              registry=registry).observe(50)
    registry.register(InferwatchCollector(monitors, events_dropped=dict))
    model = inferwatch.instrument(lambda x: 0.5, name='m "1"\n', version="1\\2",
                                  registry=monitors)
    model(1)
    monitors.drain()
    yield registry
    monitors.close()


@pytest.mark.parametrize(("accept", "content_type"), [
    # Prometheus 3, scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0]
    ("text/plain;version=0.0.4;q=0.6,application/openmetrics-text;version=1.0.0;"
     "escaping=allow-utf-8;q=0.5,*/*;q=0.4", CLASSIC),
    # Prometheus 3, scrape_protocols: [PrometheusText1.0.0, OpenMetricsText1.0.0], reordered
    ("application/openmetrics-text;version=1.0.0;q=0.3,text/plain;version=1.0.0;"
     "escaping=allow-utf-8;q=0.4", "text/plain; version=1.0.0; charset=utf-8; "
     "escaping=allow-utf-8"),
    ("application/openmetrics-text;version=1.0.0;q=0, text/plain", CLASSIC),
    ("application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=1.0.0;q=0.5",
     "text/plain; version=1.0.0; charset=utf-8; escaping=underscores"),
    ("Application/OpenMetrics-Text; Version=1.0.0",
     "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"),
])
def test_the_format_the_client_prefers_by_quality_is_served(accept, content_type):
    registry = CollectorRegistry()
    Counter("app_calls", "Calls.", registry=registry).inc()

    body, headers = render(registry, accept, None)

    assert headers["Content-Type"] == content_type
    encoder, _ = choose_encoder(content_type.replace(" ", ""))
    assert body == encoder(registry)


@given(st.data())
def test_the_highest_quality_range_that_can_be_written_wins(data):
    chosen = data.draw(st.lists(st.sampled_from(sorted(RANGES)), min_size=1, unique=True))
    qualities = data.draw(st.lists(st.integers(2, 999), min_size=len(chosen),
                                   max_size=len(chosen), unique=True))
    ranked = sorted(zip(qualities, chosen), reverse=True)
    servable = [media for _, media in ranked if RANGES[media]]
    # Prometheus ends its header with */* at the lowest quality.
    header = ",".join(f"{media};q=0.{q:03d}" for q, media in zip(qualities, chosen))
    header += ",*/*;q=0.001"

    registry = CollectorRegistry()
    Counter("app_calls", "Calls.", registry=registry).inc()
    _, headers = render(registry, header, None)

    expected = choose_encoder(servable[0])[1] if servable else CLASSIC
    assert headers["Content-Type"] == expected


_PARAMETER_VALUE = st.one_of(
    st.sampled_from(["1.0.0", '"1.0.0"', "0.0.4", '"0.0.4"', "", '"', '""', "abc", "1.x",
                     "1.0.0.0", "allow-utf-8", "underscores", "dots", "values", "ü"]),
    st.text(st.sampled_from('0123456789."\\abc-'), max_size=8))
_PARAMETER = st.tuples(st.sampled_from(["version", "Version", "escaping", "q", "charset", "x"]),
                       _PARAMETER_VALUE).map(lambda kv: f"{kv[0]}={kv[1]}")
_RANGE = st.tuples(
    st.sampled_from(["application/openmetrics-text", "text/plain", "APPLICATION/OPENMETRICS-TEXT",
                     "text/*", "*/*", "application/json", ""]),
    st.lists(_PARAMETER, max_size=3),
).map(lambda r: ";".join([r[0], *r[1]]))


@given(st.lists(_RANGE, min_size=1, max_size=4).map(", ".join))
def test_any_accept_header_gets_a_parseable_answer(user_and_inferwatch_registry, accept):
    # An Accept header is the client's to write: a quoted or unreadable version must not
    # turn a scrape into a 500 (which also logs an error and hides real failures).
    status, body, headers = metrics_response(user_and_inferwatch_registry, accept, None)

    assert status == 200, body
    text = body.decode()
    if headers["Content-Type"].startswith("application/openmetrics-text"):
        names = {f.name for f in parse_openmetrics(text)}
    else:
        names = {f.name for f in parse_text(text)}
    assert {"app_logins", "inferwatch_requests"} <= names


def test_a_model_predicting_negative_values_gives_valid_openmetrics():
    monitors = Registry(drain_interval=3600)
    registry = CollectorRegistry()
    registry.register(InferwatchCollector(monitors, events_dropped=dict))
    model = inferwatch.instrument(lambda x: -np.abs(x), name="m", version="1", registry=monitors)
    model(np.array([1.0, 2.0, 3.0]))
    monitors.drain()
    try:
        body, _ = render(registry, "application/openmetrics-text; version=1.0.0", None)
        list(parse_openmetrics(body.decode()))
    finally:
        monitors.close()
