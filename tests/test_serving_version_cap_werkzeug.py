"""Serving edges: routes to versions folded by the version cap, werkzeug converter bounds,
and more of what the middleware and the metrics server meet in production."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware


class Model:
    classes_ = ("no", "yes")

    def predict_proba(self, rows):
        return [[0.5, 0.5] for _ in rows]


# --- a route naming a version past the version cap -------------------------------------------
def test_a_route_to_a_version_past_the_cap_counts_under_the_other_monitor():
    """A third version past a cap of two is served by the __other__ monitor; its route
    found no monitor, so its requests went uncounted."""
    registry = Registry(max_versions_per_model=2)
    try:
        for version in ("1", "2", "3"):
            model = inferwatch.instrument(Model(), name="fraud", version=version,
                                          registry=registry)
        other = inferwatch.monitor("fraud", "3", registry=registry)
        assert other.version == "__other__"
        app = FastAPI()

        @app.get("/v3/score")
        def score(x: float) -> dict:
            return {"p": model.predict_proba([[x]])[0]}

        app.add_middleware(InstrumentMiddleware, routes={"/v3/score": ("fraud", "3")},
                           registry=registry)
        client = TestClient(app)
        for i in range(2):
            response = client.get("/v3/score?x=1", headers={"X-Request-ID": f"r-{i}"})
            assert response.status_code == 200
        # Rejected before the model runs: only the middleware can count it.
        assert client.get("/v3/score?x=abc").status_code == 422
        other.drain()
        assert other.state.counters["inferwatch_requests_total"][("ok",)] == 3
        # The header's id is the request's, so delayed ground truth joins it.
        other.record_outcome("r-1", "yes")
        other.drain()
        assert sum(other.state.counters["inferwatch_outcomes_total"].values()) == 1
    finally:
        registry.close()


def test_a_route_to_a_version_never_instrumented_still_passes_through(scraper):
    inferwatch.instrument(Model(), name="fraud", version="1", registry=scraper.registry)
    app = FastAPI()

    @app.get("/v9")
    def v9() -> dict:
        return {}

    app.add_middleware(InstrumentMiddleware, routes={"/v9": ("fraud", "9")},
                       registry=scraper.registry)
    assert TestClient(app).get("/v9").status_code == 200
    assert [(m.name, m.version) for m in scraper.registry.monitors()] == [("fraud", "1")]
    assert scraper.total("inferwatch_requests_total") == 0


# --- werkzeug converter arguments ------------------------------------------------------------
BOUNDED_RULES = {
    "/lang/<string(length=3):code>": "lang",
    "/name/<string(minlength=2, maxlength=4):name>": "name",
    "/n/<int(min=1, max=9):n>": "n",
    "/digits/<int(fixed_digits=4):n>": "digits",
    "/signed/<int(signed=True, max=5):n>": "signed",
    "/ratio/<float(0.5, 2.0):x>": "ratio",
    "/page/<any(about, help, 'foo,bar'):page>": "page",
}


def bounded_flask_app(registry: Registry) -> Flask:
    app = Flask(__name__)
    for rule, endpoint in BOUNDED_RULES.items():
        app.add_url_rule(rule, endpoint, lambda **values: "ok")
    app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, routes=dict.fromkeys(BOUNDED_RULES,
                                                                              "fraud"),
                                            registry=registry)
    return app


@pytest.mark.parametrize(("path", "routed"), [
    ("/lang/fra", True), ("/lang/fr", False), ("/lang/fren", False),
    ("/name/ab", True), ("/name/abcd", True), ("/name/a", False), ("/name/abcde", False),
    ("/n/1", True), ("/n/9", True), ("/n/0", False), ("/n/10", False),
    ("/digits/0042", True), ("/digits/42", False),
    ("/signed/-6", True), ("/signed/5", True), ("/signed/6", False),
    ("/ratio/0.5", True), ("/ratio/2.5", False),
    ("/page/about", True), ("/page/foo,bar", True), ("/page/foo", False), ("/page/bar", False),
])
def test_werkzeug_converter_bounds_are_those_flask_routes_by(scraper, path, routed):
    """Flask answers 404 for a value out of its converter's bounds: the middleware counted
    such a request as the route's ok."""
    inferwatch.instrument(Model(), name="fraud", version="1", registry=scraper.registry)
    response = bounded_flask_app(scraper.registry).test_client().get(path)
    assert response.data  # read: a WSGI request ends when the server has its body
    assert (response.status_code == 200) == routed
    assert scraper.total("inferwatch_requests_total") == (1 if routed else 0)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=st.sampled_from(sorted(BOUNDED_RULES)),
       value=st.text(st.sampled_from("0123456789-.abf,"), min_size=1, max_size=6))
def test_werkzeug_bounds_match_flask_for_any_value(scraper, rule, value):
    inferwatch.instrument(Model(), name="fraud", version="1", registry=scraper.registry)
    path = rule[:rule.index("<")] + value
    before = scraper.total("inferwatch_requests_total")
    response = bounded_flask_app(scraper.registry).test_client().get(path)
    assert response.data
    counted = scraper.total("inferwatch_requests_total") - before
    assert counted == (1 if response.status_code == 200 else 0), (path, response.status_code)


# --- Pushgateway addresses -------------------------------------------------------------------
@pytest.mark.parametrize(("gateway", "problem"), [
    ("http://127.0.0.1:9091/?token=abc", "query or fragment"),
    ("http://127.0.0.1:9091#push", "query or fragment"),
    ("127.0.0.1:9091?", "query or fragment"),
    ("ftp://127.0.0.1:9091", "scheme 'ftp'"),
    ("unix://run/pushgateway.sock", "scheme 'unix'"),
])
def test_a_gateway_address_that_cannot_take_a_group_path_is_refused_up_front(gateway, problem):
    """A query or fragment swallowed every group's path (each push went to the gateway's
    root); another scheme became a host named after it. Both surfaced only when the job
    ended, as a failed push, or never."""
    from inferwatch.serving.pushgateway import on_exit

    registry = Registry()
    try:
        with pytest.raises(ValueError, match=problem):
            on_exit(gateway, "nightly", registry=registry)
    finally:
        registry.close()


# --- the metrics server ----------------------------------------------------------------------
def _raw_request(port: int, request: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/metrics",
                                    "HTTP://localhost/metrics?name[]=requests_total"])
def test_the_metrics_server_takes_a_request_target_in_absolute_form(target):
    """RFC 9112 says a server must accept an absolute-form target, as a forwarding proxy
    sends it: the server answered 404 there."""
    from prometheus_client import CollectorRegistry, Counter

    source = CollectorRegistry()
    Counter("requests", "Requests.", registry=source).inc(3)
    with inferwatch.serve(port=0, addr="127.0.0.1", registry=source) as server:
        line = target.format(port=server.port)
        answer = _raw_request(server.port, f"GET {line} HTTP/1.1\r\nHost: x\r\n"
                                           "Connection: close\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"requests_total 3.0" in body
