"""Rendering /metrics: content negotiation, gzip, hostile label values, WSGI and ASGI apps."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import shutil
import subprocess
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from inferwatch.serving.exposition import (
    gzip_accepted,
    make_asgi_app,
    make_wsgi_app,
    metrics_response,
    render,
)

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
HOSTILE_VALUES = ['quote " inside', "back\\slash", "new\nline", "both \\n and \\\"", "ünïcödé ✓",
                  "emoji 🚀", "", "{braces}=", "# not a comment", "tab\there", "\\", '"', "\n\n"]
# Lone surrogates cannot be UTF-8 encoded; render() has its own test for them.
label_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def sample_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("demo_requests", "Requests served.", ["model"], registry=registry)
    requests.labels("fraud").inc(3)
    Gauge("demo_in_flight", "Calls in flight.", registry=registry).set(2)
    Histogram("demo_latency_seconds", "Latency in seconds.", buckets=(0.1, 1.0),
              registry=registry).observe(0.5)
    return registry


@pytest.mark.parametrize("accept", [
    None, "", "text/plain", "text/plain; version=0.0.4", "text/plain; version=1.0.0",
    "application/openmetrics-text", OPENMETRICS, "application/openmetrics-text; version=0.0.1",
    "application/openmetrics-text; version=1.0.0; escaping=underscores", PROMETHEUS_ACCEPT,
    "application/json", "*/*",
])
def test_content_negotiation_matches_prometheus_client(accept):
    registry = sample_registry()
    encoder, content_type = choose_encoder(accept or "")

    body, headers = render(registry, accept, None)

    assert headers == {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    assert body == encoder(registry)


def test_prometheus_gets_openmetrics_and_a_plain_client_the_text_format():
    registry = sample_registry()

    om_body, om_headers = render(registry, PROMETHEUS_ACCEPT, None)
    text_body, text_headers = render(registry, None, None)

    assert om_headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om_body.endswith(b"# EOF\n")
    assert text_headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# EOF" not in text_body
    assert b'demo_requests_total{model="fraud"} 3.0' in text_body


@pytest.mark.parametrize("accept_encoding", [
    "gzip", "GZIP", "deflate, gzip;q=0.5", "br,gzip", "*", "br;q=1, *;q=0.1", "x-gzip",
    "gzip;q=1.000", "gzip ; q=0.001", "gzip;q=0, x-gzip;q=0.5",
])
def test_gzip_when_accepted(accept_encoding):
    registry = sample_registry()
    plain, _ = render(registry, None, None)

    body, headers = render(registry, None, accept_encoding)

    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain


@pytest.mark.parametrize("accept_encoding", [
    None, "", "identity", "deflate", "br",
    # Named with quality 0, or everything refused: RFC 9110 says not gzip.
    "gzip;q=0", "gzip; q=0.000", "GZIP;Q=0", "*;q=0", "*, gzip;q=0", "x-gzip;q=0, br",
    # An entry with a malformed quality counts as absent.
    "gzip;q=2", "gzip;q=high", "gzip;q=0.0001",
])
def test_no_gzip_unless_accepted(accept_encoding):
    body, headers = render(sample_registry(), None, accept_encoding)

    assert "Content-Encoding" not in headers
    assert body.startswith(b"# HELP")


def test_name_filter_restricts_the_output():
    body, _ = render(sample_registry(), None, None, names=["demo_in_flight"])

    assert [f.name for f in parse_text(body.decode())] == ["demo_in_flight"]


def test_query_string_name_filter_in_metrics_response():
    status, body, _ = metrics_response(sample_registry(), None, None,
                                       "name[]=demo_in_flight&name[]=demo_requests_total")

    assert status == 200
    assert {f.name for f in parse_text(body.decode())} == {"demo_in_flight", "demo_requests"}


class RaisingCollector:
    def collect(self):
        raise RuntimeError("device unreadable")


def test_a_raising_collector_gives_a_500_and_never_raises(caplog):
    registry = CollectorRegistry()
    registry.register(RaisingCollector())

    status, body, headers = metrics_response(registry, None, None)

    assert status == 500
    assert b"RuntimeError" in body
    assert headers["Content-Type"].startswith("text/plain")


def test_a_lone_surrogate_in_a_label_value_does_not_break_the_scrape():
    registry = CollectorRegistry()
    gauge = Gauge("demo_value", "A value.", ["feature"], registry=registry)
    gauge.labels("bad \ud800 value").set(1)
    gauge.labels("good").set(2)

    body, _ = render(registry, None, None)

    values = {s.labels["feature"]: s.value for f in parse_text(body.decode()) for s in f.samples}
    assert values == {"bad ? value": 1.0, "good": 2.0}


def hostile_registry(values: list[str]) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("demo_hostile", "Counts per hostile label value.", ["value"],
                      registry=registry)
    for i, value in enumerate(values):
        counter.labels(value).inc(i + 1)
    return registry


@settings(max_examples=60, deadline=None)
@given(st.lists(label_text, min_size=1, max_size=8, unique=True))
def test_any_label_value_round_trips_through_both_parsers(values):
    registry = hostile_registry(values)
    expected = {value: float(i + 1) for i, value in enumerate(values)}

    text_body, _ = render(registry, None, None)
    om_body, _ = render(registry, OPENMETRICS, None)

    from_text = {s.labels["value"]: s.value for f in parse_text(text_body.decode())
                 for s in f.samples if s.name == "demo_hostile_total"}
    from_om = {s.labels["value"]: s.value for f in parse_openmetrics(om_body.decode())
               for s in f.samples if s.name == "demo_hostile_total"}
    assert from_text == expected
    assert from_om == expected


@pytest.mark.integration
def test_hostile_label_values_pass_promtool():
    # promtool 2.x reads the text format only (it sees OpenMetrics families as missing HELP).
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; `make test` installs it (apt-get install)")
    body, _ = render(hostile_registry(HOSTILE_VALUES), None, None)

    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=60)

    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


@pytest.fixture
def wsgi_server():
    registry = sample_registry()

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, make_wsgi_app(registry), handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def wsgi_request(server, method="GET", path="/metrics", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_wsgi_app_serves_the_text_format(wsgi_server):
    status, headers, body = wsgi_request(wsgi_server)

    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    assert {f.name for f in parse_text(body.decode())} >= {"demo_requests", "demo_in_flight"}


def test_wsgi_app_negotiates_openmetrics_and_gzip(wsgi_server):
    status, headers, body = wsgi_request(
        wsgi_server, headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})

    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert gzip.decompress(body).endswith(b"# EOF\n")


def test_wsgi_app_head_has_no_body_and_post_is_refused(wsgi_server):
    head_status, head_headers, head_body = wsgi_request(wsgi_server, method="HEAD")
    post_status, post_headers, _ = wsgi_request(wsgi_server, method="POST")

    assert head_status == 200
    assert head_body == b""
    assert int(head_headers["Content-Length"]) > 0
    assert post_status == 405
    assert post_headers["Allow"] == "GET, HEAD"


def asgi_get(app, path="/metrics", method="GET", headers=None):
    async def call():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, headers=headers or {})

    return asyncio.run(call())


def test_asgi_app_serves_negotiated_and_gzipped_metrics():
    app = make_asgi_app(sample_registry())

    plain = asgi_get(app)
    openmetrics = asgi_get(app, headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})

    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b'demo_requests_total{model="fraud"} 3.0' in plain.content
    assert openmetrics.status_code == 200
    assert openmetrics.headers["content-encoding"] == "gzip"
    # httpx decodes gzip itself
    assert openmetrics.content.endswith(b"# EOF\n")


def test_asgi_app_head_and_refused_methods():
    app = make_asgi_app(sample_registry())

    head = asgi_get(app, method="HEAD")
    post = asgi_get(app, method="POST")

    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert post.status_code == 405


def test_asgi_app_renders_off_the_event_loop_thread():
    render_threads: list[int] = []

    class ThreadRecordingCollector:
        def collect(self):
            render_threads.append(threading.get_ident())
            yield GaugeMetricFamily("demo_thread_probe", "Always 1.", value=1)

    registry = CollectorRegistry()
    registry.register(ThreadRecordingCollector())
    app = make_asgi_app(registry)

    async def scrape_and_report_loop_thread():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/metrics")
        return response, threading.get_ident()

    response, loop_thread = asyncio.run(scrape_and_report_loop_thread())

    assert response.status_code == 200
    assert render_threads and loop_thread not in render_threads


def test_asgi_app_answers_lifespan_events():
    app = make_asgi_app(CollectorRegistry())
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict] = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))

    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@given(st.text(alphabet=st.sampled_from(list("gzipGZIP*x-,;= q.0123456789br\t")), max_size=40))
def test_any_accept_encoding_header_is_read_without_raising(header):
    # A client's header is user data: whatever it says, the scrape is served.
    body, headers = render(sample_registry(), None, header)
    plain = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
    assert plain.startswith(b"# HELP")
    assert gzip_accepted(header) is ("Content-Encoding" in headers)
