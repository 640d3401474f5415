"""Requests and routes past the caps: a request closed by two threads at once, routes to
models and versions the caps store as ``__other__``, close() with an odd end time, and a
caller's trace under ``exemplars=False``."""

from __future__ import annotations

import math
import threading
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inferwatch
from inferwatch.core.registry import Registry
from inferwatch.core.request import Request, current_request
from inferwatch.faults import internal_error_counts
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from request_totals import BothPastTheCheck, requests_by_outcome

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Model:
    classes_ = ("no", "yes")

    def predict_proba(self, rows):
        return [[0.5, 0.5] for _ in rows]


@pytest.fixture
def registry():
    registry = Registry(drain_interval=3600)
    yield registry
    registry.close()


# --- one request closed by two threads at once --------------------------------------------

def test_two_threads_closing_one_request_at_once_count_it_once(registry):
    """A server thread closing the body and another ending the same request (the abandoned
    check, a finalizer) both passed the open check: the request was submitted twice,
    counted twice, and the in-flight gauge went below zero."""
    monitor = registry.monitor("fraud", "1")
    request = Request.open(monitor, "r-1")
    request._open = BothPastTheCheck(2, value=True)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            request.close(None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=close) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert requests_by_outcome(monitor) == {"ok": 1.0}
    assert monitor.in_flight_locked() == 0


