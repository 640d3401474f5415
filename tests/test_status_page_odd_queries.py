"""The status page asked odd questions: a version without its model, a parameter given twice,
a model name sent as raw UTF-8, and an index whose drift conditions follow the windows from
one load to the next."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.report.status import StatusPages
from inferwatch.serving.bridge import InferwatchCollector
from inferwatch.serving.status_apps import make_status_asgi_app, make_status_wsgi_app

HANG_GUARD = 30.0


def _serve(registry: Registry, **kwargs):
    prometheus = CollectorRegistry()
    prometheus.register(InferwatchCollector(registry))
    return inferwatch.serve(port=0, addr="127.0.0.1", registry=prometheus,
                            status_page=registry, **kwargs)


def _get(server, query: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{server.port}/?{query}"
    try:
        with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture
def two_models():
    """churn 3 and 4, and fraud 3 (a version shared by two models)."""
    registry = Registry()
    for name, version in (("churn", "3"), ("churn", "4"), ("fraud", "3")):
        inferwatch.instrument(lambda x: 0.5, name=name, version=version,
                              registry=registry)([1.0])
    yield registry
    registry.close()


# --- ?version= without ?model= -----------------------------------------------------------------

def test_a_version_of_one_model_alone_shows_that_model_version(two_models):
    with _serve(two_models) as server:
        status, kind, body = _get(server, "version=4")
        assert status == 200 and kind.startswith("text/html")
        page = body.decode()
        assert "<h1>churn 4</h1>" in page
        status, kind, body = _get(server, "version=4&format=json")
        assert status == 200 and kind == "application/json"
        states = json.loads(body)["states"]
        assert [(s["model"], s["version"]) for s in states] == [("churn", "4")]


@pytest.mark.parametrize("fmt", ["", "&format=json", "&format=HTML"])
def test_a_version_of_several_models_alone_is_a_400_naming_model(two_models, fmt):
    with _serve(two_models) as server:
        status, kind, body = _get(server, "version=3" + fmt)
    assert status == 400, body
    assert kind.startswith("text/plain")
    text = body.decode()
    assert "model=" in text and "'churn'" in text and "'fraud'" in text


@pytest.mark.parametrize("fmt", ["", "&format=json"])
def test_a_version_of_no_model_alone_is_a_404(two_models, fmt):
    with _serve(two_models) as server:
        status, _, body = _get(server, "version=9" + fmt)
    assert status == 404, body


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=20))
def test_a_version_alone_never_shows_the_index(version):
    registry = Registry()
    try:
        inferwatch.instrument(lambda x: 0.5, name="churn", version="3",
                              registry=registry)([1.0])
        status, body, _ = StatusPages(registry).respond(urllib.parse.urlencode(
            {"version": version}))
    finally:
        registry.close()
    # The index's title and table: a version alone is one page, or an answer saying why not.
    assert b"Model versions served by this process" not in body
    assert status == (200 if version == "3" else 404), body


# --- a parameter given twice -------------------------------------------------------------------

@pytest.mark.parametrize("query", ["model=churn&model=fraud&version=3",
                                   "model=churn&version=3&version=4",
                                   "model=churn&model=fraud&version=3&format=json"])
def test_a_model_or_version_given_twice_is_a_400_naming_it(two_models, query):
    with _serve(two_models) as server:
        status, kind, body = _get(server, query)
    assert status == 400, body
    assert kind.startswith("text/plain")
    twice = "model=" if query.count("model=") > 1 else "version="
    assert body.decode().startswith(twice), body


def test_the_same_value_twice_is_still_one_question(two_models):
    status, body, _ = StatusPages(two_models).respond("model=churn&version=4&version=4")
    assert status == 200 and b"<h1>churn 4</h1>" in body


# --- a model name sent unescaped ---------------------------------------------------------------

class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _raw_get(port: int, target: bytes) -> bytes:
    """A request whose target holds raw UTF-8, as curl sends a URL typed with it."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def cafe():
    registry = Registry()
    inferwatch.instrument(lambda x: 0.5, name="café", version="é1", registry=registry)([1.0])
    yield registry
    registry.close()


