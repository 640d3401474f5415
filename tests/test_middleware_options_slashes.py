"""Web middleware as users misconfigure and call it: options of the wrong shape refused at
start-up with an error naming them, and Flask requests whose path starts with several
slashes (a client joining a base URL ending in '/' with a route) recorded as Flask serves
them."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from fastapi import FastAPI
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import inferwatch
from conftest import Scraper, free_port
from inferwatch.core.request import current_request
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware

MIDDLEWARES = [InstrumentMiddleware, WSGIInstrumentMiddleware]


class FraudModel:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows: list) -> list:
        return [[0.25, 0.75] for _ in rows]


def plain_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


# --- options of the wrong shape ----------------------------------------------------------------
@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_exclude_paths_none_is_refused_naming_the_option(middleware):
    """exclude_paths=None (meant as "leave nothing out") failed with "'NoneType' object is
    not iterable", naming no option."""
    with pytest.raises(TypeError, match=r"exclude_paths .*\(\) for none.*None"):
        middleware(plain_app, routes={"/predict": "fraud"}, exclude_paths=None)


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_no_exclusions_is_an_empty_sequence(middleware):
    middleware(plain_app, routes={"/predict": "fraud"}, exclude_paths=())
    middleware(plain_app, routes={"/predict": "fraud"}, exclude_paths=[])


@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("routes", ["/predict", [("/predict", "fraud")],
                                    (("/predict", "fraud"),), {"/predict"}])
def test_routes_of_the_wrong_shape_are_refused_as_such(middleware, routes):
    """A string was read letter by letter ("routes['p'] is not a path") and a list of pairs
    pair by pair ("routes[('/predict', 'fraud')] is not a path"): errors that name no real
    mistake."""
    with pytest.raises(TypeError, match=r"routes must be a mapping .* or a function") as info:
        middleware(plain_app, routes=routes)
    assert type(routes).__name__ in str(info.value)


@pytest.mark.parametrize("middleware", MIDDLEWARES)
@pytest.mark.parametrize("registry", ["default", 0, object()])
def test_a_registry_that_is_not_one_is_refused_at_start_up(middleware, registry):
    """It failed at each model request instead, inside the middleware: every request passed
    through unrecorded, counted as an internal error only."""
    with pytest.raises(TypeError, match="registry must be an inferwatch Registry"):
        middleware(plain_app, routes={"/predict": "fraud"}, registry=registry)


def test_a_real_registry_is_taken(scraper):
    inferwatch.instrument(FraudModel(), name="fraud", version="1",
                          registry=scraper.registry)
    app = WSGIInstrumentMiddleware(plain_app, routes={"/predict": "fraud"},
                                   registry=scraper.registry)
    environ: dict[str, Any] = {"PATH_INFO": "/predict"}
    setup_testing_defaults(environ)
    body = app(environ, lambda *args: None)
    assert b"".join(body) == b"ok"
    body.close()
    scraper.registry.drain()
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


# --- Flask paths with leading slashes --------------------------------------------------------
def flask_app(model: Any) -> Flask:
    app = Flask(__name__)

    def answer(user_id: int) -> dict:
        request = current_request()  # the HTTP request the middleware opened, if any
        return {"proba": model.predict_proba([[float(user_id)]])[0][1],
                "request_id": None if request is None else request.request_id}

    @app.get("/score/<int:user_id>")
    def score(user_id: int) -> dict:
        return answer(user_id)

    @app.get("/predict")
    def predict() -> dict:
        return answer(1)

    return app


def call(app: Callable[..., Iterable[bytes]], path: str) -> tuple[str, bytes]:
    """One GET as gunicorn hands it over: PATH_INFO is the request target's path as sent."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET",
                               "wsgi.input": io.BytesIO(), "HTTP_X_REQUEST_ID": "r-7"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = app(environ, lambda line, headers, exc_info=None: status.append(line))
    try:
        return status[0], b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(slashes=st.integers(min_value=2, max_value=6),
       path=st.sampled_from(["score/7", "score/123", "predict"]))
def test_flask_serves_a_path_with_leading_slashes_and_it_is_recorded(slashes, path):
    """A client joining "http://host/" and "/score/7" asks for //score/7: werkzeug routes it
    by its text after its leading slashes and Flask runs the model, but the middleware
    matched the route against //score/7 and left the request out."""
    scraper = Scraper()
    try:
        fraud = inferwatch.instrument(FraudModel(), name="fraud", version="1",
                                      registry=scraper.registry)
        app = flask_app(fraud)
        app.wsgi_app = WSGIInstrumentMiddleware(
            app.wsgi_app, routes={"/score/<int:user_id>": "fraud", "/predict": "fraud"},
            registry=scraper.registry)
        status, body = call(app, "/" * slashes + path)
        assert status.startswith("200")
        # The model's call joined the HTTP request, under the header's id.
        assert json.loads(body)["request_id"] == "r-7"
        scraper.registry.drain()
        assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
        assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 1
    finally:
        scraper.registry.close()


