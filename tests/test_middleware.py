"""Web middleware: FastAPI, Starlette and Flask apps through their test clients, plus real
uvicorn and gunicorn servers (one of them with two workers in multi-worker mode)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import FileResponse, PlainTextResponse
from starlette.routing import Route

import inferwatch
from conftest import free_port
from inferwatch import faults
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from inferwatch.serving.request_ids import clean_request_id, trace_id_from_traceparent
from inferwatch.serving.routes import compile_template
from processes import serving_app

APPS = Path(__file__).parent / "apps"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class FraudModel:
    classes_ = ("legit", "fraud")

    def predict_proba(self, rows):
        return [[0.25, 0.75] for _ in rows]


@pytest.fixture
def fraud(scraper):
    return inferwatch.instrument(FraudModel(), name="fraud", version="1.4.2",
                                 registry=scraper.registry)


def fastapi_app(fraud_model, registry, **options) -> FastAPI:
    app = FastAPI()

    @app.get("/score/{user_id}")
    def score(user_id: int) -> dict:  # a sync endpoint: FastAPI runs it in a thread
        return {"proba": fraud_model.predict_proba([[float(user_id)]])[0]}

    @app.get("/fail")
    async def fail() -> dict:
        raise ValueError("no such user")

    @app.get("/unavailable")
    async def unavailable() -> dict:
        raise HTTPException(503)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks():
            for _ in range(3):
                await asyncio.sleep(0.05)
                yield b"chunk\n"
        return StreamingResponse(chunks())

    @app.get("/later")
    async def later(tasks: BackgroundTasks) -> dict:
        tasks.add_task(asyncio.sleep, 0.3)
        return {}

    @app.get("/health")
    async def health() -> dict:
        return {}

    app.add_middleware(InstrumentMiddleware, registry=registry, **options)
    app.mount("/metrics", inferwatch.make_asgi_app(registry=None))
    return app


def test_fastapi_route_template_request_id_and_prediction_join(scraper, fraud):
    app = fastapi_app(fraud, scraper.registry, routes={"/score/{user_id:int}": "fraud"})
    client = TestClient(app)
    for i in range(3):
        response = client.get(f"/score/{i}", headers={"X-Request-ID": f"req-{i}"})
        assert response.json() == {"proba": [0.25, 0.75]}
    assert client.get("/health").status_code == 200  # no model's route
    # The endpoint's model call joined the HTTP request: one request per HTTP call, not two.
    assert scraper.value("inferwatch_requests_total", model="fraud", outcome="ok") == 3
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 3
    assert scraper.value("inferwatch_predicted_class_total", **{"class": "fraud"}) == 3
    # The header's request id is what delayed ground truth joins on.
    inferwatch.monitor("fraud", registry=scraper.registry).record_outcome("req-1", "fraud")
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1
    assert "req-1" not in scraper.text()


def test_errors_5xx_and_4xx(scraper, fraud):
    app = fastapi_app(fraud, scraper.registry, model="fraud")
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/fail").status_code == 500
    assert client.get("/unavailable").status_code == 503
    assert client.get("/score/not-a-number").status_code == 422
    assert client.get("/nowhere").status_code == 404
    assert scraper.value("inferwatch_errors_total", error_type="ValueError") == 1
    assert scraper.value("inferwatch_errors_total", error_type="HTTP503") == 1
    assert scraper.value("inferwatch_requests_total", outcome="error") == 2
    # Client errors are the service rejecting input, not the model failing.
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2


def test_cors_preflights_are_no_model_requests(scraper, fraud):
    """A browser sends OPTIONS before each cross-origin POST: counted, it doubled the
    traffic and halved the mean latency."""
    from fastapi.middleware.cors import CORSMiddleware

    app = fastapi_app(fraud, scraper.registry, model="fraud")
    app.add_middleware(CORSMiddleware, allow_origins=["https://app.example"],
                       allow_methods=["*"])
    client = TestClient(app)
    preflight = client.options("/score/3", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    assert client.get("/score/3").status_code == 200
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    flask = flask_app(fraud, scraper.registry, testing=False).test_client()
    assert flask.options("/score/3").status_code == 200
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


def test_a_root_path_is_the_root_of_the_paths_below_it_only(scraper, fraud):
    """Mounted at /api, a request to /apiv2/score/3 was read as v2/score/3."""
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = InstrumentMiddleware(app, routes={"/score/{id}": ("fraud", "1.4.2"),
                                                "/apiv2/score/{id}": ("fraud", "2")},
                                   registry=scraper.registry)
    inferwatch.instrument(FraudModel(), name="fraud", version="2", registry=scraper.registry)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    for path in ("/api/score/3", "/apiv2/score/3"):
        asyncio.run(wrapped({"type": "http", "method": "GET", "path": path, "root_path": "/api",
                             "headers": []}, receive, send))
    assert scraper.value("inferwatch_requests_total", model_version="1.4.2", outcome="ok") == 1
    assert scraper.value("inferwatch_requests_total", model_version="2", outcome="ok") == 1


def test_exceptions_reach_the_app_unchanged(scraper, fraud):
    client = TestClient(fastapi_app(fraud, scraper.registry, model="fraud"))
    with pytest.raises(ValueError, match="no such user"):
        client.get("/fail")


def test_metrics_route_is_left_out_of_its_own_metrics(scraper, fraud):
    client = TestClient(fastapi_app(fraud, scraper.registry, model="fraud"))
    client.get("/score/1")
    for _ in range(3):
        assert client.get("/metrics").status_code == 200
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1


def test_streaming_ends_at_last_chunk_and_excludes_background_tasks(scraper, fraud):
    client = TestClient(fastapi_app(fraud, scraper.registry, model="fraud"))
    assert client.get("/stream").text == "chunk\n" * 3
    streamed = scraper.value("inferwatch_request_duration_seconds_sum")
    assert streamed >= 0.15  # three chunks 50 ms apart: the request lasted until the last
    client.get("/later")
    both = scraper.value("inferwatch_request_duration_seconds_sum")
    assert both - streamed < 0.3  # the 300 ms background task ran after the response


def test_a_background_task_failing_after_the_response_leaves_the_outcome_the_clients(
        scraper, fraud):
    def send_audit_email() -> None:
        raise RuntimeError("smtp down")

    app = FastAPI()

    @app.get("/score/{user_id}")
    async def score(user_id: int, tasks: BackgroundTasks) -> dict:
        tasks.add_task(send_audit_email)
        return {"proba": fraud.predict_proba([[float(user_id)]])[0]}

    app.add_middleware(InstrumentMiddleware, model="fraud", registry=scraper.registry)
    with pytest.raises(RuntimeError, match="smtp down"):  # re-raised to the server unchanged
        TestClient(app).get("/score/1")
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert scraper.value("inferwatch_errors_total") is None
    # An endpoint's exception still counts under its class (the 500 went out before it).
    with pytest.raises(ValueError):
        TestClient(fastapi_app(fraud, scraper.registry, model="fraud")).get("/fail")
    assert scraper.value("inferwatch_errors_total", error_type="ValueError") == 1


def drive_asgi(app, path: str, extensions: dict) -> list[dict]:
    """One request to `app` from a server offering `extensions`, as hypercorn or granian do."""
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.sleep(3600)  # the client stays: a disconnect would end the request
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
             "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
             "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
             "server": ("test", 80), "client": ("client", 1), "extensions": extensions}
    asyncio.run(app(scope, receive, send))
    return sent


def test_a_file_sent_by_pathsend_or_zerocopysend_ends_the_response(scraper, fraud, tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("hello")

    async def download(request):
        fraud.predict_proba([[1.0]])
        return FileResponse(path)

    app = InstrumentMiddleware(Starlette(routes=[Route("/file", download)]), model="fraud",
                               registry=scraper.registry)
    sent = drive_asgi(app, "/file", {"http.response.pathsend": {}})
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]

    async def zero_copy(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for more in (True, True, False):
            await send({"type": "http.response.zerocopysend", "file": 3, "more_body": more})

    drive_asgi(InstrumentMiddleware(zero_copy, model="fraud", registry=scraper.registry),
               "/chunks", {"http.response.zerocopysend": {}})
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.value("inferwatch_requests_total", outcome="cancelled") == 0
    assert scraper.value("inferwatch_stream_items_sum") == 3  # the chunks of the second


@pytest.mark.parametrize("how", ["count", "to_end", "file_object", "short"])
def test_a_zero_copy_file_of_the_declared_length_is_the_whole_answer(scraper, fraud,
                                                                       tmp_path, how):
    """Its bytes counted toward Content-Length, as a body's are: the answer is complete once
    they are handed over, and a client that leaves before the app's empty last message (the
    app then sends none, as Starlette's responses do) had its answer (ok), not a cut-off
    one (cancelled)."""
    path = tmp_path / "report.bin"
    path.write_bytes(b"x" * 4096)

    async def zero_copy(scope, receive, send):
        fraud.predict_proba([[1.0]])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4000")]})
        with open(path, "rb") as f:
            message = {"type": "http.response.zerocopysend", "file": f.fileno(),
                       "offset": 96, "more_body": True}
            if how in ("count", "short"):
                message["count"] = 4000 if how == "count" else 3999
            elif how == "file_object":
                f.seek(96)
                message = {**message, "file": f}
                del message["offset"]
            await send(message)
        if (await receive())["type"] == "http.disconnect":
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def receive() -> dict:
        return {"type": "http.disconnect"}  # the client took its 4000 bytes and left

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/file", "root_path": "",
             "headers": [], "extensions": {"http.response.zerocopysend": {}}}
    asyncio.run(InstrumentMiddleware(zero_copy, model="fraud",
                                     registry=scraper.registry)(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.zerocopysend"]
    # A byte short of what it declared: the client left with a cut-off answer.
    outcome = "cancelled" if how == "short" else "ok"
    assert scraper.value("inferwatch_requests_total", outcome=outcome) == 1
    assert scraper.total("inferwatch_requests_total") == 1


def test_traceparent_header_gives_the_trace_id(scraper, fraud, tmp_path):
    events = tmp_path / "events.jsonl"
    inferwatch.monitor("fraud", registry=scraper.registry).configure(events=str(events))
    client = TestClient(fastapi_app(fraud, scraper.registry, model="fraud"))
    client.get("/score/1", headers={"traceparent": TRACEPARENT, "X-Request-ID": "r-9"})
    monitor = inferwatch.monitor("fraud", registry=scraper.registry)
    monitor.drain()
    monitor.events.flush()
    # The JSONL sink names its files per process: read whichever it wrote.
    text = "".join(path.read_text() for path in tmp_path.glob("events*.jsonl"))
    assert '"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"' in text.replace(" ", "")
    assert '"request_id":"r-9"' in text.replace(" ", "")


def test_starlette_routes_function_and_custom_header(scraper, fraud):
    def score(request):
        return PlainTextResponse(str(fraud.predict_proba([[1.0]])[0][1]))

    def pick(scope):
        return ("fraud", "1.4.2") if scope["path"].startswith("/v2/") else None

    app = Starlette(routes=[Route("/v2/score", score), Route("/v1/score", score)])
    app.add_middleware(InstrumentMiddleware, routes=pick, request_id_header="X-Correlation-ID",
                       registry=scraper.registry)
    client = TestClient(app)
    assert client.get("/v2/score", headers={"X-Correlation-ID": "c-1"}).text == "0.75"
    client.get("/v1/score")  # not a model route: its call is recorded as a plain call
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 2
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 1
    inferwatch.monitor("fraud", registry=scraper.registry).record_outcome("c-1", "fraud")
    assert scraper.value("inferwatch_outcomes_total", result="correct") == 1


def test_uninstrumented_model_passes_through_without_creating_a_monitor(scraper):
    app = Starlette(routes=[Route("/score", lambda request: PlainTextResponse("x"))])
    app.add_middleware(InstrumentMiddleware, model="not-loaded-yet", registry=scraper.registry)
    assert TestClient(app).get("/score").text == "x"
    assert scraper.registry.monitors() == []


def test_fault_in_routes_function_is_counted_never_raised(scraper, fraud):
    def broken(scope):
        raise RuntimeError("bug in the routes function")

    app = Starlette(routes=[Route("/score", lambda request: PlainTextResponse("x"))])
    app.add_middleware(InstrumentMiddleware, routes=broken, registry=scraper.registry)
    before = faults.internal_error_counts().get("middleware", 0)
    assert TestClient(app).get("/score").text == "x"
    assert faults.internal_error_counts()["middleware"] == before + 1


def test_bad_configuration_names_the_problem():
    with pytest.raises(ValueError, match="routes="):
        InstrumentMiddleware(lambda *a: None)
    with pytest.raises(TypeError, match=r"routes\['/score'\]"):
        InstrumentMiddleware(lambda *a: None, routes={"/score": ("fraud",)})
    with pytest.raises(TypeError, match="exclude_paths"):
        WSGIInstrumentMiddleware(lambda *a: [], model="fraud", exclude_paths="/metrics")


def test_template_compilation_matches_like_the_frameworks():
    assert compile_template("/u/{id}/score").fullmatch("/u/abc/score")
    assert not compile_template("/u/{id}/score").fullmatch("/u/a/b/score")
    assert compile_template("/u/{id:int}").fullmatch("/u/12")
    assert not compile_template("/u/{id:int}").fullmatch("/u/x")
    assert compile_template("/f/{p:path}").fullmatch("/f/a/b")
    assert compile_template("/u/<int:id>").fullmatch("/u/12")
    assert compile_template("/u/<name>").fullmatch("/u/ann")
    assert compile_template("/a.b").fullmatch("/a.b") and not compile_template("/a.b").fullmatch(
        "/axb")


@given(st.text(max_size=300))
def test_request_ids_from_headers_are_bounded_as_every_other_request_id(raw):
    # The app reads the header's text as it came: the id it reports ground truth under
    # must be the one the request was recorded with.
    cleaned = clean_request_id(raw)
    assert cleaned == (faults.request_id_text(raw, "test") or None)
    assert cleaned is None or 0 < len(cleaned) <= faults.MAX_REQUEST_ID_CHARS


def test_request_ids_from_headers_keep_their_text_and_long_ones_become_digests():
    assert clean_request_id(" r 17\u00e9 ") == " r 17\u00e9 "
    assert clean_request_id("") is None
    long_id = "r" * (faults.MAX_REQUEST_ID_CHARS + 1)
    digest = clean_request_id(long_id)
    assert digest.startswith("sha256:") and len(digest) == 71
    assert clean_request_id(digest) == digest  # read back from an event, it joins again


@pytest.mark.parametrize("header", [
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-zz-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",  # uppercase hex
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 has four fields
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra",
    "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
])
def test_traceparents_that_w3c_trace_context_rejects_give_no_trace_id(header):
    assert trace_id_from_traceparent(header) is None


def test_a_later_traceparent_version_may_carry_more_fields():
    assert trace_id_from_traceparent(TRACEPARENT.replace("00-", "01-", 1) + "-more") == \
        "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_from_traceparent(f" {TRACEPARENT} ") == "4bf92f3577b34da6a3ce929d0e0e4736"


@given(st.text(max_size=80))
def test_malformed_traceparent_never_gives_a_trace_id(raw):
    trace_id = trace_id_from_traceparent(raw)
    assert trace_id is None or (len(trace_id) == 32 and trace_id != "0" * 32)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request_id=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                          min_size=8, max_size=60).map(lambda text: "Rq7" + text))
def test_request_ids_never_reach_metrics(scraper, fraud, request_id):
    # The prefix keeps a generated id from matching ordinary exposition text ("write_er").
    async def app(scope, receive, send):
        fraud.predict_proba([[1.0]])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    wrapped = InstrumentMiddleware(app, model="fraud", registry=scraper.registry)
    asyncio.run(call_asgi(wrapped, "/score", [(b"x-request-id", request_id.encode())]))
    assert request_id not in scraper.text()


async def call_asgi(app, path: str, headers: list) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET", "headers": headers,
               "query_string": b""}, receive, send)
    return sent


# --- Flask -----------------------------------------------------------------------------------
def flask_app(model, registry, *, testing: bool) -> Flask:
    app = Flask(__name__)
    app.testing = testing

    @app.get("/score/<int:user_id>")
    def score(user_id: int) -> dict:
        return {"proba": model.predict_proba([[float(user_id)]])[0]}

    @app.get("/fail")
    def fail() -> dict:
        raise LookupError("no such user")

    @app.get("/stream")
    def stream():
        def chunks():
            for _ in range(3):
                time.sleep(0.05)
                yield "chunk\n"
        return app.response_class(chunks())

    app.wsgi_app = WSGIInstrumentMiddleware(
        app.wsgi_app, routes={"/score/<int:user_id>": "fraud", "/fail": "fraud",
                              "/stream": "fraud"}, registry=registry)
    return app


def test_flask_routes_errors_and_request_id(scraper, fraud):
    client = flask_app(fraud, scraper.registry, testing=False).test_client()
    assert client.get("/score/3", headers={"X-Request-ID": "f-3"}).json == {
        "proba": [0.25, 0.75]}
    assert client.get("/score/abc").status_code == 404  # the template matches ints only
    # Flask answers the exception with a 500 itself; it is still counted by its class.
    # (A WSGI request ends once the server has read its body: .data reads it.)
    failed = client.get("/fail")
    assert failed.status_code == 500 and failed.data
    assert scraper.value("inferwatch_errors_total", error_type="LookupError") == 1
    assert scraper.value("inferwatch_requests_total", outcome="ok") == 1
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 1
    inferwatch.monitor("fraud", registry=scraper.registry).record_outcome("f-3", "legit")
    assert scraper.value("inferwatch_outcomes_total", result="incorrect") == 1


def test_flask_testing_mode_propagates_the_same_exception(scraper, fraud):
    client = flask_app(fraud, scraper.registry, testing=True).test_client()
    with pytest.raises(LookupError, match="no such user"):
        client.get("/fail")
    assert scraper.value("inferwatch_errors_total", error_type="LookupError") == 1


def test_flask_streaming_ends_when_the_body_is_consumed(scraper, fraud):
    client = flask_app(fraud, scraper.registry, testing=False).test_client()
    assert client.get("/stream").text == "chunk\n" * 3
    assert scraper.value("inferwatch_request_duration_seconds_sum") >= 0.15
    assert scraper.value("inferwatch_requests_in_flight") == 0


# --- real servers ----------------------------------------------------------------------------
def server(args: list[str], port: int, tmp_path: Path, env: dict | None = None
           ) -> contextlib.AbstractContextManager[str]:
    """A server of an app in tests/apps, ready once its /health answers."""
    return serving_app(args, port, app_dir=APPS, log_dir=tmp_path, ready_path="/health",
                       env=env)


def get(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(url: str, name: str, **labels: str) -> float:
    text = get(url + "/metrics/")[1].decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def exercise(url: str) -> None:
    for i in range(5):
        assert get(f"{url}/score/{i}", {"X-Request-ID": f"r-{i}"})[0] == 200
    assert get(url + "/fail")[0] == 500
    for _ in range(3):
        get(url + "/metrics/")
        get(url + "/health")


@pytest.mark.integration
def test_uvicorn_serves_fastapi_with_the_middleware(tmp_path):
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "web_fastapi:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    with server(args, port, tmp_path) as url:
        exercise(url)
        assert get(url + "/stream")[1].count(b"\n") == 3
        # /health is a model route here (model= covers every route); /metrics is not.
        # Every route is a model route here (model=), /metrics excepted: 5 scores, the
        # readiness check, 3 health checks and the stream.
        assert scrape(url, "inferwatch_requests_total", outcome="ok") == 5 + 1 + 3 + 1
        assert scrape(url, "inferwatch_errors_total", error_type="KeyError") == 1
        assert scrape(url, "inferwatch_stage_duration_seconds_count", stage="inference") == 5 + 3


@pytest.mark.integration
def test_gunicorn_serves_flask_with_the_middleware(tmp_path):
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--log-level", "warning", "web_flask:app"]
    with server(args, port, tmp_path) as url:
        exercise(url)
        assert scrape(url, "inferwatch_requests_total", outcome="ok") == 5
        assert scrape(url, "inferwatch_errors_total", error_type="KeyError") == 1
        assert scrape(url, "inferwatch_predicted_class_total", **{"class": "legit"}) == 5


@pytest.mark.integration
def test_two_uvicorn_workers_under_gunicorn_serve_the_merged_view(tmp_path):
    pytest.importorskip("inferwatch.multiproc")
    directory = tmp_path / "multiproc"
    directory.mkdir()
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--worker-class", "uvicorn.workers.UvicornWorker", "--log-level", "warning",
            "web_fastapi:app"]
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    env = {"INFERWATCH_MULTIPROC_DIR": str(directory), "HOLD_DIR": str(arrived), "HOLD_FOR": "2"}
    with server(args, port, tmp_path, env) as url:
        with ThreadPoolExecutor(8) as pool:
            # Holding calls first, a new one each 50 ms until both workers have served one
            # and sit blocked (see apps/barrier.py): the spread is certain, not scheduled.
            held = []
            deadline = time.monotonic() + 60
            while len(list(arrived.iterdir())) < 2:
                assert time.monotonic() < deadline, f"{list(arrived.iterdir())} arrived"
                if len(held) < 7:
                    held.append(pool.submit(get, f"{url}/score/{len(held)}?hold=1", None, 90))
                time.sleep(0.05)
            answers = [future.result() for future in held]
            answers += pool.map(get, [f"{url}/score/{i}" for i in range(40)])
        calls = len(answers)
        assert all(status == 200 for status, _ in answers), answers
        pids = {body.split(b'"pid":')[1].split(b",")[0] for _, body in answers}
        assert len(pids) == 2, "one worker answered every call"
        # Workers publish once a second: every scrape, whichever worker serves it, must
        # settle at the sum over both workers.
        deadline = time.monotonic() + 60  # a safety net: the condition ends the wait
        while scrape(url, "inferwatch_stage_duration_seconds_count", stage="inference") != calls:
            assert time.monotonic() < deadline, "the merged count never reached the calls made"
            time.sleep(0.2)
        for _ in range(6):
            assert scrape(url, "inferwatch_stage_duration_seconds_count",
                          stage="inference") == calls


def test_a_path_finds_its_target_by_exclusion_exact_path_template_then_default():
    from inferwatch.serving.routes import Routes

    routes = Routes({"/score/{user_id}": "fraud", "/files/{p:path}": ("files", "2"),
                     "/score/special": "special"},
                    "default", None, ("/score/internal",), None)

    for i in range(50):
        assert routes.target(f"/score/{i}", {}) == ("fraud", None)
    assert routes.target("/score/special", {}) == ("special", None)  # exact before templates
    assert routes.target("/files/a/b", {}) == ("files", "2")
    assert routes.target("/score/internal", {}) is None  # exclusions come first, always
    assert routes.target("/score/a/b", {}) == ("default", None)  # {user_id} is one segment
    assert routes.target("/other", {}) == ("default", None)


def test_a_paths_monitor_is_kept_a_second_and_a_routes_function_asked_every_time(scraper):
    """The middleware's one lookup per request: a path's monitor (or its absence) holds for
    a second, so a model instrumented later serves within one; the lookups stay bounded;
    a routes function, which may read more of the scope than the path, is asked each time."""
    from inferwatch.serving.routes import _MAX_CACHED_TARGETS, Routes

    now = [100.0]
    routes = Routes({"/score/{user_id}": "fraud"}, None, None, ("/metrics",),
                    scraper.registry)
    routes.clock = lambda: now[0]
    assert routes.resolve("/score/1", {}) is None  # not instrumented yet
    fraud = inferwatch.monitor("fraud", "1", registry=scraper.registry)
    now[0] += 0.99
    assert routes.resolve("/score/1", {}) is None  # the answer holds for a second
    now[0] += 0.02
    assert routes.resolve("/score/1", {}) is fraud
    assert routes.resolve("/metrics", {}) is None
    for i in range(3 * _MAX_CACHED_TARGETS):
        assert routes.resolve(f"/score/{i}", {}) is fraud
    assert len(routes._resolved) <= _MAX_CACHED_TARGETS

    scopes = []

    def by_tenant(scope):
        scopes.append(scope)
        return "fraud" if scope.get("tenant") == "a" else None

    dynamic = Routes(by_tenant, None, None, (), scraper.registry)
    assert dynamic.resolve("/score", {"tenant": "a"}) is fraud
    assert dynamic.resolve("/score", {"tenant": "b"}) is None
    assert len(scopes) == 2 and not dynamic._resolved
