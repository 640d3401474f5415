"""Web middleware edges: cancellation under trio, repeated traceparent headers under a real
WSGI server, long streaming responses, and more."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from werkzeug.serving import make_server

import inferwatch
from inferwatch.core import request as request_module
from inferwatch.serving.middleware import InstrumentMiddleware, WSGIInstrumentMiddleware
from test_middleware_late_writes_trailers import clock  # noqa: F401 (the fixture)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
OTHER_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def outcomes(scraper) -> dict[str, float | None]:
    return {outcome: scraper.value("inferwatch_requests_total", outcome=outcome)
            for outcome in ("ok", "error", "cancelled")}


def events_text(scraper, tmp_path: Path, name: str) -> str:
    monitor = inferwatch.monitor(name, registry=scraper.registry)
    monitor.drain()
    monitor.events.flush()
    return "".join(path.read_text() for path in tmp_path.glob("events*.jsonl")).replace(" ", "")


# --- cancellation under trio -----------------------------------------------------------------
def run_cancelled(wrapped: Callable[..., Any], backend: str) -> None:
    """Serve one request with `wrapped` on `backend` and cancel it (as a server does when
    the client goes away) once the first body chunk has been sent."""

    async def main() -> None:
        first_chunk = anyio.Event()

        async def receive() -> dict:
            await anyio.sleep_forever()
            return {}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body":
                first_chunk.set()

        scope = {"type": "http", "path": "/generate", "method": "POST", "headers": [],
                 "query_string": b"", "asgi": {"spec_version": "2.4"}}
        async with anyio.create_task_group() as group:
            group.start_soon(wrapped, scope, receive, send)
            with anyio.fail_after(10):
                await first_chunk.wait()
            group.cancel_scope.cancel()

    anyio.run(main, backend=backend)


def sse_app() -> Callable[..., Any]:
    from starlette.responses import StreamingResponse

    async def tokens() -> Any:
        yield b"data: hello\n\n"
        await anyio.sleep_forever()

    async def app(scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await StreamingResponse(tokens(), media_type="text/event-stream")(scope, receive, send)

    return app


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_stream_cancelled_under_trio_is_cancelled_not_an_error(scraper, backend):
    pytest.importorskip(backend)
    inferwatch.monitor("llm", "1", registry=scraper.registry)
    wrapped = InstrumentMiddleware(sse_app(), model="llm", registry=scraper.registry)
    run_cancelled(wrapped, backend)
    assert outcomes(scraper) == {"ok": 0, "error": 0, "cancelled": 1}
    assert scraper.total("inferwatch_errors_total") == 0
    assert scraper.value("inferwatch_requests_in_flight") == 0


# --- repeated traceparent headers under WSGI -------------------------------------------------
def serve_wsgi(app: Callable[..., Iterable[bytes]], headers: list[tuple[str, str]]) -> bytes:
    """GET /score from a real werkzeug server on loopback, sending `headers` as they are
    (a name may repeat)."""
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
        connection.putrequest("GET", "/score")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return body
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def plain_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_a_repeated_traceparent_under_wsgi_gives_the_first_trace_id(scraper, tmp_path):
    inferwatch.monitor("fraud", "1", registry=scraper.registry).configure(
        events=str(tmp_path / "events.jsonl"))
    wrapped = WSGIInstrumentMiddleware(plain_wsgi, model="fraud", registry=scraper.registry)
    assert serve_wsgi(wrapped, [("traceparent", TRACEPARENT),
                                ("traceparent", OTHER_TRACEPARENT),
                                ("X-Request-ID", "r-1")]) == b"ok"
    text = events_text(scraper, tmp_path, "fraud")
    assert '"request_id":"r-1"' in text
    assert f'"trace_id":"{TRACE}"' in text


# --- long streaming responses ----------------------------------------------------------------
def test_an_asgi_stream_open_longer_than_the_abandoned_bound_is_not_abandoned(scraper, clock):  # noqa: F811
    model = inferwatch.instrument(lambda prompt: prompt.upper(), name="llm", version="1",
                                  registry=scraper.registry)

    async def app(scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for step in range(3):
            await send({"type": "http.response.body", "body": model(f"t{step}").encode(),
                        "more_body": True})
            clock.offset += request_module.ABANDONED_AFTER_SECONDS * 0.6  # a long stream
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    wrapped = InstrumentMiddleware(app, model="llm", registry=scraper.registry)
    anyio.run(wrapped, {"type": "http", "path": "/generate", "method": "POST", "headers": []},
              receive, send)
    assert len(sent) == 5
    # One HTTP request, ok, whose three model calls joined it as its inference stage
    assert outcomes(scraper) == {"ok": 1, "error": 0, "cancelled": 0}
    # (each of its three text calls is an inference stage of the request, as plain calls are)
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 3


def test_a_wsgi_stream_open_longer_than_the_abandoned_bound_is_not_abandoned(scraper, clock):  # noqa: F811
    model = inferwatch.instrument(lambda prompt: prompt.upper(), name="llm", version="1",
                                  registry=scraper.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        for step in range(3):
            yield model(f"t{step}").encode()
            clock.offset += request_module.ABANDONED_AFTER_SECONDS * 0.6

    wrapped = WSGIInstrumentMiddleware(app, model="llm", registry=scraper.registry)
    body = wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/generate"},
                   lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"T0T1T2"
    body.close()
    assert outcomes(scraper) == {"ok": 1, "error": 0, "cancelled": 0}
    # (each of its three text calls is an inference stage of the request, as plain calls are)
    assert scraper.value("inferwatch_stage_duration_seconds_count", stage="inference") == 3


def test_a_request_left_open_is_still_abandoned_on_the_patched_clock(scraper, clock):  # noqa: F811
    """The bound still holds where no middleware will end the request."""
    model = inferwatch.instrument(lambda x: x, name="m", version="1", registry=scraper.registry)
    monitor = inferwatch.monitor("m", "1", registry=scraper.registry)

    def leak_then_call() -> None:
        request_module.Request.open(monitor, "leaked")
        clock.offset += request_module.ABANDONED_AFTER_SECONDS + 1
        model(1.0)

    worker = threading.Thread(target=leak_then_call)
    worker.start()
    worker.join()
    assert outcomes(scraper) == {"ok": 1, "error": 0, "cancelled": 1}


def test_a_background_task_running_long_after_the_response_leaves_it_ok(scraper, clock):  # noqa: F811
    """Starlette runs background tasks after the response, inside the request: one that
    runs past the abandoned bound and then calls the model made the answered request
    cancelled."""
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    model = inferwatch.instrument(lambda x: x * 2, name="fraud", version="1",
                                  registry=scraper.registry)

    def rescore() -> None:
        clock.offset += request_module.ABANDONED_AFTER_SECONDS + 60  # a slow audit job
        model(3.0)

    async def score(request: Any) -> JSONResponse:
        return JSONResponse({"score": model(1.0)}, background=BackgroundTask(rescore))

    app = InstrumentMiddleware(Starlette(routes=[Route("/score", score)]), model="fraud",
                               registry=scraper.registry)
    with TestClient(app) as client:
        assert client.get("/score").json() == {"score": 2.0}
    assert outcomes(scraper) == {"ok": 1, "error": 0, "cancelled": 0}
    # Timed to its last body chunk, as the client saw it, not to the background task's end.
    assert scraper.value("inferwatch_request_duration_seconds_sum") < 60