def test_many_threads_closing_the_same_requests_count_each_once(registry):
    """Threads released together by a barrier close the same requests: each is counted
    once, whichever thread won."""
    monitor = registry.monitor("fraud", "1")
    requests = [Request.open(monitor, f"r-{i}") for i in range(200)]
    barrier = threading.Barrier(4, timeout=10)

    def close_all() -> None:
        barrier.wait()
        for request in requests:
            request.close(None)

    threads = [threading.Thread(target=close_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert requests_by_outcome(monitor) == {"ok": 200.0}


# --- routes to models and versions stored as __other__ --------------------------------------
def test_a_route_to_a_model_past_the_model_cap_counts_under_the_other_monitor():
    """The second model past max_models=1 is served by the __other__ monitor; its route
    found no monitor, so its requests went uncounted."""
    registry = Registry(max_models=1, drain_interval=3600)
    try:
        inferwatch.instrument(Model(), name="fraud", version="1", registry=registry)
        churn = inferwatch.instrument(Model(), name="churn", version="2", registry=registry)
        other = inferwatch.monitor("churn", "2", registry=registry)
        assert other.name == "__other__"
        app = FastAPI()

        @app.get("/churn")
        def score(x: float) -> dict:
            return {"p": churn.predict_proba([[x]])[0]}

        @app.get("/churn-latest")
        def latest() -> dict:
            return {"p": churn.predict_proba([[1.0]])[0]}

        app.add_middleware(InstrumentMiddleware,
                           routes={"/churn": ("churn", "2"), "/churn-latest": "churn"},
                           registry=registry)
        client = TestClient(app)
        overflow_before = registry.overflow_counts()
        for i in range(2):
            response = client.get("/churn?x=1", headers={"X-Request-ID": f"r-{i}"})
            assert response.status_code == 200
        assert client.get("/churn-latest").status_code == 200
        # Rejected before the model runs: only the middleware can count it.
        assert client.get("/churn?x=abc").status_code == 422
        assert requests_by_outcome(other) == {"ok": 4.0}
        # The header's id is the request's, so delayed ground truth joins it.
        other.record_outcome("r-1", "yes")
        other.drain()
        assert sum(other.state.counters["inferwatch_outcomes_total"].values()) == 1
        # Looking a route up folds nothing more and creates nothing.
        assert registry.overflow_counts() == overflow_before
        assert len(registry.monitors()) == 2
    finally:
        registry.close()


def test_wsgi_a_route_to_a_model_past_the_model_cap_counts_under_the_other_monitor():
    registry = Registry(max_models=1, drain_interval=3600)
    try:
        inferwatch.instrument(Model(), name="fraud", version="1", registry=registry)
        inferwatch.instrument(Model(), name="churn", version="1", registry=registry)
        other = inferwatch.monitor("churn", registry=registry)
        app = Flask(__name__)

        @app.get("/churn")
        def score() -> dict:
            return {"ok": True}

        app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app, routes={"/churn": "churn"},
                                                registry=registry)
        response = app.test_client().get("/churn")
        assert response.data  # read: a WSGI request ends when the server has its body
        assert response.status_code == 200
        assert requests_by_outcome(other) == {"ok": 1.0}
    finally:
        registry.close()


def test_a_route_to_a_model_never_instrumented_passes_through_and_creates_nothing(registry):
    inferwatch.instrument(Model(), name="fraud", version="1", registry=registry)
    app = FastAPI()

    @app.get("/ghost")
    def ghost() -> dict:
        return {}

    app.add_middleware(InstrumentMiddleware, routes={"/ghost": "ghost", "/ghost2": ("ghost", "1")},
                       registry=registry)
    client = TestClient(app)
    assert client.get("/ghost").status_code == 200
    assert client.get("/ghost2").status_code == 404
    assert [(m.name, m.version) for m in registry.monitors()] == [("fraud", "1")]
    assert registry.overflow_counts() == {}


NAMES = st.sampled_from(["fraud", "churn", "spam", "__other__", " fraud", "ads"])
VERSIONS = st.one_of(st.none(), st.sampled_from(["1", "2", "3", " 2\n", "", "__other__"]),
                     st.integers(0, 4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instrumented=st.lists(st.tuples(NAMES, VERSIONS), max_size=8),
       query=st.tuples(NAMES, VERSIONS), max_models=st.integers(1, 3),
       max_versions=st.integers(1, 3))
def test_existing_monitor_is_what_monitor_returns_and_changes_nothing(
        instrumented, query, max_models, max_versions):
    """For any names and versions, instrumented past the caps or not: the route lookup
    answers the very monitor that ``monitor()`` serves the name and version with, or None
    where ``monitor()`` would create one; and it creates and folds nothing itself."""
    registry = Registry(max_models=max_models, max_versions_per_model=max_versions,
                        drain_interval=3600)
    try:
        for name, version in instrumented:
            registry.monitor(name, version)
        before = (registry.monitors(), registry.overflow_counts())
        found = registry.existing_monitor(*query)
        assert (registry.monitors(), registry.overflow_counts()) == before
        served = registry.monitor(*query)
        if found is None:
            assert served not in before[0]
        else:
            assert served is found
    finally:
        registry.close()


# --- close() with an end time that is no perf_counter() reading ------------------------------
@pytest.mark.parametrize("ended_at", ["soon", math.nan, math.inf, -1.0, "wall-clock"])
def test_close_with_an_odd_end_time_counts_the_request_and_never_raises(registry, ended_at):
    """close(ended_at=...) with text raised into the caller after the request was marked
    closed (never counted, in flight for good); NaN made the latency sum NaN for good; a
    wall-clock time.time() made the request decades long."""
    monitor = registry.monitor("fraud", "1")
    if ended_at == "wall-clock":
        ended_at = time.time()
    faults_before = internal_error_counts().get("request", 0)
    request = Request.open(monitor, "r-1")
    request.close(None, ended_at)
    assert requests_by_outcome(monitor) == {"ok": 1.0}
    latency = monitor.state.histograms["inferwatch_request_duration_seconds"][()]
    assert math.isfinite(latency.sum) and 0 <= latency.sum < 60
    assert internal_error_counts().get("request", 0) > faults_before


def test_close_with_a_real_end_time_keeps_it(registry):
    monitor = registry.monitor("fraud", "1")
    request = Request.open(monitor)
    ended = time.perf_counter()
    request.close(None, ended)
    assert request.record.duration == ended - request._start


# --- a caller's traceparent under exemplars=False ---------------------------------------------
def test_a_traceparent_gives_no_trace_id_to_a_model_instrumented_without_exemplars(registry):
    """exemplars=False keeps trace ids out of exemplars and the event log, but the
    middleware still took the caller's traceparent for such a model's requests."""
    off = inferwatch.instrument(Model(), name="off", version="1", exemplars=False,
                                registry=registry)
    on = inferwatch.instrument(Model(), name="on", version="1", registry=registry)
    seen: dict[str, object] = {}
    app = FastAPI()

    @app.get("/{name}")
    def score(name: str) -> dict:
        (off if name == "off" else on).predict_proba([[1.0]])
        seen[name] = current_request().record.trace_id
        return {}

    app.add_middleware(InstrumentMiddleware, routes={"/off": "off", "/on": "on"},
                       registry=registry)
    client = TestClient(app)
    for name in ("off", "on"):
        assert client.get(f"/{name}", headers={"traceparent": TRACEPARENT}).status_code == 200
    assert seen == {"off": None, "on": TRACEPARENT.split("-")[1]}

    flask_app = Flask(__name__)

    @flask_app.get("/off")
    def flask_off() -> dict:
        seen["wsgi"] = current_request().record.trace_id
        return {}

    flask_app.wsgi_app = WSGIInstrumentMiddleware(flask_app.wsgi_app, routes={"/off": "off"},
                                                  registry=registry)
    response = flask_app.test_client().get("/off", headers={"traceparent": TRACEPARENT})
    # Closed as a WSGI server closes the body, which ends the request in this thread.
    response.close()
    assert response.status_code == 200
    assert seen["wsgi"] is None
    assert current_request() is None


# --- exclude_paths that are no paths ----------------------------------------------------------
@pytest.mark.parametrize("middleware", [InstrumentMiddleware, WSGIInstrumentMiddleware])
@pytest.mark.parametrize("entry", ["", "metrics", None, b"/metrics"])
def test_an_exclude_path_that_is_no_path_is_refused_by_name(middleware, entry):
    """An empty entry (from splitting an unset variable) left out every path, so nothing
    was recorded; one without its leading '/' left out nothing: both silently."""
    with pytest.raises(ValueError, match=r"exclude_paths entry .* is not a path"):
        middleware(lambda *args: None, model="fraud", exclude_paths=["/health", entry])


def test_exclude_paths_given_as_a_generator_leave_out_the_paths_below_too(registry):
    """A generator was read once for the exact paths, leaving none for the paths below
    them: /metrics/ and /metrics/x were recorded as model requests."""
    inferwatch.instrument(Model(), name="fraud", version="1", registry=registry)
    app = FastAPI()

    @app.get("/metrics/{rest:path}")
    def metrics(rest: str) -> dict:
        return {}

    app.add_middleware(InstrumentMiddleware, model="fraud", registry=registry,
                       exclude_paths=(path for path in ["/metrics"]))
    client = TestClient(app)
    for path in ("/metrics/", "/metrics/x"):
        assert client.get(path).status_code == 200
    assert requests_by_outcome(registry.monitor("fraud", "1")) == {}