def test_flask_404_and_redirect_paths_with_slashes_stay_unrecorded(scraper):
    """Only what werkzeug routes to the endpoint is a model request: a doubled slash inside
    the path is a redirect, a segment that is no int a 404."""
    fraud = inferwatch.instrument(FraudModel(), name="fraud", version="1",
                          registry=scraper.registry)
    app = flask_app(fraud)
    app.wsgi_app = WSGIInstrumentMiddleware(app.wsgi_app,
                                            routes={"/score/<int:user_id>": "fraud"},
                                            registry=scraper.registry)
    assert call(app, "/score//7")[0].startswith("308")
    assert call(app, "//score/me")[0].startswith("404")
    scraper.registry.drain()
    assert scraper.total("inferwatch_requests_total") == 0


def test_a_plain_wsgi_app_keeps_its_paths_as_sent(scraper):
    """Leading slashes are werkzeug's routing: another WSGI app (Django answers //predict with
    a 404) keeps the path as it came."""
    inferwatch.instrument(FraudModel(), name="fraud", version="1",
                          registry=scraper.registry)
    app = WSGIInstrumentMiddleware(plain_app, routes={"/predict": "fraud"},
                                   registry=scraper.registry)
    call(app, "//predict")
    call(app, "/predict")
    call(app, "/")
    scraper.registry.drain()
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


# --- a client gone mid-upload, under a real uvicorn -----------------------------------------
@contextlib.contextmanager
def uvicorn_serving(app: Any) -> Iterator[int]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn did not start")
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def wait_for(condition: Callable[[], bool], message: str) -> None:
    deadline = time.monotonic() + 60  # a safety net: the condition ends the wait
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.01)


class Features(BaseModel):
    amount: float


def fastapi_scoring(model: Any, registry: Any) -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    def predict(features: Features) -> dict:
        return {"proba": model.predict_proba([[features.amount]])[0][1]}

    app.add_middleware(InstrumentMiddleware, routes={"/predict": "fraud"}, registry=registry)
    return app


def recorded(scraper: Scraper) -> dict[str, float]:
    scraper.registry.drain()
    return {outcome: scraper.value("inferwatch_requests_total", outcome=outcome) or 0.0
            for outcome in ("ok", "error", "cancelled")}


def test_a_client_gone_mid_upload_is_cancelled_not_an_answered_400(scraper):
    """The client sent half its JSON body and went away: FastAPI turned the disconnect into
    a 400 that uvicorn dropped (nobody was there to get it), and the request counted as ok
    although the client got nothing."""
    fraud = inferwatch.instrument(FraudModel(), name="fraud", version="1",
                                  registry=scraper.registry)
    with uvicorn_serving(fastapi_scoring(fraud, scraper.registry)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                           b'{"amount": 1')
            # The server has read the head and begun the request before the client goes.
            wait_for(lambda: scraper.registry.drain() is None and
                     scraper.value("inferwatch_requests_in_flight") == 1,
                     "the request never started")
        wait_for(lambda: sum(recorded(scraper).values()) == 1, "the request never ended")
    assert recorded(scraper) == {"ok": 0.0, "error": 0.0, "cancelled": 1.0}


def test_a_whole_upload_answered_is_ok_under_uvicorn(scraper):
    fraud = inferwatch.instrument(FraudModel(), name="fraud", version="1",
                                  registry=scraper.registry)
    with uvicorn_serving(fastapi_scoring(fraud, scraper.registry)) as port:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict",
                                         data=json.dumps({"amount": 3}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == {"proba": 0.75}
        wait_for(lambda: sum(recorded(scraper).values()) == 1, "the request never ended")
    assert recorded(scraper) == {"ok": 1.0, "error": 0.0, "cancelled": 0.0}