def test_a_raw_utf8_model_name_finds_its_page_under_a_wsgi_server(cafe):
    httpd = make_server("127.0.0.1", 0, make_status_wsgi_app(cafe), handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        raw = _raw_get(httpd.server_port, "/?model=café&version=é1".encode())
        escaped = _raw_get(httpd.server_port, b"/?" + urllib.parse.urlencode(
            {"model": "café", "version": "é1"}).encode())
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(HANG_GUARD)
    assert escaped.startswith(b"HTTP/1.0 200"), escaped[:200]
    assert raw.startswith(b"HTTP/1.0 200"), raw[:200]
    assert "<h1>café é1</h1>".encode() in raw


def _asgi_get(app, query: bytes) -> tuple[int, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "method": "GET", "path": "/", "query_string": query,
                     "headers": []}, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_a_raw_utf8_model_name_finds_its_page_in_the_asgi_app(cafe):
    status, body = _asgi_get(make_status_asgi_app(cafe), "model=café".encode())
    assert status == 200, body
    assert "<h1>café é1</h1>".encode() in body


# --- the index follows the drift windows -------------------------------------------------------

def _drift_config(tmp_path) -> str:
    path = tmp_path / "inferwatch.yaml"
    path.write_text("drift:\n  min_observations: 50\n")
    return str(path)


def _firing(index: bytes, model: str, version: str) -> str:
    """The "conditions holding" cell of one row of the index."""
    text = index.decode()
    link = "?" + urllib.parse.urlencode({"model": model, "version": version})
    row = text[text.index(f'href="{link.replace("&", "&amp;")}"'):]
    row = row[:row.index("</tr>")]
    return row.rsplit("<td", 1)[1]


def test_the_index_drift_condition_follows_the_window_between_loads(tmp_path):
    rng = np.random.default_rng(3)
    reference = inferwatch.Reference.from_data({"amount": rng.normal(0, 1, 2000)})
    registry = Registry()
    try:
        monitors = [registry.monitor("fraud", str(v)).configure(reference=reference)
                    for v in range(3)]
        for monitor in monitors:
            for value in rng.normal(0, 1, 200):
                with monitor.request() as r:
                    r.features({"amount": float(value)})
        registry.drain()
        pages = StatusPages(registry, config=_drift_config(tmp_path))
        first = pages.respond("")[1]
        assert all("InferwatchFeatureDrift" not in _firing(first, "fraud", str(v))
                   for v in range(3))
        again = pages.respond("")[1]
        assert [_firing(again, "fraud", str(v)) for v in range(3)] == \
            [_firing(first, "fraud", str(v)) for v in range(3)]
        # Version 1's inputs move far off: its row, and only its row, shows the drift.
        for value in rng.normal(8, 1, 2000):
            with monitors[1].request() as r:
                r.features({"amount": float(value)})
        registry.drain()
        moved = pages.respond("")[1]
        assert "InferwatchFeatureDrift" in _firing(moved, "fraud", "1")
        assert "InferwatchFeatureDrift" not in _firing(moved, "fraud", "0")
        # The version's own page agrees with its row.
        page = pages.respond("model=fraud&version=1")[1].decode()
        assert 'href="https://github.com/inferwatch/inferwatch/blob/main/docs/runbooks.md' \
               '#inferwatchfeaturedrift">InferwatchFeatureDrift</a></td><td><span ' \
               'class="firing">' in page
    finally:
        registry.close()


def test_under_min_observations_the_index_does_not_claim_drift(tmp_path):
    rng = np.random.default_rng(4)
    reference = inferwatch.Reference.from_data({"amount": rng.normal(0, 1, 2000)})
    registry = Registry()
    try:
        monitor = registry.monitor("fraud", "1").configure(reference=reference)
        for value in rng.normal(8, 1, 20):  # far off, but fewer rows than 50
            with monitor.request() as r:
                r.features({"amount": float(value)})
        registry.drain()
        index = StatusPages(registry, config=_drift_config(tmp_path)).respond("")[1]
        assert "InferwatchFeatureDrift" not in _firing(index, "fraud", "1")
    finally:
        registry.close()


def test_the_whole_snapshot_of_several_models_is_still_served(two_models):
    status, body, _ = StatusPages(two_models).respond("format=json")
    assert status == 200
    assert sorted((s["model"], s["version"]) for s in json.loads(body)["states"]) == \
        [("churn", "3"), ("churn", "4"), ("fraud", "3")]
